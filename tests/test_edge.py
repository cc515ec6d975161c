"""The edge, as a hostile caller meets it: routes nobody meant to open, forged hosts and origins, bodies sent
before the key, logins guessed, uploads without end, slow headers, clients that hang up.

All traffic goes to servers this module starts on 127.0.0.1; each is stopped by its handle.
"""

from __future__ import annotations

import http.server
import logging
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from lychee_gradio import app
from lychee_gradio.config import Config, Limits
from lychee_gradio.serving.edge import HostRule, LoginThrottle, UploadSpace, same_origin
from lychee_gradio.ui import gradio_compat

from .conftest import free_port, served_command
from .helpers import gradio_call

KEY = {"Authorization": "Bearer sekrit"}


def walk(routes, prefix: str = ""):
    """(methods, path) of every route of an app, mounted apps and included routers too."""
    for entry in routes:
        inner = getattr(entry, "original_router", None)
        if inner is not None:
            yield from walk(inner.routes, prefix)
            continue
        path = getattr(entry, "path", None)
        if type(entry).__name__ == "Mount":
            yield from walk(getattr(entry.app, "routes", []), prefix + (path or ""))
        elif path is not None:
            yield tuple(sorted(getattr(entry, "methods", None) or {"GET"})), prefix + path


@pytest.fixture(scope="module")
def built(scorer):
    return app.create(scorer, app.ServerSettings(port=0, mcp=True, config=Config(api_key="sekrit")))


def test_every_route_gradio_adds_is_either_served_or_refused_by_name(built):
    policy = built.state.edge
    unknown = []
    for methods, path in walk(built.routes):
        probe = re.sub(r"\{[^}]+\}", "x", path.replace("{api_name}", "score"))  # path parameters, filled in
        served = any(policy.route_of(method, probe) for method in methods)
        refused = any(
            path.startswith(pattern.rstrip("*")) if pattern.endswith("*") else path == pattern
            for pattern in gradio_compat.REFUSED
        )
        if not served and not refused:
            unknown.append((methods, path))
    assert unknown == [], "routes neither served nor refused (look at them, then add them to gradio_compat)"


@pytest.fixture(scope="module")
def open_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=Config(header_timeout=1.0)))
    yield running.url
    running.close()


@pytest.mark.parametrize(
    "path",
    [
        "gradio_api/run-history/buckets",
        "gradio_api/run-history/records",
        "monitoring",
        "monitoring/summary",
        "gradio_api/runs",
        "gradio_api/token",
        "gradio_api/vibe-code",
        "gradio_api/dev/reload",
        "manifest.json",
    ],
)
def test_gradios_own_routes_are_not_found(open_app, path):
    answer = httpx.get(f"{open_app}{path}", timeout=30)
    assert answer.status_code == 404 and answer.json()["message"] == "not found"


def test_events_by_index_and_run_history_posts_are_not_found(open_app):
    for path in (
        "gradio_api/run/score",
        "gradio_api/api/predict",
        "gradio_api/run-history/connect",
        "gradio_api/call/v2/score",
        "gradio_api/call/no_such_endpoint",
    ):
        answer = httpx.post(f"{open_app}{path}", json={"data": [], "fn_index": 24}, timeout=30)
        assert answer.status_code == 404, path


@pytest.mark.parametrize("path", ["v1/rerank", "gradio_api/call/score", "gradio_api/upload", "gradio_api/mcp/"])
def test_a_rebound_host_name_is_refused_on_every_door(open_app, path):
    port = open_app.rstrip("/").rsplit(":", 1)[1]
    rebound = {"Host": f"rebind.attacker.example:{port}", "Origin": f"http://rebind.attacker.example:{port}"}
    answer = httpx.post(f"{open_app}{path}", json={"query": "q", "documents": ["d"], "data": ["q"]}, headers=rebound, timeout=30)
    assert answer.status_code == 400 and answer.json()["field"] == "Host"


