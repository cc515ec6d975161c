"""`POST /v1/rerank` (also `/v2/rerank`, `/rerank`): the Cohere / Jina / vLLM rerank format over HTTP.

Retrieval frameworks (LangChain, LlamaIndex, Haystack, Dify, LiteLLM, Open WebUI) speak this format
to rerankers. A query and each document may be a string, a Jina-style `{"text", "image"}` object
(image: base64 or a data URL), or a vLLM-style `{"content": [{"type": "text", ...},
{"type": "image_url", "image_url": {"url": ...}}]}`. Errors are JSON `{"message", "field"}` with the
document index in `field`; nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from . import telemetry
from .image_urls import ImageFetcher, ImageUrlError, UrlPolicy
from .inputs import ImageRules, InputTooLarge, PixelBudget, base64_image, decode_image_data, to_item
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
    image_url_timeout: float = 10.0  # seconds for one URL, all of it: lookups, redirects, the body
    max_image_url_bytes: int = 20 * 2**20
    allowed_image_hosts: tuple[str, ...] = ()  # fetched even if private (an internal CDN)
    api_key: str | None = None
    request_timeout: float | None = 300.0  # seconds a request may wait and run; then 504

    @property
    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(allow=self.allow_image_urls, allowed_hosts=tuple(self.allowed_image_hosts),
                         timeout=self.image_url_timeout, max_bytes=self.max_image_url_bytes)


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
#
# Images arrive as data URLs, plain base64 or (when the operator allows it) http(s) URLs. The URLs
# are fetched first, all of a request's at once, asynchronously (`image_urls.py`); then the
# request is read into scorer items on a worker thread, with every image checked and decoded under
# the request's `ImageRules` (pixels before decoding, decoded straight down, a decoded-pixel budget).


def _image_fields(value: Any, field: str) -> list[tuple[str, Any]]:
    """The (field, image value) pairs of one query or document, in the request's shapes."""
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("content"), list):
        found = []
        for position, part in enumerate(value["content"]):
            where = f"{field}.content[{position}]"
            if isinstance(part, dict) and part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
                found.append((f"{where}.image_url.url", part["image_url"].get("url")))
            elif isinstance(part, dict) and part.get("type") == "image":
                found.append((f"{where}.image", part.get("image")))
        return found
    return [(f"{field}.image", value["image"])] if value.get("image") is not None else []


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


async def fetch_urls(values: list[tuple[str, Any]], settings: RestSettings, fetcher: ImageFetcher,
                     deadline: float | None) -> dict[str, bytes]:
    """The bytes of every image URL among the request's (field, value) pairs, by field, fetched at once.

    Without `--allow-image-urls` a URL is refused by name; with it, each is fetched under the
    policy (`image_urls.py`), all within the request's deadline (a loop time).
    """
    urls = [(field, value.strip()) for field, value in values if _is_url(value)]
    if not urls:
        return {}
    if not settings.allow_image_urls:
        field = urls[0][0]
        raise RequestError(400, f"{field}: image URLs are not fetched by this server (start it with "
                                "--allow-image-urls, or send the image as base64)", field)
    try:
        fetched = await asyncio.gather(*(fetcher.fetch(url, field, deadline) for field, url in urls))
    except ImageUrlError as error:
        raise RequestError(error.status, error.message, error.field) from None
    return {field: data for (field, _), data in zip(urls, fetched)}


