"""Turning what callers pass (text, images in many forms, dicts of both) into one `Item` type.

Everything past this module works on `Item` only. Errors are `contract.InputError`s that name the
field they come from (`query`, `documents[3]`, `documents[3].image`) so a caller with 50 documents
knows which one to fix. Torch-free: every door normalises here, once, at its edge.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from .contract import InputError, Item, Video

__all__ = ["Item", "ImageRules", "PixelBudget", "load_image", "to_item", "to_items", "check_text",
           "resolve_instruction", "base64_image", "decode_image_data", "open_image", "IMAGE_FORMATS"]

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


class ImageMemoryPool:
    """The memory that the images of every request in flight hold at once, in bytes
    (`Limits.image_memory_in_flight`): their decoded pixels and the model's pixel patches made from them.

    A request takes its images' share before any is decoded (read from their headers: `admit_images`)
    and gives it back when it ends. A request that would take the pool over its limit waits for others to
    give back, until its own deadline (its `check` raises then); a request alone is never refused.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, amount: int, check: Callable[[], None] | None = None) -> None:
        with self._changed:
            while self.used and self.used + amount > self.limit:
                if check is not None:
                    check()
                self._changed.wait(0.1)
            self.used += amount

    def release(self, amount: int) -> None:
        if amount:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


_POOLS: dict[int, ImageMemoryPool] = {}
_POOLS_LOCK = threading.Lock()


def image_memory_pool(limit: int) -> ImageMemoryPool:
    """The process's pool for a limit: every door of a server (same `Limits`) shares one."""
    with _POOLS_LOCK:
        return _POOLS.setdefault(limit, ImageMemoryPool(limit))


# What one image holds while its request runs, per pixel: 3 bytes decoded (RGB), and the model's patches of
# it as the processor makes them (3 channels x 2 temporal frames x 4 bytes), per pixel of the image as resized
# (at most the model's bound). float32 is counted: a bf16 model's patches take half.
DECODED_BYTES_PER_PIXEL = 3
PATCH_BYTES_PER_PIXEL = 24