def test_localhost_and_the_bound_address_are_answered(open_app):
    port = open_app.rstrip("/").rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        answer = httpx.post(f"{open_app}v1/rerank", json={"query": "q", "documents": ["d"]}, headers={"Host": host}, timeout=30)
        assert answer.status_code == 200, host


def test_the_host_rule_of_a_server_on_every_interface_takes_addresses_and_its_own_names():
    rule = HostRule("0.0.0.0", ("rerank.internal", "*.corp.example"))
    assert rule.allows("10.1.2.3:7860") and rule.allows("[fe80::1]:7860") and rule.allows("rerank.internal")
    assert rule.allows("gpu1.corp.example:7860") and rule.allows(f"{socket.gethostname()}:7860")
    assert not rule.allows("rebind.attacker.example:7860") and not rule.allows(None)
    loopback = HostRule("127.0.0.1")
    assert not loopback.allows("10.1.2.3:7860")
    loopback.allow("abc123.gradio.live")  # the share link's host, once it exists
    assert loopback.allows("abc123.gradio.live")


def test_a_cross_origin_browser_post_is_refused_and_same_origin_passes(open_app):
    port = open_app.rstrip("/").rsplit(":", 1)[1]
    body = {"query": "q", "documents": ["d"]}
    foreign = httpx.post(f"{open_app}v1/rerank", json=body, headers={"Origin": "http://evil.example"}, timeout=30)
    assert foreign.status_code == 403 and foreign.json()["field"] == "Origin"
    upload = httpx.post(
        f"{open_app}gradio_api/upload", files={"files": ("a.png", b"x")}, headers={"Origin": "http://evil.example"}, timeout=30
    )
    assert upload.status_code == 403
    same = httpx.post(f"{open_app}v1/rerank", json=body, headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=30)
    assert same.status_code == 200
    assert httpx.post(f"{open_app}v1/rerank", json=body, timeout=30).status_code == 200  # no Origin: curl, SDKs


def test_cors_gives_no_other_origin_access_unless_listed(open_app, scorer):
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    answer = httpx.options(f"{open_app}v1/rerank", headers=preflight, timeout=30)
    assert "access-control-allow-origin" not in answer.headers
    read = httpx.get(f"{open_app}config", headers={"Origin": "http://localhost:3000"}, timeout=30)
    assert "access-control-allow-origin" not in read.headers
    listed = app.start(scorer, app.ServerSettings(port=0, config=Config(allowed_origins=("http://localhost:3000",))))
    try:
        answer = httpx.post(
            f"{listed.url}v1/rerank",
            json={"query": "q", "documents": ["d"]},
            headers={"Origin": "http://localhost:3000"},
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
    finally:
        listed.close()


def test_origins_compare_by_host_and_port():
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("https://abc.gradio.live", "abc.gradio.live")
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not same_origin("null", "127.0.0.1:7860")


def test_steering_headers_do_not_reach_gradio(open_app):
    # A run asked to be filed in someone's Hub bucket runs as any other (the header is dropped at the edge).
    answer = gradio_call(
        open_app,
        "score",
        ["q", None, "a text document", None, None, None, None],
        headers={"x-gradio-history-bucket": "attacker/loot"},
    )
    assert '"score"' in answer


# -- the key first -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=Config(api_key="sekrit")))
    yield running
    running.close()


def raw_post_headers(url: str, path: str, length: int) -> bytes:
    """Send a POST's headers declaring `length` body bytes, none of them; the answer that comes anyway."""
    host, port = url.rstrip("/").split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            f"POST /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        return connection.recv(4096)


@pytest.mark.parametrize(
    "path", ["gradio_api/call/score", "gradio_api/queue/join", "gradio_api/upload", "v1/rerank", "gradio_api/mcp/"]
)
def test_without_the_key_a_large_body_is_refused_from_its_headers_alone(keyed, path):
    answer = raw_post_headers(keyed.url, path, 65 * 2**20)
    assert answer.startswith(b"HTTP/1.1 401")


def test_concurrent_unauthenticated_60_mb_posts_do_not_grow_the_server(keyed):
    process = psutil.Process()
    before = process.memory_info().rss
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: raw_post_headers(keyed.url, "gradio_api/call/score", 60 * 2**20), range(12)))
    assert all(answer.startswith(b"HTTP/1.1 401") for answer in answers)
    assert process.memory_info().rss - before < 50 * 2**20


