"""The page: Single, Batch rerank, Image ranking, Compare and Evaluate tabs over the served models.

`build_demo(models, config)` lays out the page from one module per tab (`single.py`, `batch.py`,
`images.py`, `compare.py`, `evaluate.py`); each tab's button calls a handler (`handlers.py`) that
is also a named Gradio API endpoint. `PageApp` is what the server mounts: the Blocks with their CSS,
script and translations. Every file input of every event passes `Page.preprocess_data`, where
only uploads are let through.

The page depends on the contract only: it is handed scorers (and an observer for its metrics)
and imports no torch, no model code and no serving code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
from gradio.context import LocalContext
from gradio.i18n import I18nData
from gradio.routes import App

from ..contract import NullObserver, Observer
from ..registry import ModelSet, is_random
from ..settings import Config
from . import downloads, gradio_compat
from .batch import batch_tab
from .compare import compare_tab
from .evaluate import evaluate_tab
from .handlers import make_handlers
from .images import images_tab
from .layout import CSS, I18N, head, instruction_row, readable_api_info
from .single import single_tab
from .translations import language, text


def _files(value: Any) -> list[dict]:
    """Every file a component's input value names (FileData-like dicts, at any depth)."""
    if isinstance(value, dict):
        found = [value] if ("path" in value or "url" in value or "meta" in value) else []
        return found + [f for item in value.values() if isinstance(item, (dict, list)) for f in _files(item)]
    if isinstance(value, list):
        return [f for item in value for f in _files(item)]
    return []


def uploaded(path: Any) -> bool:
    """Whether `path` (symlinks followed) is a file this server received as an upload: in Gradio's
    upload folder, where the page's examples (the app's sample files) are cached too."""
    from gradio.utils import get_upload_folder

    if not isinstance(path, str) or not path or "://" in path or path.startswith("data:") or "\0" in path:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(get_upload_folder()))


class Page(gr.Blocks):
    """The app's Blocks: every file input of every event is checked before Gradio touches it.

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
            if any(not uploaded(file.get("path")) for file in _files(value)):
                self._refused(block_fn, "not an upload")
                raise gr.Error(text("error_not_uploaded", lang, input=_label(block, lang)), title=text("error_title", lang),
                               print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as error:  # Gradio's own check of a value (a slider's range, a file's type): said as it is
            self._refused(block_fn, str(error))
            raise gr.Error(str(error), title=text("error_title", lang), print_exception=False) from None
        except Exception:  # noqa: BLE001 - the caller sent something Gradio cannot read: say where
            self._refused(block_fn, "unreadable values")
            names = ", ".join(_label(block, lang) for block in block_fn.inputs if not getattr(block, "stateful", False))
            raise gr.Error(text("error_bad_arguments", lang, inputs=names), title=text("error_title", lang),
                           print_exception=False) from None

    def _refused(self, block_fn, why: str) -> None:
        """A caller's mistake caught before the handler ran: one access-log line (status 400), no traceback."""
        with self.observer.request(f"/{block_fn.api_name}" if block_fn.api_name else "/page") as record:
            record.status = 400
            record.fields["refused"] = why[:120]


class _FreshApiInfo:
    """Gradio keeps the first caller's "Use via API" snippets, with the host that caller named; made
    anew for each request, a forged Host header only reaches the caller who sent it."""

    def __init__(self, app, gradio_app):
        self.app, self.gradio_app = app, gradio_app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in ("/gradio_api/info", "/gradio_api/openapi.json"):
            self.gradio_app.api_info = None
        return await self.app(scope, receive, send)


def _label(block, lang: str) -> str:
    label = getattr(block, "label", None)
    return text(label.key, lang) if isinstance(label, I18nData) else str(label or type(block).__name__)


