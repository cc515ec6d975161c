"""The Gradio app: Single, Batch rerank, Image ranking, Compare and Evaluate tabs over the served models.

`build_demo(scorer)` lays out the page, one builder function per tab; each tab's button calls a
plain handler that is also a named API endpoint (`/score`, `/rerank`, `/rank_images`,
`/evaluate`), so `gradio_client` scripts get what the page shows plus structured JSON. The view
functions below do the formatting and know nothing of Gradio; they write in the browser's
language (labels.py). The handlers only add the request's timeout, Stop and language, and turn
errors into `gr.Error`.
"""

from __future__ import annotations

import contextvars
import csv
import functools
import json
import os
import re
import tempfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr
from gradio.context import LocalContext
from gradio.i18n import I18nData

from . import evaluation, telemetry
from .inputs import ImageRules, PixelBudget, to_item
from .labels import TRANSLATIONS, language, reason, text
from .metrics import kendall_tau, top_k_overlap
from .prompt import INSTRUCTION_PRESETS
from .ranking import best_first, check_top_n
from .registry import ModelSet
from .scorer import (LycheeScorer, ScoreStats, ScorerBusyError, ScoringCancelledError, ScoringOutOfMemoryError,
                     ScoringTimeoutError)
from .settings import Limits

ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # sample images and data, shipped in the package
I18N = gr.I18n(**TRANSLATIONS)

_SEPARATOR_RE = re.compile(r"^[ \t]*---+[ \t]*$", re.MULTILINE)
_IMAGE_REF_RE = re.compile(r"\[image:\s*([^\]]+?)\s*\]", re.IGNORECASE)


class PageError(ValueError):
    """Bad input, worded for the page in the browser's language."""


class UnreadableUpload(str):
    """The name of an upload that is not an image: `ImageBox` hands it on, the view says so in the
    page's language (a component cannot know the browser's language)."""


# -- reading a score (docs/design.md, "Reading a score") ---------------------------------------------


def verdict(score: float, lang: str = "en") -> dict[str, str]:
    colour = "green" if score >= 0.7 else "yellow" if score >= 0.4 else "red"
    mark = {"green": "🟢", "yellow": "🟡", "red": "🔴"}[colour]
    return {"colour": colour, "mark": mark, "verdict": text(f"verdict_{colour}", lang)}


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~$])")


def _cell(value: str, limit: int = 90) -> str:
    """A document as one table cell: one line, cut to `limit` characters, Markdown shown as typed."""
    flat = " ".join(value.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat).replace("<", "&lt;")


def _move(index: int, rank: int) -> str:
    """How far the reranking moved a document from its first-stage position (input order)."""
    change = (index + 1) - rank
    return f"▲{change}" if change > 0 else f"▼{-change}" if change < 0 else "="


# -- inputs from the page ------------------------------------------------------------------------


def query_from(query_text: str | None, query_image: str | None, lang: str = "en") -> dict:
    text_value = (query_text or "").strip() or None
    if text_value is None and not query_image:
        raise PageError(text("error_query_missing", lang))
    return {"text": text_value, "image": query_image or None}


def parse_documents(documents: str | None, document_images: list[str] | None, lang: str = "en") -> list[dict]:
    """Text blocks separated by `---` lines, plus uploaded images.

    A block may attach an uploaded image with `[image: name.jpg]` (file name) or `[image: 2]`
    (1-based upload order). Images attached to no block follow the blocks as image-only documents.
    Each document is `{"text", "image", "name"}`; `name` is the image's file name, for display.
    Errors count documents from 1, as the table's Input # does.
    """
    images = [str(path) for path in (document_images or [])]
    names = [_upload_name(path) for path in images]
    blocks = [block.strip() for block in _SEPARATOR_RE.split(documents or "")]
    parsed, attached = [], set()
    for block in (block for block in blocks if block):
        number = len(parsed) + 1
        references = _IMAGE_REF_RE.findall(block)
        if len(references) > 1:
            raise PageError(text("error_document", lang, number=number, name="",
                                 reason=text("error_attach_one", lang, count=len(references))))
        image = None
        if references:
            position = _find_image(references[0], names)
            if position is None:
                raise PageError(text("error_document", lang, number=number, name="", reason=text(
                    "error_attach_missing", lang, reference=references[0], uploaded=", ".join(names) or "—")))
            attached.add(position)
            image = position
        block_text = _IMAGE_REF_RE.sub("", block).strip() or None
        parsed.append({"text": block_text, "image": images[image] if image is not None else None,
                       "name": names[image] if image is not None else None})
    for position, (path, name) in enumerate(zip(images, names)):
        if position not in attached:
            parsed.append({"text": None, "image": path, "name": name})
    if not parsed:
        raise PageError(text("error_documents_missing", lang))
    return parsed


def _upload_name(path: str) -> str:
    """The name a user gave an upload: Gradio keeps it as the file's name in its own temp folder."""
    return Path(str(path)).name


def _find_image(reference: str, names: list[str]) -> int | None:
    if reference.isdigit():
        position = int(reference) - 1
        return position if 0 <= position < len(names) else None
    return names.index(reference) if reference in names else None


def _scorable(document: dict) -> dict:
    return {key: document[key] for key in ("text", "image") if document[key] is not None}


def image_rules(limits: Limits, *scorers) -> ImageRules:
    """How one page request's images are decoded: the server's limits, and down to the largest pixel
    bound of the models that will score them (a fresh decoded-pixel budget per request)."""
    return ImageRules(max_pixels=limits.max_image_pixels, keep_pixels=max(s.max_pixels for s in scorers),
                      budget=PixelBudget(limits.max_request_pixels))


def _item(value: dict, describe: Callable[[str, bool], str], rules: ImageRules, lang: str):
    """One query or document as a scorer item; a problem is worded by `describe(reason, about_image)`,
    which names the document as the page shows it (counted from 1, with its file name), never a
    server path."""
    image = value.get("image")
    if isinstance(image, UnreadableUpload):
        raise PageError(text("error_unreadable", lang, name=str(image)))
    try:
        return to_item(value, "input", rules=rules)
    except ValueError as error:
        about_image = ".image" in str(error).split(": ", 1)[0]
        raise PageError(describe(reason(str(error), lang), about_image)) from None


def _check_count(count: int, limits: Limits, what: str, lang: str) -> None:
    if count > limits.max_documents:
        raise PageError(text("error_too_many", lang, what=text(what, lang), count=count, limit=limits.max_documents))


