"""Indexing folders into a collection (`lychee index`): every image, PDF (page by page), text and clip embedded once.

Incremental: a file whose SHA-256 the collection already holds is not embedded again; a changed one replaces its
points; a file gone from a folder being indexed leaves the collection. Each file's points are written together,
after its embedding: a run that stops half-way (a crash, Ctrl+C) has indexed the files before, and the next run
goes on from there. A file that cannot be read is skipped and named, never fatal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..contract import Item, LycheeError
from ..inputs import to_item
from .store import Store

KINDS = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"), "image"),
    **dict.fromkeys((".txt", ".md"), "text"),
    ".pdf": "page",
    **dict.fromkeys((".mp4", ".mov", ".webm", ".mkv", ".avi"), "clip"),
}


@dataclass
class Indexed:
    """What a run did: files embedded, unchanged (skipped), removed, and those that could not be read."""

    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"embedded": self.embedded, "unchanged": self.unchanged, "removed": self.removed, "skipped": len(self.skipped)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_file(path: Path, kind: str) -> list[tuple[int | None, Item]]:
    """A file as the items it is embedded as: (its PDF page number or None, the item)."""
    field = path.name
    if kind == "text":
        return [(None, to_item({"text": path.read_text(encoding="utf-8", errors="replace")}, field))]
    if kind == "page":
        return parts_of(to_item({"pdf": path}, field))
    return [(None, to_item({"video" if kind == "clip" else "image": str(path)}, field))]


def parts_of(item: Item) -> list[tuple[int | None, Item]]:
    """An item as the items it is embedded as: a PDF's pages one by one (with their numbers), anything else whole."""
    if item.pages is None:
        return [(None, item)]
    return [(number, Item(images=(image,))) for image, number in zip(item.pages.images, item.pages.numbers)]


def write_file(
    store: Store, name: str, root: str, path: str, kind: str, digest: str, parts, embedder, *, replace=False, context=None
):
    """Embed one file's parts ((page or None, item)) and write its points together (replacing its old ones)."""
    vectors = embedder.embed_items([item for _, item in parts], context=context).tolist()
    if replace:
        store.remove(name, root, path)
    rows = [
        ({"root": root, "path": path, "page": page, "kind": kind, "sha256": digest}, vector)
        for (page, _), vector in zip(parts, vectors)
    ]
    store.put(name, rows)


def files_of(folder: Path) -> list[tuple[str, str]]:
    """(path relative to `folder`, kind) of every file of a kind it takes, in name order; links are not followed."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        kind = KINDS.get(path.suffix.lower())
        if kind is not None:
            found.append((path.relative_to(folder).as_posix(), kind))
    return found


def index_folders(
    store: Store, name: str, folders: list[Path], embedder, *, on_file: Callable[[str], None] | None = None
) -> Indexed:
    """Embed the folders' files into collection `name` (made for `embedder`'s vectors if new); see the module."""
    store.ensure(name, embedder.dimensions)
    known = store.files(name)
    done, seen = Indexed(), set()
    roots = [str(Path(folder).expanduser().resolve()) for folder in folders]
    for root in roots:
        for path, kind in files_of(Path(root)):
            key = (root, path)
            seen.add(key)
            digest = sha256(Path(root) / path)
            if known.get(key) == digest:
                done.unchanged += 1
            else:
                try:
                    parts = read_file(Path(root) / path, kind)
                    write_file(store, name, root, path, kind, digest, parts, embedder, replace=key in known)
                except (LycheeError, OSError) as error:
                    done.skipped.append((path, str(error)))
                    continue
                done.embedded += 1
            if on_file is not None:
                on_file(path)
    for root, path in known:
        if root in roots and (root, path) not in seen:
            store.remove(name, root, path)
            done.removed += 1
    return done
