"""PDF documents: each page rendered in-process to an image the model looks at, under the request's limits.

The renderer is PDFium through pypdfium2 (Apache-2.0 / BSD-3-Clause): in-process, no external program (not
poppler's tools, not Ghostscript), and nothing in the file runs: no form environment is initialised, so a PDF's
JavaScript never executes, and PDFium follows no external reference (no file, no URL is opened for a PDF).

The rule (docs/design.md, "Long documents"): page k of a PDF is the image PDFium renders of it, white behind it,
at the scale that gives at most the model's pixel bound (`keep_pixels`) and at most 300 dpi; with the server's
`--pdf-text`, the page's text layer goes with its image as the part's text. Limits, checked from the file before
any page is rendered: its bytes (`max_pdf_bytes`), its pages (`max_pdf_pages`, per request), each page's shape;
the rendered pixels count against the request's pixel budget and image memory like an image's. An encrypted,
broken or empty PDF is refused naming the field, never with PDFium's words or a server path.

Torch-free. Needs pypdfium2 (a dependency of the app).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import InputError, Pages
from .images import MAX_ASPECT_RATIO
from .pdf_scan import check_pdf_bytes

PDF_MAGIC = b"%PDF-"
# A page is rendered at no more than 300 dots per inch (PDF's unit is 1/72 inch), however small it is.
MAX_SCALE = 300 / 72
# The largest page PDF allows (ISO 32000-1, Annex C: 14,400 units a side, 200 inches); a larger one is refused.
MAX_PAGE_POINTS = 14_400
# Characters of one page's text layer kept (with --pdf-text).
MAX_PAGE_TEXT_CHARS = 32_768
# PDFium is not thread-safe: every call into it holds this lock (pypdfium2's advice).
_PDFIUM = threading.Lock()


def is_pdf(data: bytes) -> bool:
    """Whether `data` is a PDF by its first bytes (the header may follow up to 1 KB of junk, as readers allow)."""
    return PDF_MAGIC in bytes(data[:1024])


def looks_like_pdf(value: Any) -> bool:
    """Whether a Python value (bytes, a path) is a PDF: by its bytes, or a path's first bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return is_pdf(bytes(value[:1024]))
    if isinstance(value, os.PathLike):
        try:
            with open(value, "rb") as handle:
                return is_pdf(handle.read(1024))
        except OSError:
            return False
    return False


@dataclass(frozen=True)
class PdfHeader:
    """What a PDF will cost, read before any page is rendered: its page count and each page's rendered size."""

    pages: int
    sizes: tuple  # (width, height) in pixels of each page as rendered


def pdf_data(value: Any, field: str, max_bytes: int | None = None) -> bytes:
    """A PDF's bytes from bytes, a path (the library, the page's uploads), base64 or a data URL."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise InputError(field, "pdf_not_found", path=path.name)
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise InputError(field, "pdf_bytes", limit=max_bytes)
        data = path.read_bytes()
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.startswith("data:"):
            head, _, text = text.partition(",")
            mime = head[5:].split(";", 1)[0].strip().lower()
            if not head.endswith(";base64") or mime not in ("", "application/pdf", "application/octet-stream"):
                raise InputError(field, "pdf_value")
        if max_bytes is not None and len(text) * 3 // 4 > max_bytes + 3:
            raise InputError(field, "pdf_bytes", limit=max_bytes)
        try:
            data = base64.b64decode("".join(text.split()), altchars=b"-_" if "-" in text or "_" in text else None, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(field, "pdf_value") from None
    else:
        raise InputError(field, "pdf_value")
    if not data:
        raise InputError(field, "pdf_broken")
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(field, "pdf_bytes", limit=max_bytes)
    if not is_pdf(data):
        raise InputError(field, "pdf_not_pdf")
    return data


def _open(data: bytes, field: str):
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            raise InputError(field, "pdf_encrypted") from None
        raise InputError(field, "pdf_broken") from None
    return document


def _page(document, index: int, field: str):
    """Page `index` of an open document; a page PDFium cannot load (a page tree that loops, is nested beyond its
    limits, or counts more pages than it holds) is a damaged PDF."""
    import pypdfium2 as pdfium

    try:
        return document[index]
    except pdfium.PdfiumError:
        raise InputError(field, "pdf_broken") from None


def render_scale(width: float, height: float, keep_pixels: int | None) -> float:
    """The scale a page of `width` x `height` points is rendered at: the model's pixel bound, at most 300 dpi."""
    if not keep_pixels:
        return MAX_SCALE
    return min(MAX_SCALE, math.sqrt(keep_pixels / max(width * height, 1e-9)))