def test_the_page_login_takes_the_exact_user_name_and_slows_down_guessing(keyed):
    url = keyed.url
    try:
        padded = httpx.post(f"{url}login", data={"username": " lychee ", "password": "sekrit"}, timeout=30)
        assert padded.status_code == 400
        exact = httpx.post(f"{url}login", data={"username": "lychee", "password": "sekrit"}, timeout=30)
        assert exact.status_code == 200
        statuses = [
            httpx.post(f"{url}login", data={"username": "lychee", "password": f"guess{i}"}, timeout=30).status_code
            for i in range(6)
        ]
        assert statuses[:5] == [400] * 5 and statuses[5] == 429
        blocked = httpx.post(f"{url}login", data={"username": "lychee", "password": "sekrit"}, timeout=30)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    finally:
        keyed.app.state.edge.throttle.succeeded("127.0.0.1")


def test_the_throttle_forgets_old_failures():
    now = [0.0]
    throttle = LoginThrottle(failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("a")
    assert throttle.wait_for("a") == pytest.approx(60) and throttle.wait_for("b") == 0
    now[0] = 61
    assert throttle.wait_for("a") == 0


# -- uploads ------------------------------------------------------------------------------------------------


def test_upload_space_is_shared_and_frees_up_as_files_expire():
    now = [0.0]
    space = UploadSpace(total=100, per_client=60, keep=10, clock=lambda: now[0])
    space.add("a", 60)
    assert space.room("a") == 0 and space.room("b") == 40
    now[0] = 11
    assert space.room("a") == 60


@pytest.fixture(scope="module")
def small_uploads(scorer):
    limits = Limits(
        max_upload_bytes=2**20, max_upload_request_bytes=3 * 2**20, upload_space_bytes=5 * 2**20, upload_client_bytes=5 * 2**20
    )
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=limits)))
    yield running.url
    running.close()


def test_an_upload_request_over_its_total_is_413_and_a_full_space_503(small_uploads):
    files = [("files", (f"{i}.png", b"\0" * (900 * 1024))) for i in range(4)]  # each under 1 MB, 3.6 MB in all
    too_much = httpx.post(f"{small_uploads}gradio_api/upload", files=files, timeout=30)
    assert too_much.status_code == 413
    fits = [("files", (f"{i}.png", b"\0" * (900 * 1024))) for i in range(3)]
    assert httpx.post(f"{small_uploads}gradio_api/upload", files=fits, timeout=30).status_code == 200
    assert httpx.post(f"{small_uploads}gradio_api/upload", files=fits, timeout=30).status_code == 503


# -- slow and vanishing clients -------------------------------------------------------------------------------


def test_a_connection_that_sends_its_headers_slowly_is_closed(open_app):
    host, port = open_app.rstrip("/").split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        started = time.monotonic()
        answer = connection.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
        assert connection.recv(4096) == b""  # closed


