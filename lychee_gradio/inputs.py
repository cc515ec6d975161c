"""Turning what callers pass (text, images in many forms, dicts of both) into one `Item` type.

Everything past this module works on `Item` only. Errors name the field they come from
(`query`, `documents[3]`, `documents[3].image`) so a caller with 50 documents knows which one
to fix.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError


@dataclass(frozen=True)
class Item:
    """One query or document: text, an RGB image, or both (never neither)."""

    text: str | None = None
    image: Image.Image | None = None


_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w/+.-]*)?(;[\w=.-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def load_image(value: Any, field: str, max_pixels: int | None = None) -> Image.Image:
    """Decode an image given as a PIL image, a path, raw bytes, base64 or a data URL, as RGB.

    EXIF orientation is applied, so a photo shows the way the camera held it. With `max_pixels`,
    an image whose header declares more pixels is refused before its pixels are decoded; Pillow's
    decompression-bomb guard stays on in any case.
    """
    if isinstance(value, Image.Image):
        _check_size(value, field, max_pixels)
        return _to_rgb(value, field)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(value), field, max_pixels)
    if isinstance(value, os.PathLike):
        return _open_path(Path(value), field, max_pixels)
    if isinstance(value, str):
        return _decode_string(value, field, max_pixels)
    raise ValueError(
        f"{field}: unsupported image type {type(value).__name__}; "
        "give a PIL image, a file path, bytes, a base64 string or a data URL"
    )


def _decode_string(value: str, field: str, max_pixels: int | None) -> Image.Image:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{field}: image is an empty string")
    if _DATA_URL_RE.match(stripped):
        return _decode_bytes(decode_image_data(stripped, field), field, max_pixels)
    if stripped.startswith(("http://", "https://")):
        raise ValueError(f"{field}: image URLs are not fetched ({stripped[:80]}); download the image and pass it")
    if os.path.exists(stripped):
        return _open_path(Path(stripped), field, max_pixels)
    # A long string of base64 characters is image data; anything else was meant as a path.
    if len(stripped) > 256 and _BASE64_RE.match(stripped):
        return _decode_bytes(_b64decode(stripped, field), field, max_pixels)
    raise ValueError(f"{field}: image file not found: {stripped[:200]}")


def decode_image_data(value: str, field: str) -> bytes:
    """The bytes of an image sent as text: a `data:...;base64,` URL or plain (or URL-safe) base64."""
    match = _DATA_URL_RE.match(value.strip())
    return _b64decode(match.group("data") if match else value, field)


def _b64decode(data: str, field: str) -> bytes:
    compact = "".join(data.split())
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{field}: invalid base64 image data ({error})") from None


def _open_path(path: Path, field: str, max_pixels: int | None = None) -> Image.Image:
    path = path.expanduser()
    if not path.exists():
        raise ValueError(f"{field}: image file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{field}: not a file: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{field}: cannot read image file {path}: {error}") from None
    return _decode_bytes(data, field, max_pixels)


def _check_size(image: Image.Image, field: str, max_pixels: int | None) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"{field}: image is {width}x{height} = {width * height:,} pixels, over this server's "
                         f"limit of {max_pixels:,}")


def _decode_bytes(data: bytes, field: str, max_pixels: int | None = None) -> Image.Image:
    if not data:
        raise ValueError(f"{field}: image data is empty")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        _check_size(image, field, max_pixels)
        image.load()
    except Image.DecompressionBombError as error:
        raise ValueError(f"{field}: image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ValueError(f"{field}: cannot decode image (not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{field}: cannot decode image ({error})") from None
    return _to_rgb(image, field)


def _to_rgb(image: Image.Image, field: str) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image.load()
    except (OSError, ValueError) as error:
        raise ValueError(f"{field}: cannot decode image ({error})") from None
    if image.width < 1 or image.height < 1:
        raise ValueError(f"{field}: image has no pixels")
    return image


# Keys a document dict may carry besides its content: they never reach the model, and `rerank()`
# hands them back on each result.
PASSTHROUGH_KEYS = ("id", "metadata")


def to_item(value: Any, field: str, *, max_image_pixels: int | None = None) -> Item:
    """Normalise one query or document.

    A `str` is text, except a `data:image/...` URL, which can only mean an image. A PIL image, a
    `Path` or `bytes` is an image. A dict takes `text` and/or `image` (any image form `load_image`
    accepts: a path or base64 string goes there), plus optional `id` and `metadata` that are
    carried through, not scored. An `Item` passes through.
    """
    if isinstance(value, Item):
        return value
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return Item(image=load_image(value, field, max_image_pixels))
    if isinstance(value, str):
        return _make_item(value, None, field)
    if isinstance(value, (Image.Image, bytes, bytearray, memoryview, os.PathLike)):
        return Item(image=load_image(value, field, max_image_pixels))
    if isinstance(value, dict):
        unknown = set(value) - {"text", "image", *PASSTHROUGH_KEYS}
        if unknown:
            raise ValueError(f"{field}: unknown keys {sorted(unknown)}; use 'text' and/or 'image' "
                             "(and optionally 'id', 'metadata')")
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{field}.text: expected a string, got {type(text).__name__}")
        image = value.get("image")
        loaded = load_image(image, f"{field}.image", max_image_pixels) if image is not None else None
        return _make_item(text, loaded, field)
    if value is None:
        raise ValueError(f"{field}: missing (got None); give text, an image, or a dict of both")
    raise ValueError(
        f"{field}: unsupported type {type(value).__name__}; "
        "give a string, a PIL image, a path, bytes, or a dict with 'text' and/or 'image'"
    )


def check_text(text: str, field: str) -> str:
    """Text must be valid Unicode: a lone surrogate (possible in JSON's \\ud800 escapes) is refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{field}: not valid Unicode text (a lone surrogate at character {error.start})") from None
    return text


def _make_item(text: str | None, image: Image.Image | None, field: str) -> Item:
    if text is not None:
        check_text(text, f"{field}.text" if image is not None else field)
    if text is not None and not text.strip():
        text = None
    if text is None and image is None:
        raise ValueError(f"{field}: empty (no text and no image)")
    return Item(text=text, image=image)


def to_items(documents: Sequence[Any], field: str = "documents", *,
             max_image_pixels: int | None = None) -> list[Item]:
    """Normalise a list of documents; errors name the document's 0-based index."""
    if isinstance(documents, (str, bytes, dict, Image.Image)) or not isinstance(documents, Sequence):
        raise ValueError(f"{field}: expected a list of documents, got {type(documents).__name__}")
    return [to_item(document, f"{field}[{index}]", max_image_pixels=max_image_pixels)
            for index, document in enumerate(documents)]
