"""The edge: every request passes here first, before any route reads a byte of its body.

In this order, on every door (the page, the Gradio API, `/v1/*`, MCP, operations):

1. **Host**: the `Host` header must name this server: `localhost`, a loopback address, the address it
   is bound to, an IP address when it listens on every interface, the machine's own name, an
   `--allowed-hosts` entry, or the share link's host. A page on another site that a user visits cannot
   reach the API through DNS rebinding. `/health`, `/ready` and `/metrics` answer any host (probes).
2. **Routes, deny by default**: one allow-list of what the product serves (the page and its assets, the
   named endpoints, uploads, `/v1/*`, `/docs`, MCP when on, operations). Anything else (Gradio's
   run-history, monitoring, its other routes, whatever a later release adds) is 404 before it runs.
   Request headers that steer Gradio's own features (`x-gradio-*`) are dropped.
3. **Origin**: a request that changes state (POST and the rest) from a browser page of another origin is
   refused, unless `--allowed-origins` lists that origin. Calls without an `Origin` (curl, SDKs) pass.
   CORS headers are sent only for listed origins (`cors_origins`).
4. **The key first**: with an API key every door but the public ones (operations, the login page and its
   assets) needs `Authorization: Bearer KEY` or the page's login cookie, checked on the headers.
5. **Bodies**: each route's limit, declared or streamed; uploads have a per-request total and a share of
   the server's upload space; the login form is small and its failures are throttled per address.

A client that disconnects mid-request is one INFO line, not a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi.responses import JSONResponse

from ..contract import InputError, LycheeError
from . import telemetry

logger = logging.getLogger(__name__)

# Request headers that steer Gradio's own features (run-history buckets, users, workflows, root URLs).
STEERING_PREFIX = b"x-gradio-"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPERATIONS = ("/health", "/ready", "/metrics")


# -- answers -------------------------------------------------------------------------------------------


def has_api_key(headers, api_key: str) -> bool:
    """Whether ASGI `headers` carry `Authorization: Bearer <api_key>` (compared in constant time)."""
    header = dict(headers).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())


def error_response(error: LycheeError, *, headers: dict | None = None, request_id: str | None = None,
                   extra: dict | None = None) -> JSONResponse:
    """The JSON error body of every door: `{"message", "field", "code", "id"}` with the error's own status (and a
    dialect's own keys beside them, `extra`)."""
    content: dict[str, Any] = {**error.as_dict(), **({"id": request_id} if request_id else {}), **(extra or {})}
    return JSONResponse(status_code=error.status, content=content, headers=headers)


# -- the route table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Paths the product serves, for some methods. A path is exact, ends in `*` (a prefix), or is a
    regular expression when it starts with `^`. `kind` picks the body rule: "json" (the JSON body
    limit), "upload", "login", "none" (no body expected); `public` routes need no key."""

    methods: tuple[str, ...]
    paths: tuple[str, ...]
    kind: str = "json"
    public: bool = False

    def matches(self, method: str, path: str) -> bool:
        if method not in self.methods:
            return False
        for pattern in self.paths:
            if pattern.startswith("^"):
                if re.fullmatch(pattern[1:], path):
                    return True
            elif pattern.endswith("*"):
                if path.startswith(pattern[:-1]):
                    return True
            elif path == pattern:
                return True
        return False


def route(methods: str, *paths: str, kind: str = "json", public: bool = False) -> Route:
    return Route(tuple(methods.split(",")), paths, kind, public)


def server_routes(json_paths: tuple[str, ...], mcp_paths: tuple[str, ...] = (),
                  get_paths: tuple[str, ...] = ()) -> list[Route]:
    """What the server itself serves: operations, the docs, the JSON endpoints (and the API's GET ones, behind the
    key), MCP when on."""
    routes = [route("GET,HEAD", *OPERATIONS, kind="none", public=True),
              route("GET,HEAD", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/static-offline-docs/*",
                    kind="none"),
              route("POST", *json_paths)]
    if get_paths:
        routes.append(route("GET,HEAD", *get_paths, kind="none"))
    if mcp_paths:
        routes.append(route("GET,POST,DELETE", *mcp_paths))
    return routes


# -- who the server answers to ------------------------------------------------------------------------------


def _host_name(value: str) -> str:
    """The host of a `Host` header or an origin's netloc, without its port, lower case, IPv6 unbracketed."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.rsplit(":", 1)[0]
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def machine_names() -> set[str]:
    """This machine's own names (what users of a server bound to every interface type)."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


@dataclass
class HostRule:
    """The hosts the server answers to (see the module's docstring); `allow` adds one (the share link)."""

    bound: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    names: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.names = {*LOOPBACK_NAMES, *(h.lower().strip("[]") for h in self.extra if h and h != "*")}
        self.any = "*" in self.extra
        self.every_interface = self.bound in ("0.0.0.0", "::", "")
        if self.every_interface:
            self.names |= machine_names()
        else:
            self.names.add(self.bound.lower().strip("[]"))

    def allow(self, host: str) -> None:
        self.names.add(_host_name(host))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        host = _host_name(header)
        if host in self.names or any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in self.names):
            return True
        # An address typed as such cannot be rebound by DNS: every one of a server on every interface is fine.
        return self.every_interface and _is_ip(host)


