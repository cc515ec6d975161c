"""What the page's boxes hold, read into scorer items; and how a result reads on the page.

Every tab (and the same endpoint through `gradio_client`) reads its inputs here: the query, the
documents (text blocks separated by `---` lines, plus uploads), the limits of every door. Errors
are `PageError`s in the browser's language that name the box and the document as the page shows
it (counted from 1, with the upload's file name), never a server path.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable

from ..contract import InputError, RequestContext, RerankResult, ScoringCancelledError, WordedError, colour_of
from ..inputs import ImageRules, admit_images, request_rules, to_item
from ..ranking import check_top_n
from ..settings import Limits
from .translations import reason, text

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"  # sample images and data, shipped in the package

_SEPARATOR_RE = re.compile(r"^[ \t]*---+[ \t]*$", re.MULTILINE)
_IMAGE_REF_RE = re.compile(r"\[image:\s*([^\]]+?)\s*\]", re.IGNORECASE)


def view(function):
    """A view called without a request's context (a script, a test) gets one of its own, closed when it
    returns, so that what it admitted from the process's pixel pool is given back."""
    @functools.wraps(function)
    def run(*args, context: RequestContext | None = None, **kwargs):
        if context is not None:
            return function(*args, context=context, **kwargs)
        own = RequestContext()
        try:
            return function(*args, context=own, **kwargs)
        finally:
            own.close()

    return run


class PageError(WordedError, ValueError):
    """Bad input, worded for the page in the browser's language."""

    code = "page"


class UnreadableUpload(str):
    """The name of an upload that is not an image: `ImageBox` hands it on, the view says so in the
    page's language (a component cannot know the browser's language)."""


# -- reading a score (docs/design.md, "Reading a score") ---------------------------------------------


def verdict(score: float, lang: str = "en") -> dict[str, str]:
    colour = colour_of(score)
    mark = {"green": "🟢", "yellow": "🟡", "red": "🔴"}[colour]
    return {"colour": colour, "mark": mark, "verdict": text(f"verdict_{colour}", lang)}


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

    A block may attach an uploaded image with `[image: name.jpg]` (file name) or `[image: 2]`
    (1-based upload order). Images attached to no block follow the blocks as image-only documents.
    Each document is `{"text", "image", "name"}`; `name` is the image's file name, for display.
    Errors count documents from 1, as the table's Input # does.
    """
    images = [str(path) for path in (document_images or [])]
    names = [upload_name(path) for path in images]
    blocks = [block.strip() for block in _SEPARATOR_RE.split(documents or "")]
    parsed, attached = [], set()
    for block in (block for block in blocks if block):
        number = len(parsed) + 1
        references = _IMAGE_REF_RE.findall(block)
        if len(references) > 1:
            raise PageError(text("error_document", lang, number=number, name="",
                                 reason=text("error_attach_one", lang, count=len(references))))
        image = None
        if references:
            position = find_image(references[0], names)
            if position is None:
                raise PageError(text("error_document", lang, number=number, name="", reason=text(
                    "error_attach_missing", lang, reference=references[0], uploaded=", ".join(names) or "—")))
            attached.add(position)
            image = position
        block_text = _IMAGE_REF_RE.sub("", block).strip() or None
        parsed.append({"text": block_text, "image": images[image] if image is not None else None,
                       "name": names[image] if image is not None else None})
    for position, (path, name) in enumerate(zip(images, names)):
        if position not in attached:
            parsed.append({"text": None, "image": path, "name": name})
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
    return {key: document[key] for key in ("text", "image") if document[key] is not None}


def image_rules(limits: Limits, context: RequestContext, *scorers, images=()) -> ImageRules:
    """How one page request's images (`images`: its uploads' paths) are decoded: the server's limits,
    down to the largest pixel bound of the models that will score them, their decoded pixels admitted
    from the process's pool at once and given back when the request ends."""
    rules = request_rules(limits, max(s.max_pixels for s in scorers), context)
    admit_images([image for image in images if image and not isinstance(image, UnreadableUpload)], rules)
    return rules


def page_item(value: dict, describe: Callable[[str, bool], str], rules: ImageRules, lang: str):
    """One query or document as a scorer item; a problem is worded by `describe(reason, about_image)`,
    which names the document as the page shows it (counted from 1, with its file name), never a
    server path."""
    image = value.get("image")
    if isinstance(image, UnreadableUpload):  # an image box's upload that is no image (ImageBox)
        raise PageError(describe(text("unreadable_reason", lang), True))
    try:
        return to_item(value, "input", rules=rules)
    except InputError as error:
        if error.code in UNREADABLE_CODES:  # the same file reads the same in every box and tab
            raise PageError(describe(text("unreadable_reason", lang), True)) from None
        raise PageError(describe(reason(error, lang), ".image" in (error.field or ""))) from None


