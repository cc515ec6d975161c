"""The Search tab (with `lychee load --embedding-model`): pick a collection, type words or drop a picture, see the
reranked gallery best first with both scores (a toggle shows the first stage's own order), Why? on any result; a
form under it indexes uploads into a collection (search/uploads.py). The views here; the handlers, which are also
gradio_client's `/search_page` and `/index_files`, in `collections.py`."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from ..contract import Item
from ..search.searching import check_counts, first_stage, read_hits, rerank_hits, shown
from .forms import PageError, query_values, verdict
from .layout import I18N, MODEL_WORK, ImageBox, checked, run_buttons, wire
from .translations import text
from .why import show_maps, why_panel

THUMBNAIL = 320  # the longer side of a result's picture in the gallery


def text_card(words: str) -> Image.Image:
    """A text document's picture for the gallery: its first words on a card."""
    card = Image.new("RGB", (THUMBNAIL, THUMBNAIL), (250, 248, 240))  # square: the gallery crops nothing of it
    lines = textwrap.wrap(" ".join((words or "").split())[:400], width=22)[:10]
    ImageDraw.Draw(card).multiline_text((36, 36), "\n".join(lines), fill=(30, 30, 30), font=ImageFont.load_default(22))
    return card


def thumbnail(item: Item) -> Image.Image:
    """What the gallery shows of a result: its picture (a page's rendering, a clip's first frame) or a text card."""
    picture = item.images[0] if item.images else item.pages.images[0] if item.pages is not None else None
    if picture is None and item.video is not None:
        picture = item.video.frames[0]
    if picture is None:
        return text_card(item.text or "")
    small = picture.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    return small


def search_view(req, store, embedder, scorer, collection, query_text, query_image, top_k, rerank_top_n, instruction):
    """Search a collection from the page: the found dict of both stages (rows as /v1/search answers them, pictures
    and each row's bands), kept in the session's State for the order toggle and Why?."""
    lang = req.context.language
    if not collection:
        raise PageError(text("error_collection_missing", lang))
    top_k, rerank_top_n = check_counts(top_k, rerank_top_n)
    query, _ = query_values(query_text, query_image, lang)
    query_item, hits = first_stage(req, store, embedder, collection, query, top_k)
    items = read_hits(req, store, scorer, query, hits, "top_k")  # every hit's picture; the reranker reads the first n
    reranked = rerank_hits(req, scorer, query_item, hits[:rerank_top_n], items[:rerank_top_n], instruction)
    bands = {index: req.bands(scorer, query_item, items[index]) for index, _ in reranked}  # by the hit's position
    rank_of = {index: rank for rank, (index, _) in enumerate(reranked, start=1)}
    first = []
    for position, hit in enumerate(hits):
        row = {**shown(hit), "score": hit.score}
        if position in rank_of:
            row["reranked"] = rank_of[position]
        first.append(row)
    results = [{**row, "first_stage_rank": index + 1} for index, row in reranked]
    return {
        "collection": collection,
        "first_stage": first,
        "results": results,
        "order": [index for index, _ in reranked],
        "pictures": [thumbnail(item) for item in items],
        "bands": bands,
        "hits": hits,
    }


def gallery_of(found: dict | None, first_order: bool, lang: str) -> list:
    """The gallery of a search: the reranked results best first, or the first stage's own order."""
    if not found:
        return []
    shown_rows = []
    if first_order:
        for position, row in enumerate(found["first_stage"]):
            after = (
                text("search_reranked_as", lang, rank=row["reranked"]) if "reranked" in row else text("search_not_reranked", lang)
            )
            caption = f"#{position + 1} · {text('search_first_score', lang)} {row['score']:.3f} · {name_of(row, lang)} · {after}"
            shown_rows.append((found["pictures"][position], caption))
        return shown_rows
    for rank, (index, row) in enumerate(zip(found["order"], found["results"]), start=1):
        reading = verdict(row["relevance_score"], lang, found["bands"][index])
        caption = (
            f"#{rank} · {reading['mark']} {row['relevance_score']:.3f} · {name_of(row, lang)} · "
            f"{text('search_first_stage_was', lang, rank=index + 1, score=row['first_stage_score'])}"
        )
        shown_rows.append((found["pictures"][index], caption))
    return shown_rows


def name_of(row: dict, lang: str) -> str:
    name = row["path"].rsplit("/", 1)[-1]
    return text("pdf_page", lang, name=name, page=row["page"]) if row.get("page") else name


