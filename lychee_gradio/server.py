"""One process, one port: the Gradio page and its API at `/`, `/v1/rerank` beside them, docs at `/docs`.

Gradio is mounted on a FastAPI app so that the pipeline endpoint, the page, the Gradio API (and
optionally its MCP server) share the model loaded once. uvicorn serves it from a socket bound
here, so a busy port is a clear error rather than a log line.

With an API key every programmatic door needs it: `/v1/rerank` and the MCP server take
`Authorization: Bearer KEY`; the Gradio API takes the same header or a login; the page asks for
the login (user `lychee`, the key as password, unless `lychee share --auth` chose others).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__, rest_api, telemetry
from .app import CSS, HEAD, I18N, build_demo
from .image_urls import ImageFetcher
from .registry import ModelSet
from .settings import Limits


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    demo_mode: bool = False
    rest: rest_api.RestSettings = rest_api.RestSettings()
    auth: tuple[str, str] | None = None
    mcp: bool = False
    concurrency: int = 1  # requests the models work on at once: the number of model replicas

    @property
    def limits(self) -> Limits:
        """The input limits of every door (kept on `rest`, which the REST layer is built from)."""
        return self.rest.limits

    @property
    def request_timeout(self) -> float | None:
        """Seconds a request may wait and run, on every door (kept on `rest`, like the limits)."""
        return self.rest.request_timeout

    @property
    def page_auth(self) -> tuple[str, str] | None:
        """The page's login: the share credentials, else `lychee` and the API key, else none."""
        if self.auth is None and self.rest.api_key:
            return ("lychee", self.rest.api_key)
        return self.auth


logger = logging.getLogger(__name__)


class ApiKeyGate:
    """ASGI middleware: the API key opens the Gradio API and guards the MCP server.

    A request to the Gradio API that carries `Authorization: Bearer KEY` is let in as a logged-in
    user (Gradio's own session check then passes); the MCP server, which Gradio does not guard,
    answers 401 without the key. Everything else is left to Gradio's login and the REST layer.
    """

    def __init__(self, app, api_key: str, cookie: tuple[str, str] | None = None):
        self.app, self.api_key = app, api_key
        self.cookie = cookie  # (cookie name, session token) that Gradio knows as logged in

    def _has_key(self, scope) -> bool:
        return rest_api.has_api_key(scope["headers"], self.api_key)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith("/gradio_api/mcp") and not self._has_key(scope):
            from fastapi.responses import JSONResponse

            response = JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"}, content={
                "message": "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                "field": "Authorization"})
            return await response(scope, receive, send)
        if self.cookie is not None and self._has_key(scope):
            name, token = self.cookie
            headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            cookies = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
            headers.append((b"cookie", "; ".join(cookies + [f"{name}={token}"]).encode("latin-1")))
            scope = {**scope, "headers": headers}
        return await self.app(scope, receive, send)


def _gradio_app(app: FastAPI):
    from gradio.routes import App

    return next(route.app for route in app.routes if isinstance(getattr(route, "app", None), App))


class Readiness:
    """Whether every model is loaded and has scored a warm-up pair (done once, in the background)."""

    def __init__(self, models: ModelSet):
        self.models = models
        self.ready = False
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._warm_up, name="lychee-warm-up", daemon=True)

    def start(self) -> "Readiness":
        self._thread.start()
        return self

    def _warm_up(self) -> None:
        try:
            for scorer in self.models.scorers:
                scorer.score("warm-up", ["ready"])
        except Exception as error:  # noqa: BLE001 - reported by /ready, logged here
            self.problem = f"warm-up failed: {type(error).__name__}"
            logger.error("the warm-up pair failed", exc_info=error)
            return
        self.ready = True
        telemetry.READY.set(1)
        logger.info("warm-up pair scored by %s; /ready answers 200", ", ".join(self.models.names))


