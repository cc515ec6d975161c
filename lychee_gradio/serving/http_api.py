"""`POST /v1/rerank` (also `/v2/rerank`, `/rerank`): the Cohere / Jina / vLLM rerank format over HTTP.

Retrieval frameworks (LangChain, LlamaIndex, Haystack, Dify, LiteLLM, Open WebUI) speak this format
to rerankers. A query and each document may be a string, a Jina-style `{"text", "image"}` object
(image: base64 or a data URL), or a vLLM-style `{"content": [{"type": "text", ...},
{"type": "image_url", "image_url": {"url": ...}}]}`. Errors are JSON `{"message", "field"}` with the
document index in `field`; nothing a client sends can stop the server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import caller_identity
from ..contract import InputError, LycheeError, ScorerBusyError, is_expected
from ..explain import DEFAULT_GRID, MAX_GRID
from ..service import Service
from . import telemetry
from .dialects import INFO_PATH, SCORE_PATHS, TeiRerankRequest, create_dialect_router
from .edge import error_response
from .embeddings import EMBEDDINGS_PATH, TEI_EMBED_PATH, create_embeddings_router
from .json_inputs import image_fields, read_json, request_images, request_item, text_of
from .search_api import COLLECTIONS_PATH, INDEX_PATH, SEARCH_PATH, create_search_router

RERANK_PATHS = ("/v1/rerank", "/v2/rerank")
SHARED_RERANK_PATH = "/rerank"  # Cohere / Jina (documents) or TEI (texts): `rerank_any` picks
EXPLAIN_PATH = "/v1/explain"
# The JSON endpoints, by path, and the name each is counted under in metrics and logs.
JSON_ENDPOINTS = {
    **{path: RERANK_PATHS[0] for path in (*RERANK_PATHS, SHARED_RERANK_PATH)},
    **{path: SCORE_PATHS[0] for path in SCORE_PATHS},
    EXPLAIN_PATH: EXPLAIN_PATH,
    EMBEDDINGS_PATH: EMBEDDINGS_PATH,
    TEI_EMBED_PATH: EMBEDDINGS_PATH,
    SEARCH_PATH: SEARCH_PATH,
    INDEX_PATH: INDEX_PATH,
}
GET_ENDPOINTS = (INFO_PATH, COLLECTIONS_PATH)
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
    long_documents: str | None = Field(
        None,
        description="a PDF or a text over the chunk size: max (scored by its best part, the default), split (a row "
        "per part), truncate (cut at the model's budget), refuse (413)",
    )
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cohere's: cut each document's text at this many tokens")
    min_score: float | str | None = Field(
        None,
        description='leave out the results below: a score (0..1), or "relevant" / "partly" (the server\'s '
        "calibrated thresholds for the model and modality pair, else 0.7 / 0.4); applied before top_n",
    )


class RerankedDocument(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, str] | None = None
    part: dict[str, Any] | None = None


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
    grid: Any = Field(DEFAULT_GRID, description=f"cells per side of each image's map, at most: a whole number, 1 to {MAX_GRID}")
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


def create_router(service: Service) -> APIRouter:
    """The rerank routes: each translates its JSON into the request service and its answer back. The API key
    and the body size are checked before the body is read (`edge.Edge`)."""
    router = APIRouter(tags=["rerank"])
    models = service.models

    def opened(request: Request):
        return service.request(
            _record(request).endpoint, record=_record(request), identity=caller_identity(request.headers, _client(request))
        )

    async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
        """Rerank documents against a query, best first (Cohere / Jina / vLLM compatible)."""
        with opened(request) as req:
            scorer = req.model(body.model)
            req.check_count(len(body.documents))
            req.check_max_pixels(scorer, body.max_pixels)
            fetched = await req.fetch(request_images(body.query, body.documents), _client(request))
            echo = req.limits.max_echo_chars

            # Cohere's max_tokens_per_doc is "truncate" at its own length.
            mode, chunk = ("truncate", body.max_tokens_per_doc) if body.max_tokens_per_doc else (body.long_documents, None)

            def work() -> bytes:
                query, documents = read_json(body.query, body.documents, fetched)
                query_item, items = req.read(query, documents, scorer, max_pixels=body.max_pixels, long_documents=mode)
                ranked = req.rerank(
                    scorer,
                    query_item,
                    items,
                    body.instruction,
                    body.top_n,
                    max_pixels=body.max_pixels,
                    long_documents=mode,
                    chunk_tokens=chunk,
                    min_score=body.min_score,
                )
                results = [
                    {
                        "index": i,
                        "relevance_score": pair.score,
                        **({"document": {"text": text_of(documents[i])[:echo]}} if body.return_documents else {}),
                        **({"part": pair.part.as_dict()} if pair.part is not None else {}),
                    }
                    for i, pair in ranked.results
                ]
                stats = req.context.use(scorer).stats
                tokens = stats.tokens
                meta: dict[str, Any] = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
                if body.min_score is not None:
                    meta["min_score"] = {
                        "asked": body.min_score,
                        "filtered_out": ranked.filtered_out,
                        "thresholds": ranked.thresholds,
                    }
                calibrated = {bands.kind: bands.as_dict() for bands in ranked.bands if bands.pairs}
                if calibrated:  # the thresholds --calibration gave this model for the modality pairs answered
                    meta["calibration"] = calibrated
                if stats.split:
                    meta["long_documents"] = {
                        "mode": req.long_documents(mode),
                        "documents_split": stats.split,
                        "parts_scored": stats.parts,
                    }
                # The answer is written here, on the worker thread: a large one never holds up the event loop.
                return json.dumps(
                    {
                        "id": req.record.request_id,
                        "model": models.name_of(scorer),
                        "results": results,
                        "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                        "meta": meta,
                    },
                    ensure_ascii=False,
                ).encode("utf-8")

            return Response(await run_in_threadpool(work), media_type="application/json")

    for path in RERANK_PATHS:
        router.add_api_route(
            path,
            rerank,
            methods=["POST"],
            response_model=RerankResponse,
            response_model_exclude_none=True,
            include_in_schema=path == RERANK_PATHS[0],
            summary="Rerank documents against a query",
        )

    dialects, tei_rerank = create_dialect_router(service, opened, _client)

    async def rerank_any(request: Request, body: dict[str, Any] = Body(...)) -> Response:
        """Rerank in the Cohere / Jina format (a body with `documents`) or TEI's (a body with `texts`)."""
        if ("texts" in body) == ("documents" in body):
            raise InputError("body", "dialect", reason="this one has both" if "texts" in body else "this one has neither")
        kind = TeiRerankRequest if "texts" in body else RerankRequest
        if kind is TeiRerankRequest:
            request.state.dialect = "tei"  # its errors carry TEI's keys too
        try:
            parsed = kind.model_validate(body)
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None
        if kind is TeiRerankRequest:
            return await tei_rerank(parsed, request)
        answer = await rerank(parsed, request)
        return answer

    schemas = [RerankRequest.model_json_schema(), TeiRerankRequest.model_json_schema()]
    router.add_api_route(
        SHARED_RERANK_PATH,
        rerank_any,
        methods=["POST"],
        summary="Rerank: Cohere / Jina or TEI",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": schemas}}}}},
    )
    router.include_router(dialects)
    router.include_router(create_embeddings_router(service, opened, _client))
    router.include_router(create_search_router(service, opened, _client))

    async def explain(body: ExplainRequest, request: Request) -> dict:
        """Why this score: each image's map by occlusion, each text's segments by leaving out, the model's
        next-token view and (asked for) its own words. Every value is score(pair) - score(changed pair)."""
        with opened(request) as req:
            scorer = req.model(body.model)
            # Errors name this door's own fields: `query`, `document` (`document.pdf`, `document.image`).
            fetched = await req.fetch(
                image_fields(body.query, "query") + image_fields(body.document, "document"), _client(request)
            )

            def work() -> dict:
                query, document = request_item(body.query, "query", fetched), request_item(body.document, "document", fetched)
                query_item, (item,) = req.read(query, [document], scorer, fields=["document"])
                return req.explain(
                    scorer, query_item, item, body.instruction, grid=body.grid, explanation=body.explanation
                ).as_dict()

            found = await run_in_threadpool(work)
            return {"id": req.record.request_id, "model": models.name_of(scorer), **found}

    router.add_api_route(EXPLAIN_PATH, explain, methods=["POST"], summary="Why this score (maps, weights, raw output)")
    return router


