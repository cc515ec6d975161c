"""One process, one port: the Gradio page and its API at `/`, `/v1/rerank` beside them, docs at `/docs`.

The page (handed in ready-made, `ui.page.PageApp`) is mounted on a FastAPI app so that the
pipeline endpoint, the page, the Gradio API and the MCP tools share the models loaded once. This
module knows no page code and no model code: it is handed scorers and a page. uvicorn serves it
from a socket bound here, so a busy port is a clear error rather than a log line.

With an API key every programmatic door needs it: `/v1/rerank` and the MCP server take
`Authorization: Bearer KEY`; the Gradio API takes the same header or a login; the page asks for
the login (user `lychee`, the key as password, unless `lychee share --auth` chose others).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Config
from ..registry import ModelSet
from ..service import Service
from ..settings import default_of
from . import http_api, telemetry
from .edge import Edge, EdgePolicy, HostRule, McpDoor, RequestTracking, Route, UploadSpace, server_routes
from .json_inputs import url_fetcher


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the one process serves: address, the shared `Config`, the page's login, MCP."""

    host: str = default_of("host")
    port: int = default_of("port")
    demo_mode: bool = False
    config: Config = Config()
    auth: tuple[str, str] | None = None
    mcp: bool = False
    concurrency: int = 1  # page requests the models work on at once (replicas x calls each replica batches)
    data_dir: str | None = None  # where the collections are (search/store.py's default when None)
    collections_dir: tuple[str, ...] = ()  # the folders a search may read (--collections-dir; empty: those indexed)
    collections_url: str | None = None  # a Qdrant server's address (--collections-url) instead of the local folder

    @property
    def page_auth(self) -> tuple[str, str] | None:
        """The page's login: the share credentials, else `lychee` and the API key, else none."""
        if self.auth is None and self.config.api_key:
            return ("lychee", self.config.api_key)
        return self.auth


class Page(Protocol):
    """The web page, as the server mounts it (`ui.page.PageApp`): the server imports no page code.

    `mount` returns a namespace with `app` (the app with the page mounted), `routes` (the Gradio routes
    the page serves, as `(methods, paths, kind, public)`: see `ui/gradio_compat.py`), `logged_in(scope)`
    (whether a request carries the page's login), `key_cookie` (with `api_key`: the cookie of a
    session the page knows as logged in, handed to requests that carry the key), and what the edge must know of
    the page's framework: `steering_prefix` (request headers it drops), `login_user_field` and `login_refusal`
    (the login form's user field, and the reply to a wrong login). `mcp_paths`: where MCP tools are served.
    """

    mcp_paths: tuple[str, ...]

    def mount(
        self, app: FastAPI, *, auth: tuple[str, str] | None, host: str, port: int, max_file_size: int, api_key: str | None
    ) -> Any: ...


