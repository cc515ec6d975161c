"""The "Why?" panel: the heatmap over each image of the pair, the text weighted segment by segment, the
raw output, and (on request) the model's own words. Used by Single, and by Image ranking, Batch
rerank and Compare for a chosen result (`explain.py` says what each number means).
"""

from __future__ import annotations

import base64
import html
import io
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from ..contract import Scorer
from ..explain import DEFAULT_GRID, LOW_MASS, Explanation, legend_png
from .forms import pair_of
from .layout import I18N
from .translations import text


def explain_view(
    req,
    scorer: Scorer,
    query_text,
    query_image,
    document_text,
    document_image,
    instruction,
    grid: int = DEFAULT_GRID,
    explanation: bool = False,
) -> tuple:
    """One pair explained: every image's heatmap (a gallery of (picture, caption), the query's first), the
    weighted texts (HTML), the raw output (Markdown, a clip's timeline in it) and the JSON details
    (`/v1/explain`'s answer without the pictures)."""
    document = {"text": document_text, "image": document_image}
    return explain_document_view(req, scorer, query_text, query_image, document, instruction, grid, explanation)


def explain_document_view(
    req, scorer: Scorer, query_text, query_image, document: dict, instruction, grid: int = DEFAULT_GRID, explanation=False
) -> tuple:
    """`explain_view` for a document as a ranking tab holds it (`forms.parse_documents`: text, several images, a
    clip), so that the Why? of Batch rerank, Compare and Image ranking shows what Single shows."""
    lang = req.context.language
    query, item = pair_of(req, scorer, query_text, query_image, document)
    found = req.explain(scorer, query, item, instruction or None, grid=grid, explanation=explanation)
    return maps_of(found, lang), weighted_texts(found, lang), raw_output(found, lang), found.as_dict(overlays=False)


EMPTY = ([], "", "", None)  # the panel with nothing chosen


def maps_of(found: Explanation, lang: str) -> list[tuple[Image.Image, str]]:
    """Every image's heatmap with its caption ("Document image 2: heatmap" where the item has several)."""
    counts = {target: sum(1 for m in found.images if m.target == target) for target in ("query", "document")}
    maps = []
    for image_map in sorted(found.images, key=lambda m: (m.target != "query", m.index)):
        caption = text(f"why_{image_map.target}_map", lang)
        if counts[image_map.target] > 1:
            caption = text(f"why_{image_map.target}_map_n", lang, number=image_map.index + 1)
        maps.append((Image.open(io.BytesIO(image_map.overlay_png())), caption))
    return maps


def weighted_texts(found: Explanation, lang: str) -> str:
    """Each text, its segments tinted green (raised the score) or red (lowered it); hover shows the value."""
    if not found.text and not found.images:
        return ""
    legend = base64.b64encode(legend_png()).decode()
    parts = [
        f'<div class="why-legend"><span>{html.escape(text("why_lowers", lang))}</span>'
        f'<img alt="{html.escape(text("why_legend", lang))}" src="data:image/png;base64,{legend}">'
        f"<span>{html.escape(text('why_raises', lang))}</span></div>"
    ]
    for weights in found.text:
        largest = max((abs(s.delta) for s in weights.segments), default=0.0) or 1.0
        spans = []
        for segment in weights.segments:
            strength = abs(segment.delta) / largest
            colour = "34, 160, 80" if segment.delta > 0 else "220, 50, 60"
            spans.append(
                f'<span class="why-segment" title="{segment.delta:+.4f}" '
                f'style="background: rgba({colour}, {0.75 * strength:.2f})">'
                f"{html.escape(segment.text)}</span>"
            )
        parts.append(
            f'<p class="why-text"><b>{html.escape(text(f"why_{weights.target}_text", lang))}</b><br>' + "".join(spans) + "</p>"
        )
    return "\n".join(parts)


def raw_output(found: Explanation, lang: str) -> str:
    """The score, its two logits, the share of next-token probability on yes+no, the likeliest next tokens,
    and the model's own words when asked for."""
    lines = [
        f"**{text('why_raw', lang)}** · p(yes) = {found.score:.4f} · logit(yes) = {found.yes_logit:.3f} · "
        f"logit(no) = {found.no_logit:.3f} · {text('why_mass', lang)} = {found.yes_no_mass:.1%}"
    ]
    if found.yes_no_mass < LOW_MASS:
        lines.append(f"⚠️ {text('why_low_mass', lang)}")
    lines += ["", f"| {text('why_token', lang)} | {text('why_probability', lang)} |", "| --- | ---: |"]
    lines += [f"| `{_visible(token.token)}` | {token.probability:.4f} |" for token in found.next_tokens]
    if found.timeline:  # the clip, frame pair by frame pair: what leaving those frames out costs the score
        lines += ["", f"**{text('why_timeline', lang)}**", "", f"| {text('why_seconds', lang)} | Δ |", "| --- | ---: |"]
        lines += [f"| {_seconds(step.start, step.end)} | {step.delta:+.4f} |" for step in found.timeline]
    if found.explanation is not None:
        lines += ["", f"**{text('why_words', lang)}**", "", "> " + html.escape(found.explanation or "…")]
    elif found.explanation_note and found.explanation_note != "not asked for":
        lines += ["", f"_{html.escape(found.explanation_note)}_"]
    lines += ["", f"_{text('why_how', lang, variants=found.variants)}_"]
    return "\n".join(lines)


def _seconds(start: float, end: float) -> str:
    """A timeline row's time: "2.0–4.0 s", or "7.9 s" for the last frame of a clip repeated to make a pair."""
    return f"{start:.1f} s" if round(end, 1) <= round(start, 1) else f"{start:.1f}–{end:.1f} s"


def _visible(token: str) -> str:
    return token.replace("`", "ˋ").replace("\n", "⏎").replace("|", "¦") or "∅"


def why_panel(elem_id: str) -> SimpleNamespace:
    """The panel's components (inside an accordion): every image's heatmap in one gallery, the weighted texts, the
    raw output (with a clip's timeline), the details."""
    # Closed until something is explained (an open, empty panel sat under the button of the same name).
    with gr.Accordion(I18N("why_title"), open=False, elem_id=elem_id) as accordion:
        gr.Markdown(I18N("why_intro"))
        with gr.Row():
            with gr.Column(scale=1):
                maps = gr.Gallery(
                    label=I18N("why_maps"),
                    columns=2,
                    height="auto",
                    object_fit="contain",
                    preview=False,
                    interactive=False,
                    visible=False,
                    elem_id=f"{elem_id}-maps",
                )
            with gr.Column(scale=1):
                texts = gr.HTML(label=I18N("why_texts"), show_label=False, elem_id=f"{elem_id}-texts")
                raw = gr.Markdown(label=I18N("why_raw"), show_label=False, elem_id=f"{elem_id}-raw")
        details = gr.JSON(label=I18N("details"), visible=False)
    return SimpleNamespace(
        outputs=[maps, texts, raw, details], maps=maps, texts=texts, raw=raw, details=details, accordion=accordion
    )


def show_maps(event, panel: SimpleNamespace) -> None:
    """After `event` filled the panel, show the heatmaps only when the pair has an image (text alone has none)."""

    def visible(details: dict | None):
        return gr.update(visible=bool((details or {}).get("images"))), gr.update(open=details is not None)

    event.then(
        visible, panel.details, [panel.maps, panel.accordion], queue=False, api_visibility="private", show_progress="hidden"
    )
