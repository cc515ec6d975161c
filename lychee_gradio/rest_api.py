"""`POST /v1/rerank` (also `/v2/rerank`, `/rerank`): the Cohere / Jina / vLLM rerank format over HTTP.

Retrieval frameworks (LangChain, LlamaIndex, Haystack, Dify, LiteLLM, Open WebUI) speak this format
to rerankers. A query and each document may be a string, a Jina-style `{"text", "image"}` object
(image: base64 or a data URL), or a vLLM-style `{"content": [{"type": "text", ...},
{"type": "image_url", "image_url": {"url": ...}}]}`. Errors are JSON `{"message", "field"}` with the
document index in `field`; nothing a client sends can stop the server.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import urllib.request
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from . import telemetry
from .inputs import decode_image_data
from .ranking import best_first, check_top_n
from .registry import ModelSet
from .scorer import ScoreStats, ScorerBusyError, ScoringOutOfMemoryError, ScoringTimeoutError
from .settings import Limits

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestSettings:
    """What only the REST door has; the limits shared by every door are `settings.Limits`."""

    limits: Limits = Limits()
    allow_image_urls: bool = False
    image_url_timeout: float = 10.0
    max_image_url_bytes: int = 20 * 2**20
    api_key: str | None = None
    request_timeout: float | None = 300.0  # seconds a request may wait and run; then 504


class RequestError(Exception):
    """A request the server refuses: HTTP status, message, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


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


# -- turning a request's query and documents into scorer inputs --------------------------------------


def _fetch(url: str, field: str, settings: RestSettings) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=settings.image_url_timeout) as response:  # noqa: S310 - opt-in
            data = response.read(settings.max_image_url_bytes + 1)
    except OSError as error:
        raise RequestError(400, f"{field}: cannot fetch image URL ({error})", field) from None
    if len(data) > settings.max_image_url_bytes:
        raise RequestError(413, f"{field}: image at URL is over {settings.max_image_url_bytes} bytes", field)
    return data


