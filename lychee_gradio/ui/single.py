"""The Single tab: one query, one document; the score, its verdict and the raw yes/no logits."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..contract import Scorer
from ..explain import DEFAULT_GRID, MAX_GRID
from .forms import PageError, is_pdf, is_video, legend, pair_of, part_words, upload_name, verdict
from .layout import I18N, MODEL_WORK, ImageBox, asset_image, checked, examples
from .translations import text
from .why import show_maps, why_panel


def single_document(document_text, document_image, document_files, lang: str = "en") -> dict:
    """The Single tab's document as the other tabs hold one: its text, its images (the image box's, then the uploaded
    images, in order) and at most one clip among the uploads."""
    files = [str(path) for path in (document_files or [])]
    clips = [path for path in files if is_video(upload_name(path))]
    if len(clips) > 1:
        raise PageError(text("error_one_video", lang))
    pdfs = [path for path in files if is_pdf(upload_name(path))]
    if len(pdfs) > 1:
        raise PageError(text("error_one_pdf", lang))
    images = ([document_image] if document_image else []) + [path for path in files if path not in clips and path not in pdfs]
    return {
        "text": document_text,
        "images": images,
        "image": images[0] if images else None,
        "video": clips[0] if clips else None,
        "pdf": pdfs[0] if pdfs else None,
    }


def score_view(
    req,
    scorer: Scorer,
    query_text,
    query_image,
    document_text,
    document_image,
    instruction,
    document_files=None,
    kept: list | None = None,
) -> tuple[str, dict]:
    """One pair (a request of the service's, `req`): Markdown (score, verdict, logits) and the JSON details. The
    document: its text, its image and `document_files` (more images, a clip), as every tab takes them. `kept` (a list)
    gets the best page's rendering where the document is a PDF (the tab shows it), else None."""
    lang = req.context.language
    document = single_document(document_text, document_image, document_files, lang)
    query, item = pair_of(req, scorer, query_text, query_image, document)
    (pair,) = req.score(scorer, query, [item], instruction or None)
    bands = req.bands(scorer, query, item, pair.part)  # the model and modality pair's, where calibrated
    reading = verdict(pair.score, lang, bands)
    details = {"score": pair.score, **bands.reading(pair.score), "yes_logit": pair.yes_logit, "no_logit": pair.no_logit}
    markdown = (
        f"## {reading['mark']} {pair.score:.3f}\n"
        f"**{reading['verdict'][:1].upper() + reading['verdict'][1:]}**\n\n"
        f"logit(yes) = {pair.yes_logit:.3f} · logit(no) = {pair.no_logit:.3f}" + legend([bands], lang)
    )
    if pair.part is not None:  # a long document: its best part named (and quoted, a chunk), every part's score below
        details.update(part=pair.part.as_dict(), parts=[{**p.part.as_dict(), "score": p.score} for p in pair.parts])
        markdown += f"\n\n**{text('best_part', lang)}:** {part_words(pair.part, lang)}"
        if pair.part.chars is not None:
            start, end = pair.part.chars
            quoted = item.text[start:end].strip()
            markdown += "\n\n> " + (quoted[:600] + (" …" if len(quoted) > 600 else "")).replace("\n", "\n> ")
    if kept is not None:
        best = pair.part is not None and pair.part.kind == "page" and item.pages is not None
        kept.append((item.pages.images[pair.part.index], part_words(pair.part, lang)) if best else None)
    return markdown, details


def single_tab(handlers: SimpleNamespace, instruction: gr.Textbox, model: gr.Dropdown, preset: gr.Dropdown) -> None:
    with gr.Tab(I18N("tab_single"), id="single"):
        with gr.Row(equal_height=True):
            with gr.Column():
                query_text = gr.Textbox(label=I18N("query_text"), lines=4, elem_id="single-query")
                query_image = checked(ImageBox(label=I18N("query_image"), type="filepath", height=220), "error_query_image")
            with gr.Column():
                document_text = gr.Textbox(label=I18N("document_text"), lines=4, elem_id="single-document")
                document_image = checked(
                    ImageBox(label=I18N("document_image"), type="filepath", height=220), "error_document_image"
                )
                # More images and a clip, as every other tab takes them (the image box's image comes first).
                document_files = checked(
                    gr.File(
                        label=I18N("document_more"),
                        file_count="multiple",
                        file_types=["image", "video", ".pdf"],
                        height=110,
                        elem_id="single-files",
                    )
                )
        button = gr.Button(I18N("score_button"), variant="primary", elem_id="score-button")
        with gr.Row():
            result = gr.Markdown(label=I18N("result"), elem_id="single-result")
            best_page = gr.Image(label=I18N("best_part"), visible=False, interactive=False, elem_id="single-best-page")
            details = gr.JSON(label=I18N("details"))
        page_kept = gr.State(None)  # the best page's rendering of a PDF (not part of the API's answer)
        with gr.Row(equal_height=True):
            why = gr.Button(I18N("why_button"), elem_id="why-button", scale=2)
            grid = gr.Slider(1, MAX_GRID, value=DEFAULT_GRID, step=1, label=I18N("why_grid"), scale=2)
            ask = gr.Checkbox(False, label=I18N("why_ask"), scale=2)
        panel = why_panel("single-why")
        examples(
            [
                [
                    "white ceramic coffee cup with a minimalist mountain line pattern",
                    None,
                    "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml",
                    asset_image("mountain_cup.png"),
                    "E-commerce",
                ]
            ],
            [query_text, query_image, document_text, document_image, preset],
            ["example_single"],
        )
    cleared = [result, details, best_page]
    scored = button.click(
        lambda: [None, None, gr.update(value=None, visible=False)], None, cleared, queue=False, api_visibility="private"
    )
    scored = scored.then(
        handlers.score,
        [query_text, query_image, document_text, document_image, instruction, model, document_files],
        [result, details, page_kept],
        api_name="score",
        **MODEL_WORK,
    )
    scored.success(  # a PDF: its best page beside the score, named by its number
        lambda found: gr.update(value=found[0], label=found[1], visible=True) if found else gr.update(visible=False),
        page_kept,
        best_page,
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )
    # A mistake stays written where the score would be (and the Why? panel's), until the next run.
    scored.failure(handlers.failed, None, result, queue=False, api_visibility="private", show_progress="hidden")
    explained = why.click(lambda: [None] * len(panel.outputs), None, panel.outputs, queue=False, api_visibility="private").then(
        handlers.explain,
        [query_text, query_image, document_text, document_image, instruction, grid, ask, model, document_files],
        panel.outputs,
        api_name="explain",
        **MODEL_WORK,
    )
    show_maps(explained, panel)
    explained.failure(handlers.failed, None, panel.raw, queue=False, api_visibility="private", show_progress="hidden").then(
        lambda: gr.update(open=True), None, panel.accordion, queue=False, api_visibility="private", show_progress="hidden"
    )
