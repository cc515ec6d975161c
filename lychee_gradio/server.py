"""One process, one port: the Gradio page and its API at `/`, `/v1/rerank` beside them, docs at `/docs`.

Gradio is mounted on a FastAPI app so that the pipeline endpoint, the page, the Gradio API (and
optionally its MCP server) share the model loaded once. uvicorn serves it from a socket bound
here, so a busy port is a clear error rather than a log line.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass

import gradio as gr
import uvicorn
from fastapi import FastAPI

from . import __version__, rest_api
from .app import I18N, build_demo
from .scorer import LycheeScorer
from .settings import Limits


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    demo_mode: bool = False
    rest: rest_api.RestSettings = rest_api.RestSettings()
    auth: tuple[str, str] | None = None
    mcp: bool = False

    @property
    def limits(self) -> Limits:
        """The input limits of every door (kept on `rest`, which the REST layer is built from)."""
        return self.rest.limits


def create_app(scorer: LycheeScorer, settings: ServerSettings) -> FastAPI:
    app = FastAPI(
        title="lychee-gradio",
        version=__version__,
        description="Rerank text and image candidates with lychee-rerank-mm. `POST /v1/rerank` speaks the "
                    "Cohere / Jina / vLLM rerank format; the web page is at `/`.",
        docs_url="/docs",
    )
    rest_api.install(app, scorer, settings.rest)
    demo = build_demo(scorer, demo_mode=settings.demo_mode, limits=settings.limits)
    return gr.mount_gradio_app(app, demo, path="/", auth=settings.auth, i18n=I18N, mcp_server=settings.mcp,
                               server_name=settings.host, server_port=settings.port,
                               max_file_size=settings.limits.max_upload_bytes)


class RunningServer:
    """A server started in a background thread; `url` once ready, `close()` to stop."""

    def __init__(self, app: FastAPI, host: str, port: int):
        self.host = host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def wait(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


def start(scorer: LycheeScorer, settings: ServerSettings) -> RunningServer:
    """Build the app and serve it; raises OSError when the port cannot be bound."""
    return RunningServer(create_app(scorer, settings), settings.host, settings.port)


def open_share_link(server: RunningServer) -> str:
    """A temporary public URL through Gradio's share servers (needs internet access)."""
    from gradio import networking

    return networking.setup_tunnel("127.0.0.1", server.port, secrets.token_urlsafe(32), None, None)
