"""ASGI middleware in front of the app: request ids and records, the API key, body sizes, the MCP door.

Order (outermost first), as `server.create_app` installs them: `ApiKeyGate` (the Gradio API and
MCP), `McpDoor`, `RequestTracking` (the JSON endpoints), `RestGate` (their key and body size),
then the routes. Each check happens before a body is read or parsed.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.responses import JSONResponse

from ..contract import ERRORS, InputError
from . import telemetry


def has_api_key(headers, api_key: str) -> bool:
    """Whether ASGI `headers` carry `Authorization: Bearer <api_key>` (compared in constant time)."""
    header = dict(headers).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())


def error_response(error: InputError | None = None, *, status: int | None = None, message: str | None = None,
                   field: str | None = None, headers: dict | None = None, request_id: str | None = None) -> JSONResponse:
    """The JSON error body of every door: `{"message", "field", "id"}`."""
    if error is not None:
        status, message, field = error.status, str(error), error.field
    content: dict[str, Any] = {"message": message, "field": field, **({"id": request_id} if request_id else {})}
    return JSONResponse(status_code=status or 500, content=content, headers=headers)


def _record_of(scope) -> Any:
    return scope.get("state", {}).get("record")


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


class RestGate:
    """In front of the JSON endpoints: the API key first, then the body's size, before anything is parsed.

    A missing or wrong key is 401 whatever the body; a body over `limit` bytes is 413, whether its
    size was declared or it arrived chunked (it is read here, up to the limit, and handed on).
    """

    def __init__(self, app, limit: int, api_key: str | None, paths: tuple[str, ...]):
        self.app, self.limit, self.api_key, self.paths = app, limit, api_key, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.api_key is not None and not has_api_key(scope["headers"], self.api_key):
            return await self._refuse(scope, send, InputError("Authorization", "api_key"),
                                      {"WWW-Authenticate": "Bearer"})
        too_large = InputError("body", "body_too_large", limit=self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, send, too_large)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, send, too_large)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope, send, error: InputError, headers: dict | None = None):
        record = _record_of(scope)
        response = error_response(error, headers=headers, request_id=record.request_id if record else None)
        await response(scope, None, send)


class BodyLimit:
    """Every other request body (the Gradio API's calls and queue joins) is refused over `limit` bytes
    with 413, declared or chunked, before the app parses it; `exempt` paths (uploads, which Gradio
    streams to disk and limits per file; the JSON endpoints and MCP, which check their own) pass."""

    def __init__(self, app, limit: int, exempt: tuple[str, ...]):
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_large = error_response(InputError("body", "body_too_large", limit=self.limit))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_large(scope, None, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await too_large(scope, None, send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ApiKeyGate:
    """The API key opens the Gradio API and guards the MCP server.

    A request to the Gradio API that carries `Authorization: Bearer KEY` is let in as a logged-in
    user (Gradio's own session check then passes); MCP (`mcp_prefix`) answers 401 without the key.
    Everything else is left to Gradio's login and `RestGate`.
    """

    def __init__(self, app, api_key: str, cookie: tuple[str, str] | None = None, mcp_prefix: str = "/gradio_api/mcp"):
        self.app, self.api_key, self.mcp_prefix = app, api_key, mcp_prefix
        self.cookie = cookie  # (cookie name, session token) that Gradio knows as logged in

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        has_key = has_api_key(scope["headers"], self.api_key)
        if scope["path"].startswith(self.mcp_prefix) and not has_key:
            status, words = ERRORS["api_key"]
            response = error_response(status=status, message=words, field="Authorization",
                                      headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        if self.cookie is not None and has_key:
            name, token = self.cookie
            headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            cookies = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
            headers.append((b"cookie", "; ".join(cookies + [f"{name}={token}"]).encode("latin-1")))
            scope = {**scope, "headers": headers}
        return await self.app(scope, receive, send)


class McpDoor:
    """Requests to the MCP paths go to the MCP tools (an ASGI app); everything else passes on."""

    def __init__(self, app, paths: tuple[str, ...], endpoint):
        self.app, self.paths, self.endpoint = app, paths, endpoint

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.paths:
            return await self.endpoint(scope, receive, send)
        return await self.app(scope, receive, send)
