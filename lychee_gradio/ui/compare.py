"""The Compare tab: one query's documents ranked by two served models side by side."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..contract import Scorer
from ..evaluation.metrics import kendall_tau, top_k_overlap
from ..ranking import best_first
from ..registry import ModelSet
from .batch import result_choices
from .forms import cell, document_items, media_names, preview, verdict
from .layout import I18N, MODEL_WORK, ImageBox, asset_text, checked, examples, run_buttons, swipe_hint, wire
from .translations import text
from .why import show_maps, why_panel


def compare_view(
    req,
    first: Scorer,
    second: Scorer,
    names: tuple[str, str],
    query_text,
    query_image,
    documents,
    document_images,
    instruction,
    *,
    top_k: int = 5,
) -> tuple[str, dict]:
    """The Compare tab: one query and its documents ranked by two models side by side.

    Agreement is Kendall's tau-b between the two score lists and the overlap of the two top-k
    sets; the rows are in the first model's order, and the documents whose ranks differ most are
    listed apart.
    """
    lang = req.context.language
    query, items, parsed = document_items(req, [first, second], query_text, query_image, documents, document_images)
    pairs_a = req.score(first, query, items, instruction or None)
    pairs_b = req.score(second, query, items, instruction or None)
    scores_a, scores_b = [pair.score for pair in pairs_a], [pair.score for pair in pairs_b]
    # Each model's score read by its own thresholds (calibrated per model and modality pair, where they are).
    bands_a = req.bands_of(first, query, items, list(enumerate(pairs_a)))
    bands_b = req.bands_of(second, query, items, list(enumerate(pairs_b)))
    order_a, order_b = best_first(scores_a), best_first(scores_b)
    rank_a = {index: rank for rank, index in enumerate(order_a, start=1)}
    rank_b = {index: rank for rank, index in enumerate(order_b, start=1)}
    rows = [
        {
            "index": i,
            "text": parsed[i]["text"],
            **media_names(parsed[i]),
            "score_a": scores_a[i],
            "rank_a": rank_a[i],
            "score_b": scores_b[i],
            "rank_b": rank_b[i],
        }
        for i in order_a
    ]
    k = min(top_k, len(items))
    disagreements = sorted(rows, key=lambda row: (-abs(row["rank_a"] - row["rank_b"]), row["rank_a"]))
    disagreements = [row for row in disagreements if row["rank_a"] != row["rank_b"]][:5]
    tau = kendall_tau(scores_a, scores_b)
    details = {
        "models": list(names),
        "kendall_tau": tau,
        "top_k": k,
        "top_k_overlap": top_k_overlap(order_a, order_b, k),
        "rows": rows,
        "disagreements": disagreements,
    }
    a, b = names
    score, document, number = (text(key, lang) for key in ("col_score", "col_document", "col_input"))
    lines = [
        f"**{text('kendall', lang)}** {'—' if tau is None else f'{tau:+.3f}'} · "
        f"**{text('overlap', lang, k=k)}** {details['top_k_overlap']:.0%}",
        "",
        f"| {document} | {text('col_model_rank', lang, name=cell(a, 40))} | {score} | "
        f"{text('col_model_rank', lang, name=cell(b, 40))} | {score} | {number} |",
        "| --- | ---: | --- | ---: | --- | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {cell(preview(parsed[row['index']]), 60)} | {row['rank_a']} | "
            f"{verdict(row['score_a'], lang, bands_a[row['index']])['mark']} {row['score_a']:.3f} | {row['rank_b']} | "
            f"{verdict(row['score_b'], lang, bands_b[row['index']])['mark']} {row['score_b']:.3f} | {row['index'] + 1} |"
        )
    if disagreements:
        lines += ["", f"**{text('disagree', lang)}**", ""]
        lines += [
            f"- #{row['index'] + 1} {cell(preview(parsed[row['index']]), 60)}: "
            f"{text('rank_vs', lang, a=row['rank_a'], b=row['rank_b'])}"
            for row in disagreements
        ]
    return "\n".join(lines), details


def compare_tab(handlers: SimpleNamespace, instruction: gr.Textbox, models: ModelSet) -> None:
    with gr.Tab(I18N("tab_compare"), id="compare"):
        with gr.Row():
            with gr.Column(scale=1):
                query_text = gr.Textbox(label=I18N("query_text"), lines=2, elem_id="compare-query")
                query_image = checked(ImageBox(label=I18N("query_image"), type="filepath", height=200), "error_query_image")
                model_a = gr.Dropdown(models.names, value=models.names[0], label=I18N("model_a"))
                model_b = gr.Dropdown(models.names, value=models.names[1], label=I18N("model_b"))
            with gr.Column(scale=2):
                documents = gr.Textbox(
                    label=I18N("documents"), info=I18N("documents_info"), lines=12, elem_id="compare-documents"
                )
                # The same uploads as Batch rerank: images and clips, attached with [image: ...] / [video: ...].
                images = checked(
                    gr.File(
                        label=I18N("document_files"),
                        file_count="multiple",
                        file_types=["image", "video", ".pdf"],
                        height=160,
                        elem_id="compare-files",
                    )
                )
        button, stop, message = run_buttons("compare_button", "compare-button")
        table = gr.Markdown(label=I18N("ranking"), elem_id="compare-table")
        swipe_hint()
        chosen = gr.Dropdown([], label=I18N("why_choose_both"), interactive=True, elem_id="compare-why-choose")
        with gr.Row():
            with gr.Column():
                first_panel = why_panel("compare-why-a")
            with gr.Column():
                second_panel = why_panel("compare-why-b")
        details = gr.JSON(label=I18N("details"))
        examples(
            [["保温杯 500ml", None, asset_text("cups.txt"), None]],
            [query_text, query_image, documents, images],
            ["example_compare"],
        )
    event = wire(
        button,
        stop,
        handlers.compare,
        [query_text, query_image, documents, images, instruction, model_a, model_b],
        [table, details],
        "compare",
        handlers,
        message=message,
    )
    event.then(
        lambda found: result_choices([{**row, "rank": row["rank_a"]} for row in (found or {}).get("rows", [])]),
        details,
        chosen,
        queue=False,
        api_visibility="private",
    )
    both_explained = chosen.select(
        handlers.explain_both,
        [query_text, query_image, documents, images, instruction, model_a, model_b, chosen],
        first_panel.outputs + second_panel.outputs,
        api_visibility="private",
        **MODEL_WORK,
    )
    show_maps(both_explained, first_panel)
    show_maps(both_explained, second_panel)