def same_origin(origin: str, host_header: str) -> bool:
    """Whether a browser's `Origin` is the page this server itself served (scheme-default ports counted)."""
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    default = 443 if parsed.scheme == "https" else 80
    origin_port = parsed.port or default
    host = host_header.strip().lower()
    host_name = _host_name(host)
    port_text = host.rsplit(":", 1)[1] if (host.count(":") == 1 or host.startswith("[") and "]:" in host) else ""
    host_port = int(port_text) if port_text.isdigit() else None
    if parsed.hostname.lower() != host_name:
        return False
    # Behind a proxy that terminates TLS, the Host keeps no port and the origin's is the default one.
    return host_port is None or host_port == origin_port


# -- throttles and budgets -------------------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per client address: after `failures` within `window` seconds, the address waits
    `window` seconds before it may try again (answered 429 with Retry-After)."""

    def __init__(self, failures: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.window, self.clock = failures, window, clock
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """Seconds `client` must wait before trying again (0: it may try now)."""
        with self._lock:
            seen = self._seen.get(client)
            if not seen:
                return 0.0
            now = self.clock()
            while seen and now - seen[0] > self.window:
                seen.popleft()
            return self.window - (now - seen[-1]) if len(seen) >= self.failures else 0.0

    def failed(self, client: str) -> None:
        with self._lock:
            self._seen.setdefault(client, deque(maxlen=self.failures)).append(self.clock())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)


class UploadSpace:
    """What uploads may hold on disk while they are kept (the page's files are deleted after `keep` seconds):
    at most `total` bytes from every caller together, `per_client` bytes from one address."""

    def __init__(self, total: int, per_client: int, keep: float, clock: Callable[[], float] = time.monotonic):
        self.total, self.per_client, self.keep, self.clock = total, per_client, keep, clock
        self._entries: deque[tuple[float, str, int]] = deque()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = self.clock()
        while self._entries and now - self._entries[0][0] > self.keep:
            self._entries.popleft()

    def room(self, client: str) -> int:
        """Bytes `client` may still upload now."""
        with self._lock:
            self._expire()
            used = sum(size for _, _, size in self._entries)
            mine = sum(size for _, who, size in self._entries if who == client)
            return max(0, min(self.total - used, self.per_client - mine))

    def add(self, client: str, size: int) -> None:
        with self._lock:
            self._entries.append((self.clock(), client, size))


# -- the middleware -------------------------------------------------------------------------------------------


@dataclass
class EdgePolicy:
    """What the edge enforces; built by `server.create_app` from the settings and the page."""

    routes: list[Route]
    hosts: HostRule
    api_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 2**20
    max_upload_request_bytes: int = 1024 * 2**20
    uploads: UploadSpace | None = None
    login_user: str | None = None  # the page's user name, compared exactly
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    logged_in: Callable[[dict], bool] = lambda scope: False  # the page's login cookie is valid
    key_cookie: tuple[str, str] | None = None  # a session the page knows as logged in, for requests with the key

    def route_of(self, method: str, path: str) -> Route | None:
        return next((entry for entry in self.routes if entry.matches(method, path)), None)

    def origin_allowed(self, origin: str, host: str) -> bool:
        return same_origin(origin, host) or origin.rstrip("/") in {o.rstrip("/") for o in self.allowed_origins}


class JsonShape:
    """Reads a JSON body as it streams in and refuses, before any parser sees it, what only an attacker
    sends: nesting deeper than `max_depth` (parsers recurse) and numbers longer than `max_digits` (Python
    refuses past 4,300 digits, after converting them). Strings are skipped, escapes included."""

    def __init__(self, max_depth: int = 64, max_digits: int = 1000):
        self.max_depth, self.max_digits = max_depth, max_digits
        self.depth, self.digits, self.in_string, self.escaped = 0, 0, False, False

    def feed(self, chunk: bytes) -> str | None:
        """None, or why the body is refused."""
        for byte in chunk:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:  # quote
                    self.in_string = False
                continue
            if byte == 0x22:
                self.in_string, self.digits = True, 0
            elif byte in (0x5B, 0x7B):  # [ {
                self.depth += 1
                if self.depth > self.max_depth:
                    return f"JSON nested deeper than {self.max_depth} levels"
            elif byte in (0x5D, 0x7D):
                self.depth -= 1
            if 0x30 <= byte <= 0x39:
                self.digits += 1
                if self.digits > self.max_digits:
                    return f"a number of more than {self.max_digits:,} digits"
            else:
                self.digits = 0
        return None


class Edge:
    """The ASGI middleware of the module's docstring (outermost of the app's own)."""

    def __init__(self, app, policy: EdgePolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        policy = self.policy
        path, method = scope["path"], scope.get("method", "GET")
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if path not in OPERATIONS and not policy.hosts.allows(host):
            return await self._refuse(scope, send, InputError("Host", "unknown_host", host=repr(host[:80])))
        entry = policy.route_of("GET" if scope["type"] == "websocket" else method, path)
        if entry is None:
            return await self._refuse(scope, send, InputError(None, "not_found"))
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if not k.startswith(STEERING_PREFIX)]}
        origin = headers.get(b"origin", b"").decode("latin-1")
        if (origin and (method not in ("GET", "HEAD", "OPTIONS") or scope["type"] == "websocket")
                and not policy.origin_allowed(origin, host)):
            return await self._refuse(scope, send, InputError("Origin", "cross_origin", origin=repr(origin[:80])))
        if policy.api_key is not None:
            if has_api_key(scope["headers"], policy.api_key):
                scope = self._with_key_cookie(scope)
            elif not entry.public and not policy.logged_in(scope):
                return await self._refuse(scope, send, InputError("Authorization", "api_key"),
                                          {"WWW-Authenticate": "Bearer"})
        if scope["type"] == "websocket" or method in ("GET", "HEAD", "OPTIONS") or entry.kind == "none":
            return await self.app(scope, receive, send)
        if entry.kind == "login":
            return await self._login(scope, receive, send)
        if entry.kind == "upload":
            return await self._upload(scope, receive, send)
        return await self._guarded(scope, receive, send, policy.max_body_bytes)

    # -- bodies ------------------------------------------------------------------------------------------

    async def _guarded(self, scope, receive, send, limit: int, *, on_done: Callable[[int], None] | None = None,
                       room: int | None = None, room_error: InputError | None = None):
        """Run the app with the body counted as it is read: over `limit` (or `room`) the app's answer is
        dropped and 413 (or `room_error`) is sent; a client gone mid-request is one INFO line."""
        too_large = InputError("body", "body_too_large", limit=limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                return await self._refuse(scope, send, too_large)
            if room is not None and int(declared) > room:
                return await self._refuse(scope, send, room_error, {"Retry-After": "60"})
        state = {"size": 0, "refused": None, "gone": False, "started": False}
        kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        shape = JsonShape() if kind.endswith(b"json") else None

        async def counted():
            message = await receive()
            if message["type"] == "http.disconnect":
                state["gone"] = True
                return message
            chunk = message.get("body", b"")
            state["size"] += len(chunk)
            odd = shape.feed(chunk) if shape is not None else None
            if state["size"] > limit:
                state["refused"] = too_large
            elif room is not None and state["size"] > room:
                state["refused"] = room_error
            elif odd is not None:
                state["refused"] = InputError("body", "invalid", reason=odd)
            if state["refused"] is not None:
                raise state["refused"]  # out of the app's read: its answer is dropped, ours sent
            return message

        async def watched(message):
            if state["refused"] is not None or state["gone"]:
                return  # the app's answer to a body it did not get whole
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not state["gone"] and state["refused"] is None:
                raise
        if state["gone"]:
            logger.info("client disconnected during %s %s (after %d body bytes)", scope.get("method"),
                        scope["path"][:80], state["size"])
            return
        if state["refused"] is not None and not state["started"]:
            extra = {"Retry-After": "60"} if state["refused"] is room_error else None
            return await self._refuse(scope, send, state["refused"], extra)
        if on_done is not None:
            on_done(state["size"])

    async def _upload(self, scope, receive, send):
        policy = self.policy
        client = _client(scope)
        room = policy.uploads.room(client) if policy.uploads is not None else None
        full = InputError("files", "upload_space")
        done = (lambda size: policy.uploads.add(client, size)) if policy.uploads is not None else None
        return await self._guarded(scope, receive, send, policy.max_upload_request_bytes, on_done=done, room=room,
                                   room_error=full)

    async def _login(self, scope, receive, send):
        """The login form: small, its failures throttled per address, the user name compared exactly."""
        policy, client = self.policy, _client(scope)
        wait = policy.throttle.wait_for(client)
        if wait > 0:
            return await self._refuse(scope, send, InputError(None, "login_throttled", seconds=round(wait)),
                                      {"Retry-After": str(max(1, round(wait)))})
        body, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > 16 * 1024:
                return await self._refuse(scope, send, InputError("body", "body_too_large", limit=16 * 1024))
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        data = b"".join(body)
        form = urllib.parse.parse_qs(data.decode("utf-8", "replace"))
        if policy.login_user is not None and form.get("username", [""])[0] != policy.login_user:
            policy.throttle.failed(client)
            return await JSONResponse(status_code=400, content={"detail": "Incorrect credentials."})(scope, None, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        async def observed(message):
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    policy.throttle.succeeded(client)
                elif message["status"] in (400, 401):
                    policy.throttle.failed(client)
            await send(message)

        await self.app(scope, replay, observed)

    # -- helpers -------------------------------------------------------------------------------------------

    def _with_key_cookie(self, scope):
        """A request with the key is, to the page, a logged-in one (Gradio's own session check passes)."""
        if self.policy.key_cookie is None:
            return scope
        name, token = self.policy.key_cookie
        cookies = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        headers.append((b"cookie", "; ".join(cookies + [f"{name}={token}"]).encode("latin-1")))
        return {**scope, "headers": headers}

    @staticmethod
    async def _refuse(scope, send, error: InputError, headers: dict | None = None):
        record = scope.get("state", {}).get("record")
        if record is None:  # (a JSON endpoint's refusal is its access-log line, with its request id)
            level = logging.INFO if error.status == 404 else logging.WARNING
            logger.log(level, "refused %s %s from %s: %s (%d)", scope.get("method", "GET"), scope["path"][:120],
                       _client(scope), error, error.status)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        response = error_response(error, headers=headers, request_id=record.request_id if record else None)
        await response(scope, None, send)


def _client(scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


# -- request ids and records for the JSON endpoints ----------------------------------------------------------


class RequestTracking:
    """On the JSON endpoints (`paths`: path -> endpoint name): a request id (the caller's `X-Request-ID`,
    else a new one) in the response header, the body and the log; and each request's metrics and log
    line, whatever its status."""

    def __init__(self, app, paths: dict[str, str]):
        self.app, self.paths = app, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        record = telemetry.RequestRecord(self.paths[scope["path"]], telemetry.new_request_id(given))
        scope.setdefault("state", {})["record"] = record

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", record.request_id.encode("latin-1"))]}
            await send(message)

        with record:
            await self.app(scope, receive, tracked_send)


class McpDoor:
    """Requests to the MCP paths go to the MCP tools (an ASGI app); everything else passes on."""

    def __init__(self, app, paths: tuple[str, ...], endpoint):
        self.app, self.paths, self.endpoint = app, paths, endpoint

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.paths:
            return await self.endpoint(scope, receive, send)
        return await self.app(scope, receive, send)

