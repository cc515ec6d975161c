"""The Evaluate tab: a labelled set, first stage vs. reranked, for every served model."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from .. import evaluation
from ..calibration import by_pair, curves, labelled_of
from ..config import Limits
from ..contract import InputError, ScoringCancelledError, ScoringTimeoutError
from .downloads import write_downloads
from .error_words import reason
from .forms import ASSETS_DIR, PageError, cell
from .layout import I18N, examples, run_buttons, swipe_hint, wire
from .translations import language, text


def extract_images(archive: str, target: Path, limits: Limits = Limits(), lang: str = "en", check=None) -> Path:
    """Unpack an uploaded zip of images into `target`, refusing paths that climb out of it, more members
    or bytes than the limits allow, and what cannot be unpacked; `check` (the request's deadline and
    Stop) is called between members."""

    def refused(reason: str) -> PageError:
        return PageError(text("error_zip", lang, reason=reason))

    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > limits.max_zip_members:
                raise refused(f"{len(members):,} files, more than {limits.max_zip_members:,}")
            if sum(member.file_size for member in members) > limits.max_zip_bytes:
                raise refused(f"unpacks to more than {limits.max_zip_bytes / 2**30:g} GB")
            root = target.resolve()
            for member in members:
                if not (root / member.filename).resolve().is_relative_to(root):
                    raise refused(f"unsafe path {member.filename[:200]}")
            for member in members:
                if check is not None:
                    check()
                bundle.extract(member, target)
    except zipfile.BadZipFile:
        raise refused("not a zip file") from None
    except (ScoringTimeoutError, ScoringCancelledError):
        raise
    except (RuntimeError, NotImplementedError, OSError, EOFError) as error:  # encrypted, unknown compression, ...
        raise refused(f"cannot unpack it ({type(error).__name__})") from None
    return target


def _eval_table(report: dict, lang: str) -> str:
    """The metrics table and its summary line, in the page's language (the one renderer, translated words)."""
    return evaluation.report_table(
        {**report, "models": {cell(name, 40): entry for name, entry in report["models"].items()}},
        lambda key, **values: text(key, lang, **values),
    )


def _eval_detail(line: evaluation.BadLine, has_zip: bool, lang: str) -> str:
    """A bad line's problem in the page's language, with a hint when its images are missing."""
    error = line.error
    detail = f"{error.field}: {reason(error, lang)}" if error.field else reason(error, lang)
    if error.code == "eval_image_missing" and not has_zip:
        detail += text("hint_eval_zip", lang)
    return detail


def _eval_problem(line: evaluation.BadLine, has_zip: bool, lang: str) -> PageError:
    return PageError(text("error_eval_line", lang, line=line.line, reason=_eval_detail(line, has_zip, lang)))


def evaluate_view(
    req, data_file, images_zip, ks_text, instruction, skip_bad=False, *, on_progress: Callable[[int, int], None] | None = None
) -> tuple[str, Any, dict]:
    """The Evaluate tab (a request of the service's, `req`): the metrics table, a chart's data (first stage vs.
    each served model, side by side) and the report. Each line is one request of its own under the server's
    limits; the request's deadline covers the whole run, its Stop event ends it.
    """
    import pandas as pd

    lang = req.context.language
    limits, context = req.limits, req.context
    if not data_file:
        raise PageError(text("error_data_missing", lang))
    try:
        ks = evaluation.parse_ks(str(ks_text or "1,5,10"))
    except InputError:
        raise PageError(text("error_k", lang)) from None
    data = Path(data_file)
    models = req.service.models
    with tempfile.TemporaryDirectory(prefix="lychee-eval-") as unpacked:
        base_dir = extract_images(images_zip, Path(unpacked), limits, lang, context.check) if images_zip else data.parent
        try:
            queries, skipped = evaluation.load_queries(data, skip_bad=bool(skip_bad), base_dir=base_dir)
        except evaluation.BadLine as line:
            raise _eval_problem(line, bool(images_zip), lang) from None
        if not queries:
            if skipped:
                raise PageError(
                    text(
                        "error_eval_all_skipped",
                        lang,
                        count=len(skipped),
                        line=skipped[0].line,
                        reason=_eval_detail(skipped[0], bool(images_zip), lang),
                    )
                )
            raise PageError(text("error_eval_empty", lang))
        try:
            # A line's own instruction wins; the page's box applies to lines without one.
            report = req.evaluate(
                dict(zip(models.names, models.scorers)),
                queries,
                ks,
                instruction=instruction or None,
                skip_bad=bool(skip_bad),
                skipped=skipped,
                on_progress=on_progress,
            )
        except evaluation.BadLine as line:
            raise _eval_problem(line, bool(images_zip), lang) from None
    report["calibration"] = req.service.calibrate(report)  # the thresholds these labels give (lychee eval --calibrate)
    stages = [(text("stage_first", lang), report["first_stage"])]
    stages += [
        (name if len(models) > 1 else text("stage_reranked", lang), entry["reranked"]) for name, entry in report["models"].items()
    ]
    rows = [
        {"bar": f"{key} · {label}", "metric": key, "stage": label, "value": values[key]}
        for key in evaluation.metric_keys(ks)
        if key in report["first_stage"]
        for label, values in stages
    ]
    # The chart's bars in the table's order. Gradio sorts only the x axis of a bar chart, and these bars are
    # horizontal (their labels on the y axis), which Vega sorts by text; so each label starts with as many
    # zero-width spaces as bars come before it: invisible, and in order as text. `bar` keeps the plain label.
    for position, row in enumerate(rows):
        row["label"] = "\u200b" * position + row["bar"]
    return _eval_table(report, lang), pd.DataFrame(rows), report


