"""Evaluation: what reranking gains over the first-stage order on a labelled set (`lychee eval`).

One query per line:
    {"query": "text" | {"text", "image"}, "documents": ["text" | {"text", "image"}, ...],
     "relevant": [0, 3]}                 # or graded: "labels": [2, 0, 0, 1, ...], one per document
     "instruction": "..."                # optional, this query's task
Image paths are relative to the data file. The documents' order is the first-stage order (the
baseline). Prints NDCG, MRR, Recall and Hit at each k before and after reranking; `--output`
writes the same as JSON. This module is the library; the command lives in `cli.py`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .inputs import ImageRules, PixelBudget, base64_image, to_item, to_items
from .metrics import METRICS, mean_metrics, query_metrics
from .ranking import best_first
from .settings import Limits

DEFAULT_KS = (1, 5, 10)


@dataclass
class EvalQuery:
    line: int
    query: Any
    documents: list[Any]
    labels: list[int]
    instruction: str | None = None


class BadLine(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def _resolve(value: Any, base_dir: Path, field: str) -> Any:
    """A query or document of the data file, with its image path resolved inside `base_dir`.

    Image paths are relative to the data file's folder (or the uploaded zip's root) and must stay
    inside it, symlinks followed: an absolute, `~` or climbing path is refused before anything
    is looked up, so the answer never tells whether a file exists elsewhere on the server. An
    image given as data (a data URL, or base64 that decodes to an image) is data; every other
    string is a path and is checked, however long or odd.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{field}: expected a string or an object with 'text' and/or 'image'")
    image = value.get("image")
    if isinstance(image, str) and not image.strip().startswith("data:") and base64_image(image) is None:
        value = {**value, "image": str(_image_path(image, base_dir, f"{field}.image"))}
    elif image is not None and not isinstance(image, str):
        raise ValueError(f"{field}.image: expected a path (relative to the data file) or a data URL")
    return value


def _image_path(written: str, base_dir: Path, field: str) -> Path:
    outside = ValueError(f"{field}: image paths must be relative and stay inside the data's folder "
                         f"(or the zip's root); refused {written[:80]!r}")
    written = written.strip()
    if written.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", written) or "\0" in written:
        raise outside
    root = base_dir.resolve()
    path = (root / written).resolve()
    if not path.is_relative_to(root):
        raise outside
    if not path.is_file():
        raise ValueError(f"{field}: image file not found: {written[:200]} (paths are relative to the data file, "
                         "or to the images zip's root)")
    return path


def parse_line(text: str, line: int, base_dir: Path) -> EvalQuery:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadLine(line, f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise BadLine(line, "expected a JSON object")
    missing = [key for key in ("query", "documents") if key not in record]
    if missing:
        raise BadLine(line, f"missing {' and '.join(repr(k) for k in missing)}")
    documents = record["documents"]
    if not isinstance(documents, list) or not documents:
        raise BadLine(line, "'documents' must be a non-empty list")
    if ("relevant" in record) == ("labels" in record):
        raise BadLine(line, "give either 'relevant' (indices) or 'labels' (one grade per document)")
    if "labels" in record:
        labels = record["labels"]
        if not isinstance(labels, list) or len(labels) != len(documents):
            raise BadLine(line, f"'labels' must have one grade per document ({len(documents)})")
        if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in labels):
            raise BadLine(line, "'labels' must be whole numbers, 0 or more")
    else:
        relevant = record["relevant"]
        if not isinstance(relevant, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in relevant):
            raise BadLine(line, "'relevant' must be a list of document indices")
        outside = [i for i in relevant if not 0 <= i < len(documents)]
        if outside:
            raise BadLine(line, f"'relevant' has indices outside 0..{len(documents) - 1}: {outside}")
        wanted = set(relevant)
        labels = [1 if i in wanted else 0 for i in range(len(documents))]
    instruction = record.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise BadLine(line, "'instruction' must be a string")
    try:
        query = _resolve(record["query"], base_dir, "query")
        resolved = [_resolve(d, base_dir, f"documents[{i}]") for i, d in enumerate(documents)]
    except ValueError as error:
        raise BadLine(line, str(error)) from None
    return EvalQuery(line, query, resolved, labels, instruction)


def load_queries(path: Path, *, skip_bad: bool = False,
                 base_dir: Path | None = None) -> tuple[list[EvalQuery], list[dict]]:
    """The file's queries, and the lines skipped (with `skip_bad`; otherwise the first bad line raises)."""
    base_dir = base_dir or path.parent
    queries, skipped = [], []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                queries.append(parse_line(text, number, base_dir))
            except BadLine as error:
                if not skip_bad:
                    raise
                skipped.append({"line": number, "error": str(error)})
    return queries, skipped


def _preview(value: Any) -> str:
    if isinstance(value, str):
        return value[:80]
    text = value.get("text") or ""
    return (f"[image] {text}" if value.get("image") else text)[:80]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.001)


