"""What the app knows of Gradio's own routes and sessions: the routes the page needs, the ones it refuses,
and how a login is recognised. Checked against Gradio 6.31 (`tests/test_gradio_compat.py` lists Gradio's
routes and fails on any this table neither allows nor refuses, so a new release is looked at, not
silently served).

The server (`serving/edge/`) enforces the table; this module only describes the page. Each entry is
`(methods, paths, kind, public)`: paths are exact, end in `*` (a prefix) or start with `^` (a regular
expression); `kind` is the body rule ("json": the JSON body limit, "upload", "login", "none"); `public`
routes are open without the API key (the login page and its assets).
"""

from __future__ import annotations

import json
import os
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext
from gradio.i18n import I18nData
from gradio.routes import App

from ..contract import NullObserver, Observer
from .translations import TRANSLATIONS, language, text

ENGLISH = TRANSLATIONS["en"]

GRADIO_CHECKED = "6.31"


def page_routes(named: list[str]) -> list[tuple[str, tuple[str, ...], str, bool]]:
    """The Gradio routes the page and `gradio_client` use; `named` are the page's API endpoint names."""
    names = "|".join(re.escape(name) for name in named) or "(?!)"
    return [
        # The page, its assets, and the login page (Gradio answers /config per login).
        ("GET,HEAD", ("/",), "none", True),
        (
            "GET,HEAD",
            (
                "/config",
                "/config/",
                "/assets/*",
                "/static/*",
                "/svelte/*",
                "/favicon.ico",
                "/theme.css",
                "/gradio_api/theme.css",
                "/robots.txt",
                "/gradio_api/login_check",
                "/gradio_api/login_check/",
                "/logout",
            ),
            "none",
            True,
        ),
        ("POST", ("/login", "/login/"), "login", True),
        # The "Use via API" page, served files (Gradio lets only uploads and cached outputs through).
        (
            "GET,HEAD",
            (
                "/gradio_api/info",
                "/gradio_api/info/",
                "/gradio_api/openapi.json",
                "/gradio_api/file=*",
                "/gradio_api/startup-events",
                "/gradio_api/heartbeat/*",
                "/gradio_api/queue/data",
                "/gradio_api/upload_progress",
                f"^/gradio_api/call/({names})/[A-Za-z0-9_-]+",
            ),
            "none",
            False,
        ),
        # Runs of the page's events (the queue), the named endpoints over plain HTTP, uploads.
        # /run/predict: the page's unqueued events (queue=False) by index. Each of them takes only what is safe
        # from a caller: uploads (checked by Page), the session's server-side State, or plain values.
        (
            "POST",
            (
                "/gradio_api/queue/join",
                "/gradio_api/cancel",
                "/gradio_api/reset",
                "/gradio_api/reset/",
                "/gradio_api/run/predict",
                f"^/gradio_api/call/({names})/?",
            ),
            "json",
            False,
        ),
        ("POST", ("/gradio_api/upload",), "upload", False),
    ]


# Gradio's routes that this app refuses (404), each for a reason.
# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
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
# fmt: on


def named_endpoints(blocks) -> list[str]:
    """The page's public API names (`api_name` of its events, the private ones left out)."""
    return sorted(
        {fn.api_name for fn in blocks.fns.values() if fn.api_name and getattr(fn, "api_visibility", "public") != "private"}
    )


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


# What the server's edge must know of Gradio, handed to it with the mounted page (serving imports no Gradio code):
# request headers that steer Gradio's own features (run-history buckets, users, workflows, root URLs), which the
# edge drops; the login form's user field and the reply Gradio gives a wrong login; where Gradio's MCP lives (the
# app serves its own MCP tools there).
STEERING_HEADER_PREFIX = b"x-gradio-"
LOGIN_USER_FIELD = "username"
LOGIN_REFUSAL = {"detail": "Incorrect credentials."}
MCP_PATHS = ("/gradio_api/mcp", "/gradio_api/mcp/")


def path_only_image(image):
    """`image` (a `gr.Image`) handing its handler the uploaded file's path as it is, never opened: Gradio calls
    each input block's `preprocess`, and this one's passes the path through (an inline data URL still goes through
    Gradio's own). An instance's method, not a subclass: Gradio writes a .pyi stub beside any module that subclasses
    one of its components."""
    original = image.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return original(payload)
        return payload.path

    image.preprocess = preprocess
    return image


