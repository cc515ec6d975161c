"""The route table, deny by default: what the product serves, by method and path, and which routes are public."""

from __future__ import annotations

import re
from dataclasses import dataclass

OPERATIONS = ("/health", "/ready", "/metrics")


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


def server_routes(json_paths: tuple[str, ...], mcp_paths: tuple[str, ...] = (), get_paths: tuple[str, ...] = ()) -> list[Route]:
    """What the server itself serves: operations, the docs, the JSON endpoints (and the API's GET ones, behind the
    key), MCP when on."""
    routes = [
        route("GET,HEAD", *OPERATIONS, kind="none", public=True),
        route("GET,HEAD", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/static-offline-docs/*", kind="none"),
        route("POST", *json_paths),
    ]
    if get_paths:
        routes.append(route("GET,HEAD", *get_paths, kind="none"))
    if mcp_paths:
        routes.append(route("GET,POST,DELETE", *mcp_paths))
    return routes
