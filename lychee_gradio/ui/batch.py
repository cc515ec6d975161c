"""The Batch rerank tab: a query and text blocks (plus images) ranked best-first as a Markdown table."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..contract import RequestContext, Scorer
from ..settings import Limits
from .downloads import write_downloads
from .forms import (above, cell, document_items, hidden_note, image_rules, move, preview, query_item, top_n_from,
                    verdict, view)
from .layout import I18N, MODEL_WORK, asset_image, asset_text, both, query_column, run_buttons, wire
from .translations import text
from .why import show_maps, why_panel


@view
def rerank_view(scorer: Scorer, query_text, query_image, documents, document_images, instruction,
                top_n, min_score: float | None = 0, *, limits: Limits = Limits(),
                context: RequestContext | None = None) -> tuple[str, list[dict]]:
    """The documents best-first: a Markdown table and a row per document for the JSON."""
    lang = context.language
    top_n = top_n_from(top_n, lang)
    rules = image_rules(limits, context, scorer, images=[query_image, *(document_images or [])])
    query = query_item(query_text, query_image, rules, lang)
    parsed, items = document_items(documents, document_images, limits, rules, lang)
    results, hidden = above(scorer.rerank(query, items, instruction or None, top_n=top_n, context=context.use(scorer)), min_score)
    rows = [
        {"rank": rank, "index": result.index, "score": result.score, "verdict": verdict(result.score)["verdict"],
         "text": parsed[result.index]["text"], "image": parsed[result.index]["name"]}
        for rank, result in enumerate(results, start=1)
    ]
    header = [text(key, lang) for key in ("col_rank", "col_score", "col_document", "col_input", "col_move")]
    lines = ["| " + " | ".join(header) + " |", "| ---: | --- | --- | ---: | :---: |"]
    for row in rows:
        mark = verdict(row["score"])["mark"]
        lines.append(f"| {row['rank']} | {mark} {row['score']:.3f} | {cell(preview(parsed[row['index']]))} | "
                     f"{row['index'] + 1} | {move(row['index'], row['rank'])} |")
    return "\n".join(lines) + hidden_note(hidden, len(rows), min_score, lang), rows


def batch_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_batch"), id="batch"):
        with gr.Row():
            query_text, query_image, top_n, min_score = query_column("batch-query")
            with gr.Column(scale=2):
                documents = gr.Textbox(label=I18N("documents"), info=I18N("documents_info"), lines=12,
                                       elem_id="batch-documents")
                images = gr.File(label=I18N("document_images"), file_count="multiple", file_types=["image"],
                                 height=160)
        button, stop = run_buttons("rerank_button", "rerank-button")
        gr.Markdown(I18N("shortcut_hint"))
        table = gr.Markdown(label=I18N("ranking"), elem_id="batch-table")
        chosen = gr.Dropdown([], label=I18N("why_choose"), interactive=True, elem_id="batch-why-choose")
        panel = why_panel("batch-why")
        files = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="batch-downloads")
        details = gr.JSON(label=I18N("details"))
        gr.Examples(
            [["", asset_image("mountain_cup.png"), asset_text("cups.txt"), None, 0, "E-commerce"],
             ["保温杯 500ml", None, asset_text("cups.txt"), None, 3, "Product search"]],
            [query_text, query_image, documents, images, top_n, preset],
            label=I18N("examples"),
            example_labels=[both("example_batch_photo"), both("example_batch_text")],
        )
    event = wire(button, stop, handlers.rerank, [query_text, query_image, documents, images, instruction, top_n, model,
                                                 min_score],
                 [table, details], "rerank", handlers.stop,
                 downloads=(lambda rows: write_downloads(rows, "ranking"), details, files))
    event.then(result_choices, details, chosen, queue=False, api_visibility="private")
    show_maps(chosen.input(handlers.explain_document, [query_text, query_image, documents, images, instruction, model,
                                                        chosen], panel.outputs, api_visibility="private", **MODEL_WORK),
              panel)


def result_choices(rows: list[dict] | None):
    """The ranking's results to choose from for the Why? panel: "#rank · preview", valued by input number."""
    choices = [(f"#{row['rank']} · " + " · ".join(part for part in (row.get("image"), row.get("text")) if part)[:60],
                row["index"] + 1) for row in (rows or [])]
    return gr.update(choices=choices, value=None)
