"""Every door as a hostile caller tries it: server files, the server's network, MCP, slow URLs, memory, big text.

All traffic goes to servers this module starts on 127.0.0.1; every one is stopped by its handle.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from lychee_gradio import app
from lychee_gradio.config import Config, Limits
from lychee_gradio.contract import RequestContext, ScoringCancelledError, ScoringTimeoutError
from lychee_gradio.evaluation import BadLine, load_queries
from lychee_gradio.inputs import Item
from lychee_gradio.serving.image_urls import FETCHES_PER_CLIENT, public_address
from lychee_gradio.ui.evaluate import evaluate_view

from .conftest import CUP, MUG, TUMBLER, page
from .helpers import file_data, gradio_call, mcp_call

KEY = {"Authorization": "Bearer sekrit"}


def server_image(tmp_path_factory) -> str:
    """An image file on the server that no caller uploaded."""
    secret = tmp_path_factory.mktemp("server-files") / "secret.png"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(secret)
    return str(secret)


# -- uploaded or nothing: the Gradio doors ----------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_image(tmp_path_factory):
    return server_image(tmp_path_factory)


@pytest.mark.parametrize(
    ("api", "data"),
    [
        ("score", lambda path: ["q", None, None, file_data(path), None, None]),
        ("rank_images", lambda path: ["q", None, [file_data(path)], None, 0, None, 0]),
        ("rerank", lambda path: ["q", None, "a text document", [file_data(path)], None, 0, None, 0]),
        ("evaluate", lambda path: [file_data(path), None, "1", None, False]),
    ],
)
def test_a_server_path_is_refused_alike_whether_or_not_the_file_exists(live_app, secret_image, api, data):
    answers = {
        path: gradio_call(live_app, api, data(path))
        for path in (secret_image, secret_image + ".missing", "/etc/hostname", "/nonexistent/x.png", "http://127.0.0.1:9/x.png")
    }
    messages = {json.loads(answer.removeprefix("data: "))["error"] for answer in answers.values()}
    assert len(messages) == 1, answers
    (message,) = messages
    assert "this file was not uploaded to this server" in message
    assert "/" not in message.split(":")[0] and "secret" not in message and "/etc" not in message


def test_uploaded_files_still_work_and_answers_carry_no_server_path(live_app, scorer):
    client = Client(live_app, verbose=False)
    _, ranking = client.predict(
        query_text="a blue mug", images=[handle_file(p) for p in (CUP, MUG, TUMBLER)], api_name="/rank_images"
    )
    expected = scorer.rerank("a blue mug", [{"image": p} for p in (CUP, MUG, TUMBLER)])
    assert [(r["index"], r["score"]) for r in ranking] == [(r.index, pytest.approx(r.score, abs=1e-6)) for r in expected]
    assert all("/" not in r["image"] for r in ranking)


def test_gradios_traffic_figures_are_not_served_to_callers(live_app):
    gradio_call(live_app, "score", ["q", None, "a text document", None, None, None, None])
    for path in ("monitoring/summary", "gradio_api/monitoring/summary", "monitoring"):
        answer = httpx.get(f"{live_app}{path}", timeout=30)
        assert answer.status_code in (403, 404), path
        assert "process_time" not in answer.text


def test_a_user_mistake_leaves_no_traceback_in_the_log(live_app, capfd):
    capfd.readouterr()
    gradio_call(live_app, "score", ["", None, "", None, None, None, None])
    gradio_call(live_app, "score", ["q", None, None, file_data("/etc/hostname"), None, None, None])
    assert "Traceback" not in capfd.readouterr().err


# -- Evaluate reads only what the caller uploaded -------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "/" * 1100 + "etc/hostname",
        " /etc/hostname",
        "../../etc/hostname",
        "~/.bashrc",
        "images/../../../etc/hostname",
        "\\\\server\\share\\x.png",
        "C:\\Windows\\win.ini",
        "x" * 2000 + "/../../../../etc/hostname",
    ],
)
def test_eval_refuses_padded_absolute_climbing_and_home_paths_alike(tmp_path, written):
    data = tmp_path / "data" / "set.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps({"query": "q", "documents": [{"image": written}], "relevant": [0]}) + "\n")
    with pytest.raises(BadLine, match=r"^line 1: documents\[0\]\.image: image paths must be relative and stay inside"):
        load_queries(data)


@pytest.mark.slow
def test_lychee_eval_refuses_a_padded_path_outside_the_data_folder(tmp_path, tiny_model_dir):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"query": "q", "documents": [{"image": "/" * 1100 + "etc/hostname"}], "relevant": [0]}) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "lychee_gradio.cli", "eval", str(data), "--model", str(tiny_model_dir), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "image paths must be relative and stay inside" in result.stderr and "hostname" not in result.stdout


def test_a_zip_slip_member_is_refused(scorer, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../escaped.png", b"x")
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"query": "q", "documents": [{"image": "escaped.png"}], "relevant": [0]}) + "\n")
    with pytest.raises(ValueError, match="Images zip: unsafe path"):
        page(evaluate_view, scorer, str(data), str(archive), "1", None)


def _eval_lines(path: Path, count: int, documents: int = 3) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(
                json.dumps({"query": f"cup {i}", "documents": [f"doc {i}-{j}" for j in range(documents)], "relevant": [0]}) + "\n"
            )
    return path


def test_eval_holds_the_document_and_pixel_limits_of_every_door(scorer, tmp_path):
    many = _eval_lines(tmp_path / "many.jsonl", 1, documents=30)
    with pytest.raises(ValueError, match=r"line 1: documents: 30 given, at most 20"):
        page(evaluate_view, scorer, str(many), None, "1", None, limits=Limits(max_documents=20))
    big = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(big, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"query": "q", "documents": [{"image": data_url}], "relevant": [0]}) + "\n")
    with pytest.raises(ValueError, match=r"image is 3000x3000 = 9,000,000 pixels, over this server's limit"):
        page(evaluate_view, scorer, str(huge), None, "1", None, limits=Limits(max_image_pixels=4_000_000))


@pytest.fixture
def slow_forward(own_scorer):
    """Every forward pass of `own_scorer` takes 0.2 s more; `passes` records when each one starts."""
    passes: list[float] = []

    def hook(module, args, kwargs):
        passes.append(time.monotonic())
        time.sleep(0.2)

    handle = own_scorer.model.model.register_forward_pre_hook(hook, with_kwargs=True)
    yield own_scorer, passes
    handle.remove()


def test_the_eval_timeout_covers_the_whole_run_not_each_line(slow_forward, tmp_path):
    scorer, passes = slow_forward
    data = _eval_lines(tmp_path / "set.jsonl", 20)
    with pytest.raises(ScoringTimeoutError):
        page(evaluate_view, scorer, str(data), None, "1", None, context=RequestContext(timeout=1.0))
    assert len(passes) < 20  # a per-line timeout would have let every line run


def test_stopping_an_eval_runs_no_forward_pass_after_the_stop(slow_forward, tmp_path):
    scorer, passes = slow_forward
    data = _eval_lines(tmp_path / "set.jsonl", 10)
    cancel = threading.Event()
    stopped_at: list[float] = []

    def progress(done, total):
        if done == 2:
            cancel.set()
            stopped_at.append(time.monotonic())

    with pytest.raises(ScoringCancelledError):
        page(evaluate_view, scorer, str(data), None, "1", None, context=RequestContext(cancel=cancel), on_progress=progress)
    assert stopped_at and all(start < stopped_at[0] for start in passes)


# -- MCP -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorder():
    """Another HTTP server on loopback that counts the requests it gets (where a hijacked MCP would call)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def keyed_mcp_app(scorer):
    limits = Limits(max_body_bytes=2 * 2**20)
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=Config(limits=limits, api_key="sekrit")))
    yield running.url
    running.close()