def image_bytes(value: Any, field: str, settings: RestSettings) -> bytes:
    """An image sent over HTTP, as bytes: a data URL, base64, or (when allowed) an http(s) URL."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError(422, f"{field}: an image must be a non-empty string (data URL or base64)", field)
    value = value.strip()
    if value.startswith(("/", "./", "../", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        raise RequestError(400, f"{field}: file paths are not read over HTTP; send the image as base64 or a "
                                "data URL", field)
    if value.startswith(("http://", "https://")):
        if not settings.allow_image_urls:
            raise RequestError(400, f"{field}: image URLs are not fetched by this server (start it with "
                                    "--allow-image-urls, or send the image as base64)", field)
        data = _fetch(value, field, settings)
    else:
        try:
            data = decode_image_data(value, field)
        except ValueError:
            raise RequestError(400, f"{field}: not a data URL or base64 image (file paths are not read over HTTP)",
                               field) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise RequestError(400, f"{field}: cannot decode image (not a format Pillow can read)", field) from None
    except (OSError, Image.DecompressionBombError) as error:
        raise RequestError(400, f"{field}: cannot decode image ({error})", field) from None
    limit = settings.limits.max_image_pixels
    if width * height > limit:
        raise RequestError(413, f"{field}: image is {width}x{height} = {width * height:,} pixels, over this "
                                f"server's limit of {limit:,}", field)
    return data


def request_item(value: Any, field: str, settings: RestSettings) -> str | dict:
    """One query or document of a request, as the scorer takes it (images already decoded to bytes)."""
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return {"image": image_bytes(value, field, settings)}  # a bare data URL can only be an image
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise RequestError(422, f"{field}: expected a string or an object, got {type(value).__name__}", field)
    if "content" in value:
        return _content_parts(value["content"], field, settings)
    if "text" not in value and "image" not in value:
        raise RequestError(422, f"{field}: an object needs 'text' and/or 'image' (or 'content')", field)
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise RequestError(422, f"{field}.text: expected a string", f"{field}.text")
    item: dict[str, Any] = {"text": text}
    if value.get("image") is not None:
        item["image"] = image_bytes(value["image"], f"{field}.image", settings)
    return item


def _content_parts(parts: Any, field: str, settings: RestSettings) -> dict:
    if not isinstance(parts, list):
        raise RequestError(422, f"{field}.content: expected a list of parts", f"{field}.content")
    texts, images = [], []
    for position, part in enumerate(parts):
        where = f"{field}.content[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            images.append(image_bytes(part["image_url"].get("url"), f"{where}.image_url.url", settings))
        elif kind == "image" and part.get("image") is not None:
            images.append(image_bytes(part["image"], f"{where}.image", settings))
        else:
            raise RequestError(422, f"{where}: expected {{type: text, text}} or {{type: image_url, image_url: {{url}}}}",
                               where)
    if len(images) > 1:
        raise RequestError(400, f"{field}: at most one image per document, got {len(images)}", field)
    return {"text": "\n".join(texts) or None, **({"image": images[0]} if images else {})}


# -- the endpoint --------------------------------------------------------------------------------


def _text_of(item: str | dict) -> str:
    return item if isinstance(item, str) else item.get("text") or ""


def _error_response(status: int, message: str, field: str | None, headers: dict | None = None,
                    request_id: str | None = None) -> JSONResponse:
    content = {"message": message, "field": field, **({"id": request_id} if request_id else {})}
    return JSONResponse(status_code=status, content=content, headers=headers)


def _request_id(request: Request) -> str | None:
    record = getattr(request.state, "record", None)
    return record.request_id if record is not None else None


def _field_from(location: tuple) -> str:
    parts = [str(part) for part in location if part != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def create_router(models: ModelSet, settings: RestSettings) -> APIRouter:
    def check_api_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), settings.api_key):
            raise RequestError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                               "Authorization")

    router = APIRouter(dependencies=[Depends(check_api_key)], tags=["rerank"])

    def rerank(body: RerankRequest, request: Request) -> RerankResponse:
        """Rerank documents against a query, best first (Cohere / Jina / vLLM compatible)."""
        record = getattr(request.state, "record", None) or telemetry.RequestRecord(RERANK_PATHS[0])
        record.fields["documents"] = len(body.documents)
        try:
            scorer = models.get(body.model)
        except ValueError as error:
            raise RequestError(400, str(error), "model") from None
        record.fields["model"] = models.name_of(scorer)
        try:
            settings.limits.check_documents(len(body.documents))
        except ValueError as error:
            raise RequestError(400, str(error), "documents") from None
        if body.max_pixels is not None and body.max_pixels > scorer.max_pixels:
            raise RequestError(400, f"max_pixels: at most {scorer.max_pixels} on this server", "max_pixels")
        query = request_item(body.query, "query", settings)
        documents = [request_item(d, f"documents[{i}]", settings) for i, d in enumerate(body.documents)]
        stats = ScoreStats()
        try:
            pairs = scorer.score_with_logits(query, documents, body.instruction, max_pixels=body.max_pixels,
                                             timeout=settings.request_timeout, stats=stats)
        except ValueError as error:
            message = str(error)
            raise RequestError(400, message, message.split(":", 1)[0]) from None
        except ScoringOutOfMemoryError as error:
            raise RequestError(503, str(error)) from None
        except ScorerBusyError as error:
            raise RequestError(503, str(error), headers={"Retry-After": str(error.retry_after_seconds)}) from None
        except ScoringTimeoutError as error:
            raise RequestError(504, str(error)) from None
        finally:
            telemetry.record_scoring(record.fields["model"], stats)
            record.fields.update(tokens=stats.tokens, cached=stats.cached, scored=stats.scored)
        order = best_first([pair.score for pair in pairs])[: check_top_n(body.top_n)]
        results = [
            RerankedDocument(index=i, relevance_score=pairs[i].score,
                         document={"text": _text_of(documents[i])} if body.return_documents else None)
            for i in order
        ]
        tokens = sum(pair.tokens for pair in pairs)
        return RerankResponse(
            id=record.request_id,
            model=models.name_of(scorer),
            results=results,
            usage={"total_tokens": tokens, "prompt_tokens": tokens},
            meta={"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        )

    for path in RERANK_PATHS:
        router.add_api_route(path, rerank, methods=["POST"], response_model=RerankResponse,
                             response_model_exclude_none=True, include_in_schema=path == RERANK_PATHS[0],
                             summary="Rerank documents against a query")
    return router


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes on the rerank paths with 413, before they are parsed."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in RERANK_PATHS:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodySizeLimit._TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodySizeLimit._TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        record = scope.get("state", {}).get("record")
        response = _error_response(413, f"request body is over this server's limit of {self.limit:,} bytes", "body",
                                   request_id=record.request_id if record else None)
        await response(scope, receive, send)


class RequestTracking:
    """On the rerank paths: a request id (the caller's `X-Request-ID`, else a new one) in the response
    header, the body and the log; and each request's metrics and log line, whatever its status."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in RERANK_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        record = telemetry.RequestRecord(RERANK_PATHS[0], telemetry.new_request_id(given))
        scope.setdefault("state", {})["record"] = record

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", record.request_id.encode("latin-1"))]}
            await send(message)

        with record:
            await self.app(scope, receive, tracked_send)


def install(app: FastAPI, models: ModelSet, settings: RestSettings) -> None:
    """Add the rerank endpoints, their error format and the body-size limit to `app`."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError):
        return _error_response(error.status, error.message, error.field, error.headers, _request_id(request))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        # The details (a stack trace, perhaps server paths) go to the log, never to the client.
        request_id = _request_id(request)
        logger.error("unexpected error on %s (request %s)", request.url.path, request_id, exc_info=error)
        return _error_response(500, "internal error; the server's log has the details", None, request_id=request_id)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        field = _field_from(tuple(first.get("loc", ())))
        return _error_response(422, f"{field}: {first.get('msg', 'invalid value')}", field,
                               request_id=_request_id(request))

    app.include_router(create_router(models, settings))
    app.add_middleware(BodySizeLimit, limit=settings.limits.max_body_bytes)
    app.add_middleware(RequestTracking)  # outermost: every answer of the rerank paths is tracked