def image_memory(width: int, height: int, keep_pixels: int | None) -> int:
    """The bytes `admit_images` counts for an image of width x height, decoded down to `keep_pixels`."""
    factor = reduction_factor(width, height, keep_pixels)
    decoded = (width // factor) * (height // factor)
    resized = min(decoded, keep_pixels) if keep_pixels else decoded
    return DECODED_BYTES_PER_PIXEL * decoded + PATCH_BYTES_PER_PIXEL * resized


class PixelBudget:
    """The decoded pixels one request may hold, all of its images together (`Limits.max_request_pixels`),
    and the memory its images take from the process's `ImageMemoryPool` when one is given.

    Each door makes one per request and hands it to every `to_item` of that request. Before decoding,
    `admit` takes from the pool what the request's images will hold (read from their headers: decoded
    pixels and patches), all at once, so that requests never wait on each other half-way; an image that
    takes the request over its own pixel limit is refused (413, `request_pixels`), naming it; `release()`
    gives the pool its share back when the request ends; `check` (the request's deadline and Stop) runs
    between images.
    """

    def __init__(self, limit: int | None, pool: ImageMemoryPool | None = None,
                 check: Callable[[], None] | None = None):
        self.limit, self.pool, self.check = limit, pool, check
        self.used = 0  # pixels of the request's decoded images
        self._held = 0  # bytes admitted from the pool

    def admit(self, amount: int) -> None:
        """Take `amount` bytes from the pool at once (waits while other requests hold too much)."""
        if self.pool is not None and amount > 0:
            self.pool.acquire(amount, self.check)
            self._held += amount

    def reserve(self, pixels: int) -> None:
        """Before decoding one image."""
        if self.check is not None:
            self.check()

    def settle(self, reserved: int, image: Image.Image, field: str) -> None:
        """After decoding: count what the image holds; refuse past the request's limit."""
        self.used += image.width * image.height
        if self.limit is not None and self.used > self.limit:
            raise InputError(field, "request_pixels", limit=self.limit)

    def take(self, image: Image.Image, field: str) -> None:
        """An image decoded elsewhere (a PIL image given by a caller)."""
        self.reserve(image.width * image.height)
        self.settle(0, image, field)

    def release(self) -> None:
        """When the request ends (its decoded images gone with it): the pool's pixels back, and after a
        request of large images the heap memory they freed back to the system."""
        held, self._held = self._held, 0
        if self.pool is not None:
            self.pool.release(held)
        if self.used >= RETURN_MEMORY_AFTER_PIXELS or held >= RETURN_MEMORY_AFTER_BYTES:
            self.used = 0
            return_memory()


def admit_images(values: Sequence[Any], rules: "ImageRules") -> None:
    """Admit, at once, the memory that the images among `values` (queries and documents in any form)
    will hold once decoded and cut into patches (`image_memory`), read from their headers; nothing is
    decoded here, and an image that cannot be read counts nothing (decoding it names the problem).
    The request's own pixel limit caps what it waits for: past it, it is refused anyway."""
    if rules.budget is None or rules.budget.pool is None:
        return
    total = pixels = 0
    images = []
    for value in values:
        if isinstance(value, dict):
            images += ([value["image"]] if value.get("image") is not None else []) + list(value.get("images") or [])
        elif not isinstance(value, str) or value.lstrip().startswith("data:image/"):
            images.append(value)  # a plain string is text (to_item's rule): never looked up as a path
    for image in images:
        size = _header_size(image)
        if size is not None:
            factor = reduction_factor(size[0], size[1], rules.keep_pixels)
            pixels += (size[0] // factor) * (size[1] // factor)
            if rules.budget.limit is not None and pixels > rules.budget.limit:
                break
            total += image_memory(size[0], size[1], rules.keep_pixels)
    rules.budget.admit(total)


def _header_size(value: Any) -> tuple[int, int] | None:
    try:
        if isinstance(value, Image.Image):
            return value.size
        if isinstance(value, (bytes, bytearray, memoryview)):
            source: Any = io.BytesIO(bytes(value))
        elif isinstance(value, os.PathLike):
            source = os.fspath(value)
        elif isinstance(value, str) and (is_data_url(value) or base64_image(value) is not None):
            source = io.BytesIO(decode_image_data(value, ""))
        elif isinstance(value, str) and os.path.isfile(value.strip()):
            source = value.strip()
        else:
            return None
        with open_image(source) as image:
            return image.size
    except Exception:  # noqa: BLE001 - unreadable here: decoding reports it with the field's name
        return None


def request_rules(limits, keep_pixels: int, context) -> "ImageRules":
    """The `ImageRules` of one request at a door: the server's `limits` (settings.Limits), images decoded
    down to `keep_pixels`, a decoded-pixel budget drawn from the process's pool and given back when the
    request's `context` (contract.RequestContext) closes, the request's deadline checked between images."""
    budget = PixelBudget(limits.max_request_pixels, image_memory_pool(limits.image_memory_in_flight), context.check)
    context.on_close(budget.release)
    return ImageRules(max_image_pixels=limits.max_image_pixels, keep_pixels=keep_pixels, budget=budget,
                      max_images=limits.max_images_per_item, max_video_seconds=limits.max_video_seconds,
                      max_video_bytes=limits.max_video_bytes)


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
    budget: PixelBudget | None = None
    max_images: int | None = None  # images in one query or document (`Limits.max_images_per_item`)
    max_video_seconds: float | None = None  # a video's duration (`Limits.max_video_seconds`)
    max_video_bytes: int | None = None  # a video file's size (`Limits.max_video_bytes`)


NO_RULES = ImageRules()

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w/+.-]*)?(;[\w=.-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def load_image(value: Any, field: str, max_image_pixels: int | None = None, *,
               rules: ImageRules | None = None) -> Image.Image:
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
    except (binascii.Error, ValueError) as error:
        raise InputError(field, "base64_invalid", reason=str(error)) from None


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
        raise InputError(field, "image_pixels", width=width, height=height, pixels=width * height,
                         limit=max_image_pixels)
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
    except Image.DecompressionBombError as error:
        raise InputError(field, "image_bomb", reason=str(error)) from None
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
    except Image.DecompressionBombError as error:
        raise InputError(field, "image_bomb", reason=str(error)) from None
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


# A request whose images add up to this many decoded pixels hands freed memory back afterwards.
RETURN_MEMORY_AFTER_PIXELS = 16_000_000
# ... or whose images took this much of the image memory pool (decoded pixels and patches): a few photos.
RETURN_MEMORY_AFTER_BYTES = 64 * 2**20


def return_memory() -> None:
    """Hand freed heap memory back to the system (glibc's `malloc_trim`; elsewhere nothing).

    Decoding large images and patching them frees hundreds of MB that glibc keeps mapped for
    reuse, so the process looks as if it still held them; measured here, 32 documents of
    7000x7000 left +312 MB behind without this and none with it.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to do
        pass


def image_pixels(items: Sequence["Item"]) -> int:
    return sum(image.width * image.height for item in items for image in item.images)


# Keys a document dict may carry besides its content: they never reach the model, and `rerank()`
# hands them back on each result.
PASSTHROUGH_KEYS = ("id", "metadata")


def to_item(value: Any, field: str, *, max_image_pixels: int | None = None, rules: ImageRules | None = None) -> Item:
    """Normalise one query or document.

    A `str` is text, except a `data:image/...` URL, which can only mean an image. A PIL image, a
    `Path` or `bytes` is an image. A dict takes `text` and/or `image` (any image form `load_image`
    accepts: a path or base64 string goes there), plus optional `id` and `metadata` that are
    carried through, not scored. An `Item` passes through. `rules` (or `max_image_pixels`) say how
    images are decoded (`ImageRules`).
    """
    if isinstance(value, Item):
        return value
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return Item(image=load_image(value, field, max_image_pixels, rules=rules))
    if isinstance(value, str):
        return _make_item(value, (), field)
    if isinstance(value, (Image.Image, bytes, bytearray, memoryview, os.PathLike)):
        return Item(image=load_image(value, field, max_image_pixels, rules=rules))
    if isinstance(value, Video):
        return Item(video=read_video(value, field, rules))
    if isinstance(value, dict):
        unknown = set(value) - {"text", "image", "images", "video", *PASSTHROUGH_KEYS}
        if unknown:
            raise InputError(field, "unknown_keys", keys=sorted(unknown))
        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise InputError(f"{field}.text", "expected_string", type=type(text).__name__)
        video = read_video(value["video"], f"{field}.video", rules) if value.get("video") is not None else None
        image, images = value.get("image"), value.get("images")
        if images is not None and image is not None:
            raise InputError(field, "image_and_images")
        if images is not None:
            if not isinstance(images, (list, tuple)):
                raise InputError(f"{field}.images", "images_list", type=type(images).__name__)
            if rules is not None and rules.max_images is not None and len(images) > rules.max_images:
                raise InputError(f"{field}.images", "too_many_images", count=len(images), limit=rules.max_images)
            loaded = tuple(load_image(one, f"{field}.images[{k}]", max_image_pixels, rules=rules)
                           for k, one in enumerate(images))
            return _make_item(text, loaded, field, video)
        loaded = load_image(image, f"{field}.image", max_image_pixels, rules=rules) if image is not None else None
        return _make_item(text, (loaded,) if loaded is not None else (), field, video)
    if value is None:
        raise InputError(field, "missing")
    raise InputError(field, "unsupported_type", type=type(value).__name__)


def check_text(text: str, field: str) -> str:
    """Text must be valid Unicode: a lone surrogate (possible in JSON's \\ud800 escapes) is refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(field, "not_unicode", position=error.start) from None
    return text


def _make_item(text: str | None, images: tuple, field: str, video: Video | None = None) -> Item:
    if text is not None:
        check_text(text, f"{field}.text" if images or video is not None else field)
    if text is not None and not text.strip():
        text = None
    if text is None and not images and video is None:
        raise InputError(field, "empty")
    return Item(text=text, images=images, video=video)


def read_video(value: Any, field: str, rules: ImageRules | None = None) -> Video:
    """A video given as a path, bytes, base64 or a data URL (or a `Video` already sampled), decoded by the
    sampling rule of `video.py` under `rules` (its duration and bytes, the frames' pixels)."""
    from .video import load_video

    rules = rules or NO_RULES
    if isinstance(value, str) and (is_data_url(value) or (len(value) > 256 and _BASE64_RE.match(value[:4096]))):
        value = decode_image_data(value, field)
    budget = rules.budget

    def admit(width: int, height: int, frames: int) -> None:  # what the kept frames will hold, before decoding
        if budget is not None:
            budget.admit(frames * image_memory(width, height, rules.keep_pixels))

    return load_video(value, field, keep_pixels=rules.keep_pixels, max_seconds=rules.max_video_seconds,
                      max_bytes=rules.max_video_bytes, max_frame_pixels=rules.max_image_pixels, budget=budget,
                      admit=admit)


def to_items(documents: Sequence[Any], field: str = "documents", *,
             max_image_pixels: int | None = None, rules: ImageRules | None = None) -> list[Item]:
    """Normalise a list of documents; errors name the document's 0-based index."""
    if isinstance(documents, (str, bytes, dict, Image.Image)) or not isinstance(documents, Sequence):
        raise InputError(field, "expected_list", type=type(documents).__name__)
    return [to_item(document, f"{field}[{index}]", max_image_pixels=max_image_pixels, rules=rules)
            for index, document in enumerate(documents)]


def resolve_instruction(instruction: str | None, default: str) -> str:
    """`None` or blank means the model's default instruction; anything else must be a string."""
    if instruction is None:
        return default
    if not isinstance(instruction, str):
        raise InputError("instruction", "expected_string", type=type(instruction).__name__)
    return check_text(instruction, "instruction").strip() or default
