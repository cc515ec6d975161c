"""`POST /v1/rerank` (also `/v2/rerank`, `/rerank`): the Cohere / Jina / vLLM rerank format over HTTP.

Retrieval frameworks (LangChain, LlamaIndex, Haystack, Dify, LiteLLM, Open WebUI) speak this format
to rerankers. A query and each document may be a string, a Jina-style `{"text", "image"}` object
(image: base64 or a data URL), or a vLLM-style `{"content": [{"type": "text", ...},
{"type": "image_url", "image_url": {"url": ...}}]}`. Errors are JSON `{"message", "field"}` with the
document index in `field`; nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..contract import EXPECTED_ERRORS, InputError, LycheeError, RequestContext, ScorerBusyError
from ..explain import DEFAULT_GRID, MAX_GRID
from ..ranking import best_first, check_top_n
from ..registry import ModelSet
from ..settings import Config, cache_scope, caller_identity
from . import telemetry
from .image_urls import ImageFetcher
from .edge import error_response
from .requests import fetch_urls, request_images, scorer_items, text_of, url_policy

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
EXPLAIN_PATH = "/v1/explain"
# The JSON endpoints, by path, and the name each is counted under in metrics and logs.
JSON_ENDPOINTS = {**{path: RERANK_PATHS[0] for path in RERANK_PATHS}, EXPLAIN_PATH: EXPLAIN_PATH}
logger = logging.getLogger(__name__)


class RerankRequest(BaseModel):
    """Cohere / Jina / vLLM rerank request. `instruction` and `max_pixels` are lychee extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="which served model scores (default: the first); the answer names it")
    query: str | dict[str, Any] = Field(..., description="text, {text, image} or {content: [...]}")
    documents: list[Any] = Field(..., description="strings, {text, image} objects or {content: [...]} objects")
    top_n: int | None = Field(None, ge=0, description="keep the best n (default, or 0: all)")
    return_documents: bool = Field(False, description="echo each document's text (images are never echoed)")
    instruction: str | None = Field(None, description="the task, e.g. 'Given a product image and description, ...'")
    max_pixels: int | None = Field(None, ge=1, description="bound on each image's pixels for this request")


class RerankedDocument(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, str] | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankedDocument]
    usage: dict[str, int]
    meta: dict[str, Any]


