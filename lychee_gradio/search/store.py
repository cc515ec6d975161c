"""The collections: a small facade over where they are kept, on this machine (`local_store.py`: Qdrant Edge, the
Qdrant engine embedded in the process, a folder under the data directory, no server to start) or in a Qdrant server
(`server_store.py`, `--collections-url`: the same engine, for a collection that outgrows one machine).

Why Qdrant: one engine from a folder on a laptop to a cluster; embedded, it searches 100,000 vectors of 2,048 values
exactly in tens of milliseconds and through its HNSW index faster still (docs/performance.md, "Collections"); its
Python packages are wheels (no database to install: CI and a fresh machine install them in seconds). Each point
holds its file's path relative to the folder it was indexed from, that folder, the page of a PDF, and the file's
SHA-256 (what makes indexing incremental). Calls are serialised: the page, /v1/search and /v1/index share a store.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..contract import InputError, LycheeError, WordedError

NAMESPACE = uuid.UUID("6f1d1b52-0d5e-4a4e-9b1e-7c2a3c1d9e10")  # point ids: uuid5 of (folder, path, page)


class StoreBusyError(LycheeError, RuntimeError):
    """Another process holds the collections' folder (one process at a time: local_store.py's lock file)."""

    code = "store_busy"


class StoreUnreachableError(LycheeError, RuntimeError):
    """The Qdrant server of --collections-url does not answer."""

    code = "store_unreachable"


class CollectionError(WordedError, ValueError):
    code = "collection"


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    root: str
    path: str
    page: int | None
    kind: str


def data_dir(value: str | Path | None = None) -> Path:
    """Where collections are kept: `--data-dir`, else $XDG_DATA_HOME/lychee-gradio, else ~/.local/share/lychee-gradio."""
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "lychee-gradio"


def point_id(root: str, path: str, page: int | None) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{root}\0{path}\0{page if page is not None else ''}"))


def check_name(name: str) -> str:
    """A collection's name: ASCII letters, digits, '-', '_' (1 to 64): it is a folder's name inside the store."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 64
        or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    ):
        raise InputError("collection", "collection_name", value=repr(str(name)[:70]))
    return name


def inside(path: str | Path, folders) -> bool:
    """Whether `path` lies in one of `folders` (both resolved: a link cannot lead out)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(folder).expanduser().resolve()) for folder in folders)


class Store:
    """The collections of one data directory (`<data_dir>/collections`, or `url`'s Qdrant server), and the files
    uploaded into them (`<data_dir>/uploads/<collection>/`). `readable`: the folders (`--collections-dir`) whose files a
    search may read besides the uploads; empty: the folders `lychee index` was given."""

    def __init__(self, folder: str | Path | None = None, readable: Iterable[str | Path] = (), url: str | None = None):
        from .local_store import LocalCollections
        from .server_store import ServerCollections

        self.folder = data_dir(folder) / "collections"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uploads = (data_dir(folder) / "uploads").resolve()
        self.readable = tuple(readable)
        self.lock = threading.RLock()
        self.writing = threading.Lock()  # uploads being indexed (search/uploads.py), one request at a time
        try:
            self.backend = ServerCollections(url) if url else LocalCollections(self.folder)
        except BlockingIOError as error:  # another process holds the folder
            raise StoreBusyError(None, folder=self.folder.name) from error

    def call(self, method: str, *args):
        """One backend call, under the store's lock; a Qdrant server that does not answer is `StoreUnreachableError`."""
        from qdrant_client.http.exceptions import ResponseHandlingException

        with self.lock:
            try:
                found = getattr(self.backend, method)(*args)
                return list(found) if method == "payloads" else found
            except ResponseHandlingException as error:
                raise StoreUnreachableError(None) from error

    def close(self) -> None:
        self.call("close")

    def may_read(self, root: str) -> bool:
        """Whether a search may read files indexed from `root`: the uploads, and with `readable` only its folders."""
        return inside(root, [self.uploads]) or not self.readable or inside(root, self.readable)

    def names(self) -> list[str]:
        return self.call("names")

    def ensure(self, name: str, size: int) -> None:
        """The collection `name` for vectors of `size` values (made if new; a mismatch is refused)."""
        check_name(name)
        with self.lock:
            found = self.call("size_of", name)
            if found is None:
                self.call("create", name, size)
            elif found != size:
                raise CollectionError(f"collection {name} holds vectors of {found} values; this embedding model makes {size}")

    def require(self, name: str) -> None:
        check_name(name)
        if self.call("size_of", name) is None:
            raise InputError("collection", "no_collection", name=name, have=", ".join(self.names()) or "none")

    def files(self, name: str) -> dict[tuple[str, str], str]:
        """Every (folder, path) the collection holds, with its file's SHA-256."""
        return {(p["root"], p["path"]): p["sha256"] for p in self.call("payloads", name)}

    def digest(self, name: str, root: str, path: str) -> str | None:
        """The SHA-256 of one file the collection holds (None: it holds none), found by the store, not by a scan here."""
        return next((p["sha256"] for p in self.call("payloads", name, {"root": root, "path": path})), None)

    def put(self, name: str, rows: Iterable[tuple[dict[str, Any], list[float]]]) -> None:
        """Points (payload, vector): one file's, written together."""
        points = [(point_id(p["root"], p["path"], p.get("page")), vector, p) for p, vector in rows]
        if points:
            self.call("upsert", name, points)

    def remove(self, name: str, root: str, path: str) -> None:
        """Every point of one file."""
        self.call("delete", name, {"root": root, "path": path})

    def count(self, name: str) -> int:
        return self.call("count", name)

    def index(self, name: str, force: bool = False) -> None:
        """Build the collection's approximate index where it is big enough for one (local_store.HNSW_FROM), or now."""
        self.call("index", name, force)

    def search(self, name: str, vector: list[float], limit: int) -> list[Hit]:
        """The `limit` nearest points of collection `name` (`require`d first) by cosine, best first."""
        return [
            Hit(id, score, p["root"], p["path"], p.get("page"), p["kind"])
            for id, score, p in self.call("nearest", name, vector, limit)
        ]