# What a file that is not a readable image gets from the decoder: one message for all, on every tab.
UNREADABLE_CODES = {"image_empty", "image_decode", "image_unidentified", "image_no_pixels", "image_unreadable"}


def check_count(count: int, limits: Limits, what: str, lang: str) -> None:
    if count > limits.max_documents:
        raise PageError(text("error_too_many", lang, what=text(what, lang), count=count, limit=limits.max_documents))


def query_item(query_text, query_image, rules: ImageRules, lang: str = "en"):
    query = query_from(query_text, query_image, lang)
    name = upload_name(query["image"]) if query["image"] else ""
    return page_item(scorable(query), lambda why, image: text("error_query_image", lang, name=name, reason=why) if image
                 else text("error_query", lang, reason=why), rules, lang)


def pair_items(scorer, query_text, query_image, document_text, document_image, limits: Limits,
               context: RequestContext) -> tuple:
    """The Single tab's query and its one document (text and/or image) as scorer items, the images decoded
    under the request's rules; errors name the box (query image, document image, document)."""
    lang = context.language
    rules = image_rules(limits, context, scorer, images=[query_image, document_image])
    query = query_item(query_text, query_image, rules, lang)
    document = {"text": (document_text or "").strip() or None, "image": document_image or None}
    if document["text"] is None and document["image"] is None:
        raise PageError(text("error_document_missing", lang))
    name = upload_name(document_image) if document_image else ""
    item = page_item(scorable(document), lambda why, image: text("error_document_image", lang, name=name, reason=why)
                     if image else text("error_single_document", lang, reason=why), rules, lang)
    return query, item


def document_items(documents, document_images, limits: Limits, rules: ImageRules,
                    lang: str = "en") -> tuple[list[dict], list]:
    """The page's documents (text blocks plus uploads), parsed for display and as scorer items."""
    parsed = parse_documents(documents, document_images, lang)
    check_count(len(parsed), limits, "what_documents", lang)
    items = []
    for number, document in enumerate(parsed, start=1):
        name = f" ({document['name']})" if document["name"] else ""
        items.append(page_item(scorable(document), lambda why, _: text("error_document", lang, number=number, name=name,
                                                                     reason=why), rules, lang))
    return parsed, items


def top_n_from(value: Any, lang: str) -> int | None:
    try:
        return check_top_n(value)
    except ValueError:
        raise PageError(text("error_top_n", lang)) from None


def preview(document: dict) -> str:
    parts = []
    if document.get("name"):
        parts.append(f"🖼 {document['name']}")
    if document.get("text"):
        parts.append(document["text"])
    return " · ".join(parts)


def rerank_until_stopped(scorer, query, items: list, instruction: str | None, top_n: int | None,
                         context: RequestContext, on_progress=None) -> tuple[list[RerankResult], str | None]:
    """`scorer.rerank`, and when the page's Stop ended it: the documents scored before it stopped, best-first
    among themselves, with a note "Stopped after N of M" in the page's language (None: it ran to the end)."""
    try:
        return scorer.rerank(query, items, instruction, top_n=top_n, on_progress=on_progress,
                             context=context.use(scorer)), None
    except ScoringCancelledError as error:
        scored = [(i, pair.score) for i, pair in enumerate(error.partial or []) if pair is not None]
        if not scored:
            raise
        scored.sort(key=lambda found: (-found[1], found[0]))
        results = [RerankResult(index=i, score=score, document=items[i]) for i, score in scored[:top_n or None]]
        return results, text("stopped_after", context.language, done=len(scored), total=len(items))


def threshold_of(min_score: Any) -> float:
    """The "Hide scores below" value: a number from 0 to 1 (empty: 0); anything else keeps every row."""
    try:
        value = float(min_score or 0)
    except (TypeError, ValueError):
        return 0.0
    return value if 0.0 <= value <= 1.0 else 0.0


def check_min_score(min_score: Any, lang: str) -> float:
    """`min_score` as an endpoint's parameter: a number from 0 to 1 (empty: 0), else a clear error."""
    try:
        value = float(min_score or 0)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0 or isinstance(min_score, bool):
        raise PageError(text("error_min_score", lang, value=repr(min_score)[:40]))
    return value


def above(rows: list[dict], shown: list, min_score: float | None) -> tuple[list[dict], list, int]:
    """The ranking's rows at or above `min_score` (the page's "Hide scores below"; 0 or empty keeps all), what
    the page shows for each of them (`shown`, one per row), and how many were hidden."""
    threshold = threshold_of(min_score)
    kept = [(row, item) for row, item in zip(rows, shown) if row["score"] >= threshold]
    return [row for row, _ in kept], [item for _, item in kept], len(rows) - len(kept)


def hidden_note(hidden: int, kept: int, min_score: float | None, lang: str) -> str:
    if not hidden:
        return ""
    key = "hidden_below" if kept else "nothing_above"
    return "\n\n" + text(key, lang, count=hidden, threshold=threshold_of(min_score))