def evaluate(scorer, queries: list[EvalQuery], ks=DEFAULT_KS, *, instruction: str | None = None,
             skip_bad: bool = False, skipped: list[dict] | None = None,
             on_progress: Callable[[int, int], None] | None = None, limits: Limits | None = None,
             timeout: float | None = None, cancel=None, deadline: float | None = None) -> dict:
    """Score every query's documents and compare the reranked order with the first-stage order.

    Each query is one request under `limits` (documents, pixels before decoding, decoded pixels);
    `timeout` (seconds, or `deadline`, a `time.monotonic()` time) covers the whole run and `cancel`
    (a `threading.Event`) stops it: the scorer raises its timeout or cancel error at the next batch.
    """
    limits = limits or Limits()
    if deadline is None and timeout is not None:
        deadline = time.monotonic() + timeout
    skipped = list(skipped or [])
    per_query = []
    for done, item in enumerate(queries, start=1):
        try:
            limits.check_documents(len(item.documents))
            rules = ImageRules(max_pixels=limits.max_image_pixels, keep_pixels=scorer.max_pixels,
                               budget=PixelBudget(limits.max_request_pixels))
            query = to_item(item.query, "query", rules=rules)
            documents = to_items(item.documents, rules=rules)
            scores = scorer.score(query, documents, item.instruction or instruction, timeout=_remaining(deadline),
                                  cancel=cancel)
        except ValueError as error:
            if not skip_bad:
                raise BadLine(item.line, str(error)) from None
            skipped.append({"line": item.line, "error": f"line {item.line}: {error}"})
            continue
        first_stage = list(range(len(item.documents)))
        reranked = best_first(scores)
        per_query.append({
            "line": item.line,
            "query": _preview(item.query),
            "documents": len(item.documents),
            "relevant": sum(1 for grade in item.labels if grade > 0),
            "scores": scores,
            "ranking": reranked,
            "first_stage": query_metrics(first_stage, item.labels, ks),
            "reranked": query_metrics(reranked, item.labels, ks),
        })
        if on_progress is not None:
            on_progress(done, len(queries))
    first = mean_metrics([q["first_stage"] for q in per_query])
    after = mean_metrics([q["reranked"] for q in per_query])
    return {
        "model": scorer.model_name,
        "k": list(ks),
        "queries": len(per_query),
        "queries_without_relevant": sum(1 for q in per_query if q["relevant"] == 0),
        "skipped": skipped,
        "first_stage": first,
        "reranked": after,
        "difference": {key: after[key] - first[key] for key in first},
        "per_query": per_query,
    }


def evaluate_models(scorers: dict[str, Any], queries: list[EvalQuery], ks=DEFAULT_KS, *,
                    instruction: str | None = None, skip_bad: bool = False, skipped: list[dict] | None = None,
                    on_progress: Callable[[int, int], None] | None = None, limits: Limits | None = None,
                    timeout: float | None = None, cancel=None) -> dict:
    """`evaluate` for several models on the same queries: one first stage, each model's metrics and gain.

    Each model's entry under "models" is exactly what `evaluate` reports for it alone.
    """
    reports, total = {}, len(queries) * len(scorers)
    deadline = time.monotonic() + timeout if timeout is not None else None
    for position, (name, scorer) in enumerate(scorers.items()):
        done_before = position * len(queries)
        progress = (lambda done, _total, offset=done_before: on_progress(offset + done, total)) if on_progress else None
        reports[name] = evaluate(scorer, queries, ks, instruction=instruction, skip_bad=skip_bad, skipped=skipped,
                                 on_progress=progress, limits=limits, cancel=cancel, deadline=deadline)
    first = next(iter(reports.values()))
    return {
        "k": list(ks),
        "queries": first["queries"],
        "queries_without_relevant": first["queries_without_relevant"],
        "skipped": first["skipped"],
        "first_stage": first["first_stage"],
        "models": {name: {key: report[key] for key in ("model", "reranked", "difference", "per_query")}
                   for name, report in reports.items()},
    }


def metric_keys(ks) -> list[str]:
    return [f"{name}@{k}" for name in METRICS for k in ks]


def format_table(report: dict) -> str:
    """The metrics table of one model's report, or of several models' (`evaluate_models`)."""
    if "models" in report:
        names = list(report["models"])
        lines = ["| metric | first stage | " + " | ".join(names) + " | " + " | ".join(f"change {n}" for n in names) + " |",
                 "| --- |" + " ---: |" * (1 + 2 * len(names))]
        for key in metric_keys(report["k"]):
            if key in report["first_stage"]:
                models = [report["models"][name] for name in names]
                lines.append(f"| {key} | {report['first_stage'][key]:.4f} | "
                             + " | ".join(f"{m['reranked'][key]:.4f}" for m in models) + " | "
                             + " | ".join(f"{m['difference'][key]:+.4f}" for m in models) + " |")
    else:
        lines = ["| metric | first stage | reranked | change |", "| --- | ---: | ---: | ---: |"]
        for key in metric_keys(report["k"]):
            if key in report["first_stage"]:
                lines.append(f"| {key} | {report['first_stage'][key]:.4f} | {report['reranked'][key]:.4f} | "
                             f"{report['difference'][key]:+.4f} |")
    notes = [f"{report['queries']} queries"]
    if report["queries_without_relevant"]:
        notes.append(f"{report['queries_without_relevant']} with no relevant document (they score 0)")
    if report["skipped"]:
        notes.append(f"{len(report['skipped'])} lines skipped")
    return "\n".join(lines) + "\n\n" + ", ".join(notes)


def parse_ks(text: str) -> list[int]:
    """Cutoffs from text like "1,5,10"; a `ValueError` for anything else."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"k: expected whole numbers separated by commas, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError("k: cutoffs must be 1 or more")
    return ks