def _size(page, field: str, keep_pixels: int | None, number: int) -> tuple[int, int]:
    width, height = page.get_size()
    if not (width > 0 and height > 0) or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(field, "pdf_page_shape", page=number, width=round(width), height=round(height))
    if max(width, height) > MAX_PAGE_POINTS:
        raise InputError(field, "pdf_page_size", page=number, width=round(width), height=round(height), limit=MAX_PAGE_POINTS)
    scale = render_scale(width, height, keep_pixels)
    return max(1, round(width * scale)), max(1, round(height * scale))


def pdf_header(data: bytes, field: str, *, keep_pixels: int | None = None, max_pages: int | None = None) -> PdfHeader:
    """The page count and rendered sizes of a PDF, refusing (naming `field`) a PDF over `max_pages` or a page the
    model cannot take, one that names an action or holds a decompression bomb (`pdf_scan.py`), before anything is
    rendered."""
    check_pdf_bytes(data, field)
    with _PDFIUM:
        document = _open(data, field)
        try:
            count = len(document)
            if count == 0:
                raise InputError(field, "pdf_broken")
            if max_pages is not None and count > max_pages:
                raise InputError(field, "too_many_pages", count=count, limit=max_pages)
            sizes = []
            for index in range(count):
                page = _page(document, index, field)
                try:
                    sizes.append(_size(page, field, keep_pixels, index + 1))
                finally:
                    page.close()
            return PdfHeader(count, tuple(sizes))
        finally:
            document.close()


def read_pdf(value: Any, field: str, rules=None) -> Pages:
    """A PDF's pages rendered (`Pages`) under `rules` (`ImageRules`: the pixel bound, the PDF limits, the
    request's budget and deadline), errors naming `field`."""
    import pypdfium2 as pdfium

    from .images import NO_RULES

    rules = rules or NO_RULES
    data = pdf_data(value, field, rules.max_pdf_bytes)
    # Checked and measured at admission already (a request's PDFs are), or here (a library call's).
    header = rules.budget.pdf_headers.pop(id(value), None) if rules.budget is not None else None
    if header is None:
        header = pdf_header(data, field, keep_pixels=rules.keep_pixels, max_pages=rules.max_pdf_pages)
    images, texts = [], []
    with _PDFIUM:
        document = _open(data, field)
        try:
            for index in range(header.pages):
                page = _page(document, index, field)
                try:
                    width, height = page.get_size()
                    scale = render_scale(width, height, rules.keep_pixels)
                    expected = _size(page, field, rules.keep_pixels, index + 1)
                    if rules.budget is not None:
                        rules.budget.reserve(expected[0] * expected[1])  # the request's deadline and Stop, first
                    try:
                        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255), may_draw_forms=False)
                    except pdfium.PdfiumError:
                        raise InputError(field, "pdf_broken") from None
                    image = bitmap.to_pil().convert("RGB")
                    bitmap.close()
                    if image.width * image.height > 2 * expected[0] * expected[1] + 64:
                        raise InputError(field, "pdf_page_shape", page=index + 1, width=image.width, height=image.height)
                    if rules.budget is not None:
                        rules.budget.settle(0, image, field)
                    images.append(image)
                    if rules.pdf_text:
                        textpage = page.get_textpage()
                        try:
                            texts.append(textpage.get_text_bounded()[:MAX_PAGE_TEXT_CHARS].strip())
                        finally:
                            textpage.close()
                finally:
                    page.close()
        finally:
            document.close()
    return Pages(images=tuple(images), numbers=tuple(range(1, header.pages + 1)), texts=tuple(texts), count=header.pages)