def png_b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def test_mcp_tools_work_with_the_key_and_an_image_list_tool_ranks_images(keyed_mcp_app, scorer):
    images = [png_b64(p) for p in (CUP, MUG, TUMBLER)]
    result = mcp_call(keyed_mcp_app, "rank_images", {"query": "a blue mug", "images": images}, headers=KEY)
    assert not result.isError, result.content
    expected = scorer.rerank("a blue mug", [{"image": p} for p in (CUP, MUG, TUMBLER)])
    assert [(r["index"], r["score"]) for r in result.structuredContent["results"]] == [
        (r.index, pytest.approx(r.score, abs=1e-6)) for r in expected
    ]


def test_mcp_without_the_key_is_refused(keyed_mcp_app):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    answer = httpx.post(
        f"{keyed_mcp_app}gradio_api/mcp/", json=listing, timeout=30, headers={"Accept": "application/json, text/event-stream"}
    )
    assert answer.status_code == 401


def test_a_forwarded_host_header_changes_nothing_about_where_calls_go(keyed_mcp_app, recorder, scorer):
    port, hits = recorder
    hijack = {**KEY, "X-Forwarded-Host": f"127.0.0.1:{port}", "Host": f"127.0.0.1:{port}"}
    first = mcp_call(keyed_mcp_app, "score", {"query": "cup", "document": "a cup"}, headers=hijack)
    later = mcp_call(keyed_mcp_app, "score", {"query": "cup", "document": "a cup"}, headers=KEY)
    assert hits == []
    assert (
        first.structuredContent["score"]
        == later.structuredContent["score"]
        == pytest.approx(scorer.score("cup", ["a cup"])[0], abs=1e-6)
    )


