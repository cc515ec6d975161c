"""Indexing what callers upload (the Search tab's form, gradio_client's `/index_files`, `POST /v1/index`): never a
server path. Each upload is read through the request service (`Request.read`: the same checks, limits and errors
as every door), kept as a file of the collection's own folder (`<data_dir>/uploads/<collection>/<sha256[:16]>/<its
name>`) and embedded from what was read. The same bytes sent again are not embedded again (`unchanged`). Search
reads an upload back from that folder, like a file of a folder `lychee index` was given.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..contract import InputError
from .indexing import KINDS, Indexed, parts_of, write_file
from .store import Store, check_name

VALUE_KEY = {"text": "text", "image": "image", "page": "pdf", "clip": "video"}  # an upload's kind: its item's key
SUFFIX = {"text": ".txt", "page": ".pdf", "clip": ".mp4"}
IMAGE_SUFFIXES = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


@dataclass(frozen=True)
class Upload:
    """One file a caller sent: its name (only the last part of it is kept), its kind (text, image, page: a PDF,
    clip) and its bytes (or a text's words)."""

    name: str
    kind: str
    data: bytes | str


def kind_of(name: str, field: str) -> str:
    """An uploaded file's kind by its name's ending; one the collections do not take is refused, naming it."""
    kind = KINDS.get(Path(name).suffix.lower())
    if kind is None:
        raise InputError(field, "index_kind", name=name[:100], kinds=", ".join(sorted(KINDS)))
    return kind


def safe_name(name: str, kind: str, data: bytes) -> str:
    """The upload's file name as kept: its last part, letters, digits, '.', '-' and '_' only, with a suffix of its
    kind (an unnamed image's from its first bytes)."""
    base = re.sub(r"[^\w.-]+", "_", re.split(r"[\\/]", name or "")[-1]).strip("._")[:100] or "document"
    if Path(base).suffix.lower() in KINDS and KINDS[Path(base).suffix.lower()] == kind:
        return base
    if kind == "image":
        suffix = next((s for magic, s in IMAGE_SUFFIXES if data.startswith(magic)), ".webp" if data[8:12] == b"WEBP" else ".img")
    else:
        suffix = SUFFIX[kind]
    return base + suffix


def words_of(upload: Upload) -> bytes | str:
    """What is read of an upload: a text's words (bytes as UTF-8, a wrong byte replaced), anything else its bytes."""
    if upload.kind == "text" and isinstance(upload.data, bytes):
        return upload.data.decode("utf-8", errors="replace")
    return upload.data


def index_uploads(req, store: Store, embedder, collection: str, uploads: list[Upload], field: str = "documents") -> Indexed:
    """Read, keep and embed `uploads` into `collection` (made for `embedder`'s vectors if new); see the module."""
    check_name(collection)
    if not uploads:
        raise InputError(field, "index_nothing")
    req.check_count(len(uploads), field)
    names = [f"{field}[{i}]" for i in range(len(uploads))]
    values = [{VALUE_KEY[upload.kind]: words_of(upload)} for upload in uploads]
    # As clips are embedded: 64 frames sampled over the whole clip (no segments).
    first, rest = req.read(values[0], values[1:], embedder, query_field=names[0], fields=names[1:], long_documents="truncate")
    with store.writing:  # one request's uploads at a time: the same file sent twice at once is embedded once
        return write_uploads(req, store, embedder, collection, uploads, [first, *rest])


def write_uploads(req, store: Store, embedder, collection: str, uploads: list[Upload], items) -> Indexed:
    store.ensure(collection, embedder.dimensions)
    root = store.uploads / collection
    done = Indexed()
    for upload, item in zip(uploads, items):
        data = upload.data.encode("utf-8") if isinstance(upload.data, str) else upload.data
        digest = hashlib.sha256(data).hexdigest()
        path = f"{digest[:16]}/{safe_name(upload.name, upload.kind, data)}"
        if store.digest(collection, str(root), path) == digest:
            done.unchanged += 1
            continue
        req.context.check()  # the request's Stop and deadline, between files
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")  # this request's own
        partial.write_bytes(data)
        os.replace(partial, target)  # a file is there whole or not at all
        write_file(store, collection, str(root), path, upload.kind, digest, parts_of(item), embedder, context=req.context)
        done.embedded += 1
    return done
