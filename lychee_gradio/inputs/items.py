"""What callers pass (text, images in many forms, a clip, dicts of them) as one `Item` type, once, at the edge.
Errors are `InputError`s that name the field they come from (`query`, `documents[3]`, `documents[3].image`)."""

from __future__ import annotations

import os
from typing import Any, Sequence

from PIL import Image

from ..contract import InputError, Item, Pages, Video
from .images import NO_RULES, ImageRules, load_image, video_value
from .pdf import looks_like_pdf, read_pdf

# Keys a document dict may carry besides its content: they never reach the model, and `rerank()`
# hands them back on each result.
PASSTHROUGH_KEYS = ("id", "metadata")


def to_item(value: Any, field: str, *, max_image_pixels: int | None = None, rules: ImageRules | None = None) -> Item:
    """Normalise one query or document.

    A `str` is text, except a `data:image/...` URL, which can only mean an image. A PIL image, a
    `Path` or `bytes` is an image. A dict takes `text` and/or `image` (any image form `load_image`
    accepts: a path or base64 string goes there), plus optional `id` and `metadata` that are
    carried through, not scored. An `Item` passes through. `rules` (or `max_image_pixels`) say how
    images are decoded (`ImageRules`). A PDF (bytes or a path whose bytes are one, or a dict's `pdf`) is read
    as its rendered pages (`Item.pages`; `inputs/pdf.py`).
    """
    if isinstance(value, Item):
        return value
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return Item(image=load_image(value, field, max_image_pixels, rules=rules))
    if isinstance(value, str):
        return _make_item(value, (), field)
    if isinstance(value, (bytes, bytearray, memoryview, os.PathLike)) and looks_like_pdf(value):
        return Item(pages=read_pdf(value, field, rules))
    if isinstance(value, (Image.Image, bytes, bytearray, memoryview, os.PathLike)):
        return Item(image=load_image(value, field, max_image_pixels, rules=rules))
    if isinstance(value, Video):
        return Item(video=read_video(value, field, rules))
    if isinstance(value, dict):
        unknown = set(value) - {"text", "image", "images", "video", "pdf", "page", *PASSTHROUGH_KEYS}
        if unknown:
            raise InputError(field, "unknown_keys", keys=sorted(unknown))
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise InputError(f"{field}.text", "expected_string", type=type(text).__name__)
        video = read_video(value["video"], f"{field}.video", rules) if value.get("video") is not None else None
        pages = read_pdf(value["pdf"], f"{field}.pdf", rules) if value.get("pdf") is not None else None
        if pages is not None and value.get("page") is not None:  # one page of it (1-based): that page's image alone
            pages = _one_page(pages, value["page"], f"{field}.page")
        image, images = value.get("image"), value.get("images")
        if images is not None and image is not None:
            raise InputError(field, "image_and_images")
        if images is not None:
            if not isinstance(images, (list, tuple)):
                raise InputError(f"{field}.images", "images_list", type=type(images).__name__)
            if rules is not None and rules.max_images is not None and len(images) > rules.max_images:
                raise InputError(f"{field}.images", "too_many_images", count=len(images), limit=rules.max_images)
            loaded = tuple(load_image(one, f"{field}.images[{k}]", max_image_pixels, rules=rules) for k, one in enumerate(images))
            return _make_item(text, loaded, field, video, pages)
        loaded = load_image(image, f"{field}.image", max_image_pixels, rules=rules) if image is not None else None
        return _make_item(text, (loaded,) if loaded is not None else (), field, video, pages)
    if value is None:
        raise InputError(field, "missing")
    raise InputError(field, "unsupported_type", type=type(value).__name__)


def _one_page(pages: Pages, number: Any, field: str) -> Pages:
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= pages.count:
        raise InputError(field, "pdf_page_number", value=str(number)[:20])
    k = pages.numbers.index(number)
    return Pages(images=(pages.images[k],), numbers=(number,), texts=pages.texts[k : k + 1], count=pages.count)


def check_text(text: str, field: str) -> str:
    """Text must be valid Unicode: a lone surrogate (possible in JSON's \\ud800 escapes) is refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(field, "not_unicode", position=error.start) from None
    return text


def _make_item(text: str | None, images: tuple, field: str, video: Video | None = None, pages=None) -> Item:
    if text is not None:
        check_text(text, f"{field}.text" if images or video is not None or pages is not None else field)
    if text is not None and not text.strip():
        text = None
    if text is None and not images and video is None and pages is None:
        raise InputError(field, "empty")
    return Item(text=text, images=images, video=video, pages=pages)


def read_video(value: Any, field: str, rules: ImageRules | None = None) -> Video:
    """A video given as a path, bytes, base64 or a data URL (or a `Video` already sampled), decoded by the
    sampling rule of `video.py` under `rules` (its duration and bytes, the frames' pixels). Its memory was taken
    with the request's images (`admit_images`), from the same header that bounds what decoding keeps."""
    from ..video import load_video

    rules = rules or NO_RULES
    return load_video(
        video_value(value, field),
        field,
        keep_pixels=rules.keep_pixels,
        max_seconds=rules.max_video_seconds,
        max_bytes=rules.max_video_bytes,
        max_frame_pixels=rules.max_image_pixels,
        budget=rules.budget,
        segments=rules.clip_segments,
    )


def to_items(
    documents: Sequence[Any], field: str = "documents", *, max_image_pixels: int | None = None, rules: ImageRules | None = None
) -> list[Item]:
    """Normalise a list of documents; errors name the document's 0-based index."""
    if isinstance(documents, (str, bytes, dict, Image.Image)) or not isinstance(documents, Sequence):
        raise InputError(field, "expected_list", type=type(documents).__name__)
    return [
        to_item(document, f"{field}[{index}]", max_image_pixels=max_image_pixels, rules=rules)
        for index, document in enumerate(documents)
    ]


def resolve_instruction(instruction: str | None, default: str) -> str:
    """`None` or blank means the model's default instruction; anything else must be a string."""
    if instruction is None:
        return default
    if not isinstance(instruction, str):
        raise InputError("instruction", "expected_string", type=type(instruction).__name__)
    return check_text(instruction, "instruction").strip() or default
