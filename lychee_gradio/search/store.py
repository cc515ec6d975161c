"""Collections on disk: Qdrant, embedded (its local mode: a folder under the data directory, no server to start).

Why Qdrant: its local mode and its server share one client API (`QdrantClient(path=...)` here, `QdrantClient(url=...)`
for a collection that outgrows one machine, with its HNSW index), and its Python client is small (no native
database to install: CI and a fresh machine install it in seconds). Its local mode searches exactly (every vector
compared), which is what a first stage of up to some 100,000 items needs on one machine (docs/performance.md,
"Collections", measures it); the server's approximate index is for more. Each point holds its file's path relative
to the folder it was indexed from, that folder, the page of a PDF, and the file's SHA-256 (what makes indexing
incremental). One process opens the folder at a time (Qdrant's lock): `StoreBusyError` says so.
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
    """Another process holds the collections' folder (Qdrant's local mode: one process at a time)."""

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
    """A collection's name: letters, digits, '-', '_' (1 to 64): it is a folder's name inside the store."""
    if not isinstance(name, str) or not name or len(name) > 64 or not all(c.isalnum() or c in "-_" for c in name):
        raise InputError("collection", "collection_name", value=repr(str(name)[:70]))
    return name


def inside(path: str | Path, folders) -> bool:
    """Whether `path` lies in one of `folders` (both resolved: a link cannot lead out)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(folder).expanduser().resolve()) for folder in folders)


class Serialised:
    """A client whose every call holds one lock: the page, /v1/search and /v1/index share the store's client from
    several threads, and Qdrant's local mode is not written for that."""

    def __init__(self, client, lock):
        self._client, self._lock = client, lock

    def __getattr__(self, name: str):
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def call(*args, **options):
            from qdrant_client.http.exceptions import ResponseHandlingException

            with self._lock:
                try:
                    return found(*args, **options)
                except ResponseHandlingException as error:  # a Qdrant server that does not answer
                    raise StoreUnreachableError(None) from error

        return call


class Store:
    """The collections of one data directory (`<data_dir>/collections`), and the files uploaded into them
    (`<data_dir>/uploads/<collection>/`). `readable`: the folders (`--collections-dir`) whose files a search may
    read besides the uploads; empty: the folders `lychee index` was given. Calls are serialised (one client)."""

    def __init__(self, folder: str | Path | None = None, readable: Iterable[str | Path] = (), url: str | None = None):
        from qdrant_client import QdrantClient

        self.folder = data_dir(folder) / "collections"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uploads = (data_dir(folder) / "uploads").resolve()
        self.readable = tuple(readable)
        self.lock = threading.RLock()
        try:  # a Qdrant server (--collections-url: the same client API, its HNSW index), else the local folder
            client = QdrantClient(url=url, timeout=30) if url else QdrantClient(path=str(self.folder))
            self.client = Serialised(client, self.lock)
        except RuntimeError as error:  # Qdrant's local mode: "Storage folder ... is already accessed by another instance"
            raise StoreBusyError(None, folder=self.folder.name) from error

    def close(self) -> None:
        self.client.close()

    def may_read(self, root: str) -> bool:
        """Whether a search may read files indexed from `root`: the uploads, and with `readable` only its folders."""
        return inside(root, [self.uploads]) or not self.readable or inside(root, self.readable)

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def ensure(self, name: str, size: int) -> None:
        """The collection `name` for vectors of `size` values (made if new; a mismatch is refused)."""
        from qdrant_client import models

        check_name(name)
        if self.client.collection_exists(name):
            found = self.client.get_collection(name).config.params.vectors.size
            if found != size:
                raise CollectionError(f"collection {name} holds vectors of {found} values; this embedding model makes {size}")
            return
        self.client.create_collection(name, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))

    def require(self, name: str) -> None:
        check_name(name)
        if not self.client.collection_exists(name):
            raise InputError("collection", "no_collection", name=name, have=", ".join(self.names()) or "none")

    def files(self, name: str) -> dict[tuple[str, str], str]:
        """Every (folder, path) the collection holds, with its file's SHA-256."""
        found: dict[tuple[str, str], str] = {}
        offset = None
        while True:
            points, offset = self.client.scroll(name, limit=1024, offset=offset, with_payload=True, with_vectors=False)
            for point in points:
                found[(point.payload["root"], point.payload["path"])] = point.payload["sha256"]
            if offset is None:
                return found

    def put(self, name: str, rows: Iterable[tuple[dict[str, Any], list[float]]]) -> None:
        """Points (payload, vector): one file's, written together."""
        from qdrant_client import models

        points = [
            models.PointStruct(id=point_id(p["root"], p["path"], p.get("page")), vector=vector, payload=p) for p, vector in rows
        ]
        if points:
            self.client.upsert(name, points=points, wait=True)

    def remove(self, name: str, root: str, path: str) -> None:
        """Every point of one file."""
        from qdrant_client import models

        match = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in (("root", root), ("path", path))
        ]
        self.client.delete(name, points_selector=models.FilterSelector(filter=models.Filter(must=match)), wait=True)

    def count(self, name: str) -> int:
        return self.client.count(name).count

    def search(self, name: str, vector: list[float], limit: int) -> list[Hit]:
        """The `limit` nearest points of collection `name` (`require`d first) by cosine, best first."""
        points = self.client.query_points(name, query=vector, limit=limit, with_payload=True).points
        return [
            Hit(str(p.id), float(p.score), p.payload["root"], p.payload["path"], p.payload.get("page"), p.payload["kind"])
            for p in points
        ]
