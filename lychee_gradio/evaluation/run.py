"""Running a labelled set through one model or several, and the report: one shape, one table.

The report, whatever the number of models:

    {"k": [1, 5, 10], "queries": 40, "queries_without_relevant": 0, "skipped": [{"line", "error"}],
     "first_stage": {"NDCG@1": ..., ...},
     "models": {"<name>": {"model": "<as loaded>", "reranked": {...}, "difference": {...}, "per_query": [...]}}}

`report_table` renders it for the terminal (`lychee eval`) and, with translated words, for the page.
"""

from __future__ import annotations

from typing import Any, Callable

from ..calibration import pair_kind
from ..config import Limits
from ..contract import InputError, RequestContext
from ..ranking import best_first
from ..registry import display_name
from .data import BadLine, EvalQuery
from .metrics import METRICS, mean_metrics, query_metrics

DEFAULT_KS = (1, 5, 10)

# The table's words in English: `lychee eval` prints these; the page passes its own (both languages).
ENGLISH = {
    "col_metric": "metric",
    "col_first_stage": "first stage",
    "col_change_of": "change {name}",
    "eval_queries": "{count} queries",
    "eval_no_relevant": "{count} with no relevant document (they score 0)",
    "eval_skipped": "{count} lines skipped",
}


def english(key: str, **values: Any) -> str:
    return ENGLISH[key].format(**values)


def _preview(value: Any) -> str:
    if isinstance(value, str):
        return value[:80]
    text = value.get("text") or ""
    return (f"[image] {text}" if value.get("image") else text)[:80]


def metric_keys(ks) -> list[str]:
    return [f"{name}@{k}" for name in METRICS for k in ks]


def _one_model(
    scorer,
    queries: list[EvalQuery],
    ks,
    instruction: str | None,
    skip_bad: bool,
    skipped: list[BadLine],
    progress: Callable[[int], None],
    limits: Limits,
    context: RequestContext,
    read: Callable,
) -> list[dict]:
    """Each query's scores and metrics for one scorer (a line that fails is skipped or raises)."""
    per_query = []
    for done, item in enumerate(queries, start=1):
        line = context.use(scorer)  # one line is one request: its own pixel budget, the run's deadline
        try:
            query, documents = read(limits, line, item.query, item.documents, scorer.max_pixels)
            pairs = scorer.score_with_logits(query, documents, item.instruction or instruction, context=line)
            scores = [pair.score for pair in pairs]
            # Each pair's modalities, for calibration (`lychee eval --calibrate`): a long document's by its best part.
            kinds = [pair_kind(query, document, pair.part) for document, pair in zip(documents, pairs)]
        except InputError as error:
            if not skip_bad:
                raise BadLine(item.line, error) from None
            if all(bad.line != item.line for bad in skipped):
                skipped.append(BadLine(item.line, error))
            continue
        finally:
            line.close()
        reranked = best_first(scores)
        per_query.append(
            {
                "line": item.line,
                "query": _preview(item.query),
                "documents": len(item.documents),
                "relevant": sum(1 for grade in item.labels if grade > 0),
                "scores": scores,
                "labels": list(item.labels),
                "kinds": kinds,
                "ranking": reranked,
                "first_stage": query_metrics(list(range(len(item.documents))), item.labels, ks),
                "reranked": query_metrics(reranked, item.labels, ks),
            }
        )
        progress(done)
    return per_query


def evaluate(
    scorers,
    queries: list[EvalQuery],
    ks=DEFAULT_KS,
    *,
    instruction: str | None = None,
    skip_bad: bool = False,
    skipped: list[BadLine] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    limits: Limits | None = None,
    context: RequestContext | None = None,
    read: Callable | None = None,
) -> dict:
    """Score every query's documents with each model and compare its order with the first stage.

    `scorers`: one scorer, or `{name: scorer}` (several side by side; each model's entry is what it
    gives alone). Each query is one request under `limits` (documents, pixels before decoding,
    decoded pixels); `context` carries one deadline for the whole run and its Stop event (the scorer
    raises at the next batch). Queries that fail on one model are left out for every model, so the
    first stage and the models are measured on the same queries. `read(limits, context, query, documents,
    keep_pixels)` turns a line's values into items: the request service's (`inputs.read_items`), which hands it
    in; evaluation itself knows no service.
    """
    if read is None:
        raise TypeError("evaluate() needs read=: the request service's read_items (Request.evaluate hands it in)")
    if not isinstance(scorers, dict):
        scorers = {getattr(scorers, "model_name", "model"): scorers}
    limits = limits or Limits()
    context = context or RequestContext()
    skipped = list(skipped or [])
    total = len(queries) * len(scorers)
    runs = {}
    for position, (name, scorer) in enumerate(scorers.items()):

        def progress(done: int, offset: int = position * len(queries)) -> None:
            if on_progress is not None:
                on_progress(offset + done, total)

        runs[name] = (scorer, _one_model(scorer, queries, ks, instruction, skip_bad, skipped, progress, limits, context, read))
    kept = set.intersection(*({q["line"] for q in per_query} for _, per_query in runs.values()))
    models = {}
    first = None
    for name, (scorer, per_query) in runs.items():
        per_query = [q for q in per_query if q["line"] in kept]
        first = mean_metrics([q["first_stage"] for q in per_query])
        after = mean_metrics([q["reranked"] for q in per_query])
        models[name] = {
            "model": display_name(scorer.model_name),
            "reranked": after,
            "difference": {key: after[key] - first[key] for key in first},
            "per_query": per_query,
        }
    some = next(iter(runs.values()))[1]
    kept_queries = [q for q in some if q["line"] in kept]
    return {
        "k": list(ks),
        "queries": len(kept_queries),
        "queries_without_relevant": sum(1 for q in kept_queries if q["relevant"] == 0),
        "skipped": [line.as_dict() for line in sorted(skipped, key=lambda line: line.line)],
        "first_stage": first or {},
        "models": models,
    }


def report_table(report: dict, words: Callable[..., str] = english) -> str:
    """The metrics table (first stage, each model, each model's change) and its summary line.

    `words(key, **values)` gives the table's words: English by default, the page's language on the page.
    """
    names = list(report["models"])
    keys = [key for key in metric_keys(report["k"]) if key in report["first_stage"]]
    lines = [
        f"| {words('col_metric')} | {words('col_first_stage')} | "
        + " | ".join(names)
        + " | "
        + " | ".join(words("col_change_of", name=name) for name in names)
        + " |",
        "| --- |" + " ---: |" * (1 + 2 * len(names)),
    ]
    for key in keys:
        entries = [report["models"][name] for name in names]
        lines.append(
            f"| {key} | {report['first_stage'][key]:.4f} | "
            + " | ".join(f"{m['reranked'][key]:.4f}" for m in entries)
            + " | "
            + " | ".join(f"{m['difference'][key]:+.4f}" for m in entries)
            + " |"
        )
    notes = [words("eval_queries", count=report["queries"])]
    if report["queries_without_relevant"]:
        notes.append(words("eval_no_relevant", count=report["queries_without_relevant"]))
    if report["skipped"]:
        notes.append(words("eval_skipped", count=len(report["skipped"])))
    return "\n".join(lines) + "\n\n" + ", ".join(notes)