def _query_item(query_text, query_image, rules: ImageRules, lang: str = "en"):
    query = query_from(query_text, query_image, lang)
    name = _upload_name(query["image"]) if query["image"] else ""
    return _item(_scorable(query), lambda why, image: text("error_query_image", lang, name=name, reason=why) if image
                 else text("error_query", lang, reason=why), rules, lang)


def _document_items(documents, document_images, limits: Limits, rules: ImageRules,
                    lang: str = "en") -> tuple[list[dict], list]:
    """The page's documents (text blocks plus uploads), parsed for display and as scorer items."""
    parsed = parse_documents(documents, document_images, lang)
    _check_count(len(parsed), limits, "what_documents", lang)
    items = []
    for number, document in enumerate(parsed, start=1):
        name = f" ({document['name']})" if document["name"] else ""
        items.append(_item(_scorable(document), lambda why, _: text("error_document", lang, number=number, name=name,
                                                                     reason=why), rules, lang))
    return parsed, items


def _top_n(value: Any, lang: str) -> int | None:
    try:
        return check_top_n(value)
    except ValueError:
        raise PageError(text("error_top_n", lang)) from None


def _preview(document: dict) -> str:
    parts = []
    if document.get("name"):
        parts.append(f"🖼 {document['name']}")
    if document.get("text"):
        parts.append(document["text"])
    return " · ".join(parts)


# -- views: what each tab shows and each endpoint returns -------------------------------------------


def score_view(scorer: LycheeScorer, query_text, query_image, document_text, document_image,
               instruction, *, limits: Limits = Limits(), lang: str = "en") -> tuple[str, dict]:
    rules = image_rules(limits, scorer)
    query = _query_item(query_text, query_image, rules, lang)
    document = {"text": (document_text or "").strip() or None, "image": document_image or None}
    if document["text"] is None and document["image"] is None:
        raise PageError(text("error_document_missing", lang))
    name = _upload_name(document_image) if document_image else ""
    item = _item(_scorable(document), lambda why, image: text("error_document_image", lang, name=name, reason=why)
                 if image else text("error_single_document", lang, reason=why), rules, lang)
    (pair,) = scorer.score_with_logits(query, [item], instruction or None)
    reading = verdict(pair.score, lang)
    details = {"score": pair.score, "verdict": verdict(pair.score)["verdict"], "colour": reading["colour"],
               "yes_logit": pair.yes_logit, "no_logit": pair.no_logit}
    markdown = (
        f"## {reading['mark']} {pair.score:.3f}\n"
        f"**{reading['verdict'][:1].upper() + reading['verdict'][1:]}**\n\n"
        f"logit(yes) = {pair.yes_logit:.3f} · logit(no) = {pair.no_logit:.3f}"
    )
    return markdown, details


def _above(results: list, min_score: float | None) -> tuple[list, int]:
    """The results at or above `min_score` (the page's filter; 0 or empty keeps all), and how many were hidden."""
    threshold = float(min_score or 0)
    kept = [result for result in results if result.score >= threshold]
    return kept, len(results) - len(kept)


def _hidden_note(hidden: int, kept: int, min_score: float | None, lang: str) -> str:
    if not hidden:
        return ""
    key = "hidden_below" if kept else "nothing_above"
    return "\n\n" + text(key, lang, count=hidden, threshold=float(min_score or 0))


def rerank_view(scorer: LycheeScorer, query_text, query_image, documents, document_images, instruction,
                top_n, min_score: float | None = 0, *, limits: Limits = Limits(),
                lang: str = "en") -> tuple[str, list[dict]]:
    top_n = _top_n(top_n, lang)
    rules = image_rules(limits, scorer)
    query = _query_item(query_text, query_image, rules, lang)
    parsed, items = _document_items(documents, document_images, limits, rules, lang)
    results, hidden = _above(scorer.rerank(query, items, instruction or None, top_n=top_n), min_score)
    rows = [
        {"rank": rank, "index": result.index, "score": result.score, "verdict": verdict(result.score)["verdict"],
         "text": parsed[result.index]["text"], "image": parsed[result.index]["name"]}
        for rank, result in enumerate(results, start=1)
    ]
    header = [text(key, lang) for key in ("col_rank", "col_score", "col_document", "col_input", "col_move")]
    lines = ["| " + " | ".join(header) + " |", "| ---: | --- | --- | ---: | :---: |"]
    for row in rows:
        mark = verdict(row["score"])["mark"]
        lines.append(f"| {row['rank']} | {mark} {row['score']:.3f} | {_cell(_preview(parsed[row['index']]))} | "
                     f"{row['index'] + 1} | {_move(row['index'], row['rank'])} |")
    return "\n".join(lines) + _hidden_note(hidden, len(rows), min_score, lang), rows


