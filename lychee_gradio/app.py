"""The Gradio app: Single, Batch rerank, Image ranking, Compare and Evaluate tabs over the served models.

`build_demo(scorer)` lays out the page, one builder function per tab; each tab's button calls a
plain handler that is also a named API endpoint (`/score`, `/rerank`, `/rank_images`,
`/evaluate`), so `gradio_client` scripts get what the page shows plus structured JSON. The view
functions below do the formatting and know nothing of Gradio; the handlers only turn errors into
`gr.Error`.
"""

from __future__ import annotations

import contextvars
import functools
import re
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from . import evaluation, telemetry
from .inputs import to_item, to_items
from .labels import TRANSLATIONS
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


# -- reading a score (docs/design.md, "Reading a score") ---------------------------------------------


def verdict(score: float) -> dict[str, str]:
    if score >= 0.7:
        return {"colour": "green", "mark": "🟢", "verdict": "highly relevant"}
    if score >= 0.4:
        return {"colour": "yellow", "mark": "🟡", "verdict": "partly relevant"}
    return {"colour": "red", "mark": "🔴", "verdict": "not relevant"}


def _cell(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


# -- inputs from the page ------------------------------------------------------------------------


def query_from(query_text: str | None, query_image: str | None) -> dict:
    text = (query_text or "").strip() or None
    if text is None and not query_image:
        raise ValueError("query: give a query text, a query image, or both")
    return {"text": text, "image": query_image or None}


def parse_documents(documents: str | None, document_images: list[str] | None) -> list[dict]:
    """Text blocks separated by `---` lines, plus uploaded images.

    A block may attach an uploaded image with `[image: name.jpg]` (file name) or `[image: 2]`
    (1-based upload order). Images attached to no block follow the blocks as image-only documents.
    Each document is `{"text", "image", "name"}`; `name` is the image's file name, for display.
    """
    images = [str(path) for path in (document_images or [])]
    names = [Path(path).name for path in images]
    blocks = [block.strip() for block in _SEPARATOR_RE.split(documents or "")]
    parsed, attached = [], set()
    for block in (block for block in blocks if block):
        index = len(parsed)
        references = _IMAGE_REF_RE.findall(block)
        if len(references) > 1:
            raise ValueError(f"documents[{index}]: attach at most one image per document, found {len(references)}")
        image = None
        if references:
            position = _find_image(references[0], names)
            if position is None:
                raise ValueError(
                    f"documents[{index}]: [image: {references[0]}] matches no uploaded image "
                    f"(uploaded: {', '.join(names) or 'none'})"
                )
            attached.add(position)
            image = position
        text = _IMAGE_REF_RE.sub("", block).strip() or None
        parsed.append({"text": text, "image": images[image] if image is not None else None,
                       "name": names[image] if image is not None else None})
    for position, (path, name) in enumerate(zip(images, names)):
        if position not in attached:
            parsed.append({"text": None, "image": path, "name": name})
    if not parsed:
        raise ValueError("documents: give at least one text block or image")
    return parsed


def _find_image(reference: str, names: list[str]) -> int | None:
    if reference.isdigit():
        position = int(reference) - 1
        return position if 0 <= position < len(names) else None
    return names.index(reference) if reference in names else None


def _scorable(document: dict) -> dict:
    return {key: document[key] for key in ("text", "image") if document[key] is not None}


def _query_item(query_text, query_image, limits: Limits):
    return to_item(query_from(query_text, query_image), "query", max_image_pixels=limits.max_image_pixels)


def _document_items(documents, document_images, limits: Limits) -> tuple[list[dict], list]:
    """The page's documents (text blocks plus uploads), parsed for display and as scorer items."""
    parsed = parse_documents(documents, document_images)
    limits.check_documents(len(parsed))
    return parsed, to_items([_scorable(d) for d in parsed], max_image_pixels=limits.max_image_pixels)


def _preview(document: dict) -> str:
    parts = []
    if document.get("name"):
        parts.append(f"🖼 {document['name']}")
    if document.get("text"):
        parts.append(document["text"])
    return " · ".join(parts)


# -- views: what each tab shows and each endpoint returns -------------------------------------------


def score_view(scorer: LycheeScorer, query_text, query_image, document_text, document_image,
               instruction, *, limits: Limits = Limits()) -> tuple[str, dict]:
    query = _query_item(query_text, query_image, limits)
    document = {"text": (document_text or "").strip() or None, "image": document_image or None}
    if document["text"] is None and document["image"] is None:
        raise ValueError("document: give a document text, a document image, or both")
    item = to_item(_scorable(document), "document", max_image_pixels=limits.max_image_pixels)
    (pair,) = scorer.score_with_logits(query, [item], instruction or None)
    reading = verdict(pair.score)
    details = {"score": pair.score, "verdict": reading["verdict"], "colour": reading["colour"],
               "yes_logit": pair.yes_logit, "no_logit": pair.no_logit}
    markdown = (
        f"## {reading['mark']} {pair.score:.3f}\n"
        f"**{reading['verdict'].capitalize()}**\n\n"
        f"logit(yes) = {pair.yes_logit:.3f} · logit(no) = {pair.no_logit:.3f}"
    )
    return markdown, details


def rerank_view(scorer: LycheeScorer, query_text, query_image, documents, document_images, instruction,
                top_n, *, limits: Limits = Limits()) -> tuple[str, list[dict]]:
    top_n = check_top_n(top_n)
    query = _query_item(query_text, query_image, limits)
    parsed, items = _document_items(documents, document_images, limits)
    results = scorer.rerank(query, items, instruction or None, top_n=top_n)
    rows = [
        {"rank": rank, "index": result.index, "score": result.score, "verdict": verdict(result.score)["verdict"],
         "text": parsed[result.index]["text"], "image": parsed[result.index]["name"]}
        for rank, result in enumerate(results, start=1)
    ]
    lines = ["| Rank | Score | Document | Input # |", "| ---: | --- | --- | ---: |"]
    for row in rows:
        mark = verdict(row["score"])["mark"]
        lines.append(f"| {row['rank']} | {mark} {row['score']:.3f} | {_cell(_preview(parsed[row['index']]))} | "
                     f"{row['index'] + 1} |")
    return "\n".join(lines), rows


def rank_images_view(scorer: LycheeScorer, query_text, query_image, images, instruction, top_n, *,
                     limits: Limits = Limits(),
                     on_progress: Callable[[int, int], None] | None = None) -> tuple[list, list[dict]]:
    top_n = check_top_n(top_n)
    query = _query_item(query_text, query_image, limits)
    paths = [str(path) for path in (images or [])]
    if not paths:
        raise ValueError("images: upload at least one image")
    limits.check_documents(len(paths), "images")
    items = [to_item({"image": path}, f"images[{index}]", max_image_pixels=limits.max_image_pixels)
             for index, path in enumerate(paths)]
    results = scorer.rerank(query, items, instruction or None, top_n=top_n, on_progress=on_progress)
    gallery, rows = [], []
    for rank, result in enumerate(results, start=1):
        name = Path(paths[result.index]).name
        best = "★ " if rank == 1 else ""
        gallery.append((paths[result.index], f"{best}#{rank} · {verdict(result.score)['mark']} {result.score:.3f} · {name}"))
        rows.append({"rank": rank, "index": result.index, "score": result.score, "image": name})
    return gallery, rows


def compare_view(first: LycheeScorer, second: LycheeScorer, names: tuple[str, str], query_text, query_image,
                 documents, document_images, instruction, *, limits: Limits = Limits(),
                 top_k: int = 5) -> tuple[str, dict]:
    """The Compare tab: one query and its documents ranked by two models side by side.

    Agreement is Kendall's tau-b between the two score lists and the overlap of the two top-k
    sets; the rows are in the first model's order, and the documents whose ranks differ most are
    listed apart.
    """
    query = _query_item(query_text, query_image, limits)
    parsed, items = _document_items(documents, document_images, limits)
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
    lines = [f"**Kendall's tau** {'—' if tau is None else f'{tau:+.3f}'} · **top-{k} overlap** "
             f"{details['top_k_overlap']:.0%}", "",
             f"| Document | {_cell(a, 40)} rank | score | {_cell(b, 40)} rank | score | Input # |",
             "| --- | ---: | --- | ---: | --- | ---: |"]
    for row in rows:
        lines.append(f"| {_cell(_preview(parsed[row['index']]), 60)} | {row['rank_a']} | "
                     f"{verdict(row['score_a'])['mark']} {row['score_a']:.3f} | {row['rank_b']} | "
                     f"{verdict(row['score_b'])['mark']} {row['score_b']:.3f} | {row['index'] + 1} |")
    if disagreements:
        lines += ["", "**Where they disagree most**", ""]
        lines += [f"- #{row['index'] + 1} {_cell(_preview(parsed[row['index']]), 60)}: rank {row['rank_a']} vs "
                  f"{row['rank_b']}" for row in disagreements]
    return "\n".join(lines), details


def extract_images(archive: str, target: Path, limits: Limits = Limits()) -> Path:
    """Unpack an uploaded zip of images into `target`, refusing paths that climb out of it."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if sum(member.file_size for member in members) > limits.max_zip_bytes:
                raise ValueError(f"images: the zip unpacks to more than {limits.max_zip_bytes / 2**30:g} GB")
            for member in members:
                destination = (target / member.filename).resolve()
                if not destination.is_relative_to(target.resolve()):
                    raise ValueError(f"images: the zip has an unsafe path: {member.filename}")
            bundle.extractall(target)
    except zipfile.BadZipFile:
        raise ValueError("images: not a zip file") from None
    return target


def evaluate_view(scorer, data_file, images_zip, ks_text, instruction, skip_bad=False, *,
                  limits: Limits = Limits(),
                  on_progress: Callable[[int, int], None] | None = None) -> tuple[str, Any, dict]:
    """The Evaluate tab: the metrics table, a chart's data (first stage vs. reranked) and the report.

    `scorer` is one scorer, or a ModelSet: with several models every one is evaluated, side by side.
    """
    import pandas as pd

    if not data_file:
        raise ValueError("data: upload a .jsonl file")
    ks = evaluation.parse_ks(str(ks_text or "1,5,10"))
    data = Path(data_file)
    with tempfile.TemporaryDirectory(prefix="lychee-eval-") as unpacked:
        base_dir = extract_images(images_zip, Path(unpacked), limits) if images_zip else data.parent
        queries, skipped = evaluation.load_queries(data, skip_bad=bool(skip_bad), base_dir=base_dir)
        if not queries:
            raise ValueError("data: no query to evaluate")
        # A line's own instruction wins; the page's box applies to lines without one.
        options = {"instruction": instruction or None, "skip_bad": bool(skip_bad), "skipped": skipped,
                   "on_progress": on_progress}
        models = ModelSet.of(scorer)
        if len(models) == 1:
            report = evaluation.evaluate(models.default, queries, ks, **options)
            stages = [("first stage", report["first_stage"]), ("reranked", report["reranked"])]
        else:
            report = evaluation.evaluate_models(dict(zip(models.names, models.scorers)), queries, ks, **options)
            stages = [("first stage", report["first_stage"])] + [(name, entry["reranked"]) for name, entry
                                                                  in report["models"].items()]
    rows = [{"bar": f"{key} {label}", "metric": key, "stage": label, "value": values[key]}
            for key in evaluation.metric_keys(ks) for label, values in stages]
    return evaluation.format_table(report), pd.DataFrame(rows), report


# -- the page ------------------------------------------------------------------------------------


class _Call:
    """A scorer as one page request uses it: with the request's timeout, cancel event and stats."""

    def __init__(self, scorer, options: dict):
        self._scorer, self._options = scorer, options
        self.stats = ScoreStats()

    def __getattr__(self, name: str):
        return getattr(self._scorer, name)

    def score(self, *args, **kwargs):
        return self._scorer.score(*args, **self._options, stats=self.stats, **kwargs)

    def score_with_logits(self, *args, **kwargs):
        return self._scorer.score_with_logits(*args, **self._options, stats=self.stats, **kwargs)

    def rerank(self, *args, **kwargs):
        return self._scorer.rerank(*args, **self._options, stats=self.stats, **kwargs)


_STATUS = {ValueError: 400, ScorerBusyError: 503, ScoringOutOfMemoryError: 503, ScoringTimeoutError: 504,
           ScoringCancelledError: 499}
_current_calls: contextvars.ContextVar[list] = contextvars.ContextVar("lychee_calls")


def _endpoint(models: ModelSet, request_timeout: float | None) -> Callable:
    """Each handler as an endpoint: bad input, a timeout and out-of-memory reach the page (and
    gradio_client) as a message, not a crash; every call is counted in the metrics and logged."""

    def decorate(handler: Callable) -> Callable:
        name = f"/{handler.__name__}"

        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            calls: list[_Call] = []
            token = _current_calls.set(calls)
            record = telemetry.RequestRecord(name)
            try:
                with record:
                    try:
                        return handler(*args, **kwargs)
                    except tuple(_STATUS) as error:
                        record.status = next(code for kind, code in _STATUS.items() if isinstance(error, kind))
                        raise gr.Error(str(error)) from None
                    finally:
                        for call in calls:
                            telemetry.record_scoring(models.name_of(call._scorer), call.stats)
                        if calls:
                            record.fields.update(model=",".join(models.name_of(c._scorer) for c in calls),
                                                 documents=sum(c.stats.pairs for c in calls),
                                                 tokens=sum(c.stats.tokens for c in calls),
                                                 cached=sum(c.stats.cached for c in calls))
            finally:
                _current_calls.reset(token)

        return wrapper

    def call(scorer):
        """The scorer, wrapped for the running request (timeout, stats)."""
        wrapped = _Call(scorer, {"timeout": request_timeout})
        _current_calls.get([]).append(wrapped)
        return wrapped

    decorate.call = call  # type: ignore[attr-defined]
    return decorate


def make_handlers(models: ModelSet, limits: Limits, request_timeout: float | None = None) -> SimpleNamespace:
    """The endpoints' functions: plain functions whose parameter names are the API's.

    `model` picks one of the served models by name (empty: the first); see registry.py.
    `request_timeout` (seconds) stops a request's model work between batches and says so.
    """
    _user_errors = _endpoint(models, request_timeout)
    use = _user_errors.call

    @_user_errors
    def score(query_text: str | None = None, query_image: str | None = None, document_text: str | None = None,
              document_image: str | None = None, instruction: str | None = None, model: str | None = None):
        """Score one document against a query. Returns Markdown and {score, verdict, colour, yes_logit, no_logit}."""
        return score_view(use(models.get(model)), query_text, query_image, document_text, document_image, instruction,
                          limits=limits)

    @_user_errors
    def rerank(query_text: str | None = None, query_image: str | None = None, documents: str | None = None,
               document_images: list[str] | None = None, instruction: str | None = None,
               top_n: float | None = None, model: str | None = None):
        """Rerank documents (text blocks separated by '---' lines, plus images) best-first.
        Returns a Markdown table and [{rank, index, score, verdict, text, image}]."""
        return rerank_view(use(models.get(model)), query_text, query_image, documents, document_images, instruction,
                           top_n, limits=limits)

    @_user_errors
    def rank_images(query_text: str | None = None, query_image: str | None = None, images: list[str] | None = None,
                    instruction: str | None = None, top_n: float | None = None, model: str | None = None,
                    progress=gr.Progress()):
        """Rank images against a query, best first. Returns a gallery and [{rank, index, score, image}]."""
        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"scoring {done}/{total}")

        scorer = use(models.get(model))
        report(0, max(1, len(images or [])))
        return rank_images_view(scorer, query_text, query_image, images, instruction, top_n, limits=limits,
                                on_progress=report)

    @_user_errors
    def compare(query_text: str | None = None, query_image: str | None = None, documents: str | None = None,
                document_images: list[str] | None = None, instruction: str | None = None,
                model_a: str | None = None, model_b: str | None = None):
        """Rank the same documents with two served models side by side, with Kendall's tau and top-5 overlap.
        Returns a Markdown table and {models, kendall_tau, top_k, top_k_overlap, rows, disagreements}."""
        first = models.get(model_a)
        second = models.get(model_b) if model_b else models.scorers[1 if len(models) > 1 else 0]
        names = (models.name_of(first), models.name_of(second))
        return compare_view(use(first), use(second), names, query_text, query_image,
                            documents, document_images, instruction, limits=limits)

    @_user_errors
    def evaluate(data: str | None = None, images_zip: str | None = None, k: str | None = None,
                 instruction: str | None = None, skip_bad: bool = False, progress=gr.Progress()):
        """Evaluate a labelled JSONL set with every served model: NDCG, MRR, Recall and Hit before and after
        reranking. Returns a Markdown table, the chart data and the full report."""
        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"scoring query {done}/{total}")

        table, chart, details = evaluate_view(ModelSet([use(scorer) for scorer in models.scorers]), data, images_zip, k, instruction, skip_bad, limits=limits,
                                              on_progress=report)
        # Bars in the table's order, each metric's "first stage" beside each model's.
        return table, gr.BarPlot(value=chart, sort=list(chart["bar"])), details

    return SimpleNamespace(score=score, rerank=rerank, rank_images=rank_images, compare=compare, evaluate=evaluate)