def band_words_slider(slider, words: tuple[str, ...]):
    """`slider` (a `gr.Slider` of scores) also taking one of `words` ("relevant", "partly": the calibrated bands)
    from an API caller, passed to its handler as it is; the page's own slider sends numbers. An instance's method,
    as above; the API description says so."""
    original, info = slider.preprocess, slider.api_info

    def preprocess(payload):
        return payload if isinstance(payload, str) and payload in words else original(payload)

    def api_info():
        return {**info(), "description": f"{info()['description']}, or one of {', '.join(map(repr, words))}"}

    slider.preprocess, slider.api_info = preprocess, api_info
    return slider


# -- the page's Blocks: file inputs checked before Gradio reads them ----------------------------------------------


def files_of(value: Any) -> list[dict]:
    """Every file a component's input value names (FileData-like dicts, at any depth)."""
    if isinstance(value, dict):
        found = [value] if ("path" in value or "url" in value or "meta" in value) else []
        return found + [f for item in value.values() if isinstance(item, (dict, list)) for f in files_of(item)]
    if isinstance(value, list):
        return [f for item in value for f in files_of(item)]
    return []


def uploaded(path: Any) -> bool:
    """Whether `path` (symlinks followed) is a file this server received as an upload: in Gradio's
    upload folder, where the page's examples (the app's sample files) are cached too."""
    from gradio.utils import get_upload_folder

    if not isinstance(path, str) or not path or "://" in path or path.startswith("data:") or "\0" in path:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(get_upload_folder()))


class Page(gr.Blocks):
    """The app's Blocks (overrides `Blocks.preprocess_data`, Gradio 6.31): every file input of every event is
    checked before Gradio touches it.

    A file input must name a file that was uploaded to this server (or an example's cached copy): a
    path anywhere else on the server, a URL, or inline data (a data URL, which Gradio would decode
    before any limit is checked) is refused with one message naming the input, whether or not such
    a file exists, before Gradio would copy it into its cache (and serve it back). This is the one
    place every file input passes (page, gradio_client, /gradio_api/*); Gradio itself applies the
    same rule only to apps it launched, and this app is mounted (`PageApp.mount` turns Gradio's on
    too). A value Gradio cannot read (a wrong type, missing arguments) gets one message naming the
    input, not a stack trace.
    """

    observer: Observer = NullObserver()  # where a refused call is counted and logged (one WARNING line)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        request = LocalContext.request.get(None)
        lang = language(request.headers.get("accept-language") if request is not None else None)
        for block, value in zip(block_fn.inputs, inputs or []):
            if any(not uploaded(file.get("path")) for file in files_of(value)):
                self._refused(block_fn, "not an upload")
                raise gr.Error(
                    text("error_not_uploaded", lang, input=label_of(block, lang)),
                    title=text("error_title", lang),
                    print_exception=False,
                )
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as error:  # Gradio's own check of a value (a slider's range, a file's type): said as it is
            self._refused(block_fn, str(error))
            raise gr.Error(str(error), title=text("error_title", lang), print_exception=False) from None
        except Exception:  # noqa: BLE001 - the caller sent something Gradio cannot read: say where
            self._refused(block_fn, "unreadable values")
            names = ", ".join(label_of(block, lang) for block in block_fn.inputs if not getattr(block, "stateful", False))
            raise gr.Error(
                text("error_bad_arguments", lang, inputs=names), title=text("error_title", lang), print_exception=False
            ) from None

    def _refused(self, block_fn, why: str) -> None:
        """A caller's mistake caught before the handler ran: one access-log line (status 400), no traceback."""
        with self.observer.request(f"/{block_fn.api_name}" if block_fn.api_name else "/page") as record:
            record.status = 400
            record.fields["refused"] = why[:120]


class FreshApiInfo:
    """(Gradio 6.31's `App.api_info`.) Gradio keeps the first caller's "Use via API" snippets, with the host that
    caller named; made
    anew for each request, a forged Host header only reaches the caller who sent it."""

    def __init__(self, app, gradio_app):
        self.app, self.gradio_app = app, gradio_app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in ("/gradio_api/info", "/gradio_api/openapi.json"):
            self.gradio_app.api_info = None
        return await self.app(scope, receive, send)


def label_of(block, lang: str) -> str:
    label = getattr(block, "label", None)
    return text(label.key, lang) if isinstance(label, I18nData) else str(label or type(block).__name__)


# -- labels, examples and the API page ----------------------------------------------------------------------------


def label_key(label) -> str | None:
    """The translation key of a `gr.I18n` label (Gradio 6.31's `I18nData.key`), or None."""
    return label.key if isinstance(label, I18nData) else None


