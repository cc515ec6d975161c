"""What a PDF holds, read from its bytes before PDFium sees them: actions that would run code or open other files or
programs, and compressed streams that inflate past what a page may cost.

A PDF's objects are either plain (in the file's bytes) or packed in object streams (`/Type /ObjStm`), compressed.
Actions live in objects, never in a page's content, so the scan reads: every name outside strings in the file's
bytes with the streams' data left out (a page that merely shows the text "/JS" is no action), and the same in every
object stream, decoded by the filters its dictionary declares (Flate, also raw deflate as PDFium accepts it,
ASCIIHex, ASCII85; an object stream in any other filter cannot be inspected and is refused). Every Flate stream is
inflated, each up to `MAX_STREAM_BYTES` and all together up to `MAX_INFLATED_BYTES` (a stream past either is a
decompression bomb: PDFium would spend minutes parsing it, holding the renderer): refused, 413.
"""

from __future__ import annotations

import base64
import re
import zlib

from ..contract import InputError

# Actions that run code or open other files or programs (ISO 32000-1, 12.6.4).
ACTIVE_NAMES = {b"JavaScript", b"JS", b"Launch", b"GoToR", b"GoToE", b"ImportData", b"SubmitForm", b"RichMedia"}
MAX_STREAM_BYTES = 64 * 2**20  # one stream, inflated
MAX_INFLATED_BYTES = 256 * 2**20  # every stream of one PDF, inflated

_NAME = re.compile(rb"/([^\s/<>\[\]()%{}]{1,127})")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"(?<!end)stream\r?\n")
_OBJ = re.compile(rb"\d+\s+\d+\s+obj\b")


def _names(data: bytes) -> set[bytes]:
    return {_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), name) for name in _NAME.findall(data)}


def without_strings(data: bytes) -> bytes:
    """`data` with its literal strings `( ... )` (nested, with backslash escapes) and hex strings `< ... >` left out."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x28:  # "(": a literal string, to its balancing ")"
            depth, i = 1, i + 1
            while i < n and depth:
                if data[i] == 0x5C:  # "\\": the next byte is escaped
                    i += 2
                    continue
                depth += data[i] == 0x28
                depth -= data[i] == 0x29
                i += 1
            out += b" "
        elif byte == 0x3C and i + 1 < n and data[i + 1] != 0x3C and (not out or out[-1] != 0x3C):  # "<" not "<<"
            end = data.find(b">", i + 1)
            i = n if end < 0 else end + 1
            out += b" "
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def _inflate(data: bytes, field: str, budget: list[int]) -> bytes:
    """Flate data inflated (zlib, else raw deflate), at most `MAX_STREAM_BYTES` and what is left of `budget`."""
    limit = min(MAX_STREAM_BYTES, budget[0])
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise InputError(field, "pdf_bomb", limit=MAX_STREAM_BYTES if limit == MAX_STREAM_BYTES else MAX_INFLATED_BYTES)
        budget[0] -= len(out)
        return out
    return b""


def _decode(data: bytes, filters: list[bytes], field: str, budget: list[int]) -> bytes | None:
    """A stream's data through its filters; None where one cannot be decoded here."""
    for name in filters:
        if name in (b"FlateDecode", b"Fl"):
            data = _inflate(data, field, budget)
        elif name in (b"ASCIIHexDecode", b"AHx"):
            hexes = re.sub(rb"[^0-9A-Fa-f]", b"", data.split(b">", 1)[0])
            data = bytes.fromhex((hexes + b"0" * (len(hexes) % 2)).decode())
        elif name in (b"ASCII85Decode", b"A85"):
            try:
                data = base64.a85decode(data.split(b"~>", 1)[0] + b"~>", adobe=True, ignorechars=b" \t\n\r\x00")
            except ValueError:
                return None
        else:
            return None
    return data


def _filters(dictionary: bytes) -> list[bytes]:
    """The filters a stream's dictionary declares, in order."""
    cleaned = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), dictionary)
    found = re.search(rb"/Filter\s*(\[[^\]]*\]|/[^\s/<>\[\]()]+)", cleaned)
    if not found:
        return []
    return [name for name in re.findall(rb"/([^\s/<>\[\]()]+)", found.group(1))]


def check_pdf_bytes(data: bytes, field: str) -> None:
    """Refuse (naming `field`) a PDF that names an action (`ACTIVE_NAMES`) outside strings, in its bytes or its object
    streams, an object stream that cannot be inspected, or a stream that inflates past the limits."""
    outside, budget, position = bytearray(), [MAX_INFLATED_BYTES], 0
    for match in _STREAM.finditer(data):
        if match.start() < position:
            continue  # inside the data of a stream already read
        start = match.end()
        end = data.find(b"endstream", start)
        end = len(data) if end < 0 else end
        head = data[position : match.start()]
        outside += head
        objects = list(_OBJ.finditer(head))
        dictionary = head[objects[-1].end() :] if objects else head[-4096:]
        filters = _filters(dictionary)
        is_objects = b"ObjStm" in _names(without_strings(dictionary))
        if is_objects or b"FlateDecode" in filters or b"Fl" in filters:
            decoded = _decode(data[start:end], filters, field, budget)
            if is_objects:
                if decoded is None:
                    raise InputError(field, "pdf_active")  # objects we cannot read: we cannot say they are passive
                if _names(without_strings(decoded)) & ACTIVE_NAMES:
                    raise InputError(field, "pdf_active")
        position = end + len(b"endstream")
    outside += data[position:]
    if _names(without_strings(bytes(outside))) & ACTIVE_NAMES:
        raise InputError(field, "pdf_active")
