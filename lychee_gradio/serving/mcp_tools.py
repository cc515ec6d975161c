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

import contextlib
import json
import logging
from typing import Any

import anyio

from ..config import caller_identity
from ..contract import InputError, LycheeError, is_expected
from ..explain import DEFAULT_GRID
from ..search.searching import search
from ..service import Service
from .json_inputs import read_json, request_images

logger = logging.getLogger(__name__)


_ITEM = {
    "description": 'text, or {"text": ..., "image": data URL or base64 (an http(s) URL if the server allows '
    'it)}, or {"pdf": data URL or base64} (a PDF: its pages), or {"content": [{"type": "text", ...}, '
    '{"type": "image_url", ...}]}',
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
        "schema": {
            "type": "object",
            "required": ["query", "document"],
            "properties": {
                "query": _ITEM,
                "document": _ITEM,
                "grid": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 16,
                    "description": "cells per side of each image's map, at most (8)",
                },
                "explanation": {"type": "boolean", "description": "also the model's own words"},
                **_COMMON,
            },
        },
    },
    "score": {
        "description": "Score how well one document (text, image or both) meets a query, 0..1 (p(yes) of a "
        "multimodal reranker). Returns score, verdict, colour and the yes/no logits.",
        "schema": {
            "type": "object",
            "required": ["query", "document"],
            "properties": {"query": _ITEM, "document": _ITEM, **_COMMON},
        },
    },
    "rerank": {
        "description": "Rerank documents (text, images, PDFs or any of them) against a query, best first. Returns "
        "[{index, score, verdict, part}] (index: 0-based position in the input; part: a long document's best page "
        "or chunk).",
        "schema": {
            "type": "object",
            "required": ["query", "documents"],
            "properties": {
                "query": _ITEM,
                "documents": {"type": "array", "items": _ITEM},
                "top_n": {"type": "integer", "minimum": 0, "description": "keep the best n (0: all)"},
                "min_score": {
                    "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "enum": ["relevant", "partly"]}],
                    "description": "leave out the results below: a score, or the server's calibrated 'relevant' / "
                    "'partly' thresholds (else 0.7 / 0.4); applied before top_n",
                },
                "long_documents": {
                    "type": "string",
                    "enum": ["max", "split", "truncate", "refuse"],
                    "description": "a PDF or a long text: max (scored by its best page or chunk, named as 'part'), "
                    "split (a result per part), truncate (cut at the model's budget), refuse",
                },
                **_COMMON,
            },
        },
    },
    "embed": {
        "description": "Embed texts, images or both (served only with an embedding model, --embedding-model): one "
        "unit vector per input, for a search's first stage. Returns {model, embeddings}.",
        "schema": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "inputs": {"type": "array", "items": _ITEM},
                "dimensions": {"type": "integer", "minimum": 32, "description": "keep the first n values (Matryoshka)"},
                **_COMMON,
            },
        },
    },
    "search": {
        "description": "Search a collection of the user's own files (lychee index; served with an embedding model): "
        "its nearest items by embedding, then the reranker over the best of them. Returns {first_stage: [{id, path, "
        "score}], results: [{id, path, relevance_score, first_stage_score, part}]}, both best first.",
        "schema": {
            "type": "object",
            "required": ["collection", "query"],
            "properties": {
                "collection": {"type": "string"},
                "query": _ITEM,
                "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "the first stage's k (20)"},
                "rerank_top_n": {"type": "integer", "minimum": 0, "description": "how many the reranker orders (10)"},
                **_COMMON,
            },
        },
    },
    "rank_images": {
        "description": "Rank images against a query (text and/or image), best first. Images as data URLs or "
        "base64. Returns [{rank, index, score, verdict}].",
        "schema": {
            "type": "object",
            "required": ["query", "images"],
            "properties": {
                "query": _ITEM,
                "images": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "data URLs or base64 (http(s) URLs if allowed)",
                },
                "top_n": {"type": "integer", "minimum": 0},
                **_COMMON,
            },
        },
    },
}


async def _embedded(service: Service, arguments: dict[str, Any], req, client: str) -> dict:
    """The embed tool: one unit vector per input, through the request service."""
    embedder = req.embedder(arguments.get("model"))
    values = list(arguments["inputs"])
    req.check_count(len(values), "inputs")
    fetched = await req.fetch(request_images("", values, field="inputs"), client)

    def work() -> list:
        _, documents = read_json("", values, fetched, field="inputs")
        return req.embed(embedder, documents, arguments.get("instruction"), arguments.get("dimensions"), field="inputs")

    vectors = await anyio.to_thread.run_sync(work)
    return {"model": service.embedders.name_of(embedder), "embeddings": vectors}


async def _searched(service: Service, arguments: dict[str, Any], req, client: str) -> dict:
    """The search tool: `/v1/search` through the request service."""
    scorer, embedder = req.model(arguments.get("model")), req.embedder(None)
    store = service.collections()
    query = arguments["query"]
    fetched = await req.fetch(request_images(query, []), client)

    def work() -> dict:
        value, _ = read_json(query, [], fetched)
        top_k, top_n = arguments.get("top_k", 20), arguments.get("rerank_top_n", 10)
        return search(req, store, embedder, scorer, arguments["collection"], value, top_k, top_n, arguments.get("instruction"))

    return {"model": service.models.name_of(scorer), **(await anyio.to_thread.run_sync(work))}