def rank_images_view(scorer: LycheeScorer, query_text, query_image, images, instruction, top_n,
                     min_score: float | None = 0, *, limits: Limits = Limits(), lang: str = "en",
                     on_progress: Callable[[int, int, str], None] | None = None) -> tuple[list, list[dict]]:
    """Rank uploaded images; `on_progress(done, total, description)` counts reading each image, then scoring."""
    top_n = _top_n(top_n, lang)
    rules = image_rules(limits, scorer)
    query = _query_item(query_text, query_image, rules, lang)
    paths = [str(path) for path in (images or [])]
    if not paths:
        raise PageError(text("error_images_missing", lang))
    _check_count(len(paths), limits, "what_images", lang)
    count = len(paths)
    items = []
    for number, path in enumerate(paths, start=1):
        name = _upload_name(path)
        items.append(_item({"image": path}, lambda why, _: text("error_image", lang, number=number, name=name,
                                                                 reason=why), rules, lang))
        if on_progress is not None:
            on_progress(number, 2 * count, text("progress_reading", lang, done=number, total=count))

    def scored(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(count + done, 2 * count, text("progress_scoring", lang, done=done, total=total))

    results, hidden = _above(scorer.rerank(query, items, instruction or None, top_n=top_n, on_progress=scored),
                             min_score)
    gallery, rows = [], []
    for rank, result in enumerate(results, start=1):
        name = _upload_name(paths[result.index])
        reading = verdict(result.score)
        best = "★ " if rank == 1 and reading["colour"] != "red" else ""
        gallery.append((paths[result.index], f"{best}#{rank} · {reading['mark']} {result.score:.3f} · {name}"))
        rows.append({"rank": rank, "index": result.index, "score": result.score, "image": name})
    return gallery, rows


def compare_view(first: LycheeScorer, second: LycheeScorer, names: tuple[str, str], query_text, query_image,
                 documents, document_images, instruction, *, limits: Limits = Limits(),
                 top_k: int = 5, lang: str = "en") -> tuple[str, dict]:
    """The Compare tab: one query and its documents ranked by two models side by side.

    Agreement is Kendall's tau-b between the two score lists and the overlap of the two top-k
    sets; the rows are in the first model's order, and the documents whose ranks differ most are
    listed apart.
    """
    rules = image_rules(limits, first, second)
    query = _query_item(query_text, query_image, rules, lang)
    parsed, items = _document_items(documents, document_images, limits, rules, lang)
    scores_a = first.score(query, items, instruction or None)
    scores_b = second.score(query, items, instruction or None)
    order_a, order_b = best_first(scores_a), best_first(scores_b)
    rank_a = {index: rank for rank, index in enumerate(order_a, start=1)}
    rank_b = {index: rank for rank, index in enumerate(order_b, start=1)}
    rows = [{"index": i, "text": parsed[i]["text"], "image": parsed[i]["name"], "score_a": scores_a[i],
             "rank_a": rank_a[i], "score_b": scores_b[i], "rank_b": rank_b[i]} for i in order_a]
    k = min(top_k, len(items))
    disagreements = sorted(rows, key=lambda row: (-abs(row["rank_a"] - row["rank_b"]), row["rank_a"]))
    disagreements = [row for row in disagreements if row["rank_a"] != row["rank_b"]][:5]
    tau = kendall_tau(scores_a, scores_b)
    details = {"models": list(names), "kendall_tau": tau, "top_k": k,
               "top_k_overlap": top_k_overlap(order_a, order_b, k), "rows": rows, "disagreements": disagreements}
    a, b = names
    score, document, number = (text(key, lang) for key in ("col_score", "col_document", "col_input"))
    lines = [f"**{text('kendall', lang)}** {'—' if tau is None else f'{tau:+.3f}'} · "
             f"**{text('overlap', lang, k=k)}** {details['top_k_overlap']:.0%}", "",
             f"| {document} | {text('col_model_rank', lang, name=_cell(a, 40))} | {score} | "
             f"{text('col_model_rank', lang, name=_cell(b, 40))} | {score} | {number} |",
             "| --- | ---: | --- | ---: | --- | ---: |"]
    for row in rows:
        lines.append(f"| {_cell(_preview(parsed[row['index']]), 60)} | {row['rank_a']} | "
                     f"{verdict(row['score_a'])['mark']} {row['score_a']:.3f} | {row['rank_b']} | "
                     f"{verdict(row['score_b'])['mark']} {row['score_b']:.3f} | {row['index'] + 1} |")
    if disagreements:
        lines += ["", f"**{text('disagree', lang)}**", ""]
        lines += [f"- #{row['index'] + 1} {_cell(_preview(parsed[row['index']]), 60)}: "
                  f"{text('rank_vs', lang, a=row['rank_a'], b=row['rank_b'])}" for row in disagreements]
    return "\n".join(lines), details


def extract_images(archive: str, target: Path, limits: Limits = Limits(), lang: str = "en") -> Path:
    """Unpack an uploaded zip of images into `target`, refusing paths that climb out of it."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if sum(member.file_size for member in members) > limits.max_zip_bytes:
                raise PageError(text("error_zip", lang, reason=f"unpacks to more than "
                                                                 f"{limits.max_zip_bytes / 2**30:g} GB"))
            for member in members:
                destination = (target / member.filename).resolve()
                if not destination.is_relative_to(target.resolve()):
                    raise PageError(text("error_zip", lang, reason=f"unsafe path {member.filename}"))
            bundle.extractall(target)
    except zipfile.BadZipFile:
        raise PageError(text("error_zip", lang, reason="not a zip file")) from None
    return target


def _eval_table(report: dict, lang: str) -> str:
    """The metrics table and its summary line, in the page's language."""
    metric, first = text("col_metric", lang), text("col_first_stage", lang)
    keys = [key for key in evaluation.metric_keys(report["k"]) if key in report["first_stage"]]
    if "models" in report:
        names = list(report["models"])
        lines = [f"| {metric} | {first} | " + " | ".join(_cell(n, 40) for n in names) + " | "
                 + " | ".join(text("col_change_of", lang, name=_cell(n, 40)) for n in names) + " |",
                 "| --- |" + " ---: |" * (1 + 2 * len(names))]
        for key in keys:
            models = [report["models"][name] for name in names]
            lines.append(f"| {key} | {report['first_stage'][key]:.4f} | "
                         + " | ".join(f"{m['reranked'][key]:.4f}" for m in models) + " | "
                         + " | ".join(f"{m['difference'][key]:+.4f}" for m in models) + " |")
    else:
        lines = [f"| {metric} | {first} | {text('col_reranked', lang)} | {text('col_change', lang)} |",
                 "| --- | ---: | ---: | ---: |"]
        for key in keys:
            lines.append(f"| {key} | {report['first_stage'][key]:.4f} | {report['reranked'][key]:.4f} | "
                         f"{report['difference'][key]:+.4f} |")
    notes = [text("eval_queries", lang, count=report["queries"])]
    if report["queries_without_relevant"]:
        notes.append(text("eval_no_relevant", lang, count=report["queries_without_relevant"]))
    if report["skipped"]:
        notes.append(text("eval_skipped", lang, count=len(report["skipped"])))
    return "\n".join(lines) + "\n\n" + ", ".join(notes)


def _eval_detail(message: str, has_zip: bool, lang: str) -> str:
    """A bad line's problem without its "line N: " prefix, with a hint when its images are missing."""
    detail = re.sub(r"^(line \d+: )+", "", message)
    if "image file not found" in detail and not has_zip:
        detail += text("hint_eval_zip", lang)
    return detail


def _eval_problem(error: evaluation.BadLine, has_zip: bool, lang: str) -> PageError:
    return PageError(text("error_eval_line", lang, line=error.line, reason=_eval_detail(str(error), has_zip, lang)))


def evaluate_view(scorer, data_file, images_zip, ks_text, instruction, skip_bad=False, *,
                  limits: Limits = Limits(), lang: str = "en",
                  on_progress: Callable[[int, int], None] | None = None, timeout: float | None = None,
                  cancel: threading.Event | None = None) -> tuple[str, Any, dict]:
    """The Evaluate tab: the metrics table, a chart's data (first stage vs. reranked) and the report.

    `scorer` is one scorer, or a ModelSet: with several models every one is evaluated, side by side.
    Each line is one request under `limits`; `timeout` covers the whole run and `cancel` stops it.
    """
    import pandas as pd

    if not data_file:
        raise PageError(text("error_data_missing", lang))
    try:
        ks = evaluation.parse_ks(str(ks_text or "1,5,10"))
    except ValueError:
        raise PageError(text("error_k", lang)) from None
    data = Path(data_file)
    with tempfile.TemporaryDirectory(prefix="lychee-eval-") as unpacked:
        base_dir = extract_images(images_zip, Path(unpacked), limits, lang) if images_zip else data.parent
        try:
            queries, skipped = evaluation.load_queries(data, skip_bad=bool(skip_bad), base_dir=base_dir)
        except evaluation.BadLine as error:
            raise _eval_problem(error, bool(images_zip), lang) from None
        if not queries:
            if skipped:
                first = skipped[0]
                raise PageError(text("error_eval_all_skipped", lang, count=len(skipped), line=first["line"],
                                     reason=_eval_detail(first["error"], bool(images_zip), lang)))
            raise PageError(text("error_eval_empty", lang))
        # A line's own instruction wins; the page's box applies to lines without one.
        options = {"instruction": instruction or None, "skip_bad": bool(skip_bad), "skipped": skipped,
                   "on_progress": on_progress, "limits": limits, "timeout": timeout, "cancel": cancel}
        models = ModelSet.of(scorer)
        try:
            if len(models) == 1:
                report = evaluation.evaluate(models.default, queries, ks, **options)
                stages = [(text("stage_first", lang), report["first_stage"]),
                          (text("stage_reranked", lang), report["reranked"])]
            else:
                report = evaluation.evaluate_models(dict(zip(models.names, models.scorers)), queries, ks, **options)
                stages = [(text("stage_first", lang), report["first_stage"])] + [
                    (name, entry["reranked"]) for name, entry in report["models"].items()]
        except evaluation.BadLine as error:
            raise _eval_problem(error, bool(images_zip), lang) from None
    rows = [{"bar": f"{key} · {label}", "metric": key, "stage": label, "value": values[key]}
            for key in evaluation.metric_keys(ks) if key in report["first_stage"] for label, values in stages]
    return _eval_table(report, lang), pd.DataFrame(rows), report


# -- downloads --------------------------------------------------------------------------------------


def write_downloads(rows: list[dict] | dict | None, stem: str) -> list[str] | None:
    """The results as `<stem>.json` and `<stem>.csv` (one row per result; an evaluation report: its metrics)."""
    if not rows:
        return None
    folder = Path(tempfile.mkdtemp(prefix="lychee-results-"))
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    if isinstance(rows, dict):  # an evaluation report: metric, first stage, then each model's reranked value
        table = [{"metric": key, "first_stage": value,
                  **({name: entry["reranked"][key] for name, entry in rows["models"].items()} if "models" in rows
                     else {"reranked": rows["reranked"][key]})}
                 for key, value in rows["first_stage"].items()]
    else:
        table = rows
    with csv_path.open("w", newline="", encoding="utf-8-sig") as file:  # the BOM lets Excel read UTF-8
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return [str(csv_path), str(json_path)]


# -- the endpoints ----------------------------------------------------------------------------------


class _Call:
    """A scorer as one page request uses it: with the request's timeout, Stop event and stats."""

    def __init__(self, scorer, options: dict):
        self._scorer, self._options = scorer, options
        self.stats = ScoreStats()

    def __getattr__(self, name: str):
        return getattr(self._scorer, name)

    def score(self, *args, **kwargs):
        return self._scorer.score(*args, **{**self._options, **kwargs}, stats=self.stats)

    def score_with_logits(self, *args, **kwargs):
        return self._scorer.score_with_logits(*args, **{**self._options, **kwargs}, stats=self.stats)

    def rerank(self, *args, **kwargs):
        return self._scorer.rerank(*args, **{**self._options, **kwargs}, stats=self.stats)


class _Runs:
    """The run in progress of each browser session, so that its Stop button reaches the engine."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        return event

    def finish(self, session: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]

    def stop(self, session: str) -> None:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()


# Status per error kind, for metrics and logs (499: stopped by the user), and the page's words.
_STATUS = {ScoringTimeoutError: 504, ScorerBusyError: 503, ScoringOutOfMemoryError: 503,
           ScoringCancelledError: 499, ValueError: 400}
_ENGINE_WORDS = {ScoringTimeoutError: "error_timeout", ScorerBusyError: "error_busy",
                 ScoringOutOfMemoryError: "error_out_of_memory", ScoringCancelledError: "error_stopped"}
_current_calls: contextvars.ContextVar[list] = contextvars.ContextVar("lychee_calls")
_current_call_options: contextvars.ContextVar[dict] = contextvars.ContextVar("lychee_call_options")
_current_language: contextvars.ContextVar[str] = contextvars.ContextVar("lychee_language", default="en")


def _request_of(args: tuple, kwargs: dict) -> gr.Request | None:
    return next((value for value in (*args, *kwargs.values()) if isinstance(value, gr.Request)), None)


def _page_language() -> str:
    """The language of the request being handled ("en" for gradio_client, which sends none)."""
    return _current_language.get()


def _endpoint(models: ModelSet, request_timeout: float | None, runs: _Runs) -> Callable:
    """Each handler as an endpoint: bad input, a timeout, Stop and out-of-memory reach the page (and
    gradio_client) as a message in the browser's language, not a crash; every call is counted in
    the metrics and logged."""

    def message(error: Exception, lang: str) -> str:
        for kind, key in _ENGINE_WORDS.items():
            if isinstance(error, kind):
                return text(key, lang, seconds=request_timeout or 0)
        return str(error)

    def decorate(handler: Callable) -> Callable:
        name = f"/{handler.__name__}"

        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            request = _request_of(args, kwargs)
            lang = language(request.headers.get("accept-language") if request is not None else None)
            session = getattr(request, "session_hash", None)
            cancel = runs.start(session) if session else None
            calls: list[_Call] = []
            tokens = (_current_calls.set(calls), _current_language.set(lang),
                      _current_call_options.set({"timeout": request_timeout, "cancel": cancel}))
            record = telemetry.RequestRecord(name)
            try:
                with record:
                    try:
                        return handler(*args, **kwargs)
                    except tuple(_STATUS) as error:
                        record.status = next(code for kind, code in _STATUS.items() if isinstance(error, kind))
                        # A user's mistake: one access-log line (status 400), no traceback.
                        raise gr.Error(message(error, lang), print_exception=False) from None
                    finally:
                        for call in calls:
                            telemetry.record_scoring(models.name_of(call._scorer), call.stats)
                        if calls:
                            record.fields.update(model=",".join(models.name_of(c._scorer) for c in calls),
                                                 documents=sum(c.stats.pairs for c in calls),
                                                 tokens=sum(c.stats.tokens for c in calls),
                                                 cached=sum(c.stats.cached for c in calls))
            finally:
                _current_call_options.reset(tokens[2])
                _current_language.reset(tokens[1])
                _current_calls.reset(tokens[0])
                if cancel is not None:
                    runs.finish(session, cancel)

        return wrapper

    return decorate


def _use(scorer) -> _Call:
    """The scorer, wrapped for the request being handled (its timeout, Stop event and stats)."""
    wrapped = _Call(scorer, _current_call_options.get({}))
    _current_calls.get([]).append(wrapped)
    return wrapped


def make_handlers(models: ModelSet, limits: Limits, request_timeout: float | None = None) -> SimpleNamespace:
    """The endpoints' functions: plain functions whose parameter names are the API's.

    `model` picks one of the served models by name (empty: the first); see registry.py.
    `request_timeout` (seconds) stops a request's model work between batches and says so;
    `stop` (the page's Stop button) does the same for the session's run in progress.
    """
    runs = _Runs()
    endpoint = _endpoint(models, request_timeout, runs)

    @endpoint
    def score(query_text: str | None = None, query_image: str | None = None, document_text: str | None = None,
              document_image: str | None = None, instruction: str | None = None, model: str | None = None,
              request: gr.Request = None):
        """Score one document against a query. Returns Markdown and {score, verdict, colour, yes_logit, no_logit}.
        Example: client.predict(query_text="white cup", document_text="白瓷咖啡杯", api_name="/score"); leave
        out what you do not send (the snippet below lists every parameter with its default)."""
        return score_view(_use(models.get(model)), query_text, query_image, document_text, document_image,
                          instruction, limits=limits, lang=_page_language())

    @endpoint
    def rerank(query_text: str | None = None, query_image: str | None = None, documents: str | None = None,
               document_images: list[str] | None = None, instruction: str | None = None,
               top_n: float | None = None, model: str | None = None, min_score: float | None = 0,
               request: gr.Request = None):
        """Rerank documents (text blocks separated by '---' lines, plus images) best-first; min_score hides lower
        scores. Returns a Markdown table and [{rank, index, score, verdict, text, image}]. Example:
        client.predict(query_text="保温杯 500ml", documents="steel tumbler 500ml\n---\nblue mug", top_n=3,
        api_name="/rerank"). Pipelines: POST /v1/rerank on this server takes the Cohere / Jina / vLLM rerank format
        (see /docs)."""
        return rerank_view(_use(models.get(model)), query_text, query_image, documents, document_images,
                           instruction, top_n, min_score, limits=limits, lang=_page_language())

    @endpoint
    def rank_images(query_text: str | None = None, query_image: str | None = None, images: list[str] | None = None,
                    instruction: str | None = None, top_n: float | None = None, model: str | None = None,
                    min_score: float | None = 0, progress=gr.Progress(), request: gr.Request = None):
        """Rank images against a query, best first. Returns a gallery and [{rank, index, score, image}]. Example:
        client.predict(query_text="a blue mug", images=[handle_file("a.png"), handle_file("b.png")],
        api_name="/rank_images")."""
        lang = _page_language()

        def report(done: int, total: int, description: str) -> None:
            progress(done / total, desc=description)

        report(0, 1, text("progress_reading", lang, done=0, total=len(images or [])))
        return rank_images_view(_use(models.get(model)), query_text, query_image, images, instruction, top_n,
                                min_score, limits=limits, lang=lang, on_progress=report)

    @endpoint
    def compare(query_text: str | None = None, query_image: str | None = None, documents: str | None = None,
                document_images: list[str] | None = None, instruction: str | None = None,
                model_a: str | None = None, model_b: str | None = None, request: gr.Request = None):
        """Rank the same documents with two served models side by side, with Kendall's tau and top-5 overlap.
        Returns a Markdown table and {models, kendall_tau, top_k, top_k_overlap, rows, disagreements}."""
        first = models.get(model_a)
        second = models.get(model_b) if model_b else models.scorers[1 if len(models) > 1 else 0]
        names = (models.name_of(first), models.name_of(second))
        return compare_view(_use(first), _use(second), names, query_text, query_image, documents, document_images,
                            instruction, limits=limits, lang=_page_language())

    @endpoint
    def evaluate(data: str | None = None, images_zip: str | None = None, k: str | None = None,
                 instruction: str | None = None, skip_bad: bool = False, progress=gr.Progress(),
                 request: gr.Request = None):
        """Evaluate a labelled JSONL set with every served model: NDCG, MRR, Recall and Hit before and after
        reranking. Returns a Markdown table, the chart data and the full report."""
        lang = _page_language()

        def report(done: int, total: int) -> None:
            progress(done / total, desc=text("progress_query", lang, done=done, total=total))

        calls = [_use(scorer) for scorer in models.scorers]
        table, chart, details = evaluate_view(ModelSet(calls), data, images_zip, k, instruction, skip_bad,
                                              limits=limits, lang=lang, on_progress=report, **calls[0]._options)
        # Bars in the table's order, each metric's "first stage" beside each model's.
        return table, gr.BarPlot(value=chart, sort=list(chart["bar"]), x_title=text("chart_x", lang),
                                 y_title=text("chart_y", lang)), details

    def stop(request: gr.Request):
        """Stop this browser session's run in progress (between two batches)."""
        if request is not None and request.session_hash:
            runs.stop(request.session_hash)

    return SimpleNamespace(score=score, rerank=rerank, rank_images=rank_images, compare=compare, evaluate=evaluate,
                           stop=stop)


# -- the page ------------------------------------------------------------------------------------


def _asset_text(name: str) -> str:
    path = ASSETS_DIR / "data" / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _asset_image(name: str) -> str | None:
    path = ASSETS_DIR / "images" / name
    return str(path) if path.is_file() else None


# Model work shares one queue ("model") with as many slots as there are model replicas: one in a
# single process, so concurrent users wait in line instead of running the GPU out of memory.
MODEL_WORK = {"concurrency_id": "model"}

# Phones (a 390-px screen): tables scroll sideways instead of squeezing each cell to a letter,
# headers and scores never break mid-word, the result gallery shows two columns and whole
# captions, the tab bar fits every tab (no "•••" menu), and long upload lists scroll in a box.
CSS = """
#batch-table table, #eval-table table, #compare-table table { display: block; overflow-x: auto; max-width: 100%; }
#batch-table th, #eval-table th, #compare-table th, #eval-table td, #compare-table td { white-space: nowrap; }
#batch-table td:nth-child(1), #batch-table td:nth-child(2), #batch-table td:nth-child(4),
#batch-table td:nth-child(5) { white-space: nowrap; }
#images-gallery .caption-label, #images-preview .caption-label { white-space: normal; overflow: visible;
  text-overflow: clip; line-height: 1.25; }
@media (max-width: 640px) {
  .tab-container button { padding-left: 6px !important; padding-right: 6px !important; font-size: 13px !important; }
  #images-gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #images-preview .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
}
"""

# Ctrl+Enter (Cmd+Enter on a Mac) runs the open tab: the one run button that is on screen.
HEAD = """
<script>
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  for (const id of ["score-button", "rerank-button", "rank-button", "compare-button", "eval-button"]) {
    const button = document.getElementById(id);
    if (button && button.offsetParent !== null && !button.disabled) {
      event.preventDefault();
      button.click();
      return;
    }
  }
});
</script>
"""


class ImageBox(gr.Image):
    """An image input that hands the handler the uploaded file's path without decoding it.

    `gr.Image` opens (and, to convert its mode, decodes) every upload before the handler runs,
    so a huge image would be decoded before the pixel limit is checked, and a file that is not an
    image fails with a message holding the server's temp path. Here the file is only identified
    from its header; a file that is not an image is handed on as `UnreadableUpload(name)`, which
    the view reports by its name in the browser's language.
    """

    is_template = True  # drawn by the frontend as a plain Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return super().preprocess(payload)
        from PIL import Image, UnidentifiedImageError

        name = Path(payload.orig_name or payload.path or "image").name
        try:
            with Image.open(payload.path):
                pass
        except (UnidentifiedImageError, OSError, ValueError):
            return UnreadableUpload(name)
        return payload.path


def _query_column(elem_id: str) -> tuple[gr.Textbox, gr.Image, gr.Number, gr.Slider]:
    """The query (text and/or image), top-n and score-filter inputs of a ranking tab."""
    with gr.Column(scale=1):
        text_box = gr.Textbox(label=I18N("query_text"), lines=2, elem_id=elem_id)
        image = ImageBox(label=I18N("query_image"), type="filepath", height=200)
        with gr.Row():
            top_n = gr.Number(0, label=I18N("top_n"), precision=0, minimum=0, min_width=120)
            min_score = gr.Slider(0, 1, value=0, step=0.05, label=I18N("min_score"), min_width=120,
                                  elem_id=f"{elem_id}-min-score")
    return text_box, image, top_n, min_score


def _run_buttons(run_key: str, elem_id: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(I18N(run_key), variant="primary", elem_id=elem_id, scale=4)
        stop = gr.Button(I18N("stop_button"), variant="stop", elem_id=f"{elem_id}-stop", scale=1)
    return run, stop


def _wire(run: gr.Button, stop: gr.Button, handler: Callable, inputs: list, outputs: list, api_name: str,
          stopper: Callable, downloads: tuple[Callable, gr.JSON, gr.File] | None = None, **options):
    """Run `handler` from the button (and Ctrl+Enter): first clear the previous results, so a failed
    run never leaves them beside its error; then the results' downloads. Stop cancels the run."""
    cleared = [*outputs, downloads[2]] if downloads else outputs
    event = run.click(lambda: [None] * len(cleared), None, cleared, queue=False, api_visibility="private")
    event = event.then(handler, inputs, outputs, api_name=api_name, **MODEL_WORK, **options)
    if downloads is not None:
        write, details, files = downloads
        event.then(write, details, files, api_visibility="private", queue=False)
    stop.click(stopper, None, None, cancels=[event], queue=False, api_visibility="private")
    return event


MODEL_DEFAULT = "Model default"  # the preset that leaves the instruction empty: each model's own default
CUSTOM = "Custom"  # the preset shown once the instruction was edited by hand
_PRESET_LABELS = {"Web search": "preset_web", "E-commerce": "preset_ecommerce", "Product search": "preset_product",
                  "Academic figures": "preset_academic", "Education": "preset_education",
                  "Design assets": "preset_design"}


def _instruction_row(models: ModelSet) -> tuple[gr.Textbox, gr.Dropdown, gr.Dropdown]:
    """The model picker (when several models are served), the task preset and the editable instruction.

    The instruction starts empty, which means each model's own default instruction (lychee's and
    Qwen3-VL-Reranker's differ); the placeholder shows the picked model's. Editing the text turns
    the preset to "Custom" (or to the preset whose text it now is); choosing "Custom" again brings
    back the text typed last; choosing a preset puts its text back.
    """
    presets = {MODEL_DEFAULT: "", **INSTRUCTION_PRESETS}
    choices = [(I18N("preset_default"), MODEL_DEFAULT)]
    choices += [(I18N(_PRESET_LABELS.get(name, "preset_custom")), name) for name in INSTRUCTION_PRESETS]
    choices += [(I18N("preset_custom"), CUSTOM)]

    def placeholder(name: str | None) -> str:
        return models.get(name).family.default_instruction

    def chosen(preset: str):
        return gr.update() if preset == CUSTOM else presets.get(preset, "")

    def typed(instruction: str, custom: str):
        match = next((name for name, words in presets.items() if words == (instruction or "").strip()), None)
        return (match or CUSTOM), (custom if match else instruction)

    with gr.Row():
        picker = gr.Dropdown(models.names, value=models.names[0], label=I18N("model"), scale=1,
                             visible=len(models) > 1, elem_id="model-picker")
        preset = gr.Dropdown(choices, value=MODEL_DEFAULT, label=I18N("instruction_preset"), scale=1,
                             elem_id="preset")
        instruction = gr.Textbox("", placeholder=placeholder(None), label=I18N("instruction"), lines=2, scale=4,
                                 elem_id="instruction")
    custom = gr.State("")
    preset.change(chosen, preset, instruction, api_visibility="private", queue=False, show_progress="hidden")
    preset.input(lambda value, kept: kept if value == CUSTOM else gr.update(), [preset, custom], instruction,
                 api_visibility="private", queue=False, show_progress="hidden")
    instruction.input(typed, [instruction, custom], [preset, custom], api_visibility="private", queue=False,
                      show_progress="hidden", trigger_mode="always_last")  # the last keystroke always counts
    picker.change(lambda name: gr.update(placeholder=placeholder(name)), picker, instruction,
                  api_visibility="private", queue=False)
    return instruction, picker, preset


def _single_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_single"), id="single"):
        with gr.Row(equal_height=True):
            with gr.Column():
                query_text = gr.Textbox(label=I18N("query_text"), lines=4, elem_id="single-query")
                query_image = ImageBox(label=I18N("query_image"), type="filepath", height=220)
            with gr.Column():
                document_text = gr.Textbox(label=I18N("document_text"), lines=4, elem_id="single-document")
                document_image = ImageBox(label=I18N("document_image"), type="filepath", height=220)
        button = gr.Button(I18N("score_button"), variant="primary", elem_id="score-button")
        with gr.Row():
            result = gr.Markdown(label=I18N("result"), elem_id="single-result")
            details = gr.JSON(label=I18N("details"))
        gr.Examples(
            [["white ceramic coffee cup with a minimalist mountain line pattern", None,
              "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml", _asset_image("mountain_cup.png"), "E-commerce"]],
            [query_text, query_image, document_text, document_image, preset],
            label=I18N("examples"),
            example_labels=[_both("example_single")],
        )
    button.click(lambda: [None, None], None, [result, details], queue=False, api_visibility="private").then(
        handlers.score, [query_text, query_image, document_text, document_image, instruction, model],
        [result, details], api_name="score", **MODEL_WORK)


def _batch_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_batch"), id="batch"):
        with gr.Row():
            query_text, query_image, top_n, min_score = _query_column("batch-query")
            with gr.Column(scale=2):
                documents = gr.Textbox(label=I18N("documents"), info=I18N("documents_info"), lines=12,
                                       elem_id="batch-documents")
                images = gr.File(label=I18N("document_images"), file_count="multiple", file_types=["image"],
                                 height=160)
        button, stop = _run_buttons("rerank_button", "rerank-button")
        gr.Markdown(I18N("shortcut_hint"))
        table = gr.Markdown(label=I18N("ranking"), elem_id="batch-table")
        files = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="batch-downloads")
        details = gr.JSON(label=I18N("details"))
        gr.Examples(
            [["", _asset_image("mountain_cup.png"), _asset_text("cups.txt"), None, 0, "E-commerce"],
             ["保温杯 500ml", None, _asset_text("cups.txt"), None, 3, "Product search"]],
            [query_text, query_image, documents, images, top_n, preset],
            label=I18N("examples"),
            example_labels=[_both("example_batch_photo"), _both("example_batch_text")],
        )
    _wire(button, stop, handlers.rerank, [query_text, query_image, documents, images, instruction, top_n, model,
                                          min_score],
          [table, details], "rerank", handlers.stop,
          downloads=(lambda rows: write_downloads(rows, "ranking"), details, files))


def _images_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_images"), id="images"):
        with gr.Row():
            query_text, query_image, top_n, min_score = _query_column("images-query")
            with gr.Column(scale=2):
                files = gr.File(label=I18N("images"), file_count="multiple", file_types=["image"], height=150,
                                elem_id="images-files")
                preview = gr.Gallery(label=I18N("uploaded_images"), columns=6, height=220, allow_preview=False,
                                     interactive=False, elem_id="images-preview")
        button, stop = _run_buttons("rank_button", "rank-button")
        gallery = gr.Gallery(label=I18N("gallery"), columns=5, height="auto", elem_id="images-gallery")
        downloads = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False,
                            elem_id="images-downloads")
        details = gr.JSON(label=I18N("details"))
        example_images = sorted(str(p) for p in (ASSETS_DIR / "images").glob("*.png"))
        if example_images:
            gr.Examples([["a white cup with a mountain line pattern", None, example_images, 0, "Product search"]],
                        [query_text, query_image, files, top_n, preset],
                        label=I18N("examples"), example_labels=[_both("example_images")])
    # Thumbnails of what was uploaded, before ranking (the file list itself stays a small scrolling box).
    files.change(lambda paths: [(path, _upload_name(path)) for path in (paths or [])], files, preview,
                 api_visibility="private", queue=False, show_progress="hidden")
    _wire(button, stop, handlers.rank_images, [query_text, query_image, files, instruction, top_n, model, min_score],
          [gallery, details], "rank_images", handlers.stop,
          downloads=(lambda rows: write_downloads(rows, "image-ranking"), details, downloads),
          show_progress_on=[gallery])


def _compare_tab(handlers: SimpleNamespace, instruction: gr.Textbox, models: ModelSet) -> None:
    with gr.Tab(I18N("tab_compare"), id="compare"):
        with gr.Row():
            with gr.Column(scale=1):
                query_text = gr.Textbox(label=I18N("query_text"), lines=2, elem_id="compare-query")
                query_image = ImageBox(label=I18N("query_image"), type="filepath", height=200)
                model_a = gr.Dropdown(models.names, value=models.names[0], label=I18N("model_a"))
                model_b = gr.Dropdown(models.names, value=models.names[1], label=I18N("model_b"))
            with gr.Column(scale=2):
                documents = gr.Textbox(label=I18N("documents"), info=I18N("documents_info"), lines=12,
                                       elem_id="compare-documents")
                images = gr.File(label=I18N("document_images"), file_count="multiple", file_types=["image"],
                                 height=160)
        button, stop = _run_buttons("compare_button", "compare-button")
        table = gr.Markdown(label=I18N("ranking"), elem_id="compare-table")
        details = gr.JSON(label=I18N("details"))
        gr.Examples([["保温杯 500ml", None, _asset_text("cups.txt"), None]], [query_text, query_image, documents, images],
                    label=I18N("examples"), example_labels=[_both("example_compare")])
    _wire(button, stop, handlers.compare, [query_text, query_image, documents, images, instruction, model_a, model_b],
          [table, details], "compare", handlers.stop)


def _evaluate_tab(handlers: SimpleNamespace, instruction: gr.Textbox) -> None:
    with gr.Tab(I18N("tab_eval"), id="evaluate"):
        gr.Markdown(I18N("eval_intro"))
        with gr.Row():
            data = gr.File(label=I18N("eval_data"), file_types=[".jsonl"], elem_id="eval-data")
            images = gr.File(label=I18N("eval_images"), file_types=[".zip"], elem_id="eval-images")
            with gr.Column():
                k = gr.Textbox("1,5,10", label=I18N("eval_k"))
                skip_bad = gr.Checkbox(False, label=I18N("eval_skip_bad"))
        button, stop = _run_buttons("eval_button", "eval-button")
        table = gr.Markdown(label=I18N("result"), elem_id="eval-table")
        chart = gr.BarPlot(x="bar", y="value", color="stage", label=I18N("eval_chart"), x_label_angle=-45,
                           y_lim=[0, 1], height=420, x_title="Metric at k", y_title="Score",
                           colors_in_legend=[],  # no legend: each bar's label names its stage (a legend was cut off)
                           elem_id="eval-chart")
        files = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="eval-downloads")
        details = gr.JSON(label=I18N("details"))
        sample = ASSETS_DIR / "eval" / "sample.jsonl"
        if sample.is_file():
            gr.File([str(sample), str(sample.parent / "images.zip")], label=I18N("sample_download"),
                    file_count="multiple", interactive=False, elem_id="eval-sample")
            gr.Examples([[str(sample), str(sample.parent / "images.zip"), "1,5,10"]], [data, images, k],
                        label=I18N("examples"), example_labels=[_both("example_eval")])
    _wire(button, stop, handlers.evaluate, [data, images, k, instruction, skip_bad], [table, chart, details],
          "evaluate", handlers.stop, downloads=(lambda report: write_downloads(report, "evaluation"), details, files))