def hit_at(found: dict | None, first_order: bool, position) -> object | None:
    """The hit the gallery shows at `position` (in the order shown), or None."""
    if not found or not isinstance(position, int):
        return None
    order = list(range(len(found["hits"]))) if first_order else found["order"]
    return found["hits"][order[position]] if 0 <= position < len(order) else None


def answer_of(found: dict) -> dict:
    """A search as gradio_client's `/search_page` answers it: both stages as /v1/search, no pictures."""
    return {"collection": found["collection"], "first_stage": found["first_stage"], "results": found["results"]}


def search_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, on_load) -> None:
    """The tab; `on_load`: the page's load event (the collections' names are listed when the page opens)."""
    with gr.Tab(I18N("tab_search"), id="search"):
        with gr.Row():
            with gr.Column(scale=1):
                collection = gr.Dropdown(
                    [], label=I18N("collection"), allow_custom_value=True, elem_id="search-collection", interactive=True
                )
                query_text = gr.Textbox(label=I18N("query_text"), lines=2, elem_id="search-query")
                query_image = checked(ImageBox(label=I18N("query_image"), type="filepath", height=180), "error_query_image")
                with gr.Row():
                    top_k = gr.Number(20, label=I18N("search_top_k"), precision=0, minimum=1, min_width=120)
                    rerank_top_n = gr.Number(10, label=I18N("search_rerank_top_n"), precision=0, minimum=0, min_width=120)
            with gr.Column(scale=2):
                first_order = gr.Checkbox(False, label=I18N("search_first_order"), elem_id="search-first-order")
                gallery = gr.Gallery(label=I18N("gallery"), columns=5, height="auto", elem_id="search-gallery")
        button, stop, message = run_buttons("search_button", "search-button")
        gr.Markdown(I18N("why_pick_image"))
        panel = why_panel("search-why")
        details = gr.JSON(label=I18N("details"))
        found = gr.State(None)
        with gr.Accordion(I18N("index_title"), open=False, elem_id="index-form"):
            gr.Markdown(I18N("index_intro"))
            files = gr.File(
                label=I18N("index_files"),
                file_count="multiple",
                file_types=["image", "video", ".pdf", ".txt", ".md"],
                height=150,
                elem_id="index-files",
            )
            index_button = gr.Button(I18N("index_button"), elem_id="index-button")
            indexed = gr.Markdown(elem_id="index-message")
            counts = gr.JSON(visible=False)
        with gr.Accordion(I18N("search_eval_title"), open=False, elem_id="search-eval-form"):
            gr.Markdown(I18N("search_eval_intro"))
            with gr.Row():
                labelled = gr.File(label=I18N("eval_data"), file_types=[".jsonl", ".json"], elem_id="search-eval-file", scale=3)
                cutoffs = gr.Textbox("1,5,10", label=I18N("eval_k"), scale=1)
            evaluate_button = gr.Button(I18N("search_eval_button"), elem_id="search-eval-button")
            evaluated = gr.Markdown(elem_id="search-eval-table")
            evaluation = gr.JSON(label=I18N("details"), visible=False)
    refreshed = {"fn": handlers.collection_names, "inputs": collection, "outputs": collection, "api_visibility": "private"}
    on_load(**refreshed, queue=False, show_progress="hidden")
    wire(
        button,
        stop,
        handlers.search_page,
        [collection, query_text, query_image, top_k, rerank_top_n, first_order, instruction, model],
        [gallery, details, found],
        "search_page",
        handlers,
        message=message,
        show_progress_on=[gallery],
    )
    first_order.change(
        handlers.reorder, [found, first_order], gallery, api_visibility="private", queue=False, show_progress="hidden"
    )
    index_event = index_button.click(
        handlers.index_files,
        [collection, files],
        [indexed, counts],
        api_name="index_files",
        **MODEL_WORK,
        show_progress_on=[indexed],
    )
    index_event.failure(handlers.failed, None, indexed, queue=False, api_visibility="private", show_progress="hidden")
    evaluate_event = evaluate_button.click(
        handlers.evaluate_search,
        [collection, labelled, cutoffs, top_k, rerank_top_n, instruction, model],
        [evaluated, evaluation],
        api_name="evaluate_search",
        **MODEL_WORK,
        show_progress_on=[evaluated],
    )
    evaluate_event.failure(handlers.failed, None, evaluated, queue=False, api_visibility="private", show_progress="hidden")
    index_event.success(**refreshed, queue=False, show_progress="hidden")
    show_maps(
        gallery.select(
            handlers.explain_hit,
            [query_text, query_image, instruction, model, found, first_order],
            panel.outputs,
            api_visibility="private",
            **MODEL_WORK,
        ),
        panel,
    )
