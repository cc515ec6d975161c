"""The other dialects rerankers are called in: text-embeddings-inference's `POST /rerank` (and `GET /info`), and
vLLM's score API `POST /score` and `/v1/score`.

Each route only translates: its JSON into the request service (`service.py`: the same model choice, limits, image
rules, caches and telemetry as `/v1/rerank`), and the scores back into its dialect's answer. `POST /rerank` is
shared with the Cohere / Jina format: a body with `documents` is theirs, one with `texts` is TEI's
(`http_api.rerank_any` picks).

TEI: `{"query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction"}` →
`[{"index", "score", "text"?}]`, best first; `raw_scores` gives the yes − no logit (the score is its sigmoid);
`truncate: false` refuses a text over the model's text budget with a 413 (absent or true: the text is cut, as
`/v1/rerank` does). vLLM: `{"model", "text_1", "text_2"}`, each a string, a `{"content": [...]}` object or a list
of them; one `text_1` against every `text_2`, or equal-length lists scored pair by pair →
`{"id", "object": "list", "created", "model", "data": [{"index", "object": "score", "score"}], "usage"}`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ..contract import InputError
from ..service import Service
from .json_inputs import image_fields, request_item

TEI_PATH = "/rerank"
SCORE_PATHS = ("/v1/score", "/score")
INFO_PATH = "/info"


class TeiRerankRequest(BaseModel):
    """text-embeddings-inference's rerank request. `model` and `instruction` are lychee extensions."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(..., description="the query text")
    texts: list[str] = Field(..., description="the texts to rank")
    raw_scores: bool = Field(False, description="the yes − no logit instead of p(yes)")
    return_text: bool = Field(False, description="echo each text")
    truncate: bool | None = Field(
        None,
        description="false: refuse a text over the model's budget (413); true: cut it; absent: the server's "
        "--long-documents (by default a long text scores as its best chunk)",
    )
    truncation_direction: str | None = Field(None, description="Right (the only one supported)")
    model: str | None = Field(None, description="which served model (default: the first)")
    instruction: str | None = Field(None, description="the task (default: the model's own)")
    min_score: float | str | None = Field(None, description='leave out the texts below: a score, "relevant" or "partly"')


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class ScoreRequest(BaseModel):
    """vLLM's score request. `instruction` and `max_pixels` are lychee extensions; `truncate_prompt_tokens` cuts
    each document's text at that many tokens (absent: the server's --long-documents, as on /v1/rerank)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="which served model (default: the first)")
    text_1: str | dict[str, Any] | list[Any] = Field(
        ..., description="the query: a string, {content: [...]} or a list (one, or one per text_2)"
    )
    text_2: str | dict[str, Any] | list[Any] = Field(
        ...,
        description="the documents: a string, a list of strings "
        "or {content: [...]} objects, or one "
        "{content: [...]} whose parts are documents",
    )
    instruction: str | None = Field(None, description="the task (default: the model's own)")
    max_pixels: int | None = Field(None, ge=1, description="bound on each image's pixels for this request")
    truncate_prompt_tokens: int | None = Field(None, ge=1, description="cut each document's text at this many tokens")


class ScoreData(BaseModel):
    index: int
    object: str = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: dict[str, int]


def _side(value: Any) -> list[Any]:
    """One side of a vLLM score request as a list of queries or documents: a string is one, a list is each of
    its items, and one `{"content": [...]}` object is each of its parts (vLLM's multimodal form)."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        return [{"content": [part]} for part in value["content"]]
    return [value]


def score_pairs(text_1: Any, text_2: Any) -> tuple[list[Any], list[Any], list[int]]:
    """(queries, documents, the query of each document) of a vLLM score request."""
    queries, documents = _side(text_1), _side(text_2)
    if not queries:
        raise InputError("text_1", "score_empty")
    if len(queries) == 1:
        return queries, documents, [0] * len(documents)
    if len(queries) != len(documents):
        raise InputError("text_1", "score_lengths", first=len(queries), second=len(documents))
    distinct: dict[str, int] = {}
    kept, owner = [], []
    for query in queries:  # the same query in several pairs: read and prefix-reused once
        key = json.dumps(query, sort_keys=True)
        if key not in distinct:
            distinct[key] = len(kept)
            kept.append(query)
        owner.append(distinct[key])
    return kept, documents, owner


def create_dialect_router(service: Service, opened: Callable, client_of: Callable) -> tuple[APIRouter, Callable]:
    """`/info` and vLLM's score routes, and TEI's rerank handler (for the shared `/rerank` route to call).
    `opened(request)` opens the request-service request of an HTTP request; `client_of` names its client."""
    router = APIRouter(tags=["other dialects"])
    models = service.models

    async def tei_rerank(body: TeiRerankRequest, request: Request) -> Response:
        request.state.dialect = "tei"
        with opened(request) as req:
            scorer = req.model(body.model)
            if body.truncation_direction is not None and body.truncation_direction.lower() != "right":
                raise InputError("truncation_direction", "truncation_direction", value=body.truncation_direction)
            req.check_count(len(body.texts), "texts")
            echo = req.limits.max_echo_chars

            def work() -> bytes:  # TEI's texts are text, whatever they spell (a "data:image/..." string included)
                query, items = req.read({"text": body.query}, [{"text": text} for text in body.texts], scorer, field="texts")
                # TEI's truncate (true: cut, false: refuse) is "truncate" with the refusal below; absent: the server's.
                ranked = req.rerank(
                    scorer,
                    query,
                    items,
                    body.instruction,
                    long_documents="truncate" if body.truncate is not None else None,
                    min_score=body.min_score,
                )
                if body.truncate is False:
                    for i, pair in sorted(ranked.results):
                        if pair.truncated:
                            field = "query" if pair.truncated.startswith("query") else f"texts[{i}]"
                            raise InputError(field, "text_too_long", limit=getattr(scorer, "max_text_tokens", "?"))
                answer = [
                    {
                        "index": i,
                        "score": pair.yes_logit - pair.no_logit if body.raw_scores else pair.score,
                        **({"text": body.texts[i][:echo]} if body.return_text else {}),
                    }
                    for i, pair in ranked.results
                ]
                return json.dumps(answer, ensure_ascii=False).encode("utf-8")

            return Response(await run_in_threadpool(work), media_type="application/json")

    async def info(request: Request) -> dict:
        """text-embeddings-inference's `/info`, as far as its clients read it: the default model, as a reranker."""
        scorer = models.get(None)
        return {
            "model_id": models.name_of(scorer),
            "model_sha": None,
            "model_dtype": getattr(scorer, "precision", None),
            "model_type": {"reranker": {"id2label": {"0": "yes"}, "label2id": {"yes": 0}}},
            "max_concurrent_requests": None,
            "max_input_length": getattr(scorer, "max_text_tokens", None),
            "max_batch_tokens": None,
            "max_client_batch_size": service.config.limits.max_documents,
            "tokenization_workers": None,
            "version": "lychee-gradio",
            "models": list(models.names),
        }

    router.add_api_route(INFO_PATH, info, methods=["GET"], summary="TEI's /info: the default model, as a reranker")

    async def score(body: ScoreRequest, request: Request) -> Response:
        """Score pairs (vLLM's score API): one text_1 against every text_2, or pair by pair."""
        with opened(request) as req:
            scorer = req.model(body.model)
            queries, documents, owner = score_pairs(body.text_1, body.text_2)
            req.check_count(len(documents), "text_2")
            req.check_max_pixels(scorer, body.max_pixels)

            def query_field(k: int) -> str:
                return "text_1" if len(queries) == 1 and not isinstance(body.text_1, list) else f"text_1[{k}]"

            wanted = [pair for k, query in enumerate(queries) for pair in image_fields(query, query_field(k))]
            wanted += [pair for i, document in enumerate(documents) for pair in image_fields(document, f"text_2[{i}]")]
            fetched = await req.fetch(wanted, client_of(request))

            def work() -> bytes:
                read_queries = [request_item(query, query_field(k), fetched) for k, query in enumerate(queries)]
                read_documents = [request_item(d, f"text_2[{i}]", fetched) for i, d in enumerate(documents)]
                # One read of every query and document: one pixel budget and one share of the memory pool.
                first, items = req.read(
                    read_queries[0],
                    read_queries[1:] + read_documents,
                    scorer,
                    field="text_2",
                    max_pixels=body.max_pixels,
                    query_field=query_field(0),
                    fields=[query_field(k) for k in range(1, len(queries))] + [f"text_2[{i}]" for i in range(len(documents))],
                    long_documents="truncate" if body.truncate_prompt_tokens else None,
                )
                query_items, items = [first] + items[: len(queries) - 1], items[len(queries) - 1 :]
                scores: list[float] = [0.0] * len(items)
                for k, query_item in enumerate(query_items):
                    mine = [i for i, o in enumerate(owner) if o == k]
                    pairs = req.score(
                        scorer,
                        query_item,
                        [items[i] for i in mine],
                        body.instruction,
                        max_pixels=body.max_pixels,
                        long_documents="truncate" if body.truncate_prompt_tokens else None,
                        chunk_tokens=body.truncate_prompt_tokens,
                    )
                    for i, pair in zip(mine, pairs):
                        scores[i] = pair.score
                tokens = req.context.use(scorer).stats.tokens
                return json.dumps(
                    {
                        "id": f"score-{req.record.request_id}",
                        "object": "list",
                        "created": int(time.time()),
                        "model": models.name_of(scorer),
                        "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
                    }
                ).encode("utf-8")

            return Response(await run_in_threadpool(work), media_type="application/json")

    for path in SCORE_PATHS:
        router.add_api_route(
            path,
            score,
            methods=["POST"],
            response_model=ScoreResponse,
            include_in_schema=path == SCORE_PATHS[0],
            summary="Score pairs (vLLM's score API)",
        )
    return router, tei_rerank
