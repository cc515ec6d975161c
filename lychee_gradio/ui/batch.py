"""The Batch rerank tab: a query and text blocks (plus images) ranked best-first as a Markdown table."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..contract import Scorer
from .downloads import ranking_downloads
from .forms import (
    above,
    cell,
    document_items,
    hidden_note,
    legend,
    media_names,
    move,
    part_words,
    preview,
    rerank_page,
    stopped_note,
    verdict,
)
from .layout import I18N, MODEL_WORK, asset_image, asset_text, checked, examples, query_column, run_buttons, swipe_hint, wire
from .translations import text
from .why import show_maps, why_panel


def rerank_view(
    req,
    scorer: Scorer,
    query_text,
    query_image,
    documents,
    document_images,
    instruction,
    top_n,
    min_score: float | None = 0,
    *,
    kept: list | None = None,
) -> tuple[str, list[dict]]:
    """The documents best-first (a request of the service's, `req`): a Markdown table and a row per document for
    the JSON. `kept` (a list) gets the whole ranking, for `filter_ranking` to show it again under another "Hide
    scores below" without scoring."""
    lang = req.context.language
    query, items, parsed = document_items(req, [scorer], query_text, query_image, documents, document_images)
    ranked = rerank_page(req, scorer, query, items, instruction, top_n)
    stopped = stopped_note(ranked, lang)
    rows = [
        {
            "rank": rank,
            "index": index,
            "score": pair.score,
            **bands.reading(pair.score),
            "text": parsed[index]["text"],
            **media_names(parsed[index]),
            **({"part": pair.part.as_dict()} if pair.part is not None else {}),
            "move": move(index, rank),
        }
        for rank, ((index, pair), bands) in enumerate(zip(ranked.results, ranked.bands), start=1)
    ]
    # A long document's best part (a PDF's page, a long text's chunk) beside its preview.
    parts = {index: part_words(pair.part, lang) for index, pair in ranked.results}

    def shown(index: int) -> str:
        return preview(parsed[index]) + (f" · ⟨{parts[index]}⟩" if parts[index] else "")

    lines = [
        f"| {row['rank']} | {verdict(row['score'], lang, bands)['mark']} {row['score']:.3f} | "
        f"{cell(shown(row['index']))} | {row['index'] + 1} | {row['move']} |"
        for row, bands in zip(rows, ranked.bands)
    ]
    if stopped:
        gr.Warning(stopped, title=text("stopped_title", lang))
    ranking = {"rows": rows, "lines": lines, "stopped": stopped, "lang": lang, "bands": ranked.bands}
    if kept is not None:
        kept.append(ranking)
    return filter_ranking(ranking, min_score)


def filter_ranking(ranking: dict | None, min_score: float | None):
    """A ranking's table and rows with the scores below `min_score` hidden (the page's live filter)."""
    if not ranking:
        return gr.update(), gr.update()
    lang = ranking["lang"]
    rows, shown, hidden = above(ranking["rows"], ranking["lines"], min_score, ranking.get("bands"))
    header = [text(key, lang) for key in ("col_rank", "col_score", "col_document", "col_input", "col_move")]
    lines = ["| " + " | ".join(header) + " |", "| ---: | --- | --- | ---: | :---: |", *shown]
    if ranking["stopped"]:
        lines.insert(0, f"**⏹ {ranking['stopped']}**\n")
    note = hidden_note(hidden, len(rows), min_score, lang)
    return "\n".join(lines) + note + (legend(ranking.get("bands") or [], lang) if rows else ""), rows


def batch_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_batch"), id="batch"):
        with gr.Row():
            query_text, query_image, top_n, min_score = query_column("batch-query")
            with gr.Column(scale=2):
                documents = gr.Textbox(label=I18N("documents"), info=I18N("documents_info"), lines=12, elem_id="batch-documents")
                images = checked(
                    gr.File(
                        label=I18N("document_files"),
                        file_count="multiple",
                        file_types=["image", "video", ".pdf"],
                        height=160,
                        elem_id="batch-files",
                    )
                )
        button, stop, message = run_buttons("rerank_button", "rerank-button")
        gr.Markdown(I18N("shortcut_hint"))
        table = gr.Markdown(label=I18N("ranking"), elem_id="batch-table")
        swipe_hint()
        chosen = gr.Dropdown([], label=I18N("why_choose"), interactive=True, elem_id="batch-why-choose")
        panel = why_panel("batch-why")
        files = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="batch-downloads")
        details = gr.JSON(label=I18N("details"))
        # The whole ranking of the last run: "Hide scores below" filters it live. Inside the tab: a component
        # directly under gr.Tabs would count as a tab of its own.
        ranking = gr.State(None)
        examples(
            [
                ["", asset_image("mountain_cup.png"), asset_text("cups.txt"), None, 0, "E-commerce"],
                ["保温杯 500ml", None, asset_text("cups.txt"), None, 3, "Product search"],
            ],
            [query_text, query_image, documents, images, top_n, preset],
            ["example_batch_photo", "example_batch_text"],
        )
    event = wire(
        button,
        stop,
        handlers.rerank,
        [query_text, query_image, documents, images, instruction, top_n, model, min_score],
        [table, details, ranking],
        "rerank",
        handlers,
        message=message,
        downloads=(ranking_downloads("ranking"), [ranking, min_score], files),
    )
    min_score.change(
        filter_ranking, [ranking, min_score], [table, details], api_visibility="private", queue=False, show_progress="hidden"
    ).then(ranking_downloads("ranking"), [ranking, min_score], files, api_visibility="private", queue=False)
    event.then(result_choices, details, chosen, queue=False, api_visibility="private")
    show_maps(
        chosen.select(
            handlers.explain_document,
            [query_text, query_image, documents, images, instruction, model, chosen],
            panel.outputs,
            api_visibility="private",
            **MODEL_WORK,
        ),
        panel,
    )


def result_choices(rows: list[dict] | None):
    """The ranking's results to choose from for the Why? panel: "#rank · preview", valued by input number."""
    choices = [
        (
            f"#{row['rank']} · "
            + " · ".join(part for part in (row.get("image"), row.get("video"), row.get("text")) if part)[:60],
            row["index"] + 1,
        )
        for row in (rows or [])
    ]
    return gr.update(choices=choices, value=None)