def add_operations(app: FastAPI, readiness: Readiness) -> None:
    """`/health`, `/ready` and `/metrics`: cheap, outside the queue, open without the API key."""

    # Answered on the event loop itself (async), never behind the worker threads that requests
    # waiting for the model may fill.
    @app.get("/health", tags=["operations"], summary="The process is up")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="Every model is loaded and has scored its warm-up pair")
    async def ready():
        short = [f"{name}: {scorer.replicas_alive} of {scorer.min_alive} replicas running"
                 for name, scorer in zip(readiness.models.names, readiness.models.scorers)
                 if getattr(scorer, "replicas_alive", None) is not None and scorer.replicas_alive < scorer.min_alive]
        if readiness.ready and short:
            return JSONResponse(status_code=503, content={"status": "degraded", "models": readiness.models.names,
                                                          "message": "; ".join(short)})
        if readiness.ready:
            return {"status": "ready", "models": readiness.models.names}
        return JSONResponse(status_code=503, content={
            "status": "failed" if readiness.problem else "warming up", "models": readiness.models.names,
            **({"message": readiness.problem} if readiness.problem else {})})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics():
        return Response(generate_latest(telemetry.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(scorers, settings: ServerSettings) -> FastAPI:
    """The app over one scorer or several (the first is the default model)."""
    models = ModelSet.of(scorers)
    telemetry.READY.set(0)
    telemetry.watch_models(dict(zip(models.names, models.scorers)))
    fetcher = ImageFetcher(settings.rest.url_policy)
    tools = None
    if settings.mcp:
        from .mcp_tools import McpTools

        tools = McpTools(models, settings.rest, fetcher)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with contextlib.AsyncExitStack() as stack:
            if tools is not None:
                await stack.enter_async_context(tools.lifespan())
            yield

    # FastAPIOffline serves Swagger UI's scripts and styles from the package, not from a CDN:
    # /docs works on a machine without internet.
    app = FastAPIOffline(
        lifespan=lifespan,
        title="lychee-gradio",
        version=__version__,
        description="Rerank text and image candidates with lychee-rerank-mm. `POST /v1/rerank` speaks the "
                    "Cohere / Jina / vLLM rerank format; the web page is at `/`.",
        docs_url="/docs",
        redoc_url=None,
    )
    add_operations(app, Readiness(models).start())
    rest_api.install(app, models, settings.rest, fetcher)
    demo = build_demo(models, demo_mode=settings.demo_mode, limits=settings.limits, concurrency=settings.concurrency,
                      request_timeout=settings.request_timeout)
    # show_error=False: an unexpected exception reaches the page and gradio_client as a plain
    # "Error", never its text (which may hold server paths); our own errors are gr.Error and show.
    # The MCP tools are this app's own (mcp_tools.py), not Gradio's MCP server.
    app = gr.mount_gradio_app(app, demo, path="/", auth=settings.page_auth, i18n=I18N, mcp_server=False,
                              server_name=settings.host, server_port=settings.port, show_error=False,
                              max_file_size=settings.limits.max_upload_bytes, css=CSS, head=HEAD)
    # A mounted app counts as "not launched" for Gradio, which then skips its own rule that file
    # inputs must be uploads; the page checks that itself (app.Page), and this turns Gradio's on too.
    demo.has_launched = True
    if tools is not None:
        from .mcp_tools import McpDoor

        app.add_middleware(McpDoor, tools=tools)
    if settings.rest.api_key:
        gradio_app = _gradio_app(app)
        token = secrets.token_urlsafe(32)
        gradio_app.tokens[token] = "api-key"
        app.add_middleware(ApiKeyGate, api_key=settings.rest.api_key,
                           cookie=(f"access-token-{gradio_app.cookie_id}", token))
    return app


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

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


def start(scorers, settings: ServerSettings) -> RunningServer:
    """Build the app over one scorer or several and serve it; raises OSError when the port cannot be bound."""
    return RunningServer(create_app(scorers, settings), settings.host, settings.port)


def open_share_link(server: RunningServer) -> str:
    """A temporary public URL through Gradio's share servers (needs internet access)."""
    from gradio import networking

    return networking.setup_tunnel("127.0.0.1", server.port, secrets.token_urlsafe(32), None, None)