def image_bytes(value: Any, field: str, fetched: dict[str, bytes] | None = None) -> bytes:
    """An image sent over HTTP, as bytes: a data URL, base64, or an http(s) URL fetched beforehand.

    Base64 is tried before anything else is concluded: a JPEG's base64 starts with "/9j/", which
    looks like a path. What is neither image data nor a fetched URL is refused; file paths are
    never read.
    """
    if not isinstance(value, str) or not value.strip():
        raise RequestError(422, f"{field}: an image must be a non-empty string (data URL or base64)", field)
    value = value.strip()
    if _is_url(value):
        if fetched is None or field not in fetched:
            raise RequestError(400, f"{field}: image URLs are not fetched by this server (start it with "
                                    "--allow-image-urls, or send the image as base64)", field)
        return fetched[field]
    if value.startswith("data:"):
        try:
            return decode_image_data(value, field)
        except ValueError as error:
            raise RequestError(400, str(error), field) from None
    data = base64_image(value)
    if data is not None:
        return data
    if value.startswith(("/", "./", "../", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        raise RequestError(400, f"{field}: file paths are not read over HTTP; send the image as base64 or a "
                                "data URL", field)
    try:
        return decode_image_data(value, field)  # base64 of something else: decoding says what it is not
    except ValueError:
        raise RequestError(400, f"{field}: not a data URL or base64 image (file paths are not read over HTTP)",
                           field) from None


def request_item(value: Any, field: str, fetched: dict[str, bytes] | None = None) -> str | bytes | dict:
    """One query or document of a request, as the scorer takes it (images as bytes, not yet decoded)."""
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return image_bytes(value, field, fetched)  # a bare data URL can only be an image
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise RequestError(422, f"{field}: expected a string or an object, got {type(value).__name__}", field)
    if "content" in value:
        return _content_parts(value["content"], field, fetched)
    if "text" not in value and "image" not in value:
        raise RequestError(422, f"{field}: an object needs 'text' and/or 'image' (or 'content')", field)
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise RequestError(422, f"{field}.text: expected a string", f"{field}.text")
    item: dict[str, Any] = {"text": text}
    if value.get("image") is not None:
        item["image"] = image_bytes(value["image"], f"{field}.image", fetched)
    return item


def _content_parts(parts: Any, field: str, fetched: dict[str, bytes] | None) -> dict:
    if not isinstance(parts, list):
        raise RequestError(422, f"{field}.content: expected a list of parts", f"{field}.content")
    texts, images = [], []
    for position, part in enumerate(parts):
        where = f"{field}.content[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            images.append(image_bytes(part["image_url"].get("url"), f"{where}.image_url.url", fetched))
        elif kind == "image" and part.get("image") is not None:
            images.append(image_bytes(part["image"], f"{where}.image", fetched))
        else:
            raise RequestError(422, f"{where}: expected {{type: text, text}} or {{type: image_url, image_url: {{url}}}}",
                               where)
    if len(images) > 1:
        raise RequestError(400, f"{field}: at most one image per document, got {len(images)}", field)
    return {"text": "\n".join(texts) or None, **({"image": images[0]} if images else {})}


def scorer_items(query: Any, documents: list[Any], limits: Limits, keep_pixels: int,
                 fetched: dict[str, bytes] | None = None):
    """The request's query and documents as scorer items, images checked and decoded under the limits.

    CPU work (base64, decoding): run it on a worker thread, never on the event loop.
    """
    rules = ImageRules(max_pixels=limits.max_image_pixels, keep_pixels=keep_pixels,
                       budget=PixelBudget(limits.max_request_pixels))
    raw_query = request_item(query, "query", fetched)
    raw_documents = [request_item(d, f"documents[{i}]", fetched) for i, d in enumerate(documents)]
    try:
        query_item = to_item(raw_query, "query", rules=rules)
        items = [to_item(d, f"documents[{i}]", rules=rules) for i, d in enumerate(raw_documents)]
    except InputTooLarge as error:
        raise RequestError(413, str(error), _field_of(str(error))) from None
    except ValueError as error:
        raise RequestError(400, str(error), _field_of(str(error))) from None
    return query_item, items, raw_documents


def _field_of(message: str) -> str:
    return message.split(":", 1)[0]


# -- the endpoint --------------------------------------------------------------------------------


def _text_of(item: str | bytes | dict) -> str:
    return item if isinstance(item, str) else item.get("text") or "" if isinstance(item, dict) else ""


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


def create_router(models: ModelSet, settings: RestSettings, fetcher: ImageFetcher | None = None) -> APIRouter:
    """The rerank routes. The API key and the body size are checked before the body is read (`RestGate`)."""
    fetcher = fetcher or ImageFetcher(settings.url_policy)
    router = APIRouter(tags=["rerank"])

    async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
        """Rerank documents against a query, best first (Cohere / Jina / vLLM compatible)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
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
        timeout = settings.request_timeout
        deadline = started + timeout if timeout else None
        images = _image_fields(body.query, "query") + [
            pair for i, d in enumerate(body.documents) for pair in _image_fields(d, f"documents[{i}]")]
        fetched = await fetch_urls(images, settings, fetcher, deadline)
        stats = ScoreStats()

        def score():
            query, items, raw = scorer_items(body.query, body.documents, settings.limits,
                                             body.max_pixels or scorer.max_pixels, fetched)
            remaining = None if deadline is None else max(0.001, deadline - (loop.time()))
            return raw, scorer.score_with_logits(query, items, body.instruction, max_pixels=body.max_pixels,
                                                 timeout=remaining, stats=stats)

        try:
            documents, pairs = await run_in_threadpool(score)
        except ValueError as error:
            message = str(error)
            raise RequestError(400, message, _field_of(message)) from None
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


def has_api_key(headers, api_key: str) -> bool:
    """Whether ASGI `headers` carry `Authorization: Bearer <api_key>` (compared in constant time)."""
    header = dict(headers).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())


class RestGate:
    """In front of the JSON endpoints (`paths`): the API key first, then the body's size, before anything is parsed.

    A missing or wrong key is 401 whatever the body; a body over `limit` bytes is 413, whether its
    size was declared or it arrived chunked (it is read here, up to the limit, and handed on).
    """

    def __init__(self, app, limit: int, api_key: str | None, paths: tuple[str, ...] = RERANK_PATHS):
        self.app, self.limit, self.api_key, self.paths = app, limit, api_key, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.api_key is not None and not has_api_key(scope["headers"], self.api_key):
            return await self._refuse(scope, send, 401, "missing or wrong API key: send the header "
                                      "'Authorization: Bearer <key>'", "Authorization", {"WWW-Authenticate": "Bearer"})
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, send, 413, self._too_large(), "body")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, send, 413, self._too_large(), "body")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is over this server's limit of {self.limit:,} bytes"

    async def _refuse(self, scope, send, status: int, message: str, field: str, headers: dict | None = None):
        record = scope.get("state", {}).get("record")
        response = _error_response(status, message, field, headers,
                                   request_id=record.request_id if record else None)
        await response(scope, None, send)


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


def install(app: FastAPI, models: ModelSet, settings: RestSettings, fetcher: ImageFetcher | None = None) -> None:
    """Add the rerank endpoints, their error format, the API key and the body-size limit to `app`."""
    fetcher = fetcher or ImageFetcher(settings.url_policy)

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
        location = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            location = ("body",)
        field = _field_from(location)
        return _error_response(422, f"{field}: {first.get('msg', 'invalid value')}", field,
                               request_id=_request_id(request))

    app.include_router(create_router(models, settings, fetcher))
    app.add_middleware(RestGate, limit=settings.limits.max_body_bytes, api_key=settings.api_key)
    app.add_middleware(RequestTracking)  # outermost: every answer of the rerank paths is tracked