class ExplainRequest(BaseModel):
    """Why one document scored what it did: `query` and `document` in the shapes /v1/rerank takes."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="which served model (default: the first)")
    query: str | dict[str, Any] = Field(..., description="text, {text, image} or {content: [...]}")
    document: str | dict[str, Any] = Field(..., description="text, {text, image} or {content: [...]}")
    instruction: str | None = Field(None, description="the task (default: the model's own)")
    grid: Any = Field(DEFAULT_GRID, description=f"cells per side of each image's map, at most: a whole number, 1 to "
                                                f"{MAX_GRID}")
    explanation: bool = Field(False, description="also the model's own words (slower; can be wrong)")


# -- the endpoints --------------------------------------------------------------------------------


def _record(request: Request):
    return getattr(request.state, "record", None) or telemetry.RequestRecord(RERANK_PATHS[0])


def _field_from(location: tuple) -> str:
    parts = [str(part) for part in location if part != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def create_router(models: ModelSet, config: Config, fetcher: ImageFetcher | None = None) -> APIRouter:
    """The rerank routes. The API key and the body size are checked before the body is read (`edge.Edge`)."""
    fetcher = fetcher or ImageFetcher(url_policy(config))
    router = APIRouter(tags=["rerank"])

    def context_of(request: Request, record) -> RequestContext:
        return RequestContext(timeout=config.request_timeout, request_id=record.request_id,
                              cache_scope=cache_scope(config, caller_identity(request.headers, _client(request))))

    async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
        """Rerank documents against a query, best first (Cohere / Jina / vLLM compatible)."""
        loop = asyncio.get_running_loop()
        record = _record(request)
        context = context_of(request, record)
        record.fields["documents"] = len(body.documents)
        scorer = models.get(body.model)
        record.fields["model"] = models.name_of(scorer)
        config.limits.check_documents(len(body.documents))
        if body.max_pixels is not None and body.max_pixels > scorer.max_pixels:
            raise InputError("max_pixels", "max_pixels_high", limit=scorer.max_pixels)
        deadline = None if context.remaining() is None else loop.time() + context.remaining()
        fetched = await fetch_urls(request_images(body.query, body.documents), config, fetcher, deadline,
                                   _client(request))

        top_n = check_top_n(body.top_n)
        echo = config.limits.max_echo_chars

        def score() -> bytes:
            query, items, raw = scorer_items(body.query, body.documents, config.limits,
                                             body.max_pixels or scorer.max_pixels, context, fetched)
            pairs = scorer.score_with_logits(query, items, body.instruction, max_pixels=body.max_pixels,
                                             context=context)
            results = [{"index": i, "relevance_score": pairs[i].score,
                        **({"document": {"text": text_of(raw[i])[:echo]}} if body.return_documents else {})}
                       for i in best_first([pair.score for pair in pairs])[:top_n]]
            tokens = sum(pair.tokens for pair in pairs)
            # The answer is written here, on the worker thread: a large one never holds up the event loop.
            return json.dumps({"id": record.request_id, "model": models.name_of(scorer), "results": results,
                               "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                               "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}},
                              ensure_ascii=False).encode("utf-8")

        try:
            answer = await run_in_threadpool(score)
        finally:
            context.close()
            telemetry.record_scoring(record.fields["model"], context.stats)
            record.fields.update(tokens=context.stats.tokens, cached=context.stats.cached,
                                 scored=context.stats.scored)
        return Response(answer, media_type="application/json")

    for path in RERANK_PATHS:
        router.add_api_route(path, rerank, methods=["POST"], response_model=RerankResponse,
                             response_model_exclude_none=True, include_in_schema=path == RERANK_PATHS[0],
                             summary="Rerank documents against a query")

    async def explain(body: ExplainRequest, request: Request) -> dict:
        """Why this score: each image's map by occlusion, each text's segments by leaving out, the model's
        next-token view and (asked for) its own words. Every value is score(pair) - score(changed pair)."""
        loop = asyncio.get_running_loop()
        record = _record(request)
        context = context_of(request, record)
        scorer = models.get(body.model)
        record.fields.update(model=models.name_of(scorer), documents=1)
        deadline = None if context.remaining() is None else loop.time() + context.remaining()
        fetched = await fetch_urls(request_images(body.query, [body.document]), config, fetcher, deadline,
                                   _client(request))

        def run():
            query, (document,), _ = scorer_items(body.query, [body.document], config.limits, scorer.max_pixels,
                                                 context, fetched)
            return scorer.explain(query, document, body.instruction, grid=body.grid, explanation=body.explanation,
                                  context=context, max_variants=config.limits.max_explain_variants,
                                  max_text_chars=config.limits.max_explain_text_chars).as_dict()

        try:
            found = await run_in_threadpool(run)
        finally:
            context.close()
            telemetry.record_scoring(record.fields["model"], context.stats)
            record.fields.update(tokens=context.stats.tokens, cached=context.stats.cached,
                                 scored=context.stats.scored)
        return {"id": record.request_id, "model": models.name_of(scorer), **found}

    router.add_api_route(EXPLAIN_PATH, explain, methods=["POST"], summary="Why this score (maps, weights, raw output)")
    return router


def install(app: FastAPI, models: ModelSet, config: Config, fetcher: ImageFetcher | None = None,
            routers: tuple[APIRouter, ...] = (), endpoints: dict[str, str] | None = None) -> None:
    """Add the rerank endpoints (and `routers`, at `endpoints`) and the one error format to `app`."""
    fetcher = fetcher or ImageFetcher(url_policy(config))

    @app.exception_handler(LycheeError)
    async def lychee_error(request: Request, error: LycheeError):
        # A caller's mistake, a timeout, a stop, a busy server: one access-log line (its status), no traceback.
        if not isinstance(error, EXPECTED_ERRORS):  # ours, but not the caller's to read (it may name server paths)
            logger.error("error on %s (request %s)", request.url.path, _request_id(request), exc_info=error)
            error = LycheeError(None, "internal")
        headers = {"Retry-After": str(ScorerBusyError.retry_after_seconds)} if isinstance(
            error, ScorerBusyError) else None
        return error_response(error, headers=headers, request_id=_request_id(request))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        # The details (a stack trace, perhaps server paths) go to the log, never to the client.
        request_id = _request_id(request)
        logger.error("unexpected error on %s (request %s)", request.url.path, request_id, exc_info=error)
        return error_response(LycheeError(None, "internal"), request_id=request_id)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        # FastAPI's own refusals (a body it cannot parse, a method not allowed) in the one error shape.
        message = error.detail if isinstance(error.detail, str) else "invalid request"
        refused = InputError("body" if error.status_code == 400 else None, "invalid", reason=message)
        refused.status = error.status_code
        return error_response(refused, headers=getattr(error, "headers", None), request_id=_request_id(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        location = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            location = ("body",)
        field = _field_from(location)
        return error_response(InputError(field, "invalid", reason=first.get("msg", "invalid value")),
                              request_id=_request_id(request))

    app.include_router(create_router(models, config, fetcher))
    for router in routers:
        app.include_router(router)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


def _request_id(request: Request) -> str | None:
    record = getattr(request.state, "record", None)
    return record.request_id if record is not None else None
