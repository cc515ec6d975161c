"""The assembled app: the page and the JSON API on one server, over scorers loaded beforehand.

This is where the layers meet (like the CLI): `serving` gets the page from `ui` and its telemetry
as the page's observer, and neither of them imports the other.

    from lychee_gradio import LycheeScorer, app
    running = app.start(LycheeScorer.load(...), app.ServerSettings(port=7860))
"""

from __future__ import annotations

from fastapi import FastAPI

from .config import Config, Limits
from .registry import ModelSet
from .search.store import Store
from .service import Service
from .serving.json_inputs import url_fetcher
from .serving.server import RunningServer, ServerSettings, create_app
from .serving.telemetry import TELEMETRY
from .ui.page import PageApp, build_demo

__all__ = ["Config", "Limits", "ServerSettings", "RunningServer", "create", "start"]


def create(scorers, settings: ServerSettings, embedders=None) -> FastAPI:
    """The whole app (page, Gradio API, /v1/rerank, MCP when asked, operations) over one scorer or several, and
    `embedders` (embedding models: /v1/embeddings) when given."""
    models = ModelSet.of(scorers)
    # One request service for every door of the app: the page, the Gradio API, /v1/*, the dialects and MCP.
    service = Service(
        models,
        settings.config,
        TELEMETRY,
        fetch=url_fetcher(settings.config),
        embedders=embedders,
        collections=lambda: Store(
            settings.data_dir, settings.collections_dir, settings.collections_url
        ),  # opened on the first search
    )
    page = build_demo(
        models,
        settings.config,
        demo_mode=settings.demo_mode,
        concurrency=settings.concurrency,
        observer=TELEMETRY,
        service=service,
    )
    return create_app(models, settings, PageApp(page), service=service)


def start(scorers, settings: ServerSettings, embedders=None) -> RunningServer:
    """Build the app and serve it in a background thread; raises OSError (before building anything) when
    the port cannot be bound."""
    return RunningServer.bind(settings.host, settings.port).serve(lambda: create(scorers, settings, embedders))
