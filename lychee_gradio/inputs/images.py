"""Decoding one image, as every door does: the formats photos come in (Pillow alone, no external program), the
forms callers send (a PIL image, a path, bytes, base64, a data URL), large images decoded straight down to what
the model looks at, EXIF orientation applied, every mode read as a browser shows it. `InputError`s name the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ..contract import InputError

# The image formats every door decodes, by Pillow's names, and no other: none of them starts an external
# program (Pillow's EPS plugin runs Ghostscript on the caller's bytes; PDF, PSD, ICNS and the rest are no
# photos). "JPEG" includes MPO, how phones and cameras save JPEGs with a second picture.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Qwen-VL's processors refuse images whose longer side is more than this many times the shorter.
MAX_ASPECT_RATIO = 200


def open_image(source: Any) -> Image.Image:
    """`Image.open` limited to `IMAGE_FORMATS` (reads the header only); anything else is
    `UnidentifiedImageError`, as for bytes that are no image at all."""
    if "WEBP" not in Image.OPEN:  # Image.open itself registers only the most common plugins first
        Image.init()
    return Image.open(source, formats=IMAGE_FORMATS)


@dataclass(frozen=True)
class ImageRules:
    """How one request's images are decoded.

    `max_image_pixels`: an image whose header declares more pixels is refused before it is decoded (the
    refusal limit, `Limits.max_image_pixels`; the model's resize bound is `keep_pixels`).
    `keep_pixels`: the most pixels the model will look at (its pixel bound); a larger image is
    decoded straight down by a whole factor to no fewer pixels than that (JPEG in the decoder,
    via `draft`; other formats by `reduce`), so a 49-megapixel photo never sits in memory at full
    size. The processor then resizes it to the model's grid as usual. `budget`: the request's
    `PixelBudget`.
    """

    max_image_pixels: int | None = None
    keep_pixels: int | None = None
    budget: Any = None  # memory.PixelBudget
    max_images: int | None = None  # images in one query or document (`Limits.max_images_per_item`)
    max_video_seconds: float | None = None  # a video's duration (`Limits.max_video_seconds`)
    max_video_bytes: int | None = None  # a video file's size (`Limits.max_video_bytes`)
    max_pdf_bytes: int | None = None  # a PDF file's size (`Limits.max_pdf_bytes`)
    max_pdf_pages: int | None = None  # PDF pages of the request (`Limits.max_pdf_pages`)
    pdf_text: bool = False  # a PDF page's text layer goes with its image (`Limits.pdf_text`)
    clip_segments: bool = False  # a long clip keeps 1 frame a second, for its segments (not "truncate": parts.py)


NO_RULES = ImageRules()

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w/+.-]*)?(;[\w=.-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def load_image(value: Any, field: str, max_image_pixels: int | None = None, *, rules: ImageRules | None = None) -> Image.Image:
    """Decode an image given as a PIL image, a path, raw bytes, base64 or a data URL, as RGB.

    EXIF orientation is applied, so a photo shows the way the camera held it. With `max_image_pixels`
    (or `rules.max_image_pixels`), an image whose header declares more pixels is refused before its
    pixels are decoded; Pillow's decompression-bomb guard stays on in any case. `rules` also
    decodes large images straight down and counts the request's decoded pixels (`ImageRules`).
    """
    rules = rules or NO_RULES
    if max_image_pixels is not None:
        rules = ImageRules(max_image_pixels, rules.keep_pixels, rules.budget)
    if isinstance(value, Image.Image):
        _check_size(value, field, rules.max_image_pixels)
        image = _to_rgb(_reduced(value, rules.keep_pixels), field)
        if rules.budget is not None:
            rules.budget.take(image, field)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        image = _decode_bytes(bytes(value), field, rules)
    elif isinstance(value, os.PathLike):
        image = _open_path(Path(value), field, rules)
    elif isinstance(value, str):
        image = _decode_string(value, field, rules)
    else:
        raise InputError(field, "image_type", type=type(value).__name__)
    return image


def is_data_url(value: str) -> bool:
    """Whether `value` is a base64 data URL (`data:<type>;base64,...`), not merely text starting with "data:"."""
    return bool(_DATA_URL_RE.match(value.strip()))


def base64_image(value: str) -> bytes | None:
    """The bytes of `value` if it is plain (or URL-safe) base64 of an image Pillow can identify, else None.

    This decides "image data or a path?": a JPEG's base64 starts with "/9j/", which looks like a
    path, and only data that really decodes to an image header counts as data.
    """
    compact = "".join(value.split())
    if len(compact) < 8 or not _BASE64_RE.match(compact):
        return None
    try:
        data = _b64decode(compact, "")
    except ValueError:
        return None
    return data if _is_image(data) else None


def _is_image(data: bytes) -> bool:
    try:
        with open_image(io.BytesIO(data)):
            return True
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is "not an image"
        return False


def _decode_string(value: str, field: str, rules: ImageRules) -> Image.Image:
    stripped = value.strip()
    if not stripped:
        raise InputError(field, "image_empty_string")
    if _DATA_URL_RE.match(stripped):
        return _decode_bytes(decode_image_data(stripped, field), field, rules)
    if stripped.startswith(("http://", "https://")):
        raise InputError(field, "image_url_library", url=stripped[:80])
    data = base64_image(stripped)
    if data is not None:
        return _decode_bytes(data, field, rules)
    if os.path.exists(stripped):
        return _open_path(Path(stripped), field, rules)
    if len(stripped) > 256 and _BASE64_RE.match(stripped):
        raise InputError(field, "base64_invalid", reason="it does not decode to an image")
    raise InputError(field, "image_not_found", path=stripped[:200])


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
    except (binascii.Error, ValueError):
        raise InputError(field, "base64_invalid", reason="not base64 text") from None


def _open_path(path: Path, field: str, rules: ImageRules = NO_RULES) -> Image.Image:
    path = path.expanduser()
    if not path.exists():
        raise InputError(field, "image_not_found", path=str(path))
    if not path.is_file():
        raise InputError(field, "image_not_a_file", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(field, "image_unreadable", path=str(path), reason=str(error)) from None
    return _decode_bytes(data, field, rules)


def _check_size(image: Image.Image, field: str, max_image_pixels: int | None) -> None:
    width, height = image.size
    if max_image_pixels is not None and width * height > max_image_pixels:
        raise InputError(field, "image_pixels", width=width, height=height, pixels=width * height, limit=max_image_pixels)
    if width >= 1 and height >= 1 and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(field, "image_aspect", width=width, height=height, limit=MAX_ASPECT_RATIO)


def reduction_factor(width: int, height: int, keep_pixels: int | None) -> int:
    """The largest whole factor that shrinks width x height to no fewer than `keep_pixels` pixels (1: keep as is)."""
    if not keep_pixels or width * height < 4 * keep_pixels:
        return 1
    return max(1, math.isqrt(width * height // keep_pixels))


def _reduced(image: Image.Image, keep_pixels: int | None) -> Image.Image:
    factor = reduction_factor(image.width, image.height, keep_pixels)
    if factor == 1:
        return image
    if image.mode not in _REDUCIBLE:  # palette, 1-bit, 16-bit: Pillow's reduce takes 8-bit and 32-bit modes
        image = _eight_bit(image)
    return image.reduce(factor)


def _decode_bytes(data: bytes, field: str, rules: ImageRules = NO_RULES) -> Image.Image:
    if not data:
        raise InputError(field, "image_empty")
    try:
        image = open_image(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise InputError(field, "image_unidentified") from None
    except Image.DecompressionBombError:
        raise InputError(field, "image_bomb", reason="it declares more pixels than can be decoded safely") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(field, "image_decode", reason=str(error)) from None
    _check_size(image, field, rules.max_image_pixels)
    factor = reduction_factor(image.width, image.height, rules.keep_pixels)
    if factor > 1 and image.format == "JPEG":
        # The JPEG decoder scales by 1/2, 1/4 or 1/8 while decoding, to no less than the size asked.
        image.draft(None, (image.width // factor, image.height // factor))
    reserved = image.width * image.height  # what decoding will hold, before it is reduced
    if rules.budget is not None:
        rules.budget.reserve(reserved)
    try:
        image.load()
        image = _reduced(image, rules.keep_pixels)
    except Image.DecompressionBombError:
        raise InputError(field, "image_bomb", reason="it declares more pixels than can be decoded safely") from None
    except UnidentifiedImageError:
        raise InputError(field, "image_unidentified") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(field, "image_decode", reason=str(error)) from None
    image = _to_rgb(image, field)
    if rules.budget is not None:
        rules.budget.settle(reserved, image, field)
    return image


_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "La", "RGBa"}


def _eight_bit(image: Image.Image) -> Image.Image:
    """An image of any mode Pillow decodes in a mode `convert("RGB")` reads as a browser shows it: palette
    images with their transparency, 1-bit as black and white, 16-bit and 32-bit integers by their top 8
    bits (not clipped to white), floats in 0..1 scaled to 0..255 (others clipped)."""
    import numpy as np

    mode = image.mode
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode == "I" and values.size and values.max() <= 255 and values.min() >= 0:
            return Image.fromarray(values.astype(np.uint8), "L")
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), "L")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    return image


def _to_rgb(image: Image.Image, field: str) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = _eight_bit(image)
            image = image.convert("RGB")
        image.load()
    except (OSError, ValueError) as error:
        raise InputError(field, "image_decode", reason=str(error)) from None
    if image.width < 1 or image.height < 1:
        raise InputError(field, "image_no_pixels")
    if max(image.size) > MAX_ASPECT_RATIO * min(image.size):
        raise InputError(field, "image_aspect", width=image.width, height=image.height, limit=MAX_ASPECT_RATIO)
    return image


def video_value(value: Any, field: str) -> Any:
    """A clip sent as text (a data URL or base64) as its bytes; anything else as it is."""
    if isinstance(value, str) and (is_data_url(value) or (len(value) > 256 and _BASE64_RE.match(value[:4096]))):
        return decode_image_data(value, field)
    return value