def _asset_text(name: str) -> str:
    path = ASSETS_DIR / "data" / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _asset_image(name: str) -> str | None:
    path = ASSETS_DIR / "images" / name
    return str(path) if path.is_file() else None


# Model work shares one queue ("model") with as many slots as there are model replicas: one in a
# single process, so concurrent users wait in line instead of running the GPU out of memory.
MODEL_WORK = {"concurrency_id": "model"}


class ImageBox(gr.Image):
    """An image input that hands the handler the uploaded file's path without decoding it.

    `gr.Image` opens (and, to convert its mode, decodes) every upload before the handler runs,
    so a huge image would be decoded before the pixel limit is checked, and a file that is not an
    image fails with a message holding the server's temp path. Here the file is only identified
    from its header; the handler decodes it once, within the limits, and errors name the upload.
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
            raise gr.Error(f"{name} is not an image this app can read (PNG, JPEG, WebP, GIF, BMP, TIFF ...)") from None
        return payload.path


def _query_column(elem_id: str) -> tuple[gr.Textbox, gr.Image, gr.Number]:
    """The query (text and/or image) and top-n inputs of a ranking tab."""
    with gr.Column(scale=1):
        text = gr.Textbox(label=I18N("query_text"), lines=2, elem_id=elem_id)
        image = ImageBox(label=I18N("query_image"), type="filepath", height=200)
        top_n = gr.Number(0, label=I18N("top_n"), precision=0, minimum=0)
    return text, image, top_n


MODEL_DEFAULT = "Model default"  # the preset that leaves the instruction empty: each model's own default


def _instruction_row(models: ModelSet) -> tuple[gr.Textbox, gr.Dropdown]:
    """The model picker (when several models are served), the task preset and the editable instruction.

    The instruction starts empty, which means each model's own default instruction (lychee's and
    Qwen3-VL-Reranker's differ); the placeholder shows the picked model's.
    """
    presets = {MODEL_DEFAULT: "", **INSTRUCTION_PRESETS}

    def placeholder(name: str | None) -> str:
        return models.get(name).family.default_instruction

    with gr.Row():
        picker = gr.Dropdown(models.names, value=models.names[0], label=I18N("model"), scale=1,
                             visible=len(models) > 1, elem_id="model-picker")
        preset = gr.Dropdown(list(presets), value=MODEL_DEFAULT, label=I18N("instruction_preset"), scale=1)
        instruction = gr.Textbox("", placeholder=placeholder(None), label=I18N("instruction"), lines=2, scale=4,
                                 elem_id="instruction")
    preset.change(presets.get, preset, instruction, api_visibility="private", queue=False)
    picker.change(lambda name: gr.update(placeholder=placeholder(name)), picker, instruction,
                  api_visibility="private", queue=False)
    return instruction, picker


def _single_tab(score: Callable, instruction: gr.Textbox, model: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_single"), id="single"):
        with gr.Row():
            with gr.Column():
                query_text = gr.Textbox(label=I18N("query_text"), lines=2, elem_id="single-query")
                query_image = ImageBox(label=I18N("query_image"), type="filepath", height=200)
            with gr.Column():
                document_text = gr.Textbox(label=I18N("document_text"), lines=4, elem_id="single-document")
                document_image = ImageBox(label=I18N("document_image"), type="filepath", height=200)
        button = gr.Button(I18N("score_button"), variant="primary", elem_id="score-button")
        with gr.Row():
            result = gr.Markdown(label=I18N("result"), elem_id="single-result")
            details = gr.JSON(label=I18N("details"))
        gr.Examples(
            [["white ceramic coffee cup with a minimalist mountain line pattern", None,
              "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml", _asset_image("mountain_cup.png")]],
            [query_text, query_image, document_text, document_image],
            label=I18N("examples"),
            # Named examples: Gradio would otherwise head the table with untranslated label keys.
            example_labels=["☕ Mountain-pattern cup: text query, text + image document"],
        )
    button.click(score, [query_text, query_image, document_text, document_image, instruction, model],
                 [result, details], api_name="score", **MODEL_WORK)


def _batch_tab(rerank: Callable, instruction: gr.Textbox, model: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_batch"), id="batch"):
        with gr.Row():
            query_text, query_image, top_n = _query_column("batch-query")
            with gr.Column(scale=2):
                documents = gr.Textbox(label=I18N("documents"), info=I18N("documents_info"), lines=12,
                                       elem_id="batch-documents")
                images = gr.File(label=I18N("document_images"), file_count="multiple", file_types=["image"])
        button = gr.Button(I18N("rerank_button"), variant="primary", elem_id="rerank-button")
        table = gr.Markdown(label=I18N("ranking"), elem_id="batch-table")
        details = gr.JSON(label=I18N("details"))
        gr.Examples(
            [["", _asset_image("mountain_cup.png"), _asset_text("cups.txt"), None, 0],
             ["保温杯 500ml", None, _asset_text("cups.txt"), None, 3]],
            [query_text, query_image, documents, images, top_n],
            label=I18N("examples"),
            example_labels=["☕ Cup photo vs. 10 product descriptions", "🥤 保温杯 500ml, top 3"],
        )
    button.click(rerank, [query_text, query_image, documents, images, instruction, top_n, model], [table, details],
                 api_name="rerank", **MODEL_WORK)


def _images_tab(rank_images: Callable, instruction: gr.Textbox, model: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_images"), id="images"):
        with gr.Row():
            query_text, query_image, top_n = _query_column("images-query")
            with gr.Column(scale=2):
                files = gr.File(label=I18N("images"), file_count="multiple", file_types=["image"])
        button = gr.Button(I18N("rank_button"), variant="primary", elem_id="rank-button")
        gallery = gr.Gallery(label=I18N("gallery"), columns=5, height="auto", elem_id="images-gallery")
        details = gr.JSON(label=I18N("details"))
        example_images = sorted(str(p) for p in (ASSETS_DIR / "images").glob("*.png"))
        if example_images:
            gr.Examples([["a white cup with a mountain line pattern", None, example_images, 0]],
                        [query_text, query_image, files, top_n],
                        label=I18N("examples"),
                        example_labels=["🖼 Six product drawings vs. 'a white cup with a mountain line pattern'"])
    button.click(rank_images, [query_text, query_image, files, instruction, top_n, model], [gallery, details],
                 api_name="rank_images", **MODEL_WORK)


def _compare_tab(compare: Callable, instruction: gr.Textbox, models: ModelSet) -> None:
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
                images = gr.File(label=I18N("document_images"), file_count="multiple", file_types=["image"])
        button = gr.Button(I18N("compare_button"), variant="primary", elem_id="compare-button")
        table = gr.Markdown(elem_id="compare-table")
        details = gr.JSON(label=I18N("details"))
        gr.Examples([["保温杯 500ml", None, _asset_text("cups.txt"), None]], [query_text, query_image, documents, images],
                    label=I18N("examples"), example_labels=["🥤 保温杯 500ml vs. 10 product descriptions"])
    button.click(compare, [query_text, query_image, documents, images, instruction, model_a, model_b],
                 [table, details], api_name="compare", **MODEL_WORK)


def _evaluate_tab(evaluate: Callable, instruction: gr.Textbox) -> None:
    with gr.Tab(I18N("tab_eval"), id="evaluate"):
        gr.Markdown(I18N("eval_intro"))
        with gr.Row():
            data = gr.File(label=I18N("eval_data"), file_types=[".jsonl"], elem_id="eval-data")
            images = gr.File(label=I18N("eval_images"), file_types=[".zip"])
            with gr.Column():
                k = gr.Textbox("1,5,10", label=I18N("eval_k"))
                skip_bad = gr.Checkbox(False, label=I18N("eval_skip_bad"))
        button = gr.Button(I18N("eval_button"), variant="primary", elem_id="eval-button")
        with gr.Row():
            table = gr.Markdown(elem_id="eval-table")
            chart = gr.BarPlot(x="bar", y="value", color="stage", label=I18N("eval_chart"), x_label_angle=-45,
                               y_lim=[0, 1], height=360)
        details = gr.JSON(label=I18N("details"))
        sample = ASSETS_DIR / "eval" / "sample.jsonl"
        if sample.is_file():
            gr.Examples([[str(sample), str(sample.parent / "images.zip"), "1,5,10"]], [data, images, k],
                        label=I18N("examples"), example_labels=["🔷 Shapes, colours and cups (sample set)"])
    button.click(evaluate, [data, images, k, instruction, skip_bad], [table, chart, details], api_name="evaluate",
                 **MODEL_WORK)


def build_demo(scorers, *, demo_mode: bool = False, limits: Limits = Limits(), concurrency: int = 1,
               request_timeout: float | None = None) -> gr.Blocks:
    """The whole page, over one scorer or several (a list or a ModelSet; the first is the default).

    Nothing is loaded here: the scorers come in ready. The Compare tab shows with two models or more.
    """
    models = ModelSet.of(scorers)
    handlers = make_handlers(models, limits, request_timeout)
    with gr.Blocks(title="Lychee reranker", analytics_enabled=False) as demo:
        if demo_mode:
            gr.Markdown(I18N("demo_banner"), elem_id="demo-banner")
        gr.Markdown(I18N("title"))
        instruction, model = _instruction_row(models)
        with gr.Tabs():
            _single_tab(handlers.score, instruction, model)
            _batch_tab(handlers.rerank, instruction, model)
            _images_tab(handlers.rank_images, instruction, model)
            if len(models) > 1:
                _compare_tab(handlers.compare, instruction, models)
            _evaluate_tab(handlers.evaluate, instruction)
    # The one place queueing is set up: the model's work (MODEL_WORK) runs `concurrency` requests at
    # once, one per model replica.
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    return demo