def test_mcp_reads_no_server_path_and_takes_the_same_body_limit(keyed_mcp_app, secret_image):
    path = mcp_call(keyed_mcp_app, "score", {"query": "q", "document": {"image": secret_image}}, headers=KEY)
    assert path.isError and "file paths are not read" in path.content[0].text
    big = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "score", "arguments": {"query": "q", "document": "x" * (3 * 2**20)}},
    }
    answer = httpx.post(
        f"{keyed_mcp_app}gradio_api/mcp/", json=big, timeout=60, headers={**KEY, "Accept": "application/json, text/event-stream"}
    )
    assert answer.status_code == 413


# -- image URLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::7f00:1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_not_fetchable(address):
    assert not public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_fetchable(address):
    assert public_address(address)


@pytest.fixture(scope="module")
def drip():
    """A host that answers one byte every 0.5 s, forever (until the client goes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    connections: list[float] = []

    def serve(connection):
        with connection:
            try:
                connection.recv(4096)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + b"X: " + b"y" * 10_000:
                    if stop.wait(0.5):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:
                return

    def accept():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connections.append(time.monotonic())
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], connections
    stop.set()
    listener.close()


@pytest.fixture(scope="module")
def url_app(scorer):
    """--allow-image-urls, with no allow-list."""
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(allow_image_urls=True)))
    yield running.url
    running.close()


@pytest.fixture(scope="module")
def listed_app(scorer):
    """--allow-image-urls --allowed-image-hosts 127.0.0.1, with a 2 s deadline per URL."""
    running = app.start(
        scorer,
        app.ServerSettings(
            port=0, config=Config(allow_image_urls=True, allowed_image_hosts=("127.0.0.1",), image_url_timeout=2.0)
        ),
    )
    yield running.url
    running.close()


def rerank_url(app: str, url: str) -> httpx.Response:
    return httpx.post(f"{app}v1/rerank", json={"query": "q", "documents": [{"image": url}]}, timeout=60)


def test_loopback_private_and_link_local_urls_are_refused_with_one_message(url_app, image_host):
    urls = [
        f"http://127.0.0.1:{image_host}/blue_mug.png",
        f"http://localhost:{image_host}/blue_mug.png",
        f"http://0.0.0.0:{image_host}/blue_mug.png",
        f"http://2130706433:{image_host}/blue_mug.png",
        f"http://0x7f.1:{image_host}/blue_mug.png",
        f"http://127.1:{image_host}/blue_mug.png",
        f"http://[::1]:{image_host}/blue_mug.png",
        f"http://[::ffff:127.0.0.1]:{image_host}/blue_mug.png",
        "http://10.0.0.1/x.png",
        "http://192.168.0.1/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:1/closed-port.png",
        "https://127.0.0.1:9/x.png",
        "ftp://127.0.0.1/x.png",
    ]
    answers = [rerank_url(url_app, url) for url in urls]
    assert {answer.status_code for answer in answers} == {400}
    messages = {answer.json()["message"] for answer in answers[:-1]}
    assert messages == {
        "documents[0].image: the image URL could not be fetched (this server fetches public "
        "http(s) addresses only, within 10 s; send the image as base64 instead)"
    }


def test_an_allow_listed_host_is_fetched_and_a_redirect_off_it_is_refused(listed_app, image_host, scorer):
    fetched = rerank_url(listed_app, f"http://127.0.0.1:{image_host}/blue_mug.png")
    assert fetched.status_code == 200
    assert fetched.json()["results"][0]["relevance_score"] == pytest.approx(scorer.score("q", [{"image": MUG}])[0], abs=1e-6)
    redirected = rerank_url(listed_app, f"http://127.0.0.1:{image_host}/to/{image_host}/blue_mug.png")
    assert redirected.status_code == 400 and "could not be fetched" in redirected.json()["message"]


def test_slow_drip_urls_end_at_the_deadline_while_health_answers_throughout(listed_app, drip):
    port, connections = drip
    results: list[httpx.Response] = []
    # One client for all callers: 45 clients of their own would spend the test's CPU making TLS contexts.
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100)) as client:

        def slow_request():
            results.append(
                client.post(
                    f"{listed_app}v1/rerank", json={"query": "q", "documents": [{"image": f"http://127.0.0.1:{port}/photo.png"}]}
                )
            )

        callers = [threading.Thread(target=slow_request) for _ in range(45)]
        for caller in callers:
            caller.start()
        deadline = time.monotonic() + 30
        while len(connections) < FETCHES_PER_CLIENT and time.monotonic() < deadline:  # fetches hang on the drip
            time.sleep(0.05)
        health_waits = []
        while any(caller.is_alive() for caller in callers):
            started = time.monotonic()
            for path in ("health", "ready"):
                assert client.get(f"{listed_app}{path}", timeout=5).status_code == 200
            health_waits.append(time.monotonic() - started)
            time.sleep(0.1)
        for caller in callers:
            caller.join()
    assert len(connections) >= FETCHES_PER_CLIENT  # every caller here is one address: its share of the slots
    assert len(results) == 45 and {r.status_code for r in results} == {400}
    assert "within 2 s" in results[0].json()["message"]
    assert health_waits and max(health_waits) < 1.0


# -- memory, text and bodies -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.memory
def test_thirty_two_huge_images_stay_within_the_memory_budget_and_memory_comes_back(tiny_model_dir):
    script = Path(__file__).parent / "memory_probe.py"
    result = subprocess.run([sys.executable, str(script), str(tiny_model_dir)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["status"] == 200
    assert figures["peak_mb"] < 1536, figures  # the stated budget: README, "Security"
    assert figures["after_mb"] < 100, figures


def test_megabytes_of_text_are_cut_without_being_tokenized_whole(own_scorer):
    seen: list[int] = []
    plain = own_scorer.encoder.literal.plain
    original = plain.encode

    class Spy:
        def __getattr__(self, name):
            return getattr(plain, name)

        def encode(self, text, *args, **kwargs):
            seen.append(len(text))
            return original(text, *args, **kwargs)

    own_scorer.encoder.literal.plain = Spy()
    try:
        own_scorer.encoder.max_text_tokens = 64
        huge = "relevant words " * 400_000  # 6 MB
        cut = own_scorer.encoder.truncate(Item(text=huge))
    finally:
        own_scorer.encoder.literal.plain = plain
    assert max(seen) <= 64 * 16
    assert len(original(cut.text, add_special_tokens=False).ids) == 64
    assert huge.startswith(cut.text)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_plain_base64_images_of_every_common_format_are_scored(live_app, scorer, fmt):
    buffer = io.BytesIO()
    Image.open(CUP).convert("RGB").save(buffer, format=fmt)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    answer = httpx.post(f"{live_app}v1/rerank", json={"query": "cup", "documents": [{"image": encoded}]}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["relevance_score"] == pytest.approx(
        scorer.score("cup", [{"image": buffer.getvalue()}])[0], abs=1e-6
    )


@pytest.fixture(scope="module")
def keyed_app(scorer):
    limits = Limits(max_body_bytes=2**20, max_request_pixels=50_000)
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=limits, api_key="sekrit")))
    yield running.url
    running.close()


def test_the_key_is_checked_before_the_body_and_a_chunked_body_over_the_limit_is_413(keyed_app):
    malformed = httpx.post(
        f"{keyed_app}v1/rerank", content=b"{not json", timeout=30, headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 401
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MB, no Content-Length
    chunked = httpx.post(f"{keyed_app}v1/rerank", content=chunks, headers={**KEY, "content-type": "application/json"}, timeout=30)
    assert chunked.status_code == 413 and chunked.json()["field"] == "body"


def test_a_request_over_the_decoded_pixel_budget_is_413_naming_the_image(keyed_app):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    answer = httpx.post(
        f"{keyed_app}v1/rerank", json={"query": "q", "documents": [{"image": image}] * 2}, headers=KEY, timeout=30
    )
    assert answer.status_code == 413 and answer.json()["field"] == "documents[1].image"
    assert "decoded pixels" in answer.json()["message"]