def _both(key: str) -> str:
    """An example's label in both languages: Gradio prints example labels as they are (no gr.I18n there)."""
    english, chinese = TRANSLATIONS["en"][key], TRANSLATIONS["zh"][key]
    return english if english == chinese else f"{english} · {chinese}"


def _english(value: Any) -> Any:
    """A label as the API page should print it: translated labels travel as objects (shown as
    "[object Object]" there, or as "__i18n__{...}" text); they become their English text."""
    if isinstance(value, I18nData):
        return TRANSLATIONS["en"].get(value.key, value.key)
    if isinstance(value, str) and value.startswith("__i18n__"):
        try:
            value = json.loads(value[len("__i18n__"):])
        except ValueError:
            return value
    if isinstance(value, dict) and "translation_metadata" in (value.get("_type"), value.get("__type__")):
        return TRANSLATIONS["en"].get(value.get("key"), value.get("key"))
    return value


def _readable_api_info(demo: gr.Blocks) -> None:
    """Make "Use via API" readable: English parameter and output labels instead of "[object Object]"."""
    original = demo.get_api_info

    def get_api_info(*args, **kwargs):
        info = original(*args, **kwargs)
        for endpoint in (info or {}).get("named_endpoints", {}).values():
            for entry in endpoint.get("parameters", []) + endpoint.get("returns", []):
                entry["label"] = _english(entry.get("label"))
        return info

    demo.get_api_info = get_api_info