logger = logging.getLogger(__name__)


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
        except Exception as error:
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
        short = [
            f"{name}: {scorer.replicas_alive} of {scorer.min_alive} replicas running"
            for name, scorer in zip(readiness.models.names, readiness.models.scorers)
            if getattr(scorer, "replicas_alive", None) is not None and scorer.replicas_alive < scorer.min_alive
        ]
        if readiness.ready and short:
            return JSONResponse(
                status_code=503, content={"status": "degraded", "models": readiness.models.names, "message": "; ".join(short)}
            )
        if readiness.ready:
            return {
                "status": "ready",
                "models": readiness.models.names,
                "runtime": {
                    name: telemetry.runtime_of(scorer) for name, scorer in zip(readiness.models.names, readiness.models.scorers)
                },
            }
        return JSONResponse(
            status_code=503,
            content={
                "status": "failed" if readiness.problem else "warming up",
                "models": readiness.models.names,
                **({"message": readiness.problem} if readiness.problem else {}),
            },
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics():
        return Response(generate_latest(telemetry.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lychee-gradio")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(scorers, settings: ServerSettings, page: Page | None = None, *, service: Service | None = None) -> FastAPI:
    """The app over one scorer or several (the first is the default model): operations, the JSON API, MCP when
    asked, and `page` mounted at `/` when given."""
    models = ModelSet.of(scorers)
    config = settings.config
    telemetry.READY.set(0)
    telemetry.watch_models(dict(zip(models.names, models.scorers)))
    # The one request path: every door of this server (the page, the JSON API, MCP) opens its requests here
    # (app.create hands the same service to the page).
    service = service or Service(models, config, telemetry.TELEMETRY, fetch=url_fetcher(config))
    tools = None
    if settings.mcp:
        from .mcp_tools import McpTools

        tools = McpTools(service)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with contextlib.AsyncExitStack() as stack:
            if tools is not None:
                await stack.enter_async_context(tools.lifespan())
            stack.callback(service.close)  # the collections' store, if a search opened it
            yield

    # FastAPIOffline serves Swagger UI's scripts and styles from the package, not from a CDN:
    # /docs works on a machine without internet.
    app = FastAPIOffline(
        lifespan=lifespan,
        title="lychee-gradio",
        version=_version(),
        description="Rerank text and image candidates with lychee-rerank-mm. `POST /v1/rerank` speaks the "
        "Cohere / Jina / vLLM rerank format; the web page is at `/`.",
        docs_url="/docs",
        redoc_url=None,
    )
    add_operations(app, Readiness(models).start())
    http_api.install(app, service)
    json_paths = tuple(http_api.JSON_ENDPOINTS)
    mcp_paths = page.mcp_paths if page is not None else ("/mcp", "/mcp/")
    routes = server_routes(json_paths, mcp_paths if tools is not None else (), http_api.GET_ENDPOINTS)
    mounted = None
    if page is not None:
        mounted = page.mount(
            app,
            auth=settings.page_auth,
            host=settings.host,
            port=settings.port,
            max_file_size=config.limits.max_upload_bytes,
            api_key=config.api_key,
        )
        app = mounted.app
        routes += [Route(tuple(methods.split(",")), paths, kind, public) for methods, paths, kind, public in mounted.routes]
    # Our own CORS policy: none unless --allowed-origins lists origins (Gradio then adds none of its own).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        allow_credentials=False,
    )
    if tools is not None:
        app.add_middleware(McpDoor, paths=mcp_paths, endpoint=tools.asgi)
    limits = config.limits
    keep = config.temp_file_minutes * 60
    policy = EdgePolicy(
        routes=routes,
        hosts=HostRule(settings.host, config.allowed_hosts),
        api_key=config.api_key,
        allowed_origins=config.allowed_origins,
        max_body_bytes=limits.max_body_bytes,
        max_upload_request_bytes=limits.max_upload_request_bytes,
        uploads=UploadSpace(limits.upload_space_bytes, limits.upload_client_bytes, keep),
        login_user=settings.page_auth[0] if settings.page_auth else None,
        logged_in=mounted.logged_in if mounted is not None else (lambda scope: False),
        key_cookie=mounted.key_cookie if mounted is not None else None,
        **(
            {
                "steering_prefix": mounted.steering_prefix,
                "login_user_field": mounted.login_user_field,
                "login_refusal": mounted.login_refusal,
            }
            if mounted is not None
            else {}
        ),
    )
    app.add_middleware(Edge, policy=policy)
    app.add_middleware(RequestTracking, paths=http_api.JSON_ENDPOINTS)
    app.state.edge = policy
    app.state.header_timeout = config.header_timeout
    return app


HEADER_TIMEOUT = default_of("header_timeout")  # seconds a connection has to send a request's headers


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a deadline on each request's headers: a connection that opens and sends
    them a byte at a time (or not at all) is answered 408 and closed after `header_timeout` seconds, so slow
    clients cannot hold connections open for good. (uvicorn times idle keep-alive connections only.) Checked
    against uvicorn 0.54 (`tests/test_edge.py`)."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            logger.info(
                "closed a connection from %s: its request headers took over %g s", (self.client or ("-",))[0], self.header_timeout
            )
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()


class RunningServer:
    """A server started in a background thread; `url` once ready, `close()` to stop.

    The port is bound before the app is built (`RunningServer.bind(...).serve(build)`), so a port in
    use is a clear error before any work starts.
    """

    shutdown_grace = 5.0  # seconds the requests in flight get to finish when the server stops

    def __init__(self, app: FastAPI, host: str, port: int):
        self._bind(host, port)
        self._serve(app)

    @classmethod
    def bind(cls, host: str, port: int) -> "RunningServer":
        """Bind the port (OSError when it is in use); `serve` starts the app on it."""
        server = cls.__new__(cls)
        server._bind(host, port)
        return server

    def serve(self, build) -> "RunningServer":
        """Start serving the app that `build()` makes; the socket is closed if that fails."""
        try:
            self._serve(build())
        except BaseException:
            self._socket.close()
            raise
        return self

    def _bind(self, host: str, port: int) -> None:
        self.host = host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port = self._socket.getsockname()[1]

    def _serve(self, app: FastAPI) -> None:
        self.app = app
        timeout = getattr(getattr(app, "state", None), "header_timeout", None) or HEADER_TIMEOUT
        protocol = type("Protocol", (HeaderTimeoutProtocol,), {"header_timeout": timeout})
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=self.shutdown_grace, http=protocol)
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

    def allow_host(self, url: str) -> None:
        """Answer requests for the host of `url` too (the share link's, once it exists)."""
        from urllib.parse import urlsplit

        host = urlsplit(url).hostname
        edge = getattr(getattr(self.app, "state", None), "edge", None)
        if host and edge is not None:
            edge.hosts.allow(host)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        self._server.config.timeout_graceful_shutdown = self.shutdown_grace
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
