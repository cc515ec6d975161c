"""The Image ranking tab: one query, many uploaded images (and clips: shown by their first frame; PDFs: each page
ranked on its own, "paper.pdf, p. 3"), a gallery best-first."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import gradio as gr

from ..contract import Scorer
from ..video import MAX_FRAMES
from .downloads import ranking_downloads
from .forms import (
    ASSETS_DIR,
    PageError,
    Wording,
    above,
    is_pdf,
    is_video,
    part_words,
    query_values,
    read_page,
    rerank_page,
    stopped_note,
    upload_name,
    verdict,
)
from .layout import I18N, MODEL_WORK, checked, examples, query_column, run_buttons, wire
from .translations import text
from .why import show_maps, why_panel


def rank_images_view(
    req,
    scorer: Scorer,
    query_text,
    query_image,
    images,
    instruction,
    top_n,
    min_score: float | None = 0,
    *,
    on_progress: Callable[[int, int, str], None] | None = None,
    kept: list | None = None,
) -> tuple[list, list[dict]]:
    """Rank uploaded images (a request of the service's, `req`); `on_progress(done, total, description)` counts
    reading each image, preparing it, then scoring. `kept` (a list) gets the whole ranking, for
    `filter_gallery` (the live "Hide scores below")."""
    lang = req.context.language
    query, query_name = query_values(query_text, query_image, lang)
    paths = [str(path) for path in (images or [])]
    if not paths:
        raise PageError(text("error_images_missing", lang))
    count = len(paths)
    names = [upload_name(path) for path in paths]

    # One bar, three stages of `count` steps each: reading the uploads, preparing them for the model (resizing
    # and patching, in the engine; images it has seen before skip it), scoring.
    def read(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, 3 * count, text("progress_reading", lang, done=done, total=total))

    def prepared(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(2 * count - total + done, 3 * count, text("progress_preparing", lang, done=done, total=total))

    def scored(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(2 * count + done, 3 * count, text("progress_scoring", lang, done=done, total=total))

    wording = Wording(query_name, names, what="what_images", document_key="error_image")
    # A clip among the photos is ranked with them; a PDF's pages are ranked with them, each on its own ("split").
    documents = [
        {"text": None, "video": path}
        if is_video(name)
        else {"text": None, "pdf": path}
        if is_pdf(name)
        else {"text": None, "image": path}
        for path, name in zip(paths, names)
    ]
    query_item, items = read_page(req, [scorer], query, documents, wording, on_read=read)
    req.context_for(scorer).on_prepared = prepared
    ranked = rerank_page(req, scorer, query_item, items, instruction, top_n, on_progress=scored, long_documents="split")
    stopped = stopped_note(ranked, lang)
    if stopped:
        gr.Warning(stopped, title=text("stopped_title", lang))
    gallery, rows = [], []
    for rank, ((index, pair), bands) in enumerate(zip(ranked.results, ranked.bands), start=1):
        reading = verdict(pair.score, lang, bands)
        best = "★ " if rank == 1 and reading["colour"] != "red" else ""
        item, name, page = items[index], names[index], None
        shown = item.video.frames[0] if item.video is not None else paths[index]  # a clip: its first frame
        if item.pages is not None:  # a PDF's page: its rendering, named by its number
            shown, page = item.pages.images[pair.part.index], pair.part.page
            name = text("pdf_page", lang, name=name, page=page)
        elif pair.part is not None and pair.part.kind == "segment":  # a long clip's segment: its first frame, its seconds
            shown = item.video.frames[pair.part.index * MAX_FRAMES]
            name = f"{name}, {part_words(pair.part, lang)}"
        gallery.append((shown, f"{best}#{rank} · {reading['mark']} {pair.score:.3f} · {name}"))
        row = {"rank": rank, "index": index, "score": pair.score, "image": names[index]}
        if pair.part is not None:  # which page or segment the row is (its Why? explains that one)
            row[pair.part.kind] = page if page else pair.part.index
        rows.append(row)
    ranking = {"gallery": gallery, "rows": rows, "bands": ranked.bands}
    if kept is not None:
        kept.append(ranking)
    return filter_gallery(ranking, min_score)


def filter_gallery(ranking: dict | None, min_score: float | None):
    """A ranking's gallery and rows with the scores below `min_score` hidden (the page's live filter)."""
    if not ranking:
        return gr.update(), gr.update()
    rows, gallery, _ = above(ranking["rows"], ranking["gallery"], min_score, ranking.get("bands"))
    return gallery, rows


def images_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_images"), id="images"):
        with gr.Row():
            query_text, query_image, top_n, min_score = query_column("images-query")
            with gr.Column(scale=2):
                files = checked(
                    gr.File(
                        label=I18N("images"),
                        file_count="multiple",
                        file_types=["image", "video", ".pdf"],
                        height=150,
                        elem_id="images-files",
                    )
                )
                preview = gr.Gallery(
                    label=I18N("uploaded_images"),
                    columns=6,
                    height=220,
                    allow_preview=False,
                    interactive=False,
                    elem_id="images-preview",
                )
        button, stop, message = run_buttons("rank_button", "rank-button")
        gallery = gr.Gallery(label=I18N("gallery"), columns=5, height="auto", elem_id="images-gallery")
        gr.Markdown(I18N("why_pick_image"))
        panel = why_panel("images-why")
        downloads = gr.File(label=I18N("downloads"), file_count="multiple", interactive=False, elem_id="images-downloads")
        details = gr.JSON(label=I18N("details"))
        # The whole ranking of the last run: "Hide scores below" filters it live. Inside the tab: a component
        # directly under gr.Tabs would count as a tab of its own.
        ranking = gr.State(None)
        example_images = sorted(str(p) for p in (ASSETS_DIR / "images").glob("*.png"))
        if example_images:
            examples(
                [["a white cup with a mountain line pattern", None, example_images, 0, "Product search"]],
                [query_text, query_image, files, top_n, preset],
                ["example_images"],
            )
    # Thumbnails of what was uploaded, before ranking (the file list itself stays a small scrolling box).
    files.change(  # (a PDF is not shown here: its pages are read, under the request's limits, when it is ranked)
        lambda paths: [(path, upload_name(path)) for path in (paths or []) if not is_pdf(upload_name(path))],
        files,
        preview,
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )
    wire(
        button,
        stop,
        handlers.rank_images,
        [query_text, query_image, files, instruction, top_n, model, min_score],
        [gallery, details, ranking],
        "rank_images",
        handlers,
        message=message,
        downloads=(ranking_downloads("image-ranking"), [ranking, min_score], downloads),
        show_progress_on=[gallery],
    )
    min_score.change(
        filter_gallery, [ranking, min_score], [gallery, details], api_visibility="private", queue=False, show_progress="hidden"
    ).then(ranking_downloads("image-ranking"), [ranking, min_score], downloads, api_visibility="private", queue=False)
    show_maps(
        gallery.select(
            handlers.explain_image,
            [query_text, query_image, files, instruction, model, ranking, min_score],
            panel.outputs,
            api_visibility="private",
            **MODEL_WORK,
        ),
        panel,
    )