def test_a_client_that_hangs_up_mid_upload_is_one_info_line(open_app, caplog):
    host, port = open_app.rstrip("/").split("//")[1].split(":")
    caplog.set_level(logging.INFO)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        boundary = "b0undary"
        connection.sendall(
            f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 5000000\r\n\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + b"\0" * 200_000
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
        time.sleep(0.1)
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


# -- the Hub token stays the operator's ----------------------------------------------------------------------------


class _Hub(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _any(self):
        _Hub.seen.append((self.command, self.path))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    do_GET = do_POST = do_PUT = do_HEAD = _any

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_no_caller_reaches_the_hub_with_the_operators_token(tmp_path):
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    home = tmp_path / "hf"
    home.mkdir()
    (home / "token").write_text("hf_operators_secret_token")
    port = free_port()
    env = {
        "HF_HOME": str(home),
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}",
        "HF_HUB_OFFLINE": "0",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    try:
        with served_command(
            [sys.executable, "-m", "lychee_gradio.cli", "load", "--demo", "qwen2_5_vl", "--port", str(port)], env=env, timeout=300
        ):
            url = f"http://127.0.0.1:{port}/"
            local = {"Host": f"127.0.0.1:{port}"}
            for path in ("gradio_api/run-history/buckets", "gradio_api/run-history/records"):
                assert httpx.get(f"{url}{path}", headers=local, timeout=30).status_code == 404
            assert (
                httpx.post(
                    f"{url}gradio_api/run-history/connect", json={"bucket": "attacker/loot"}, headers=local, timeout=30
                ).status_code
                == 404
            )
            answer = gradio_call(
                url,
                "score",
                ["q", None, "a document", None, None, None, None],
                headers={**local, "x-gradio-history-bucket": "attacker/loot"},
            )
            assert '"score"' in answer
            time.sleep(1)  # a history write would run in the background after the answer
    finally:
        hub.shutdown()
    assert _Hub.seen == []


# -- mistakes are one line -------------------------------------------------------------------------------------


def test_user_mistakes_on_every_door_are_one_warning_line_each_and_no_traceback(open_app, caplog, capfd):
    caplog.set_level(logging.INFO)
    capfd.readouterr()
    deep = "[" * 50_000 + "]" * 50_000
    mistakes = [
        lambda: gradio_call(open_app, "explain", ["q", None, "d", None, None, 100, False, None, None]),  # slider range
        lambda: httpx.post(
            f"{open_app}gradio_api/call/explain",
            headers={"content-type": "application/json"},
            content=b'{"data": ["q", null, "d", null, null, NaN, false, null, null]}',
            timeout=30,
        ),
        lambda: httpx.post(
            f"{open_app}v1/rerank", content='{"query": ' + deep + "}", timeout=30, headers={"content-type": "application/json"}
        ),
        lambda: httpx.post(
            f"{open_app}v1/rerank",
            timeout=30,
            headers={"content-type": "application/json"},
            content='{"query": "q", "documents": ["a"], "top_n": ' + "9" * 100_000 + "}",
        ),
        lambda: httpx.post(
            f"{open_app}gradio_api/mcp/",
            timeout=30,
            content='{"jsonrpc": "2.0", "id": 1, "params": ' + deep + "}",
            headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
        ),
        lambda: httpx.post(f"{open_app}v1/explain", json={"query": "q", "document": "d", "grid": "8"}, timeout=30),
    ]
    for mistake in mistakes:
        before = len(caplog.records)
        mistake()
        time.sleep(0.3)
        warnings = [r for r in caplog.records[before:] if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records[before:]]
        assert not any(r.exc_info for r in caplog.records[before:])
    assert "Traceback" not in capfd.readouterr().err


def test_grid_is_the_same_whole_number_rule_on_every_door(open_app):
    for grid in ("8", True, 0, 17, 2.5):
        answer = httpx.post(f"{open_app}v1/explain", json={"query": "q", "document": "d", "grid": grid}, timeout=30)
        assert answer.status_code == 400 and answer.json()["field"] == "grid", grid
    assert httpx.post(f"{open_app}v1/explain", json={"query": "q", "document": "d", "grid": 1}, timeout=60).status_code == 200


def test_the_downloads_event_writes_only_what_the_session_ranked(open_app):
    from lychee_gradio.ui import downloads

    folder = downloads._ROOT
    before = set(folder.iterdir()) if folder is not None and folder.is_dir() else set()
    junk = [{"rows": [{"rank": 1, "text": "x" * 1000}] * 100}, 0]
    for index in range(40):  # every event of the page, by index, queued or not, with a caller's junk
        for door in ("queue/join", "run/predict"):
            httpx.post(
                f"{open_app}gradio_api/{door}",
                timeout=30,
                json={"data": junk, "fn_index": index, "session_hash": "attacker", "trigger_id": None},
            )
    time.sleep(2)
    folder = downloads._ROOT
    after = set(folder.iterdir()) if folder is not None and folder.is_dir() else set()
    assert after == before
