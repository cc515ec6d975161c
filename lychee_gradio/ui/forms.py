"""What the page's boxes hold, read into scorer items; and how a result reads on the page.

Every tab (and the same endpoint through `gradio_client`) turns its boxes into plain values here (the
query, the documents: text blocks separated by `---` lines, plus uploads) and hands them to the request
service (`service.py`), which checks and decodes them under the limits of every door. Its errors become
`PageError`s in the browser's language that name the box and the document as the page shows it (counted
from 1, with the upload's file name), never a server path (`Wording`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..calibration import BANDS, min_score_of
from ..contract import DEFAULT_BANDS, Bands, InputError, WordedError
from ..parts import parts_of
from .error_words import reason
from .translations import text

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"  # sample images and data, shipped in the package

_SEPARATOR_RE = re.compile(r"^[ \t]*---+[ \t]*$", re.MULTILINE)
_IMAGE_REF_RE = re.compile(r"\[(image|video|pdf):\s*([^\]]+?)\s*\]", re.IGNORECASE)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")  # uploads read as a clip (video.py)


class PageError(WordedError, ValueError):
    """Bad input, worded for the page in the browser's language."""

    code = "page"


# -- reading a score (docs/design.md, "Reading a score") ---------------------------------------------


MARKS = {"green": "🟢", "yellow": "🟡", "red": "🔴"}


def verdict(score: float, lang: str = "en", bands: Bands = DEFAULT_BANDS) -> dict[str, str]:
    """A score's colour, mark and verdict in the page's language, read by `bands` (the model and modality pair's
    calibrated thresholds where --calibration has them: `Request.bands`)."""
    colour = bands.colour(score)
    return {"colour": colour, "mark": MARKS[colour], "verdict": text(f"verdict_{colour}", lang)}


def legend(bands: list[Bands], lang: str) -> str:
    """The colours' meaning under a ranking: the default thresholds, or for each modality pair calibrated by
    --calibration its own, with the labelled pairs it was fitted on."""
    calibrated = {b.kind: b for b in bands if b.pairs}
    if not calibrated or len(calibrated) < len({b.kind for b in bands}):
        calibrated[""] = DEFAULT_BANDS
    lines = []
    for kind, b in calibrated.items():
        marks = text(
            "legend",
            lang,
            show=b.show_first,
            below=b.filter_below,
            green=MARKS["green"],
            yellow=MARKS["yellow"],
            red=MARKS["red"],
        )
        note = text("legend_calibrated", lang, kind=kind, pairs=b.pairs) if b.pairs else text("legend_default", lang)
        lines.append(f"{marks} · {note}")
    return "\n\n" + "<br>".join(f"<small>{line}</small>" for line in lines)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~$])")


def cell(value: str, limit: int = 90) -> str:
    """A document as one table cell: one line, cut to `limit` characters, Markdown shown as typed."""
    flat = " ".join(value.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat).replace("<", "&lt;")


def move(index: int, rank: int) -> str:
    """How far the reranking moved a document from its first-stage position (input order)."""
    change = (index + 1) - rank
    return f"▲{change}" if change > 0 else f"▼{-change}" if change < 0 else "="


# -- inputs from the page ------------------------------------------------------------------------


def query_from(query_text: str | None, query_image: str | None, lang: str = "en") -> dict:
    text_value = (query_text or "").strip() or None
    if text_value is None and not query_image:
        raise PageError(text("error_query_missing", lang))
    return {"text": text_value, "image": query_image or None}