def _file_paths(value: Any) -> list[str]:
    """Every file path a component's input value names (FileData dicts, at any depth)."""
    if isinstance(value, dict):
        found = [value["path"]] if isinstance(value.get("path"), str) else []
        return found + [path for item in value.values() if isinstance(item, (dict, list)) for path in _file_paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in _file_paths(item)]
    return []


def uploaded(path: str) -> bool:
    """Whether `path` (symlinks followed) is a file this server received as an upload: in Gradio's
    upload folder, where the page's examples (the app's sample files) are cached too."""
    from gradio.utils import get_upload_folder

    if "://" in path or path.startswith("data:"):
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(get_upload_folder()))


class Page(gr.Blocks):
    """The app's Blocks: every file input of every event is checked before Gradio touches it.

    A file input must name a file that was uploaded to this server (or an example's cached copy): a path
    anywhere else on the server, or a URL, is refused with one message naming the input, whether
    or not such a file exists, before Gradio would copy it into its cache (and serve it back).
    This is the one place every file input passes (page, gradio_client, /gradio_api/*); Gradio
    itself applies the same rule only to apps it launched, and this app is mounted. `server.py`
    also marks the mounted page as launched, so Gradio's own check runs as a second line.
    """

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        for block, value in zip(block_fn.inputs, inputs or []):
            if any(not uploaded(path) for path in _file_paths(value)):
                request = LocalContext.request.get(None)
                lang = language(request.headers.get("accept-language") if request is not None else None)
                label = getattr(block, "label", None)
                name = text(label.key, lang) if isinstance(label, I18nData) else str(label or "file")
                raise gr.Error(text("error_not_uploaded", lang, input=name), print_exception=False)
        return await super().preprocess_data(block_fn, inputs, state, explicit_call)