def _current_request_context(server):
    """The MCP SDK's context of the call being handled (its HTTP request among it), or None."""
    try:
        return server.request_context
    except LookupError:
        return None


class McpTools:
    """The tools over the served models; `asgi` is the endpoint, `lifespan` runs its session manager."""

    def __init__(self, service: Service):
        from mcp import types
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.service = service
        config = service.config
        self.server = Server("lychee-reranker")
        self._types = types

        @self.server.list_tools()
        async def list_tools():
            return [
                types.Tool(name=name, description=tool["description"], inputSchema=tool["schema"])
                for name, tool in TOOLS.items()
                if name not in ("embed", "search") or service.embedders is not None
            ]

        @self.server.call_tool()
        async def call_tool(name: str, arguments: dict[str, Any]):
            return await self.call(name, arguments)

        self.manager = StreamableHTTPSessionManager(
            app=self.server, json_response=True, stateless=True, max_request_body_size=config.limits.max_body_bytes
        )

    @contextlib.asynccontextmanager
    async def lifespan(self):
        async with self.manager.run():
            yield

    async def asgi(self, scope, receive, send) -> None:
        await self.manager.handle_request(scope, receive, send)

    async def call(self, name: str, arguments: dict[str, Any]) -> dict:
        """Run one tool call through the request service; an error comes back as the tool's error text: the
        JSON `{"code", "message", "field"}` that /v1/rerank answers for the same error, never a trace."""
        request = getattr(_current_request_context(self.server), "request", None)
        headers = request.headers if request is not None else {}
        client = request.client.host if request is not None and request.client is not None else "mcp"
        try:
            with self.service.request(f"/mcp/{name}", identity=caller_identity(headers, client)) as req:
                try:
                    return await self._call(name, arguments, req, client)
                except (KeyError, TypeError) as error:  # a required argument missing, or of the wrong kind
                    raise InputError(None, "invalid", reason=f"tool {name}: bad arguments ({error})") from None
        except LycheeError as error:
            if not is_expected(error):
                logger.error("MCP tool %s failed", name, exc_info=error)
                raise RuntimeError(json.dumps(LycheeError(None, "internal").as_dict())) from None
            raise RuntimeError(json.dumps(error.as_dict(), ensure_ascii=False)) from None
        except Exception as error:
            logger.error("MCP tool %s failed", name, exc_info=error)
            raise RuntimeError(json.dumps(LycheeError(None, "internal").as_dict())) from None

    async def _call(self, name: str, arguments: dict[str, Any], req, client: str) -> dict:
        if name == "embed":
            return await _embedded(self.service, arguments, req, client)
        if name == "search":
            return await _searched(self.service, arguments, req, client)
        scorer = req.model(arguments.get("model"))
        if name in ("score", "explain"):
            query, documents = arguments["query"], [arguments["document"]]
        elif name == "rerank":
            query, documents = arguments["query"], list(arguments["documents"])
        elif name == "rank_images":
            query, documents = arguments["query"], [{"image": image} for image in arguments["images"]]
        else:
            raise InputError("name", "unknown_tool", name=repr(name))
        field = "images" if name == "rank_images" else "documents"
        req.check_count(len(documents), field)
        fetched = await req.fetch(request_images(query, documents), client)
        instruction, mode = arguments.get("instruction"), arguments.get("long_documents")

        def work():
            raw_query, raw_documents = read_json(query, documents, fetched)
            query_item, items = req.read(raw_query, raw_documents, scorer, field=field, long_documents=mode)
            if name == "explain":
                return req.explain(
                    scorer,
                    query_item,
                    items[0],
                    instruction,
                    grid=arguments.get("grid", DEFAULT_GRID),
                    explanation=bool(arguments.get("explanation")),
                )
            if name == "score":
                pairs = req.score(scorer, query_item, items, instruction)
                return pairs, req.bands_of(scorer, query_item, items, list(enumerate(pairs)))
            return req.rerank(
                scorer,
                query_item,
                items,
                instruction,
                arguments.get("top_n"),
                long_documents=mode,
                min_score=arguments.get("min_score"),
            )

        found = await anyio.to_thread.run_sync(work)
        shown = self.service.models.name_of(scorer)
        if name == "explain":  # the maps' numbers; the overlay pictures are POST /v1/explain's
            return {"model": shown, **found.as_dict(overlays=False)}
        if name == "score":
            (pair,), (bands,) = found
            return {
                "score": pair.score,
                **bands.reading(pair.score),
                "yes_logit": pair.yes_logit,
                "no_logit": pair.no_logit,
                **({"part": pair.part.as_dict()} if pair.part is not None else {}),
                "model": shown,
            }
        return {
            "model": shown,
            **({"filtered_out": found.filtered_out, "thresholds": found.thresholds} if found.thresholds else {}),
            "results": [
                {
                    "rank": rank,
                    "index": i,
                    "score": pair.score,
                    **bands.reading(pair.score),
                    **({"part": pair.part.as_dict()} if pair.part is not None else {}),
                }
                for rank, ((i, pair), bands) in enumerate(zip(found.results, found.bands), start=1)
            ],
        }