def parse_documents(documents: str | None, document_images: list[str] | None, lang: str = "en") -> list[dict]:
    """Text blocks separated by `---` lines, plus uploaded images.

    A block attaches uploaded images with `[image: name.jpg]` (file name) or `[image: 2]` (1-based upload
    order); several with `[image: a.jpg, b.jpg]` or several tags, in that order (the document's images, as
    the model reads them); one uploaded clip with `[video: clip.mp4]`, one PDF with `[pdf: paper.pdf]` (its pages,
    scored by the best). Uploads attached to no block follow the blocks as documents of their own. Each document is
    `{"text", "image", "images", "video", "pdf", "name"}`: `image`
    the first of `images` (None without), `name` the attached files' names, for display. Errors count
    documents from 1, as the table's Input # does.
    """
    images = [str(path) for path in (document_images or [])]
    names = [upload_name(path) for path in images]
    blocks = [block.strip() for block in _SEPARATOR_RE.split(documents or "")]
    parsed, attached = [], set()
    for block in (block for block in blocks if block):
        number = len(parsed) + 1
        positions = []
        for kind, tag in _IMAGE_REF_RE.findall(block):
            whole = find_image(tag, names)
            for reference in [tag] if whole is not None else [part.strip() for part in tag.split(",") if part.strip()]:
                position = find_image(reference, names)
                if position is None:
                    raise PageError(
                        text(
                            "error_document",
                            lang,
                            number=number,
                            name="",
                            reason=text(
                                "error_attach_missing",
                                lang,
                                kind=kind.lower(),
                                reference=reference,
                                uploaded=", ".join(names) or "—",
                            ),
                        )
                    )
                positions.append(position)
        attached.update(positions)
        block_text = _IMAGE_REF_RE.sub("", block).strip() or None
        clips = [p for p in positions if is_video(names[p])]
        if len(clips) > 1:
            raise PageError(text("error_document", lang, number=number, name="", reason=text("error_one_video", lang)))
        pdfs = [p for p in positions if is_pdf(names[p])]
        if len(pdfs) > 1:
            raise PageError(text("error_document", lang, number=number, name="", reason=text("error_one_pdf", lang)))
        pictures = [p for p in positions if p not in clips and p not in pdfs]
        parsed.append(
            {
                "text": block_text,
                "image": images[pictures[0]] if pictures else None,
                "images": [images[p] for p in pictures],
                "video": images[clips[0]] if clips else None,
                "pdf": images[pdfs[0]] if pdfs else None,
                "name": ", ".join(names[p] for p in pictures + clips + pdfs) or None,
            }
        )
    for position, (path, name) in enumerate(zip(images, names)):
        if position not in attached:
            clip, pdf = is_video(name), is_pdf(name)
            parsed.append(
                {
                    "text": None,
                    "image": None if clip or pdf else path,
                    "images": [] if clip or pdf else [path],
                    "video": path if clip else None,
                    "pdf": path if pdf else None,
                    "name": name,
                }
            )
    if not parsed:
        raise PageError(text("error_documents_missing", lang))
    return parsed


def upload_name(path: str) -> str:
    """The name a user gave an upload: Gradio keeps it as the file's name in its own temp folder."""
    return Path(str(path)).name


def find_image(reference: str, names: list[str]) -> int | None:
    if reference.isdigit():
        position = int(reference) - 1
        return position if 0 <= position < len(names) else None
    return names.index(reference) if reference in names else None


def scorable(document: dict) -> dict:
    """A page's document as the service reads it: its text, its image (or its images when several), its clip, its
    PDF (an upload's path, read as a file: `Path`)."""
    found = {key: document[key] for key in ("text", "image", "video") if document.get(key) is not None}
    if document.get("pdf"):
        found["pdf"] = Path(document["pdf"])
    if len(document.get("images") or []) > 1:
        found.pop("image", None)
        found["images"] = document["images"]
    return found


def is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def is_pdf(name: str) -> bool:
    return name.lower().endswith(".pdf")


# What a file that is not a readable image gets from the decoder: one message for all, on every tab.
UNREADABLE_CODES = {"image_empty", "image_decode", "image_unidentified", "image_no_pixels", "image_unreadable"}