def build_demo(scorers, *, demo_mode: bool = False, limits: Limits = Limits(), concurrency: int = 1,
               request_timeout: float | None = None) -> gr.Blocks:
    """The whole page, over one scorer or several (a list or a ModelSet; the first is the default).

    Nothing is loaded here: the scorers come in ready. The Compare tab shows with two models or more.
    Serve it with `css=CSS, head=HEAD` (server.py does) for the phone layout and Ctrl+Enter.
    """
    models = ModelSet.of(scorers)
    handlers = make_handlers(models, limits, request_timeout)
    with Page(title="Lychee reranker", analytics_enabled=False) as demo:
        if demo_mode:
            gr.Markdown(I18N("demo_banner"), elem_id="demo-banner")
        gr.Markdown(I18N("title"))
        instruction, model, preset = _instruction_row(models)
        with gr.Tabs():
            _single_tab(handlers, instruction, model, preset)
            _batch_tab(handlers, instruction, model, preset)
            _images_tab(handlers, instruction, model, preset)
            if len(models) > 1:
                _compare_tab(handlers, instruction, models)
            _evaluate_tab(handlers, instruction)
    # The one place queueing is set up: the model's work (MODEL_WORK) runs `concurrency` requests at
    # once, one per model replica.
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    _readable_api_info(demo)
    return demo
