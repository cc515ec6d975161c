"""Why this score: image maps by occlusion, text weights by leaving out, the raw output, the model's own words.

Exact by construction (docs/design.md, "Why this score"), so anyone can check them with their own
scorer:

- **Image cell**: `score(pair) - score(pair with that box of the image filled with the image's mean
  colour)`; the mean is per RGB channel over the whole image, rounded to the nearest integer.
  Positive: that region made the document more relevant. Cells tile the image; boxes are in the
  image's pixels, `x1`/`y1` exclusive; their edges fall on the model's merged-patch grid of the
  resized image wherever the image's size allows.
- **Text segment**: `score(pair) - score(pair with text[start:end] removed)`, i.e. the text
  becomes `text[:start] + text[end:]`. Segments are words with the spaces after them; in Chinese,
  Japanese and Korean, single characters. A long text is cut into at most `max_segments` phrases
  of neighbouring segments.

Torch-free: this module makes the variants, the result types and the overlay picture; the scorer
scores the variants (`scoring.ScorerBase.explain`).
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

DEFAULT_GRID = 8  # cells per side of an image map, at most
MAX_GRID = 16
DEFAULT_SEGMENTS = 32  # segments per text, at most (longer texts are merged into phrases)
MAX_SEGMENTS = 64
LOW_MASS = 0.5  # below this share of next-token probability on yes+no, the model wanted to say something else


def whole_number(value: Any, field: str, code: str, limit: int) -> int:
    """A count from a caller, 1 to `limit`: an int, or a float that is whole (a page's slider sends 8.0);
    a string, a boolean, NaN or anything else is refused the same way on every door."""
    whole = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
        and 1 <= value <= limit
    )
    if not whole:
        from .contract import InputError

        raise InputError(field, code, limit=limit, value=repr(value)[:40])
    return int(value)


@dataclass(frozen=True)
class Cell:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels, x1 and y1 exclusive
    delta: float  # score(pair) - score(pair with the box filled with the mean colour)


@dataclass(frozen=True)
class ImageMap:
    """One image of the pair, cell by cell. `overlay_png()` draws the map over the image."""

    target: str  # "query" or "document"
    width: int
    height: int
    cells: list[Cell]
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    index: int = 0  # which of the item's images (in the caller's order)

    def overlay_png(self) -> bytes:
        return overlay(self.image, self.cells) if self.image is not None else b""

    def as_dict(self, overlay_data_url: bool = True) -> dict:
        found: dict[str, Any] = {
            "target": self.target,
            "index": self.index,
            "width": self.width,
            "height": self.height,
            "cells": [{"box": list(cell.box), "delta": cell.delta} for cell in self.cells],
        }
        if overlay_data_url:
            found["overlay"] = "data:image/png;base64," + base64.b64encode(self.overlay_png()).decode()
        return found


@dataclass(frozen=True)
class Segment:
    start: int  # character offsets into the text, end exclusive
    end: int
    text: str
    delta: float  # score(pair) - score(pair with text[start:end] removed)


@dataclass(frozen=True)
class TextWeights:
    target: str  # "query" or "document"
    segments: list[Segment]

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "segments": [{"start": s.start, "end": s.end, "text": s.text, "delta": s.delta} for s in self.segments],
        }


@dataclass(frozen=True)
class NextToken:
    token: str
    probability: float


@dataclass(frozen=True)
class VideoStep:
    """One sampled frame pair of a clip (the model's temporal patch): its time span in the clip and
    score(pair) - score(pair with those two frames left out)."""

    target: str  # "query" or "document"
    start: float  # seconds: the first frame's time, the second frame's time
    end: float
    delta: float

    def as_dict(self) -> dict:
        return {"target": self.target, "start": self.start, "end": self.end, "delta": self.delta}


@dataclass(frozen=True)
class Explanation:
    """Why a pair scored what it scored: the score and its logits, the model's next-token view, the
    image maps and text weights, and (when asked) the model's own words, which can be wrong."""

    score: float
    yes_logit: float
    no_logit: float
    yes_no_mass: float  # share of next-token probability on "yes" + "no"
    next_tokens: list[NextToken]
    images: list[ImageMap]
    text: list[TextWeights]
    explanation: str | None = None
    explanation_note: str | None = None  # why there is no explanation (not asked, or the model cannot generate)
    variants: int = 0  # pairs scored to make the maps and weights
    timeline: list[VideoStep] = field(default_factory=list)  # the document's clip, frame pair by frame pair
    part: Any = None  # a long document's best part (`contract.Part`), the one explained; None: the whole document

    @property
    def low_mass(self) -> bool:
        """The model put little probability on yes or no: it wanted to say something else."""
        return self.yes_no_mass < LOW_MASS

    def as_dict(self, overlays: bool = True) -> dict:
        return {
            "score": self.score,
            "yes_logit": self.yes_logit,
            "no_logit": self.no_logit,
            "yes_no_mass": self.yes_no_mass,
            "next_tokens": [{"token": t.token, "probability": t.probability} for t in self.next_tokens],
            "images": [image.as_dict(overlays) for image in self.images],
            "text": [weights.as_dict() for weights in self.text],
            "timeline": [step.as_dict() for step in self.timeline],
            "explanation": self.explanation,
            **({"part": self.part.as_dict()} if self.part is not None else {}),
        }


# -- images -------------------------------------------------------------------------------------------


def resized_size(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The size the Qwen-VL processors resize an image to (their `smart_resize`): multiples of `factor`,
    between `min_pixels` and `max_pixels`, the aspect ratio kept."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


def _edges(length: int, resized: int, factor: int, grid: int) -> list[int]:
    """Cell edges along one side, in original pixels: on the merged-patch grid of the resized image,
    at most `grid` cells, strictly increasing from 0 to `length`."""
    units = max(1, resized // factor)
    count = max(1, min(grid, units, length))
    edges = [0]
    for i in range(1, count):
        edge = round(round(i * units / count) * factor * length / resized)
        if edges[-1] < edge < length:
            edges.append(edge)
    return edges + [length]


def cells_of(image: Image.Image, grid: int, factor: int, min_pixels: int, max_pixels: int) -> list[tuple[int, int, int, int]]:
    """The boxes of an image's map: they tile it exactly, row by row."""
    width, height = image.size
    resized_w, resized_h = resized_size(width, height, factor, min_pixels, max_pixels)
    xs, ys = _edges(width, resized_w, factor, grid), _edges(height, resized_h, factor, grid)
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(len(ys) - 1) for i in range(len(xs) - 1)]


def mean_colour(image: Image.Image) -> tuple[int, int, int]:
    """The image's mean colour, per RGB channel over the whole image, rounded to the nearest integer."""
    from PIL import ImageStat

    return tuple(int(math.floor(value + 0.5)) for value in ImageStat.Stat(image.convert("RGB")).mean[:3])


def occluded(image: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A copy of the image with `box` (x1, y1 exclusive) filled with `colour`."""
    copy = image.convert("RGB").copy()
    x0, y0, x1, y1 = box
    ImageDraw.Draw(copy).rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)
    return copy


# -- text ---------------------------------------------------------------------------------------------

# One character of the scripts written without spaces (CJK ideographs, kana, hangul, CJK punctuation and
# full-width forms), or a run of other non-space characters (a word with its punctuation).
_UNSPACED = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_SEGMENT_RE = re.compile(rf"\s*(?:[{_UNSPACED}]|[^\s{_UNSPACED}]+)\s*")


def segments_of(text: str, max_segments: int = DEFAULT_SEGMENTS) -> list[tuple[int, int]]:
    """(start, end) of each segment of `text`: they tile it; at most `max_segments` (neighbours merged)."""
    spans = [(match.start(), match.end()) for match in _SEGMENT_RE.finditer(text)]
    if not spans:
        return []
    spans[-1] = (spans[-1][0], len(text))
    if len(spans) <= max_segments:
        return spans
    size = math.ceil(len(spans) / max_segments)
    return [(spans[i][0], spans[min(i + size, len(spans)) - 1][1]) for i in range(0, len(spans), size)]


def without(text: str, start: int, end: int) -> str:
    return text[:start] + text[end:]


# -- the overlay -----------------------------------------------------------------------------------------

COLOURMAP = "vanimo"  # Crameri's perceptually uniform diverging map, in matplotlib: pink lowers, green raises


def overlay(image: Image.Image, cells: list[Cell], alpha: float = 0.65) -> bytes:
    """The image with each cell tinted by its value (green: raised the score, pink: lowered it; the
    stronger the tint, the larger the change relative to the largest in the map), as PNG bytes."""
    from matplotlib import colormaps

    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    largest = max((abs(cell.delta) for cell in cells), default=0.0) or 1.0
    colours = colormaps[COLOURMAP]
    for cell in cells:
        strength = abs(cell.delta) / largest
        if strength == 0:
            continue
        shade = 0.5 + 0.5 * math.copysign(max(strength, 0.35), cell.delta)  # away from the dark middle
        r, g, b, _ = colours(shade)
        x0, y0, x1, y1 = cell.box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(int(r * 255), int(g * 255), int(b * 255), int(255 * alpha * strength)))
    buffer = io.BytesIO()
    Image.alpha_composite(base, layer).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def legend_png(width: int = 320, height: int = 18) -> bytes:
    """A colour bar of the overlay's map: pink (lowered the score) .. green (raised it)."""
    from matplotlib import colormaps

    colours = colormaps[COLOURMAP]
    bar = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(bar)
    for x in range(width):
        position = x / (width - 1)
        signed = 2 * position - 1
        shade = 0.5 + 0.5 * math.copysign(max(abs(signed), 0.35), signed) if abs(signed) > 0.02 else 0.5
        r, g, b, _ = colours(shade)
        draw.line((x, 0, x, height), fill=(int(r * 255), int(g * 255), int(b * 255)))
    buffer = io.BytesIO()
    bar.save(buffer, format="PNG")
    return buffer.getvalue()


# -- running an explanation -----------------------------------------------------------------------------


def explain_pair(
    scorer,
    query,
    document,
    instruction: str,
    *,
    grid: int = DEFAULT_GRID,
    max_segments: int = DEFAULT_SEGMENTS,
    explanation: bool = False,
    max_pixels: int | None = None,
    context=None,
    explain_tokens: int = 48,
    targets: tuple[str, ...] = ("query", "document"),
    max_variants: int | None = None,
    max_text_chars: int | None = None,
) -> Explanation:
    """The explanation of one pair (items already read), by `scorer` (a `scoring.ScorerBase`).

    A server bounds what one explanation costs: at most `max_variants` changed pairs (cells of every image
    and segments of every text; 413 past it) and texts of at most `max_text_chars` characters.

    The document's variants (and the pair itself) are one call, so they run behind the shared
    prefix; the query's variants are one `score_pairs` call, batched; both go through the score cache.
    """
    from .contract import Item

    family = scorer.family
    bound = max_pixels or scorer.max_pixels

    def image_variants(item: Item) -> tuple[list[tuple[int, tuple[int, int, int, int]]], list[Item]]:
        """Each image's cells, (image index, box), and the item with that cell of that image filled."""
        if not item.images or (item is query and "query" not in targets) or (item is document and "document" not in targets):
            return [], []
        boxes, variants = [], []
        for k, image in enumerate(item.images):
            colour = mean_colour(image)
            for box in cells_of(image, grid, family.pixel_factor, family.min_pixels, bound):
                boxes.append((k, box))
                changed = item.images[:k] + (occluded(image, box, colour),) + item.images[k + 1 :]
                variants.append(Item(text=item.text, images=changed, video=item.video))
        return boxes, variants

    def text_variants(item: Item) -> tuple[list[tuple[int, int]], list[Item]]:
        if not item.text or (item is query and "query" not in targets) or (item is document and "document" not in targets):
            return [], []
        spans = segments_of(item.text, max_segments)
        return spans, [Item(text=without(item.text, start, end), images=item.images, video=item.video) for start, end in spans]

    if max_text_chars is not None:
        for field, item in (("query", query), ("document", document)):
            if item.text is not None and len(item.text) > max_text_chars:
                from .contract import InputError

                raise InputError(f"{field}.text", "explain_text", length=len(item.text), limit=max_text_chars)

    def video_variants(item: Item) -> tuple[list[tuple[float, float]], list[Item]]:
        """Each frame pair of the item's clip, (start, end) seconds, and the item with that pair left out (a clip
        of one pair has no variant: leaving it out leaves no clip)."""
        from .contract import Video

        clip = item.video
        if (
            clip is None
            or len(clip.frames) < 4
            or (item is query and "query" not in targets)
            or (item is document and "document" not in targets)
        ):
            return [], []
        spans, variants = [], []
        for k in range(0, len(clip.frames) - 1, 2):
            keep = [i for i in range(len(clip.frames)) if i not in (k, k + 1)]
            shorter = Video(
                tuple(clip.frames[i] for i in keep),
                tuple(clip.timestamps[i] for i in keep),
                tuple(clip.indices[i] for i in keep),
                clip.fps,
                clip.duration,
            )
            spans.append((clip.timestamps[k], clip.timestamps[k + 1]))
            variants.append(Item(text=item.text, images=item.images, video=shorter))
        return spans, variants

    document_boxes, document_images = image_variants(document)
    document_steps, document_clips = video_variants(document)
    document_spans, document_texts = text_variants(document)
    query_boxes, query_images = image_variants(query)
    query_spans, query_texts = text_variants(query)
    variants = len(document_images) + len(document_texts) + len(query_images) + len(query_texts) + len(document_clips)
    if max_variants is not None and variants > max_variants:
        from .contract import InputError

        raise InputError("grid", "explain_variants", variants=variants, limit=max_variants)
    scored = scorer.score_with_logits(
        query, [document, *document_images, *document_texts, *document_clips], instruction, max_pixels=max_pixels, context=context
    )
    base, scored = scored[0], scored[1:]
    clip_scored = scored[len(scored) - len(document_clips) :] if document_clips else []
    scored = scored[: len(scored) - len(document_clips)]
    query_scored = (
        scorer.score_pairs(
            [(variant, document) for variant in (*query_images, *query_texts)],
            instruction,
            max_pixels=max_pixels,
            context=context,
        )
        if (query_images or query_texts)
        else []
    )

    def deltas(values) -> list[float]:
        return [base.score - value.score for value in values]

    images, text = [], []
    for target, item, boxes, values in (
        ("query", query, query_boxes, query_scored[: len(query_boxes)]),
        ("document", document, document_boxes, scored[: len(document_boxes)]),
    ):
        found = deltas(values)
        for k, image in enumerate(item.images if boxes else ()):
            cells = [Cell(box, delta) for (which, box), delta in zip(boxes, found) if which == k]
            images.append(ImageMap(target, image.width, image.height, cells, image, index=k))
    for target, item, spans, values in (
        ("query", query, query_spans, query_scored[len(query_boxes) :]),
        ("document", document, document_spans, scored[len(document_boxes) :]),
    ):
        if spans:
            text.append(
                TextWeights(
                    target,
                    [Segment(start, end, item.text[start:end], delta) for (start, end), delta in zip(spans, deltas(values))],
                )
            )
    timeline = [VideoStep("document", start, end, delta) for (start, end), delta in zip(document_steps, deltas(clip_scored))]
    mass, top, words, note = scorer.inspect(
        query, document, instruction, max_pixels, context, explain_tokens if explanation else 0
    )
    return Explanation(
        score=base.score,
        yes_logit=base.yes_logit,
        no_logit=base.no_logit,
        yes_no_mass=mass,
        next_tokens=[NextToken(token, probability) for token, probability in top],
        images=images,
        text=text,
        explanation=words,
        explanation_note=note if explanation else "not asked for",
        variants=len(scored) + len(query_scored) + len(clip_scored),
        timeline=timeline,
    )
