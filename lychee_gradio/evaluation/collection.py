"""Search evaluated end to end (`lychee eval --collection`): on a labelled set whose documents are a collection's
files, Recall@k, NDCG@k and MRR@k of the first stage (the embedding model's order) against the same after the
reranker orders the first stage's best `rerank_top_n`: what the reranker adds to the user's own search.

One query per line:
    {"query": "text" | {"text", "image"}, "relevant": ["photos/cup.png", "papers/cups.pdf#page=3"]}
    or graded: "labels": {"photos/cup.png": 2, "papers/cups.pdf": 1}
    "instruction": "..."                 # optional, this query's task
Paths are the collection's, as /v1/search answers them (relative to the folder they were indexed from); a PDF named
without a page counts any one of its pages (once). An image in the query is a path relative to the data file.
Recall@k: the share of a query's labelled files found in the first k; NDCG uses each label's grade once, at its first
match; a query with no label found scores 0 and still counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..contract import InputError
from ..search.searching import search
from .data import BadLine, _bad, _resolve, lines_of
from .metrics import mrr_at_k, ndcg_at_k, recall_at_k


@dataclass
class SearchQuery:
    line: int
    query: Any
    labels: dict[str, int]
    instruction: str | None = None


def parse_search_line(text: str, line: int, base_dir: Path) -> SearchQuery:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad(line, "bad_json", reason=error.msg, column=error.colno) from None
    if not isinstance(record, dict) or "query" not in record:
        raise _bad(line, "missing_keys", keys="'query'")
    if ("relevant" in record) == ("labels" in record):
        raise _bad(line, "relevant_or_labels")
    if "relevant" in record:
        relevant = record["relevant"]
        if not isinstance(relevant, list) or not relevant or not all(isinstance(p, str) and p for p in relevant):
            raise _bad(line, "search_relevant")
        labels = dict.fromkeys(relevant, 1)
    else:
        labels = record["labels"]
        valid = isinstance(labels, dict) and labels and all(isinstance(p, str) for p in labels)
        if not valid or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in labels.values()):
            raise _bad(line, "search_relevant")
    instruction = record.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise _bad(line, "instruction_string")
    try:
        query = _resolve(record["query"], base_dir, "query")
    except InputError as error:
        raise BadLine(line, error) from None
    return SearchQuery(line, query, {path.strip(): grade for path, grade in labels.items()}, instruction)


def load_search_queries(path: Path) -> list[SearchQuery]:
    """The file's queries; the first bad line raises its `BadLine`."""
    return [parse_search_line(text, number, path.parent) for number, text in lines_of(path)]


def label_of(row: dict, labels: dict[str, int]) -> str | None:
    """The label a result matches: its page's ("paper.pdf#page=3"), else its file's, else none."""
    page = f"{row['path']}#page={row['page']}" if row.get("page") else None
    return page if page in labels else row["path"] if row["path"] in labels else None


def query_scores(rows: Sequence[dict], labels: dict[str, int], ks: Sequence[int]) -> dict[str, float]:
    """Recall, NDCG and MRR at each k of one ranked list (see the module), by metrics.py's rules: the labels are the
    documents (those never found count too), each result the label it matches first, or a document of grade 0."""
    names = list(labels)
    grades = [labels[name] for name in names]
    ranking, seen = [], set()
    for row in rows:
        label = label_of(row, labels)
        if label is not None and label not in seen:
            seen.add(label)
            ranking.append(names.index(label))
        else:
            grades.append(0)
            ranking.append(len(grades) - 1)
    return {
        f"{name}@{k}": measure(ranking, grades, k)
        for k in ks
        for name, measure in (("recall", recall_at_k), ("ndcg", ndcg_at_k), ("mrr", mrr_at_k))
    }


def mean(per_query: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(q[key] for q in per_query) / len(per_query) for key in per_query[0]} if per_query else {}


def evaluate_collection(
    req,
    store,
    embedder,
    scorer,
    collection: str,
    queries: list[SearchQuery],
    ks: Sequence[int] = (1, 5, 10),
    top_k: int = 100,
    rerank_top_n: int = 20,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Each query searched as /v1/search does (`search`), measured before and after the reranker (see the module)."""
    first_scores, reranked_scores, rows = [], [], []
    for done, query in enumerate(queries, start=1):
        found = search(req, store, embedder, scorer, collection, query.query, top_k, rerank_top_n, query.instruction)
        first = found["first_stage"]
        ordered = {row["id"] for row in found["results"]}
        reranked = found["results"] + [row for row in first if row["id"] not in ordered]  # the rest as the first stage
        first_scores.append(query_scores(first, query.labels, ks))
        reranked_scores.append(query_scores(reranked, query.labels, ks))
        rows.append({"line": query.line, "first_stage": first_scores[-1], "reranked": reranked_scores[-1]})
        if on_progress is not None:
            on_progress(done, len(queries))
    return {
        "collection": collection,
        "queries": len(queries),
        "top_k": top_k,
        "rerank_top_n": rerank_top_n,
        "first_stage": mean(first_scores),
        "reranked": mean(reranked_scores),
        "per_query": rows,
    }


def collection_table(report: dict) -> str:
    """The report as a table: each metric of the first stage, after reranking, and the change."""
    lines = [
        f"{report['collection']}: {report['queries']} queries, first stage top {report['top_k']}, "
        f"reranked the first {report['rerank_top_n']}",
        f"{'metric':<12}{'first stage':>13}{'reranked':>11}{'change':>9}",
    ]
    for key, value in report["first_stage"].items():
        after = report["reranked"][key]
        lines.append(f"{key:<12}{value:>13.3f}{after:>11.3f}{after - value:>+9.3f}")
    return "\n".join(lines)
