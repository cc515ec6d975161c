"""The edge itself: the ASGI middleware that checks host, route, origin, key and body before a route runs."""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

from fastapi.responses import JSONResponse

from ...contract import InputError
from .answers import error_response, has_api_key
from .budgets import LoginThrottle, UploadSpace
from .hosts import HostRule, same_origin
from .routes import OPERATIONS, Route

logger = logging.getLogger(__name__)


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
    # What the page's framework is (the mounted page says: ui/gradio_compat.py): request headers that steer its
    # own features, dropped; its login form's user field, and its reply to a wrong login.
    steering_prefix: bytes | None = None
    login_user_field: str = "username"
    login_refusal: dict = field(default_factory=lambda: {"detail": "Incorrect credentials."})

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
        if policy.steering_prefix:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if not k.startswith(policy.steering_prefix)]}
        origin = headers.get(b"origin", b"").decode("latin-1")
        if (
            origin
            and (method not in ("GET", "HEAD", "OPTIONS") or scope["type"] == "websocket")
            and not policy.origin_allowed(origin, host)
        ):
            return await self._refuse(scope, send, InputError("Origin", "cross_origin", origin=repr(origin[:80])))
        if policy.api_key is not None:
            if has_api_key(scope["headers"], policy.api_key):
                scope = self._with_key_cookie(scope)
            elif not entry.public and not policy.logged_in(scope):
                return await self._refuse(scope, send, InputError("Authorization", "api_key"), {"WWW-Authenticate": "Bearer"})
        if scope["type"] == "websocket" or method in ("GET", "HEAD", "OPTIONS") or entry.kind == "none":
            return await self.app(scope, receive, send)
        if entry.kind == "login":
            return await self._login(scope, receive, send)
        if entry.kind == "upload":
            return await self._upload(scope, receive, send)
        return await self._guarded(scope, receive, send, policy.max_body_bytes)

    # -- bodies ------------------------------------------------------------------------------------------

    async def _guarded(
        self,
        scope,
        receive,
        send,
        limit: int,
        *,
        on_done: Callable[[int], None] | None = None,
        room: int | None = None,
        room_error: InputError | None = None,
    ):
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
            logger.info(
                "client disconnected during %s %s (after %d body bytes)", scope.get("method"), scope["path"][:80], state["size"]
            )
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
        return await self._guarded(
            scope, receive, send, policy.max_upload_request_bytes, on_done=done, room=room, room_error=full
        )

    async def _login(self, scope, receive, send):
        """The login form: small, its failures throttled per address, the user name compared exactly."""
        policy, client = self.policy, _client(scope)
        wait = policy.throttle.wait_for(client)
        if wait > 0:
            return await self._refuse(
                scope, send, InputError(None, "login_throttled", seconds=round(wait)), {"Retry-After": str(max(1, round(wait)))}
            )
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
        if policy.login_user is not None and form.get(policy.login_user_field, [""])[0] != policy.login_user:
            policy.throttle.failed(client)
            return await JSONResponse(status_code=400, content=policy.login_refusal)(scope, None, send)
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
            logger.log(
                level,
                "refused %s %s from %s: %s (%d)",
                scope.get("method", "GET"),
                scope["path"][:120],
                _client(scope),
                error,
                error.status,
            )
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        response = error_response(error, headers=headers, request_id=record.request_id if record else None)
        await response(scope, None, send)


def _client(scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"