def clear_unset_on_example(found) -> None:
    """When an example is chosen, clear the boxes it leaves unset (Gradio 6.31's `Examples.inputs_with_examples`
    and `load_input_event`): Gradio otherwise keeps what they held, e.g. an image uploaded before."""
    unset = [box for box in found.inputs if box not in found.inputs_with_examples]
    if unset:
        found.load_input_event.then(
            lambda: [None] * len(unset) if len(unset) > 1 else None,
            None,
            unset,
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )


def english(value: Any) -> Any:
    """A label as the API page should print it: translated labels travel as objects (shown as
    "[object Object]" there, or as "__i18n__{...}" text); they become their English text."""
    if isinstance(value, I18nData):
        return ENGLISH.get(value.key, value.key)
    if isinstance(value, str) and value.startswith("__i18n__"):
        try:
            value = json.loads(value[len("__i18n__") :])
        except ValueError:
            return value
    if isinstance(value, dict) and "translation_metadata" in (value.get("_type"), value.get("__type__")):
        return ENGLISH.get(value.get("key"), value.get("key"))
    return value


def readable_api_info(demo: gr.Blocks) -> None:
    """Make "Use via API" readable (wraps `Blocks.get_api_info`, Gradio 6.31): English parameter and output
    labels instead of "[object Object]"."""
    original = demo.get_api_info

    def get_api_info(*args, **kwargs):
        info = original(*args, **kwargs)
        for endpoint in (info or {}).get("named_endpoints", {}).values():
            for entry in endpoint.get("parameters", []) + endpoint.get("returns", []):
                entry["label"] = english(entry.get("label"))
        return info

    demo.get_api_info = get_api_info


# -- mounting, the share link ---------------------------------------------------------------------------------------


def mount(app, blocks, **options):
    """`gr.mount_gradio_app(app, blocks, path="/", **options)`, and the mounted Gradio app (`routes.App`: its
    tokens, its api_info). A mounted app counts as "not launched" for Gradio, which then skips its own rule
    that file inputs must be uploads; `Page` checks that itself, and `has_launched` turns Gradio's on too."""
    app = gr.mount_gradio_app(app, blocks, path="/", **options)
    blocks.has_launched = True
    gradio_app = next(route.app for route in app.routes if isinstance(getattr(route, "app", None), App))
    return app, gradio_app


def open_share_link(port: int) -> str:
    """A temporary public URL through Gradio's share servers (`networking.setup_tunnel`, Gradio 6.31; needs
    internet access)."""
    import secrets

    from gradio import networking

    return networking.setup_tunnel("127.0.0.1", port, secrets.token_urlsafe(32), None, None)


# -- Gradio's own words, on a Chinese page --------------------------------------------------------------------------


# Gradio's own words that gr.I18n does not reach (its aria labels and tooltips, the footer's "Runs", a toast's
# default title), in Chinese; a browser whose language is Chinese gets them through the script below, as
# Gradio's own translations are picked (navigator.language).
GRADIO_WORDS_ZH = {
    "Click to upload or drop files": "点击上传或拖放文件",
    "Close": "关闭",
    "Empty value": "空值",
    "File upload": "文件上传",
    "More tabs": "更多标签页",
    "Paste from clipboard": "从剪贴板粘贴",
    "Remove this file": "移除此文件",
    "Reset to default value": "恢复默认值",
    "Upload file": "上传文件",
    "Capture from camera": "用摄像头拍摄",
    "Gradio footer navigation": "Gradio 页脚导航",
    "View runs saved in this browser": "查看此浏览器中保存的运行记录",
    "Runs": "运行记录",
    "Error": "错误",
    "Warning": "提示",
    "Clear": "清除",
    "Download": "下载",
    "Fullscreen": "全屏",
    "Share": "分享",
}
GRADIO_PATTERNS_ZH = [["^number input for (.+)$", "$1 的数字输入"], ["^range slider for (.+)$", "$1 的滑块"]]


def head_script(examples: dict) -> str:
    """The page's <head> script, with Gradio's words in Chinese and the examples' labels in both languages."""
    words = json.dumps({"zh": GRADIO_WORDS_ZH, "patterns": GRADIO_PATTERNS_ZH, "examples": examples}, ensure_ascii=False)
    return HEAD_TEMPLATE.replace("__WORDS__", words)


# Ctrl+Enter (Cmd+Enter on a Mac) runs the open tab: the one run button that is on screen. Example labels
# (Gradio prints them as given, both languages) show the browser's half; on a Chinese page, Gradio's own
# English words are put in Chinese as they appear.
HEAD_TEMPLATE = (Path(__file__).resolve().parent.parent / "assets" / "page" / "head.html").read_text(encoding="utf-8")