@dataclass
class Wording:
    """How a page's tab names what it read, for the request service's errors: the query image's file name, each
    document's (counted from 1), the word for the documents ("Documents", "Images to rank") and its key."""

    query_name: str = ""
    names: list[str] = field(default_factory=list)
    what: str = "what_documents"
    document_key: str = "error_document"  # "error_image" (Image ranking), "single" (the Single tab's one document)

    def error(self, error: InputError, lang: str) -> PageError:
        """The service's `InputError` (its field `query.image`, `documents[3]`...) as the page says it: the box
        or the document as the page shows it, never a server path."""
        if error.code == "too_many":
            return PageError(text("error_too_many", lang, what=text(self.what, lang), **error.params))
        if error.code == "top_n":
            return PageError(text("error_top_n", lang))
        why = text("unreadable_reason", lang) if error.code in UNREADABLE_CODES else reason(error, lang)
        where = error.field or ""
        image = ".image" in where or error.code in UNREADABLE_CODES
        if where.startswith("query"):
            return PageError(
                text("error_query_image", lang, name=self.query_name, reason=why)
                if image
                else text("error_query", lang, reason=why)
            )
        found = re.match(r"documents\[(\d+)\]", where)
        if found:
            index = int(found.group(1))
            name = self.names[index] if index < len(self.names) else ""
            if self.document_key == "single":
                return PageError(
                    text("error_document_image", lang, name=name, reason=why)
                    if image
                    else text("error_single_document", lang, reason=why)
                )
            if self.document_key == "error_image":
                return PageError(text("error_image", lang, number=index + 1, name=name, reason=why))
            return PageError(text("error_document", lang, number=index + 1, name=f" ({name})" if name else "", reason=why))
        return PageError(f"{where}: {why}" if where else why)


def read_page(req, scorers, query: dict, documents: list[dict], wording: Wording, on_read=None):
    """A tab's query and documents (plain values) read by the request service, its errors in the page's words."""
    try:
        return req.read(
            scorable(query), [scorable(document) for document in documents], *scorers, field="documents", on_read=on_read
        )
    except InputError as error:
        raise wording.error(error, req.context.language) from None


def rerank_page(req, scorer, query, items, instruction, top_n, on_progress=None, long_documents=None):
    """The service's rerank as the page asks it: a Stop hands back what was scored; a bad top_n in its words."""
    try:
        return req.rerank(
            scorer, query, items, instruction or None, top_n, on_progress=on_progress, partial=True, long_documents=long_documents
        )
    except InputError as error:
        raise Wording().error(error, req.context.language) from None


def query_values(query_text, query_image, lang: str) -> tuple[dict, str]:
    """The query's boxes as a value, and its image's file name."""
    query = query_from(query_text, query_image, lang)
    return query, upload_name(query["image"]) if query["image"] else ""


def pair_of(req, scorer, query_text, query_image, document: dict) -> tuple:
    """A query and one document as a tab holds it (`{"text", "image", "images", "video", "name"}`, as
    `parse_documents` gives it; an "image" that is a clip is read as one) as scorer items; errors name the box."""
    lang = req.context.language
    query, query_name = query_values(query_text, query_image, lang)
    image = document.get("image") or None
    images = [path for path in (document.get("images") or ([image] if image else []))]
    clips = [path for path in images if is_video(upload_name(path))]  # Image ranking's Why? of a clip
    video = document.get("video") or (clips[0] if clips else None)
    pdfs = [path for path in images if is_pdf(upload_name(path))]  # Image ranking's Why? of a PDF's page
    pdf = document.get("pdf") or (pdfs[0] if pdfs else None)
    images = [path for path in images if path not in clips and path not in pdfs]
    found = {"text": (document.get("text") or "").strip() or None, "image": images[0] if images else None}
    found.update(images=images, video=video, pdf=pdf)
    if found["text"] is None and not images and video is None and pdf is None:
        raise PageError(text("error_document_missing", lang))
    name = document.get("name") or ", ".join(upload_name(path) for path in [*images, *([video] if video else [])])
    query_item, (item,) = read_page(req, [scorer], query, [found], Wording(query_name, [name], document_key="single"))
    # One page or segment chosen (a row of a split ranking): that part, as the ranking scored it (parts.py).
    if item.pages is not None and document.get("page"):
        item = parts_of([item], "split", None).items[item.pages.numbers.index(int(document["page"]))]
    elif item.video is not None and document.get("segment") is not None:
        parts = parts_of([item], "split", None).items
        item = parts[min(int(document["segment"]), len(parts) - 1)]
    return query_item, item


