"""`POST /v1/search`: a collection searched by embedding, the reranker over the first stage's best (search/).

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

from ..search.searching import search
from ..service import Service
from .json_inputs import read_json, request_images

SEARCH_PATH = "/v1/search"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    collection: str = Field(..., description="the collection's name (lychee index --collection NAME)")
    query: str | dict[str, Any] = Field(..., description="text, {text, image} or {content: [...]}")
    top_k: Any = Field(20, description="the first stage's best k by embedding (1 to 1000)")
    rerank_top_n: Any = Field(10, description="how many of them the reranker orders (0: none)")
    instruction: str | None = Field(None, description="the reranker's task (default: the model's own)")
    model: str | None = Field(None, description="which served reranker (default: the first)")


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

    router.add_api_route(SEARCH_PATH, search_collection, methods=["POST"], summary="Search a collection")
    return router