def calibration_view(report: dict | None, lang: str = "en"):
    """The thresholds of a run (its report's `calibration`): precision and recall of "show the pairs scored >= t"
    against t, for each model and modality pair, the chosen thresholds drawn as vertical lines; and their table
    (with "too few labels" where there were)."""
    import pandas as pd

    found = (report or {}).get("calibration")
    if not found:
        return None, ""
    several = len(found["models"]) > 1
    grouped = by_pair(labelled_of(report))
    rows, targets = [], found["targets"]
    header = [
        text(key, lang) for key in ("col_model", "col_pair", "col_pairs", "col_relevant", "col_show_first", "col_filter_below")
    ]
    table = ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (model, kind), (scores, relevant) in grouped.items():
        name = f"{model} · {kind}" if several else kind
        for t, precision, recall in curves(scores, relevant):
            rows.append({"threshold": t, "value": precision, "curve": f"{name} · {text('curve_precision', lang)}"})
            rows.append({"threshold": t, "value": recall, "curve": f"{name} · {text('curve_recall', lang)}"})
        entry = found["models"][model][kind]
        for key in ("show_first", "filter_below"):
            if entry[key] is not None:  # a vertical line at the chosen threshold
                label = f"{name} · {text(f'col_{key}', lang)} {entry[key]:.3f}"
                rows += [{"threshold": entry[key], "value": value, "curve": label} for value in (0.0, 1.0)]
        shown = [f"{entry[key]:.4f}" if entry[key] is not None else "—" for key in ("show_first", "filter_below")]
        table.append(f"| {cell(model, 40)} | {kind} | {entry['pairs']} | {entry['relevant']} | {shown[0]} | {shown[1]} |")
        if entry.get("note"):  # too few labels, or no threshold reaches the precision
            few = entry["pairs"] < targets["min_pairs"] or entry["relevant"] < targets["min_relevant"]
            note = "too_few_labels" if few else "no_precision"
            words = text(note, lang, pairs=entry["pairs"], relevant=entry["relevant"], precision=targets["precision"])
            table.append(f"| | {words} | | | | |")
    intro = text("calibration_intro", lang, precision=targets["precision"], missed=targets["relevant_missed"])
    return pd.DataFrame(rows), intro + "\n\n" + "\n".join(table)


def evaluate_tab(handlers: SimpleNamespace, instruction: gr.Textbox) -> None:
    with gr.Tab(I18N("tab_eval"), id="evaluate"):
        gr.Markdown(I18N("eval_intro"))
        with gr.Row():
            data = gr.File(label=I18N("eval_data"), file_types=[".jsonl"], elem_id="eval-data")
            images = gr.File(label=I18N("eval_images"), file_types=[".zip"], elem_id="eval-images")
            with gr.Column():
                k = gr.Textbox("1,5,10", label=I18N("eval_k"))
                skip_bad = gr.Checkbox(False, label=I18N("eval_skip_bad"))
        button, stop, message = run_buttons("eval_button", "eval-button")
        table = gr.Markdown(label=I18N("result"), elem_id="eval-table")
        swipe_hint()
        # Horizontal bars grouped by metric: each bar's label names its metric and stage (first stage, or the
        # model) on one line, on a phone too (rotated labels overlapped); the colour is the stage's. No
        # legend: Gradio draws only its title here, and the labels already say it.
        chart = gr.BarPlot(
            x="value",
            y="label",
            color="stage",
            label=I18N("eval_chart"),
            x_lim=[0, 1],
            x_title="Score",
            y_title="Metric at k",
            colors_in_legend=[],
            elem_id="eval-chart",
        )
        # The thresholds the labels give (lychee eval --calibrate's file, among the downloads).
        curves_plot = gr.LinePlot(
            x="threshold",
            y="value",
            color="curve",
            label=I18N("eval_curves"),
            y_lim=[0, 1],
            x_title="Threshold",
            y_title="Precision / recall",
            elem_id="eval-curves",
        )
        thresholds = gr.Markdown(elem_id="eval-thresholds")
        files = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="eval-downloads")
        details = gr.JSON(label=I18N("details"))
        kept = gr.State(None)  # the last report, as the run produced it: the downloads are written from it
        sample = ASSETS_DIR / "eval" / "sample.jsonl"
        if sample.is_file():
            gr.File(
                [str(sample), str(sample.parent / "images.zip")],
                label=I18N("sample_download"),
                file_count="multiple",
                interactive=False,
                elem_id="eval-sample",
            )
            examples([[str(sample), str(sample.parent / "images.zip"), "1,5,10"]], [data, images, k], ["example_eval"])
    wire(
        button,
        stop,
        handlers.evaluate,
        [data, images, k, instruction, skip_bad],
        [table, chart, details, kept],
        "evaluate",
        handlers,
        message=message,
        downloads=(results_of, [kept], [files, curves_plot, thresholds]),
    )


def results_of(report: dict | None, request: gr.Request = None):
    """After a run: its downloads (the report, its metrics, its calibration file), the precision and recall
    against the threshold and the thresholds' table (`calibration_view`)."""
    lang = language(request.headers.get("accept-language") if request is not None else None)
    plot, table = calibration_view(report, lang)
    return write_downloads(report, "evaluation"), plot, table
