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
from .forms import pair_items
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
    """One pair explained: the query's and the document's heatmaps (None where that item has no image),
    the weighted texts (HTML), the raw output (Markdown) and the JSON details (`/v1/explain`'s answer
    without the pictures)."""
    lang = req.context.language
    query, item = pair_items(req, scorer, query_text, query_image, document_text, document_image)
    found = req.explain(scorer, query, item, instruction or None, grid=grid, explanation=explanation)
    overlays = {image_map.target: Image.open(io.BytesIO(image_map.overlay_png())) for image_map in found.images}
    return (
        overlays.get("query"),
        overlays.get("document"),
        weighted_texts(found, lang),
        raw_output(found, lang),
        found.as_dict(overlays=False),
    )


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
        lines += [f"| {step.start:.1f}–{step.end:.1f} s | {step.delta:+.4f} |" for step in found.timeline]
    if found.explanation is not None:
        lines += ["", f"**{text('why_words', lang)}**", "", "> " + html.escape(found.explanation or "…")]
    elif found.explanation_note and found.explanation_note != "not asked for":
        lines += ["", f"_{html.escape(found.explanation_note)}_"]
    lines += ["", f"_{text('why_how', lang, variants=found.variants)}_"]
    return "\n".join(lines)


def _visible(token: str) -> str:
    return token.replace("`", "ˋ").replace("\n", "⏎").replace("|", "¦") or "∅"


def why_panel(elem_id: str) -> SimpleNamespace:
    """The panel's components (inside an open accordion): the two heatmaps, weighted texts, raw output, details."""
    with gr.Accordion(I18N("why_title"), open=True, elem_id=elem_id):
        gr.Markdown(I18N("why_intro"))
        with gr.Row():
            with gr.Column(scale=1, elem_id=f"{elem_id}-maps"):
                query_map = gr.Image(label=I18N("why_query_map"), type="pil", height=260, interactive=False)
                document_map = gr.Image(label=I18N("why_document_map"), type="pil", height=260, interactive=False)
            with gr.Column(scale=1):
                texts = gr.HTML(label=I18N("why_texts"), show_label=False, elem_id=f"{elem_id}-texts")
                raw = gr.Markdown(label=I18N("why_raw"), show_label=False, elem_id=f"{elem_id}-raw")
        details = gr.JSON(label=I18N("details"), visible=False)
    return SimpleNamespace(
        outputs=[query_map, document_map, texts, raw, details],
        maps=[query_map, document_map],
        texts=texts,
        raw=raw,
        details=details,
    )


def show_maps(event, panel: SimpleNamespace) -> None:
    """After `event` filled the panel, show only the heatmaps the pair has (a text query has none)."""

    def visible(details: dict | None):
        targets = {image["target"] for image in (details or {}).get("images", [])}
        return [gr.update(visible=target in targets) for target in ("query", "document")]

    event.then(visible, panel.details, panel.maps, queue=False, api_visibility="private", show_progress="hidden")
