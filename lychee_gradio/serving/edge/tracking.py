"""Request ids and records for the JSON endpoints, and MCP's door through the edge."""

from __future__ import annotations

from .. import telemetry


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
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", record.request_id.encode("latin-1"))],
                }
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
