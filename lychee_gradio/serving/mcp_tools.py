"""The MCP server (`lychee load --mcp`, at `/gradio_api/mcp/`): score, rerank and rank images as agent tools.

The tools run in this process on the same scorers, through the same checks as `/v1/rerank`:
queries and documents in the same shapes (text, `{text, image}`, `{content: [...]}`), images as
data URLs or base64 (http(s) URLs only with `--allow-image-urls`, fetched under the same policy),
the same limits, timeout and body size. A tool never reads a server path, and nothing about a
call comes from request headers: there is no HTTP loop back into the server, so a forwarded host
header cannot redirect anyone's calls. The API key (when set) guards the endpoint like every
other door (`edge.Edge`).

Built on the `mcp` SDK's own server and streamable-HTTP transport (stateless, JSON answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import anyio

from ..contract import EXPECTED_ERRORS, InputError, LycheeError, RequestContext, reading, status_of
from ..explain import DEFAULT_GRID
from ..ranking import best_first, check_top_n
from ..registry import ModelSet
from ..settings import Config, cache_scope, caller_identity
from . import telemetry
from .image_urls import ImageFetcher
from .requests import fetch_urls, request_images, scorer_items

logger = logging.getLogger(__name__)

MCP_PATHS = ("/gradio_api/mcp", "/gradio_api/mcp/")

_ITEM = {
    "description": "text, or {\"text\": ..., \"image\": data URL or base64 (an http(s) URL if the server allows "
                   "it)}, or {\"content\": [{\"type\": \"text\", ...}, {\"type\": \"image_url\", ...}]}",
    "anyOf": [{"type": "string"}, {"type": "object"}],
}
_COMMON = {
    "instruction": {"type": "string", "description": "the task (default: the model's own instruction)"},
    "model": {"type": "string", "description": "which served model scores (default: the first)"},
}
TOOLS = {
    "explain": {
        "description": "Why a document scored what it did against a query: each image's map by occlusion (cells "
                       "with score(pair) - score(pair with the cell filled with the mean colour)), each text's "
                       "segments by leaving out, the model's likeliest next tokens and, with explanation=true, its "
                       "own words (which can be wrong).",
        "schema": {"type": "object", "required": ["query", "document"],
                   "properties": {"query": _ITEM, "document": _ITEM,
                                  "grid": {"type": "integer", "minimum": 1, "maximum": 16,
                                           "description": "cells per side of each image's map, at most (8)"},
                                  "explanation": {"type": "boolean", "description": "also the model's own words"},
                                  **_COMMON}},
    },
    "score": {
        "description": "Score how well one document (text, image or both) meets a query, 0..1 (p(yes) of a "
                       "multimodal reranker). Returns score, verdict, colour and the yes/no logits.",
        "schema": {"type": "object", "required": ["query", "document"],
                   "properties": {"query": _ITEM, "document": _ITEM, **_COMMON}},
    },
    "rerank": {
        "description": "Rerank documents (text, images or both) against a query, best first. Returns "
                       "[{index, score, verdict}] (index: 0-based position in the input).",
        "schema": {"type": "object", "required": ["query", "documents"],
                   "properties": {"query": _ITEM, "documents": {"type": "array", "items": _ITEM},
                                  "top_n": {"type": "integer", "minimum": 0, "description": "keep the best n (0: all)"},
                                  **_COMMON}},
    },
    "rank_images": {
        "description": "Rank images against a query (text and/or image), best first. Images as data URLs or "
                       "base64. Returns [{rank, index, score, verdict}].",
        "schema": {"type": "object", "required": ["query", "images"],
                   "properties": {"query": _ITEM,
                                  "images": {"type": "array", "items": {"type": "string"},
                                             "description": "data URLs or base64 (http(s) URLs if allowed)"},
                                  "top_n": {"type": "integer", "minimum": 0}, **_COMMON}},
    },
}


def _current_request_context(server):
    """The MCP SDK's context of the call being handled (its HTTP request among it), or None."""
    try:
        return server.request_context
    except LookupError:
        return None


