"""The page: Single, Batch rerank, Image ranking, Compare, Search (with an embedding model) and Evaluate tabs over
the served models.

`build_demo(models, config)` lays out the page from one module per tab (`single.py`, `batch.py`,
`images.py`, `compare.py`, `evaluate.py`); each tab's button calls a handler (`handlers.py`) that
is also a named Gradio API endpoint. `PageApp` is what the server mounts: the Blocks with their CSS,
script and translations. Every file input of every event passes `Page.preprocess_data`, where
only uploads are let through.

The page depends on the contract only: it is handed scorers (and an observer for its metrics)
and imports no torch, no model code and no serving code.
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import gradio as gr

from ..config import Config
from ..contract import NullObserver, Observer
from ..registry import ModelSet, is_random
from . import downloads, gradio_compat
from .batch import batch_tab
from .compare import compare_tab
from .evaluate import evaluate_tab
from .gradio_compat import Page
from .handlers import make_handlers
from .images import images_tab
from .layout import CSS, I18N, head, instruction_row
from .search import search_tab
from .single import single_tab
from .translations import language, text


def build_demo(
    scorers,
    config: Config = Config(),
    *,
    demo_mode: bool = False,
    concurrency: int = 1,
    observer: Observer | None = None,
    service=None,
) -> gr.Blocks:
    """The whole page, over one scorer or several (a list or a ModelSet; the first is the default).

    Nothing is loaded here: the scorers come in ready. The Compare tab shows with two models or more.
    `observer` counts and logs each request (the server's telemetry); serve the page through
    `PageApp` for the phone layout and Ctrl+Enter. `service`: the app's one request service (app.create hands it
    in); the page alone makes its own.
    """
    models = ModelSet.of(scorers)
    handlers = make_handlers(models, config, observer, service=service)
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
            if handlers.embeds:  # --embedding-model: search the collections
                search_tab(handlers, instruction, model, demo.load)
            evaluate_tab(handlers, instruction)
        if handlers.embeds:  # gradio_client's /embed and /search (as /v1/embeddings and /v1/search answer)
            gr.api(handlers.embed, api_name="embed")
            gr.api(handlers.search, api_name="search")
    gradio_compat.without_run_history(demo)
    # The one place queueing is set up: the model's work (MODEL_WORK) runs `concurrency` requests at
    # once, one per model replica.
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    gradio_compat.readable_api_info(demo)
    return demo


class PageApp:
    """The page as the server mounts it (`serving.server.Page`): the Blocks, with CSS, script and translations.
    `mcp_paths`: where the app serves its MCP tools (Gradio's MCP path, `gradio_compat.MCP_PATHS`)."""

    mcp_paths = gradio_compat.MCP_PATHS

    def __init__(self, blocks: gr.Blocks):
        self.blocks = blocks

    def mount(
        self, app, *, auth: tuple[str, str] | None, host: str, port: int, max_file_size: int, api_key: str | None
    ) -> SimpleNamespace:
        """Mount the page at `/` of `app`: the app, the Gradio routes the page serves (for the server's
        allow-list), a login check, and with `api_key` the cookie of a session the page knows as logged in
        (for requests that carry the key instead of logging in)."""
        # show_error=False: an unexpected exception reaches the page and gradio_client as a plain
        # "Error", never its text (which may hold server paths); our own errors are gr.Error and show.
        # enable_monitoring=False: Gradio times a streaming event to its first update, so the API page
        # said "p50: 0 ms" for every run of ours (they stream progress); /metrics has the real latencies.
        app, gradio_app = gradio_compat.mount(
            app,
            self.blocks,
            auth=auth,
            i18n=I18N,
            mcp_server=False,
            server_name=host,
            server_port=port,
            show_error=False,
            enable_monitoring=False,
            max_file_size=max_file_size,
            css=CSS,
            head=head(),
        )
        app.add_middleware(gradio_compat.FreshApiInfo, gradio_app=gradio_app)
        cookie = gradio_compat.session_for_key(gradio_app, secrets.token_urlsafe(32)) if api_key else None
        return SimpleNamespace(
            app=app,
            routes=gradio_compat.page_routes(gradio_compat.named_endpoints(self.blocks)),
            logged_in=lambda scope: gradio_compat.logged_in(gradio_app, scope),
            key_cookie=cookie,
            steering_prefix=gradio_compat.STEERING_HEADER_PREFIX,
            login_user_field=gradio_compat.LOGIN_USER_FIELD,
            login_refusal=gradio_compat.LOGIN_REFUSAL,
        )
