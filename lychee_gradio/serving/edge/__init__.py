"""The edge: every request passes here first, before any route reads a byte of its body.

In this order, on every door (the page, the Gradio API, `/v1/*`, MCP, operations):

1. **Host**: the `Host` header must name this server: `localhost`, a loopback address, the address it
   is bound to, an IP address when it listens on every interface, the machine's own name, an
   `--allowed-hosts` entry, or the share link's host. A page on another site that a user visits cannot
   reach the API through DNS rebinding. `/health`, `/ready` and `/metrics` answer any host (probes).
2. **Routes, deny by default**: one allow-list of what the product serves (the page and its assets, the
   named endpoints, uploads, `/v1/*`, `/docs`, MCP when on, operations). Anything else (Gradio's
   run-history, monitoring, its other routes, whatever a later release adds) is 404 before it runs.
   Request headers that steer the page framework's own features (Gradio's `x-gradio-*`, named by the mounted
   page) are dropped.
3. **Origin**: a request that changes state (POST and the rest) from a browser page of another origin is
   refused, unless `--allowed-origins` lists that origin. Calls without an `Origin` (curl, SDKs) pass.
   CORS headers are sent only for listed origins (`cors_origins`).
4. **The key first**: with an API key every door but the public ones (operations, the login page and its
   assets) needs `Authorization: Bearer KEY` or the page's login cookie, checked on the headers.
5. **Bodies**: each route's limit, declared or streamed; uploads have a per-request total and a share of
   the server's upload space; the login form is small and its failures are throttled per address.

A client that disconnects mid-request is one INFO line, not a traceback.
"""

from .answers import error_response, has_api_key
from .budgets import LoginThrottle, UploadSpace
from .hosts import LOOPBACK_NAMES, HostRule, machine_names, same_origin
from .middleware import Edge, EdgePolicy, JsonShape
from .routes import OPERATIONS, Route, route, server_routes
from .tracking import McpDoor, RequestTracking

__all__ = [
    "Edge",
    "EdgePolicy",
    "HostRule",
    "JsonShape",
    "LoginThrottle",
    "McpDoor",
    "OPERATIONS",
    "RequestTracking",
    "Route",
    "LOOPBACK_NAMES",
    "UploadSpace",
    "error_response",
    "has_api_key",
    "machine_names",
    "route",
    "same_origin",
    "server_routes",
]