def install(app: FastAPI, service: Service) -> None:
    """Add the rerank endpoints and the one error format to `app`."""

    @app.exception_handler(LycheeError)
    async def lychee_error(request: Request, error: LycheeError):
        # A caller's mistake, a timeout, a stop, a busy server: one access-log line (its status), no traceback.
        if not is_expected(error):  # ours, but not the caller's to read (it may name server paths)
            logger.error("error on %s (request %s)", request.url.path, _request_id(request), exc_info=error)
            error = LycheeError(None, "internal")
        headers = {"Retry-After": str(ScorerBusyError.retry_after_seconds)} if isinstance(error, ScorerBusyError) else None
        return error_response(error, headers=headers, request_id=_request_id(request), extra=_dialect_extra(request, error))

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
        refused = InputError(field, "invalid", reason=first.get("msg", "invalid value"))
        return error_response(refused, request_id=_request_id(request), extra=_dialect_extra(request, refused))

    app.include_router(create_router(service))


def _dialect_extra(request: Request, error: LycheeError) -> dict | None:
    """TEI's own error keys beside ours, for its clients: `error` (the words) and `error_type`."""
    if getattr(request.state, "dialect", None) != "tei":
        return None
    kind = {413: "Validation", 422: "Validation", 400: "Validation", 503: "Overloaded", 504: "Overloaded"}
    return {"error": str(error), "error_type": kind.get(error.status, "Backend")}


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


def _request_id(request: Request) -> str | None:
    record = getattr(request.state, "record", None)
    return record.request_id if record is not None else None
