"""What one request may hold and cost, whoever sends it: URL fetches (its share, cancelled when it ends), image
memory (decoded pixels and patches, across requests), explanations (variants and texts), echoes, and the score
cache (no caller learns what another asked).

All traffic goes to servers this module starts on 127.0.0.1 (callers bind other loopback addresses, 127.0.0.x,
to be told apart); each is stopped by its handle.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config


def client_from(address: str, **options) -> httpx.Client:
    """An HTTP client whose connections come from `address` (another caller, as the server sees it)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), **options)


@pytest.fixture(scope="module")
def counting_drip():
    """A host that answers one byte every 0.2 s until the client goes; `active[0]`: connections open now."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    stop, active, lock = threading.Event(), [0], threading.Lock()

    def serve(connection):
        with lock:
            active[0] += 1
        try:
            with connection:
                connection.recv(4096)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX: " + b"y" * 10_000:
                    if stop.wait(0.2):
                        return
                    connection.sendall(bytes([byte]))
        except OSError:
            return
        finally:
            with lock:
                active[0] -= 1

    def accept():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], active
    stop.set()
    listener.close()


@pytest.fixture(scope="module")
def fetching_app(scorer):
    running = app.start(
        scorer,
        app.ServerSettings(
            port=0, config=Config(allow_image_urls=True, allowed_image_hosts=("127.0.0.1",), image_url_timeout=8.0)
        ),
    )
    yield running.url
    running.close()


def test_a_request_whose_url_is_refused_leaves_no_fetch_of_it_running(fetching_app, counting_drip):
    port, active = counting_drip
    documents = [{"image": "http://10.0.0.1/x.png"}] + [{"image": f"http://127.0.0.1:{port}/{i}.png"} for i in range(40)]
    started = time.monotonic()
    answer = httpx.post(f"{fetching_app}v1/rerank", json={"query": "q", "documents": documents}, timeout=30)
    assert answer.status_code == 400 and answer.json()["field"] == "documents[0].image"
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 3
    while active[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert active[0] == 0


@pytest.mark.slow
def test_one_caller_looping_slow_urls_leaves_fetch_slots_for_another(fetching_app, counting_drip, image_host):
    port, _ = counting_drip
    slow = {"query": "q", "documents": [{"image": f"http://127.0.0.1:{port}/{i}.png"} for i in range(40)]}
    ending = threading.Event()

    def hog():
        with client_from("127.0.0.2", timeout=30) as client:
            while not ending.is_set():
                client.post(f"{fetching_app}v1/rerank", json=slow)

    hogs = [threading.Thread(target=hog) for _ in range(3)]
    for thread in hogs:
        thread.start()
    try:
        time.sleep(1.5)  # every hog's fetches hang on the drip by now
        with client_from("127.0.0.3", timeout=30) as other:
            waits = []
            for _ in range(3):
                began = time.monotonic()
                answer = other.post(
                    f"{fetching_app}v1/rerank",
                    json={"query": "q", "documents": [{"image": f"http://127.0.0.1:{image_host}/blue_mug.png"}]},
                )
                waits.append(time.monotonic() - began)
                assert answer.status_code == 200
    finally:
        ending.set()
        for thread in hogs:
            thread.join(30)
    assert max(waits) < 2.0


# -- image memory across requests ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.memory
def test_concurrent_requests_of_large_images_share_the_image_memory_pool(tiny_model_dir):
    script = Path(__file__).parent / "memory_probe.py"
    runs = {}
    for pool in ("100000", "300"):  # unbounded, then bounded to about what one request holds
        result = subprocess.run(
            [sys.executable, str(script), str(tiny_model_dir), "--concurrent", "4", "--documents", "4", "--pool-mb", pool],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs[pool] = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["300"]["status"] == [200] * 4 and runs["100000"]["status"] == [200] * 4
    # Four requests of 4 large photos at once (each holds about 210 MB, so the 300 MB pool takes one at a time):
    # bounded, the peak is well below the unbounded one's ...
    assert runs["300"]["peak_mb"] < 0.6 * runs["100000"]["peak_mb"], runs
    # ... and the memory comes back afterwards either way.
    assert runs["300"]["after_mb"] < 150 and runs["100000"]["after_mb"] < 150, runs


# -- explanations and echoes --------------------------------------------------------------------------------------


def png_b64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 60)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_an_explanation_over_the_variant_budget_is_413_before_any_scoring(live_app):
    pair = {"query": {"image": png_b64(600, 600)}, "document": {"image": png_b64(600, 600)}, "grid": 16}
    answer = httpx.post(f"{live_app}v1/explain", json=pair, timeout=30)
    assert answer.status_code == 413 and answer.json()["field"] == "grid"
    assert "512 changed pairs" in answer.json()["message"] and "256" in answer.json()["message"]
    assert httpx.post(f"{live_app}v1/explain", json={**pair, "grid": 2}, timeout=120).status_code == 200


def test_an_explanation_of_a_huge_text_explains_its_best_chunk_within_the_text_budget(live_app):
    answer = httpx.post(f"{live_app}v1/explain", json={"query": "q", "document": "word " * 20_000, "grid": 1}, timeout=120)
    assert answer.status_code == 200 and answer.json()["part"]["kind"] == "chunk"
    start, end = answer.json()["part"]["chars"]
    assert end - start <= 32_768  # --max-explain-text-chars: a chunk of the model's budget is within it


def test_return_documents_echoes_a_bounded_text(live_app):
    long_text = "relevant words " * 10_000
    answer = httpx.post(
        f"{live_app}v1/rerank", timeout=60, json={"query": "q", "documents": [long_text, "short"], "return_documents": True}
    )
    texts = {result["index"]: result["document"]["text"] for result in answer.json()["results"]}
    assert texts[1] == "short" and texts[0] == long_text[:32_768]


# -- the score cache's scope ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_scorer(scorer):
    return LycheeScorer(
        scorer.model, scorer.processor, model_name=scorer.model_name, device="cpu", family=scorer.family, cache_size=1000
    )


def cache_hits(url: str) -> float:
    text = httpx.get(f"{url}metrics", timeout=30).text
    return sum(float(value) for value in re.findall(r"^lychee_score_cache_hits_total\{[^}]*\} (\S+)$", text, re.M))


@pytest.mark.parametrize(("scope", "own_repeat", "other_repeat"), [("user", 1, 0), ("global", 1, 1), ("request", 0, 0)])
def test_a_caller_never_hits_the_cache_with_another_callers_pair_unless_the_operator_shares_it(
    cached_scorer, scope, own_repeat, other_repeat
):
    cached_scorer.cache.clear()
    running = app.start(cached_scorer, app.ServerSettings(port=0, config=Config(cache_scope=scope)))
    try:
        pair = {"query": f"secret query {scope}", "documents": ["a private document"]}
        with client_from("127.0.0.2", timeout=60) as first, client_from("127.0.0.3", timeout=60) as second:
            first.post(f"{running.url}v1/rerank", json=pair)
            before = cache_hits(running.url)
            second.post(f"{running.url}v1/rerank", json=pair)
            other = cache_hits(running.url) - before
            first.post(f"{running.url}v1/rerank", json=pair)
            own = cache_hits(running.url) - before - other
    finally:
        running.close()
    assert (own, other) == (own_repeat, other_repeat)


@pytest.mark.slow
def test_two_page_sessions_do_not_share_cached_scores(cached_scorer):
    from gradio_client import Client

    cached_scorer.cache.clear()
    running = app.start(cached_scorer, app.ServerSettings(port=0, config=Config()))
    try:
        first, second = Client(running.url, verbose=False), Client(running.url, verbose=False)
        arguments = dict(query_text="secret query", documents="a private document", api_name="/rerank")
        first.predict(**arguments)
        before = cache_hits(running.url)
        second.predict(**arguments)
        assert cache_hits(running.url) == before
        first.predict(**arguments)
        assert cache_hits(running.url) == before + 1
    finally:
        running.close()
