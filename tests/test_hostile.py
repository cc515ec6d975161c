"""What a second hostile-caller probe tried: memory across requests, zips, bodies, inline data, forged hosts.

All traffic goes to servers this module starts on 127.0.0.1; each is stopped by its handle.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile

import httpx
import pytest
from PIL import Image

from lychee_gradio import app
from lychee_gradio.config import Config, Limits
from lychee_gradio.contract import RequestContext, ScoringTimeoutError
from lychee_gradio.evaluation import BadLine, load_queries
from lychee_gradio.inputs import ImageMemoryPool, PixelBudget, admit_images, image_memory, request_rules, to_item
from lychee_gradio.serving.image_urls import public_address
from lychee_gradio.ui.evaluate import evaluate_view

from .conftest import page
from .helpers import gradio_call


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- decoded pixels across requests ---------------------------------------------------------------------


def test_a_request_waits_for_room_in_the_pixel_pool_and_gets_it_when_another_gives_back():
    pool = ImageMemoryPool(limit=1000)
    first = PixelBudget(None, pool)
    first.admit(800)
    admitted, waiting = threading.Event(), threading.Event()

    def second_request():
        waiting.set()
        PixelBudget(None, pool).admit(500)
        admitted.set()

    worker = threading.Thread(target=second_request)
    worker.start()
    waiting.wait(5)
    assert not admitted.wait(0.3)  # 800 + 500 is over the pool's 1,000: it waits
    first.release()
    assert admitted.wait(5) and pool.used == 500
    worker.join(5)


def test_a_request_that_waits_past_its_deadline_for_the_pool_times_out():
    pool = ImageMemoryPool(limit=1000)
    PixelBudget(None, pool).admit(900)
    late = PixelBudget(None, pool, check=RequestContext(timeout=0.2).check)
    with pytest.raises(ScoringTimeoutError):
        late.admit(500)


def test_a_request_admits_its_images_from_their_headers_and_gives_them_back_when_it_ends():
    limits = Limits(image_memory_in_flight=123_456_789)
    context = RequestContext()
    rules = request_rules(limits, 1_000_000, context)
    images = [png(300, 200), png(4000, 3000)]  # the second is decoded down by 3: 1333 x 1000
    admit_images([{"image": image} for image in images], rules)
    # Decoded pixels (3 bytes each) and the patches of each image as the model resizes it (48 bytes a pixel: the
    # processor's and the pass's copy).
    assert rules.budget.pool.used == 3 * (300 * 200 + 1333 * 1000) + 48 * (300 * 200 + 1_000_000)
    assert rules.budget.pool.used == image_memory(300, 200, 1_000_000) + image_memory(4000, 3000, 1_000_000)
    for image in images:
        to_item({"image": image}, "documents[0]", rules=rules)
    context.close()
    assert rules.budget.pool.used == 0


def test_v1_rerank_gives_the_pool_back_after_answers_and_errors(live_app):
    from lychee_gradio.inputs import image_memory_pool

    pool = image_memory_pool(Limits().image_memory_in_flight)
    image = base64.b64encode(png(64, 64)).decode()
    good = {"query": "q", "documents": [{"image": image}] * 3}
    bad = {"query": "q", "documents": [{"image": image}, {"image": "bm90IGFuIGltYWdl"}]}
    assert httpx.post(f"{live_app}v1/rerank", json=good, timeout=60).status_code == 200
    assert httpx.post(f"{live_app}v1/rerank", json=bad, timeout=60).status_code == 400
    assert pool.used == 0


# -- Evaluate's zip and data ------------------------------------------------------------------------------


@pytest.fixture
def eval_line(tmp_path):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"query": "q", "documents": ["a", "b"], "relevant": [0]}) + "\n")
    return data


def test_a_zip_of_too_many_files_is_refused_before_unpacking(scorer, eval_line, tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i in range(30):
            bundle.writestr(f"{i % 3}/{i}.txt", b"")
    with pytest.raises(ValueError, match=r"Images zip: 30 files, more than 20"):
        page(evaluate_view, scorer, str(eval_line), str(archive), "1", None, limits=Limits(max_zip_members=20))


def test_a_zip_that_cannot_be_unpacked_is_named_not_a_crash(scorer, eval_line, tmp_path):
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("a.png", b"x" * 100)
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")
    for offset in (8, central + 10):  # the compression method, local and central: one Python cannot read
        raw[offset : offset + 2] = (97).to_bytes(2, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"Images zip: (cannot unpack it|not a zip file)"):
        page(evaluate_view, scorer, str(eval_line), str(archive), "1", None)


@pytest.mark.parametrize(
    "written",
    ["data:x/../../etc/hostname", "data:/../../etc/hostname", "data:image/png,abc", "a" * 300 + ".png", "x/" * 200 + "y.png"],
)
def test_text_that_only_looks_like_data_or_is_too_long_is_a_checked_path(tmp_path, written):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"query": "q", "documents": [{"image": written}], "relevant": [0]}) + "\n")
    with pytest.raises(BadLine, match=r"(must be relative and stay inside|image file not found)"):
        load_queries(data)


# -- the Gradio doors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=Limits(max_body_bytes=2**20))))
    yield running.url
    running.close()


def test_the_gradio_api_refuses_bodies_over_the_limit_declared_or_chunked(small_body_app):
    body = json.dumps({"data": ["q", None, "x" * (2 * 2**20), None, "", None, None]}).encode()
    declared = httpx.post(
        f"{small_body_app}gradio_api/call/score", content=body, timeout=30, headers={"content-type": "application/json"}
    )
    chunked = httpx.post(
        f"{small_body_app}gradio_api/call/score",
        content=iter([body[: 2**19], body[2**19 :]]),
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == chunked.status_code == 413
    small = gradio_call(small_body_app, "score", ["q", None, "d", None, None, None, None])
    assert '"score"' in small


def test_inline_image_data_in_a_file_input_is_refused_before_decoding(live_app):
    inline = {"url": "data:image/png;base64," + base64.b64encode(png(40, 40)).decode(), "meta": {"_type": "gradio.FileData"}}
    answer = gradio_call(live_app, "score", ["q", inline, "d", None, None, None, None])
    assert "Query image (optional): this file was not uploaded to this server" in answer


@pytest.mark.parametrize(
    "data",
    [
        ["q"],
        ["q", None, "d", None, None, None, "extra", "more"],
        ["q", None, [{"path": 5}], None, "abc", None, "x"],
        ["q", None, "d", {"path": "\x00"}, None, None],
    ],
)
def test_values_gradio_cannot_read_get_a_message_not_a_traceback(live_app, capfd, data):
    capfd.readouterr()
    api = "rank_images" if len(data) == 7 else "score"
    event, last = gradio_call(live_app, api, data, with_event=True)
    if event == "error":  # refused, with a message that names the inputs (extra values are simply ignored)
        assert json.loads(last.removeprefix("data: "))["error"]
    assert "Traceback" not in last and "Traceback" not in capfd.readouterr().err


def test_a_forged_host_header_does_not_become_everyones_api_snippets(small_body_app):
    forged = httpx.get(f"{small_body_app}gradio_api/info", headers={"Host": "evil.example:7891"}, timeout=30).text
    assert "evil.example" in forged  # the forger's own answer names what it sent ...
    plain = httpx.get(f"{small_body_app}gradio_api/info", timeout=30).text
    assert "evil.example" not in plain  # ... nobody else's does


# -- image URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["::7f00:1", "::a00:1", "::ffff:0:7f00:1", "64:ff9b:1::7f00:1"])
def test_ipv6_forms_that_carry_an_ipv4_address_are_not_fetchable(address):
    assert not public_address(address)


def test_malformed_urls_get_the_same_answer_as_any_other_refusal(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(allow_image_urls=True)))
    try:
        answers = [
            httpx.post(f"{running.url}v1/rerank", timeout=30, json={"query": "q", "documents": [{"image": url}]})
            for url in ("http://[::1/x.png", "http://127.0.0.1:9/\x00", "http://0177.0.0.1/", "http://127.000.000.001/")
        ]
    finally:
        running.close()
    assert {a.status_code for a in answers} == {400}
    assert len({a.json()["message"] for a in answers}) == 1