def document_items(req, scorers, query_text, query_image, documents, document_images) -> tuple:
    """A ranking tab's query and documents (text blocks plus uploads) as scorer items, and the documents as
    parsed for display."""
    lang = req.context.language
    query, query_name = query_values(query_text, query_image, lang)
    parsed = parse_documents(documents, document_images, lang)
    query_item, items = read_page(req, scorers, query, parsed, Wording(query_name, [d["name"] or "" for d in parsed]))
    return query_item, items, parsed


def media_names(document: dict) -> dict:
    """A parsed document's media by kind, for its row (and the CSV's columns): `image` the names of its images,
    `video` its clip's, `pdf` its PDF's (None where it has none)."""
    images = ", ".join(upload_name(path) for path in document.get("images") or []) or None
    found = {"image": images, "video": upload_name(document["video"]) if document.get("video") else None}
    return {**found, "pdf": upload_name(document["pdf"])} if document.get("pdf") else found


def part_words(part, lang: str) -> str:
    """A long document's part as the page says it: "p. 3 of 12", "characters 4096–8120 (chunk 2 of 3)",
    "64–128 s (segment 2 of 3)"."""
    if part is None:
        return ""
    if part.kind == "page":
        return text("part_page", lang, page=part.page, count=part.count)
    if part.kind == "segment":
        start, end = (f"{value:.1f}".removesuffix(".0") for value in part.seconds)
        return text("part_segment", lang, start=start, end=end, number=part.index + 1, count=part.count)
    start, end = part.chars
    return text("part_chunk", lang, start=start, end=end, number=part.index + 1, count=part.count)


def preview(document: dict) -> str:
    parts = []
    if document.get("name"):
        parts.append(f"🖼 {document['name']}")
    if document.get("text"):
        parts.append(document["text"])
    return " · ".join(parts)


def stopped_note(ranked, lang: str) -> str | None:
    """ "Stopped after N of M" in the page's language when the page's Stop ended a ranking (`service.Ranked`)."""
    if ranked.stopped_after is None:
        return None
    return text("stopped_after", lang, done=ranked.stopped_after, total=ranked.total)


def threshold_of(min_score: Any, bands: Bands = DEFAULT_BANDS) -> float:
    """The "Hide scores below" value: a number from 0 to 1 (empty: 0), or "relevant" / "partly" (an API caller's:
    the row's `bands`); anything else keeps every row."""
    if isinstance(min_score, str) and min_score in BANDS:
        return bands.threshold(min_score)
    try:
        value = float(min_score or 0)
    except (TypeError, ValueError):
        return 0.0
    return value if 0.0 <= value <= 1.0 else 0.0


def check_min_score(min_score: Any, lang: str) -> float | str:
    """`min_score` as an endpoint's parameter: a number from 0 to 1 (empty: 0) or "relevant" / "partly"
    (`calibration.min_score_of`, the service's rule), else a clear error in the page's language."""
    try:
        return min_score_of(min_score if min_score not in (None, "") else 0.0)
    except InputError:
        raise PageError(text("error_min_score", lang, value=repr(min_score)[:40])) from None


def above(rows: list[dict], shown: list, min_score: Any, bands: list[Bands] | None = None) -> tuple[list[dict], list, int]:
    """The ranking's rows at or above `min_score` (the page's "Hide scores below"; 0 or empty keeps all; a band's
    word: each row's `bands`), what the page shows for each of them (`shown`, one per row), and how many were
    hidden."""
    bands = bands or [DEFAULT_BANDS] * len(rows)
    kept = [(row, item) for row, item, b in zip(rows, shown, bands) if row["score"] >= threshold_of(min_score, b)]
    return [row for row, _ in kept], [item for _, item in kept], len(rows) - len(kept)


def hidden_note(hidden: int, kept: int, min_score: float | None, lang: str) -> str:
    if not hidden:
        return ""
    if isinstance(min_score, str) and min_score in BANDS:
        key = "hidden_band" if kept else "nothing_in_band"
        return "\n\n" + text(key, lang, count=hidden, band=text(f"band_{min_score}", lang))
    key = "hidden_below" if kept else "nothing_above"
    return "\n\n" + text(key, lang, count=hidden, threshold=threshold_of(min_score))
