"""`POST /v1/search`: a collection searched by embedding, the reranker over the first stage's best (search/);
`POST /v1/index`: files a caller sends, indexed into a collection (search/uploads.py); `GET /v1/collections`.

`{"collection", "query", "top_k": 20, "rerank_top_n": 10, "instruction", "model"}` answers `{"collection",
"first_stage": [{"id", "path", "page"?, "score"}], "results": [{"id", "path", "page"?, "relevance_score",
"first_stage_score", "part"?}]}`, both best first. The query is text, `{text, image}` or `{content}` as
/v1/rerank takes it; the collections are those `lychee index` made in the server's data directory.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ..contract import InputError
from ..search.searching import search
from ..search.uploads import Upload, index_uploads
from ..service import Service
from .json_inputs import image_bytes, pdf_bytes, read_json, request_images, video_bytes

SEARCH_PATH = "/v1/search"
INDEX_PATH = "/v1/index"
COLLECTIONS_PATH = "/v1/collections"
# What one document sent to /v1/index holds (one of them), and the kind it is kept as.
DOCUMENT_KINDS = {"text": "text", "image": "image", "pdf": "page", "video": "clip"}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    collection: str = Field(..., description="the collection's name (lychee index --collection NAME)")
    query: str | dict[str, Any] = Field(..., description="text, {text, image} or {content: [...]}")
    top_k: Any = Field(20, description="the first stage's best k by embedding (1 to 1000)")
    rerank_top_n: Any = Field(10, description="how many of them the reranker orders (0: none)")
    instruction: str | None = Field(None, description="the reranker's task (default: the model's own)")
    model: str | None = Field(None, description="which served reranker (default: the first)")


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    collection: str = Field(..., description="the collection's name (made if new)")
    documents: list[Any] = Field(
        ...,
        description='strings, or objects with one of "text", "image", "pdf", "video" '
        '(data URLs or base64; an image URL where the server fetches them) and a "name"',
    )


def upload_of(value: Any, index: int, fetched: dict[str, bytes]) -> Upload:
    """One document of /v1/index as an upload: its one kind of content, as bytes (never a path), and its name."""
    field = f"documents[{index}]"
    if isinstance(value, str):
        return Upload(f"document-{index}.txt", "text", value)
    if not isinstance(value, dict):
        raise InputError(field, "expected_string_or_object", type=type(value).__name__)
    keys = [key for key in DOCUMENT_KINDS if value.get(key) is not None]
    if len(keys) != 1:
        raise InputError(field, "index_one_kind", got=", ".join(keys) or "none")
    key, name = keys[0], value.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{field}.name", "expected_string", type=type(name).__name__)
    if key == "text":
        if not isinstance(value["text"], str):
            raise InputError(f"{field}.text", "expected_string", type=type(value["text"]).__name__)
        data = value["text"]
    else:
        read = {"image": image_bytes, "video": video_bytes}.get(key)
        where = f"{field}.{key}"
        data = read(value[key], where, fetched) if read else pdf_bytes(value[key], where)
    return Upload(name or f"document-{index}", DOCUMENT_KINDS[key], data)


def create_search_router(service: Service, opened: Callable, client_of: Callable) -> APIRouter:
    router = APIRouter(tags=["search"])

    async def search_collection(body: SearchRequest, request: Request) -> Response:
        """Search a collection: its nearest items by embedding, then the reranker over the best of them."""
        with opened(request) as req:
            scorer, embedder = req.model(body.model), req.embedder(None)
            store = service.collections()
            fetched = await req.fetch(request_images(body.query, []), client_of(request))

            def work() -> bytes:
                query, _ = read_json(body.query, [], fetched)
                found = search(
                    req, store, embedder, scorer, body.collection, query, body.top_k, body.rerank_top_n, body.instruction
                )
                return json.dumps({"id": req.record.request_id, "model": service.models.name_of(scorer), **found}).encode()

            return Response(await run_in_threadpool(work), media_type="application/json")

    async def index_documents(body: IndexRequest, request: Request) -> Response:
        """Index documents sent as data (never a server path) into a collection: embedded once, kept in the
        collection's own folder, searchable at once."""
        with opened(request) as req:
            embedder = req.embedder(None)
            store = service.collections()
            req.check_count(len(body.documents))
            fetched = await req.fetch(request_images(None, body.documents), client_of(request))

            def work() -> bytes:
                uploads = [upload_of(value, i, fetched) for i, value in enumerate(body.documents)]
                done = index_uploads(req, store, embedder, body.collection, uploads)
                answer = {"id": req.record.request_id, "collection": body.collection, **done.as_dict()}
                return json.dumps(answer).encode()

            return Response(await run_in_threadpool(work), media_type="application/json")

    def list_collections() -> Response:
        """The collections this server searches, each with its number of items."""
        store = service.collections()
        found = [{"name": name, "items": store.count(name)} for name in store.names()]
        return Response(json.dumps({"collections": found}).encode(), media_type="application/json")

    router.add_api_route(SEARCH_PATH, search_collection, methods=["POST"], summary="Search a collection")
    router.add_api_route(INDEX_PATH, index_documents, methods=["POST"], summary="Index documents into a collection")
    router.add_api_route(COLLECTIONS_PATH, list_collections, methods=["GET"], summary="The collections")
    return router