class McpTools:
    """The tools over the served models; `asgi` is the endpoint, `lifespan` runs its session manager."""

    def __init__(self, models: ModelSet, config: Config, fetcher: ImageFetcher):
        from mcp import types
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.models, self.config, self.fetcher = models, config, fetcher
        self.server = Server("lychee-reranker")
        self._types = types

        @self.server.list_tools()
        async def list_tools():
            return [types.Tool(name=name, description=tool["description"], inputSchema=tool["schema"])
                    for name, tool in TOOLS.items()]

        @self.server.call_tool()
        async def call_tool(name: str, arguments: dict[str, Any]):
            return await self.call(name, arguments)

        self.manager = StreamableHTTPSessionManager(app=self.server, json_response=True, stateless=True,
                                                    max_request_body_size=config.limits.max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(self):
        async with self.manager.run():
            yield

    async def asgi(self, scope, receive, send) -> None:
        await self.manager.handle_request(scope, receive, send)

    async def call(self, name: str, arguments: dict[str, Any]) -> dict:
        """Run one tool call; an error comes back as the tool's error text: the JSON `{"code", "message",
        "field"}` that /v1/rerank answers for the same error, never a trace."""
        record = telemetry.RequestRecord(f"/mcp/{name}")
        with record:
            try:
                return await self._call(name, arguments, record)
            except EXPECTED_ERRORS as error:
                record.status = status_of(error)
                raise RuntimeError(json.dumps(error.as_dict(), ensure_ascii=False)) from None
            except Exception as error:  # noqa: BLE001 - the details go to the log, never to the caller
                record.status = 500
                logger.error("MCP tool %s failed (request %s)", name, record.request_id, exc_info=error)
                raise RuntimeError(json.dumps(LycheeError(None, "internal").as_dict())) from None

    async def _call(self, name: str, arguments: dict[str, Any], record) -> dict:
        loop = asyncio.get_running_loop()
        scorer = self.models.get(arguments.get("model"))
        record.fields["model"] = self.models.name_of(scorer)
        if name in ("score", "explain"):
            query, documents = arguments["query"], [arguments["document"]]
        elif name == "rerank":
            query, documents = arguments["query"], list(arguments["documents"])
        elif name == "rank_images":
            query, documents = arguments["query"], [{"image": image} for image in arguments["images"]]
        else:
            raise InputError("name", "unknown_tool", name=repr(name))
        self.config.limits.check_documents(len(documents), "images" if name == "rank_images" else "documents")
        top_n = check_top_n(arguments.get("top_n"))
        record.fields["documents"] = len(documents)
        request = getattr(_current_request_context(self.server), "request", None)
        headers = request.headers if request is not None else {}
        client = request.client.host if request is not None and request.client is not None else "mcp"
        context = RequestContext(timeout=self.config.request_timeout, request_id=record.request_id,
                                 cache_scope=cache_scope(self.config, caller_identity(headers, client)))
        deadline = None if context.remaining() is None else loop.time() + context.remaining()
        fetched = await fetch_urls(request_images(query, documents), self.config, self.fetcher, deadline, "mcp")

        def score():
            query_item, items, _ = scorer_items(query, documents, self.config.limits, scorer.max_pixels, context,
                                                fetched)
            if name == "explain":
                return scorer.explain(query_item, items[0], arguments.get("instruction"),
                                      grid=arguments.get("grid", DEFAULT_GRID), explanation=bool(arguments.get("explanation")),
                                      context=context, max_variants=self.config.limits.max_explain_variants,
                                      max_text_chars=self.config.limits.max_explain_text_chars)
            return scorer.score_with_logits(query_item, items, arguments.get("instruction"), context=context)

        try:
            pairs = await anyio.to_thread.run_sync(score)
        finally:
            context.close()
            telemetry.record_scoring(record.fields["model"], context.stats)
        if name == "explain":  # the maps' numbers; the overlay pictures are POST /v1/explain's
            return {"model": self.models.name_of(scorer), **pairs.as_dict(overlays=False)}
        if name == "score":
            (pair,) = pairs
            return {"score": pair.score, **reading(pair.score), "yes_logit": pair.yes_logit,
                    "no_logit": pair.no_logit, "model": self.models.name_of(scorer)}
        order = best_first([pair.score for pair in pairs])[:top_n]
        return {"model": self.models.name_of(scorer),
                "results": [{"rank": rank, "index": i, "score": pairs[i].score, **reading(pairs[i].score)}
                            for rank, i in enumerate(order, start=1)]}
