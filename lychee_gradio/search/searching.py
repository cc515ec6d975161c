"""One search of a collection (`/v1/search`): the query embedded, the collection's nearest items by cosine (the
first stage, best first), then the reranker over the first `rerank_top_n` of them, best first, each with both
scores and its part. The candidates are read from the files the collection was indexed from, each checked to lie
inside the folder it was indexed from (a point can never send the server elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..contract import InputError
from .store import Hit, Store

MAX_TOP_K = 1000
MAX_TEXT_BYTES = 4 << 20  # a text file read for reranking: at most this much of it


def check_counts(top_k: Any, rerank_top_n: Any) -> tuple[int, int]:
    for name, value, low in (("top_k", top_k, 1), ("rerank_top_n", rerank_top_n, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_TOP_K:
            raise InputError(name, "search_count", value=str(value)[:40], low=low, limit=MAX_TOP_K)
    return top_k, min(rerank_top_n, top_k)


def document_of(store: Store, hit: Hit) -> dict:
    """The candidate's file as a document (its page, for a PDF's), from inside the folder it was indexed from, a
    folder the server may read (`Store.may_read`: the uploads, and `--collections-dir`'s folders where named)."""
    root = Path(hit.root).resolve()
    path = (root / hit.path).resolve()
    if not store.may_read(hit.root):
        raise InputError("collection", "search_outside")
    if not path.is_relative_to(root) or not path.is_file():
        raise InputError("collection", "search_file_gone", path=hit.path)
    if hit.kind == "text":
        with path.open("rb") as handle:
            return {"text": handle.read(MAX_TEXT_BYTES).decode("utf-8", errors="replace")}
    if hit.kind == "page":
        return {"pdf": path, "page": hit.page}
    return {"video" if hit.kind == "clip" else "image": str(path)}


def shown(hit: Hit) -> dict:
    """A hit as the answer names it: its id, its path (relative to its folder) and its PDF page."""
    return {"id": hit.id, "path": hit.path, **({"page": hit.page} if hit.page is not None else {})}


def first_stage(req, store: Store, embedder, collection: str, query: Any, top_k: int):
    """The query as an item, and the collection's `top_k` nearest hits to its embedding, best first."""
    store.require(collection)
    query_item, _ = req.read(query, [], embedder)
    (vector,) = embedder.embed_items([query_item], context=req.context).tolist()
    hits = store.search(collection, vector, top_k)
    if not all(store.may_read(hit.root) for hit in hits):  # the operator's folder outside --collections-dir: not even names
        raise InputError("collection", "search_outside")
    return query_item, hits


def read_hits(req, store: Store, scorer, query: Any, hits: list[Hit], field: str = "rerank_top_n"):
    """The hits' files as items (under the request's limits: at most --max-documents of them, `field` says how many
    were asked), for the reranker and the page's thumbnails."""
    if not hits:
        return []
    req.check_count(len(hits), field)
    _, items = req.read(query, [document_of(store, hit) for hit in hits], scorer, fields=[hit.path for hit in hits])
    return items


def rerank_hits(req, scorer, query_item, hits: list[Hit], items, instruction=None) -> list[tuple[int, dict]]:
    """The reranker's order of `hits` (read as `items`), best first: (the hit's index, its row with both scores and
    its part)."""
    if not hits:
        return []
    results = []
    for index, pair in req.rerank(scorer, query_item, items, instruction).results:
        hit = hits[index]
        part = pair.part.as_dict() if pair.part is not None else ({"kind": "page", "page": hit.page} if hit.page else None)
        row = {**shown(hit), "relevance_score": pair.score, "first_stage_score": hit.score, **({"part": part} if part else {})}
        results.append((index, row))
    return results


def search(req, store: Store, embedder, scorer, collection: str, query: Any, top_k=20, rerank_top_n=10, instruction=None):
    """See the module: the answer's `first_stage` and `results`."""
    top_k, rerank_top_n = check_counts(top_k, rerank_top_n)
    query_item, hits = first_stage(req, store, embedder, collection, query, top_k)
    candidates = hits[:rerank_top_n]
    results = rerank_hits(req, scorer, query_item, candidates, read_hits(req, store, scorer, query, candidates), instruction)
    first = [{**shown(hit), "score": hit.score} for hit in hits]
    return {"collection": collection, "first_stage": first, "results": [row for _, row in results]}
