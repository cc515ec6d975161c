"""The memory a request's images and clips hold while it runs: one pool for every request in flight, each
request's share taken at once from the headers before anything is decoded (never waited for by the request that
holds it), its decoded pixels counted, and freed memory handed back to the system after a large request."""

from __future__ import annotations

import io
import math
import os
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from PIL import Image

from ..contract import ImagesBusyError, InputError, Item, Video
from .images import ImageRules, base64_image, decode_image_data, is_data_url, open_image, reduction_factor, video_value
from .pdf import looks_like_pdf


class ImageMemoryPool:
    """The memory that the images and clips of every request in flight hold at once, in bytes
    (`Limits.image_memory_in_flight`): their decoded pixels and the model's pixel patches made from them.

    A request takes its whole share at once, before anything is decoded (read from the headers: `admit_images`),
    and gives it back when it ends, so a request never waits on memory it holds itself. A request whose share
    can never fit is refused at once (413 `request_memory`, naming the limit and how many of its images would
    fit); one that finds the memory taken by others waits up to `wait` seconds (its deadline and Stop checked),
    then is answered 503 with Retry-After (`ImagesBusyError`): nobody waits a whole timeout behind a large request.
    """

    def __init__(self, limit: int, wait: float = 10.0):
        self.limit = limit
        self.wait = wait
        self.used = 0
        self._changed = threading.Condition()

    def acquire(
        self, amount: int, check: Callable[[], None] | None = None, *, field: str = "documents", fits: int | None = None
    ) -> None:
        if amount > self.limit:
            raise InputError(
                field,
                "request_memory",
                need_mb=math.ceil(amount / 2**20),
                limit_mb=self.limit // 2**20,
                fits=fits if fits is not None else 0,
            )
        deadline = time.monotonic() + self.wait
        with self._changed:
            while self.used + amount > self.limit:
                if check is not None:
                    check()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ImagesBusyError(self.wait)
                self._changed.wait(min(0.1, left))
            self.used += amount

    def release(self, amount: int) -> None:
        if amount:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


_POOLS: dict[tuple[int, float], ImageMemoryPool] = {}
_POOLS_LOCK = threading.Lock()


def image_memory_pool(limit: int, wait: float = 10.0) -> ImageMemoryPool:
    """The process's pool for a limit: every door of a server (same `Limits`) shares one."""
    with _POOLS_LOCK:
        return _POOLS.setdefault((limit, wait), ImageMemoryPool(limit, wait))


# What one image holds while its request runs, per pixel: 3 bytes decoded (RGB), and the model's patches of it
# per pixel of the image as resized (at most the model's bound): the processor's float32 patches (3 channels x 2
# temporal frames x 4 bytes = 24) and their copy in the pass that concatenates a batch's patches (24 more).
# Measured (docs/security.md): 75 distinct 999x999 images in 5 documents, scored in one pass, took 3.5 GB, 47
# bytes a pixel. float32 is counted: a bf16 model's patches take half.
DECODED_BYTES_PER_PIXEL = 3
PATCH_BYTES_PER_PIXEL = 48