def build_demo(scorers, config: Config = Config(), *, demo_mode: bool = False, concurrency: int = 1,
               observer: Observer | None = None) -> gr.Blocks:
    """The whole page, over one scorer or several (a list or a ModelSet; the first is the default).

    Nothing is loaded here: the scorers come in ready. The Compare tab shows with two models or more.
    `observer` counts and logs each request (the server's telemetry); serve the page through
    `PageApp` for the phone layout and Ctrl+Enter.
    """
    models = ModelSet.of(scorers)
    handlers = make_handlers(models, config, observer)
    # Uploads and the copies Gradio keeps of results are deleted after --temp-file-minutes (swept every tenth
    # of it); the results' own files likewise (ui/downloads.py).
    keep = max(60, int(config.temp_file_minutes * 60))
    downloads.KEEP_SECONDS = keep
    with Page(title="Lychee reranker", analytics_enabled=False, delete_cache=(max(30, keep // 10), keep)) as demo:
        demo.observer = observer or NullObserver()
        if demo_mode:
            gr.Markdown(I18N("demo_banner"), elem_id="demo-banner")
        gr.Markdown(I18N("title"))
        served = gr.Markdown(elem_id="served-model")
        instruction, model, preset = instruction_row(models)

        def say_served(name: str | None, request: gr.Request):
            scorer = models.get(name)
            lang = language(request.headers.get("accept-language") if request is not None else None)
            shown = models.name_of(scorer)
            random = text("served_random", lang) if is_random(shown) else ""
            return text("served", lang, model=shown, family=scorer.family.name, random=random)

        demo.load(say_served, model, served, api_visibility="private", queue=False, show_progress="hidden")
        model.change(say_served, model, served, api_visibility="private", queue=False, show_progress="hidden")
        with gr.Tabs():
            single_tab(handlers, instruction, model, preset)
            batch_tab(handlers, instruction, model, preset)
            images_tab(handlers, instruction, model, preset)
            if len(models) > 1:
                compare_tab(handlers, instruction, models)
            evaluate_tab(handlers, instruction)
    gradio_compat.without_run_history(demo)
    # The one place queueing is set up: the model's work (MODEL_WORK) runs `concurrency` requests at
    # once, one per model replica.
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    readable_api_info(demo)
    return demo


class PageApp:
    """The page as the server mounts it (`serving.server.Page`): the Blocks, with CSS, script and translations."""

    def __init__(self, blocks: gr.Blocks):
        self.blocks = blocks

    def mount(self, app, *, auth: tuple[str, str] | None, host: str, port: int, max_file_size: int,
              api_key: str | None) -> SimpleNamespace:
        """Mount the page at `/` of `app`: the app, the Gradio routes the page serves (for the server's
        allow-list), a login check, and with `api_key` the cookie of a session the page knows as logged in
        (for requests that carry the key instead of logging in)."""
        # show_error=False: an unexpected exception reaches the page and gradio_client as a plain
        # "Error", never its text (which may hold server paths); our own errors are gr.Error and show.
        # enable_monitoring=False: Gradio times a streaming event to its first update, so the API page
        # said "p50: 0 ms" for every run of ours (they stream progress); /metrics has the real latencies.
        app = gr.mount_gradio_app(app, self.blocks, path="/", auth=auth, i18n=I18N, mcp_server=False,
                                  server_name=host, server_port=port, show_error=False,
                                  enable_monitoring=False,
                                  max_file_size=max_file_size, css=CSS, head=head())
        # A mounted app counts as "not launched" for Gradio, which then skips its own rule that file
        # inputs must be uploads; Page checks that itself, and this turns Gradio's on too.
        self.blocks.has_launched = True
        gradio_app = next(route.app for route in app.routes if isinstance(getattr(route, "app", None), App))
        app.add_middleware(_FreshApiInfo, gradio_app=gradio_app)
        cookie = gradio_compat.session_for_key(gradio_app, secrets.token_urlsafe(32)) if api_key else None
        return SimpleNamespace(app=app, routes=gradio_compat.page_routes(gradio_compat.named_endpoints(self.blocks)),
                               logged_in=lambda scope: gradio_compat.logged_in(gradio_app, scope), key_cookie=cookie)
