"""What the app knows of Gradio's own routes and sessions: the routes the page needs, the ones it refuses,
and how a login is recognised. Checked against Gradio 6.31 (`tests/test_gradio_compat.py` lists Gradio's
routes and fails on any this table neither allows nor refuses, so a new release is looked at, not
silently served).

The server (`serving/edge.py`) enforces the table; this module only describes the page. Each entry is
`(methods, paths, kind, public)`: paths are exact, end in `*` (a prefix) or start with `^` (a regular
expression); `kind` is the body rule ("json": the JSON body limit, "upload", "login", "none"); `public`
routes are open without the API key (the login page and its assets).
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

GRADIO_CHECKED = "6.31"


def page_routes(named: list[str]) -> list[tuple[str, tuple[str, ...], str, bool]]:
    """The Gradio routes the page and `gradio_client` use; `named` are the page's API endpoint names."""
    names = "|".join(re.escape(name) for name in named) or "(?!)"
    return [
        # The page, its assets, and the login page (Gradio answers /config per login).
        ("GET,HEAD", ("/",), "none", True),
        ("GET,HEAD", ("/config", "/config/", "/assets/*", "/static/*", "/svelte/*", "/favicon.ico", "/theme.css",
                      "/gradio_api/theme.css", "/robots.txt", "/gradio_api/login_check",
                      "/gradio_api/login_check/", "/logout"), "none", True),
        ("POST", ("/login", "/login/"), "login", True),
        # The "Use via API" page, served files (Gradio lets only uploads and cached outputs through).
        ("GET,HEAD", ("/gradio_api/info", "/gradio_api/info/", "/gradio_api/openapi.json", "/gradio_api/file=*",
                      "/gradio_api/startup-events", "/gradio_api/heartbeat/*", "/gradio_api/queue/data",
                      "/gradio_api/upload_progress", f"^/gradio_api/call/({names})/[A-Za-z0-9_-]+"), "none", False),
        # Runs of the page's events (the queue), the named endpoints over plain HTTP, uploads.
        # /run/predict: the page's unqueued events (queue=False) by index. Each of them takes only what is safe
        # from a caller: uploads (checked by Page), the session's server-side State, or plain values.
        ("POST", ("/gradio_api/queue/join", "/gradio_api/cancel", "/gradio_api/reset", "/gradio_api/reset/",
                  "/gradio_api/run/predict", f"^/gradio_api/call/({names})/?"), "json", False),
        ("POST", ("/gradio_api/upload",), "upload", False),
    ]


# Gradio's routes that this app refuses (404), each for a reason.
REFUSED = {
    "/gradio_api/run-history/*": "calls the Hub with the operator's token; no login check",
    "/gradio_api/runs": "Gradio's run history",
    "/gradio_api/runs/": "Gradio's run history",
    "/monitoring*": "traffic figures of every endpoint (and they read 0 ms for streamed runs)",
    "/gradio_api/dev/reload": "development reload stream",
    "/gradio_api/vibe-*": "Gradio's code-editing assistant",
    "/gradio_api/undo-vibe-edit*": "Gradio's code-editing assistant",
    "/gradio_api/proxy=*": "proxies requests to other Spaces",
    "/gradio_api/custom_component/*": "serves custom components' files; the page has none",
    "/gradio_api/stream/*": "media streaming; the page streams nothing",
    "/gradio_api/process_recording": "audio recording; the page records nothing",
    "/gradio_api/component_server*": "component callbacks; the page's components have none",
    "/gradio_api/deep_link": "deep links; off",
    "/gradio_api/queue/status": "the queue's length; neither the page nor gradio_client asks",
    "/gradio_api/api/*": "any event by name or index; the named endpoints go through /gradio_api/call",
    "/gradio_api/run/*": "events by name; the named endpoints go through /gradio_api/call (run/predict is the page's)",
    "/gradio_api/call/v2/*": "a second protocol for the same calls",
    "/gradio_api/file/*": "a second file route",
    "/gradio_api/user*": "the logged-in user's name",
    "/gradio_api/token*": "hands out the session's token",
    "/gradio_api/app_id*": "the app's id",
    "/gradio_api/mcp*": "Gradio's own MCP server (off; the app serves its own tools there with --mcp)",
    "/manifest.json": "progressive web app (off)",
    "/pwa_icon*": "progressive web app (off)",
}


def named_endpoints(blocks) -> list[str]:
    """The page's public API names (`api_name` of its events, the private ones left out)."""
    return sorted({fn.api_name for fn in blocks.fns.values()
                   if fn.api_name and getattr(fn, "api_visibility", "public") != "private"})


def login_cookie_names(gradio_app) -> tuple[str, str]:
    """The two cookies Gradio's /login sets (secure and not)."""
    return f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}"


def logged_in(gradio_app, scope) -> bool:
    """Whether a request carries a login cookie of a session Gradio knows (as its own check does)."""
    jar = SimpleCookie()
    for key, value in scope["headers"]:
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no login
                return False
    return any(name in jar and jar[name].value in gradio_app.tokens for name in login_cookie_names(gradio_app))


def session_for_key(gradio_app, token: str) -> tuple[str, str]:
    """A session Gradio knows as logged in (user "api-key"), as a cookie, for requests that carry the key."""
    gradio_app.tokens[token] = "api-key"
    return login_cookie_names(gradio_app)[0], token


def without_run_history(blocks) -> None:
    """Gradio's run history (records of every run in a Hugging Face bucket, written with the server's own Hub
    token) stays off whatever a request asks; the edge refuses its routes and drops its header too."""
    blocks.run_history = False


def template_component(component: type) -> None:
    """A subclass of a Gradio component that the frontend draws as its parent (`is_template`): Gradio otherwise
    looks for a custom component's own frontend files, which the app does not have."""
    component.is_template = True