def decoded_size(width: int, height: int, image_format: str | None, keep_pixels: int | None) -> tuple[int, int]:
    """The size an image of width x height is decoded to (`images._decode_bytes`): a JPEG is first scaled in its
    decoder by 1/2, 1/4 or 1/8 (the largest not past the whole factor), then reduced by what is left."""
    factor = reduction_factor(width, height, keep_pixels)
    if factor > 1 and image_format == "JPEG":
        scale = max(s for s in (1, 2, 4, 8) if s <= factor)
        width, height = -(-width // scale), -(-height // scale)  # the decoder rounds up
    rest = reduction_factor(width, height, keep_pixels)
    return width // rest, height // rest


def image_parts(width: int, height: int, keep_pixels: int | None) -> tuple[int, int]:
    """(decoded bytes, patch bytes) of an image of width x height, decoded down to `keep_pixels`."""
    factor = reduction_factor(width, height, keep_pixels)
    decoded = (width // factor) * (height // factor)
    resized = min(decoded, keep_pixels) if keep_pixels else decoded
    return DECODED_BYTES_PER_PIXEL * decoded, PATCH_BYTES_PER_PIXEL * resized


def image_memory(width: int, height: int, keep_pixels: int | None) -> int:
    """The bytes an image of width x height holds while its request runs, decoded down to `keep_pixels`."""
    return sum(image_parts(width, height, keep_pixels))


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

    def __init__(self, limit: int | None, pool: ImageMemoryPool | None = None, check: Callable[[], None] | None = None):
        self.limit, self.pool, self.check = limit, pool, check
        self.used = 0  # pixels of the request's decoded images
        self._held = 0  # bytes admitted from the pool
        # PDFs checked and measured at admission (`inputs.pdf.PdfHeader`), by the id of the value the request holds,
        # so that reading them does not scan and measure them again.
        self.pdf_headers: dict[int, Any] = {}

    def admit(self, amount: int, *, field: str = "documents", fits: int | None = None) -> None:
        """Take `amount` bytes from the pool, once per request (`ImageMemoryPool.acquire`: refused when it can
        never fit, a short wait while other requests hold too much)."""
        if self.pool is not None and amount > 0:
            if self._held:
                raise RuntimeError("a request takes its image memory once")  # a second take could wait on itself
            self.pool.acquire(amount, self.check, field=field, fits=fits)
            self._held += amount

    def reserve(self, pixels: int) -> None:
        """Before decoding one image."""
        if self.check is not None:
            self.check()

    def settle(self, reserved: int, image: Image.Image, field: str) -> None:
        """After decoding: count what the image holds; refuse past the request's limit, and (with a pool) past
        what the request admitted: an image that decodes to more than its header said is not kept."""
        self.used += image.width * image.height
        if self.limit is not None and self.used > self.limit:
            raise InputError(field, "request_pixels", limit=self.limit)
        if self.pool is not None and DECODED_BYTES_PER_PIXEL * self.used > self._held:
            raise InputError(
                field,
                "request_memory",
                need_mb=math.ceil(DECODED_BYTES_PER_PIXEL * self.used / 2**20),
                limit_mb=self.pool.limit // 2**20,
                fits=0,
            )

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


def admit_images(
    values: Sequence[Any],
    rules: "ImageRules",
    field: str = "documents",
    documents_in_flight: int | None = None,
    names: Sequence[str] | None = None,
) -> None:
    """Admit, at once, the memory that the images and clips among `values` (the query, then the documents, in any
    form) will hold, read from their headers (a clip's: its frame size and the frames the rule keeps); nothing is
    decoded here, and an image that cannot be read counts nothing (decoding it names the problem).

    Every image counts its decoded pixels; patches are counted for the query and for the `documents_in_flight`
    documents with the most (a scorer that pipelines a large request holds the patches of a few chunks at once,
    never all: `Scorer.documents_in_flight`; None: every document's at once). The request's own pixel limit caps
    what it takes. `fits`, for a refusal's words: how many of the request's images and clips, in order, would fit
    the pool. Every image and clip counts, however many come: nothing is decoded that was not admitted."""
    if rules.budget is None or rules.budget.pool is None:
        return
    limit = rules.budget.pool.limit
    decoded_total = pixels = fits = pages = 0
    patches: dict = {}  # per value (0: the query; a PDF's page: a part of its own), the patch bytes of its media
    for index, kind, value, where in _media(values, field, names):
        if kind == "pdf":
            sizes = _pdf_pages(value, where, rules, pages)
            pages += len(sizes)
            for page, (width, height) in enumerate(sizes):
                decoded, patch = image_parts(width, height, rules.keep_pixels)
                pixels += width * height
                decoded_total += decoded
                patches[(index, page)] = patch
                fits += _held(decoded_total, patches, documents_in_flight) <= limit
            continue
        if kind == "video":
            need = _video_memory(value, where, rules)
        else:
            header = _header_size(value)
            if header is None:
                need = None
            else:
                width, height = decoded_size(*header, rules.keep_pixels)
                decoded, patch = image_parts(width, height, rules.keep_pixels)
                need = (decoded, patch, width * height)
        if need is None:
            continue
        decoded, patch, count = need
        pixels += count  # (past the request's pixel limit decoding refuses it; its memory is admitted all the same)
        decoded_total += decoded
        patches[index] = patches.get(index, 0) + patch
        fits += _held(decoded_total, patches, documents_in_flight) <= limit
    rules.budget.admit(_held(decoded_total, patches, documents_in_flight), field=field, fits=fits)


def _held(decoded: int, patches: dict, documents_in_flight: int | None) -> int:
    """What a request holds at its peak: every decoded image, the query's patches and those of the documents in
    flight at once (the ones with the most)."""
    query = patches.get(0, 0)
    documents = sorted((amount for index, amount in patches.items() if index), reverse=True)
    return decoded + query + sum(documents[:documents_in_flight] if documents_in_flight else documents)


def _media(values: Sequence[Any], field: str, names: Sequence[str] | None = None) -> Iterator[tuple[int, str, Any, str]]:
    """(position, "image" | "video", value, field) for each image and clip among a request's values (position 0:
    the query; `names`: each value's field, where the door names them)."""
    for index, value in enumerate(values):
        where = names[index] if names is not None else "query" if index == 0 else f"{field}[{index - 1}]"
        if isinstance(value, dict):
            if value.get("pdf") is not None:
                yield index, "pdf", value["pdf"], f"{where}.pdf"
            if value.get("image") is not None:
                yield index, "image", value["image"], f"{where}.image"
            for k, image in enumerate(value.get("images") or []):
                yield index, "image", image, f"{where}.images[{k}]"
            if value.get("video") is not None:
                yield index, "video", value["video"], f"{where}.video"
        elif isinstance(value, Video):
            continue  # already decoded: its frames count as they are taken
        elif looks_like_pdf(value):
            yield index, "pdf", value, where
        elif not isinstance(value, str) or value.lstrip().startswith("data:image/"):
            yield index, "image", value, where  # a plain string is text (to_item's rule): never looked up as a path


def _pdf_pages(value: Any, field: str, rules: "ImageRules", before: int) -> tuple:
    """The rendered size of each page of a PDF, from the file, before anything is rendered; a PDF that takes the
    request past its pages (`before` counted already) is refused here, naming it. () when it cannot be read (reading
    it names the problem)."""
    from .pdf import pdf_data, pdf_header

    limit = None if rules.max_pdf_pages is None else rules.max_pdf_pages - before
    try:
        header = pdf_header(pdf_data(value, field, rules.max_pdf_bytes), field, keep_pixels=rules.keep_pixels, max_pages=limit)
    except InputError as error:
        if error.code == "too_many_pages":
            raise InputError(field, "too_many_pages", count=before + error.params["count"], limit=rules.max_pdf_pages) from None
        if error.code == "pdf_bytes":
            raise
        return ()
    rules.budget.pdf_headers[id(value)] = header
    return header.sizes


def _video_memory(value: Any, field: str, rules: "ImageRules") -> tuple[int, int, int] | None:
    """(decoded bytes, patch bytes, decoded pixels) a clip's kept frames will hold, from its header; None when it
    cannot be read (decoding it names the problem)."""
    from ..video import video_header

    if isinstance(value, Video):
        return None
    try:
        header = video_header(
            video_value(value, field),
            field,
            max_seconds=rules.max_video_seconds,
            max_bytes=rules.max_video_bytes,
            max_frame_pixels=rules.max_image_pixels,
            segments=rules.clip_segments,
        )
    except InputError:
        return None
    decoded, patch = image_parts(header.width, header.height, rules.keep_pixels)  # each frame is scaled, not reduced
    kept = min(header.width * header.height, rules.keep_pixels or header.width * header.height)
    decoded = DECODED_BYTES_PER_PIXEL * kept
    return header.frames * decoded, header.kept * patch, header.frames * kept


def _header_size(value: Any) -> tuple[int, int, str | None] | None:
    """(width, height, Pillow's format name) from an image's header, or None when it cannot be read."""
    try:
        if isinstance(value, Image.Image):
            return (*value.size, None)
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
            return (*image.size, image.format)
    except Exception:  # noqa: BLE001 - unreadable here: decoding reports it with the field's name
        return None


def request_rules(limits, keep_pixels: int, context, clip_segments: bool = False) -> "ImageRules":
    """The `ImageRules` of one request at a door: the server's `limits` (config.Limits), images decoded
    down to `keep_pixels`, a decoded-pixel budget drawn from the process's pool and given back when the
    request's `context` (contract.RequestContext) closes, the request's deadline checked between images."""
    pool = image_memory_pool(limits.image_memory_in_flight, limits.image_memory_wait)
    budget = PixelBudget(limits.max_request_pixels, pool, context.check)
    context.on_close(budget.release)
    return ImageRules(
        max_image_pixels=limits.max_image_pixels,
        keep_pixels=keep_pixels,
        budget=budget,
        max_images=limits.max_images_per_item,
        max_video_seconds=limits.max_video_seconds,
        max_video_bytes=limits.max_video_bytes,
        max_pdf_bytes=limits.max_pdf_bytes,
        max_pdf_pages=limits.max_pdf_pages,
        pdf_text=limits.pdf_text,
        clip_segments=clip_segments,
    )


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
