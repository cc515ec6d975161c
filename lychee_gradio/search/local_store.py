"""The collections kept on this machine: Qdrant Edge, the Qdrant engine embedded in the process (`qdrant-edge-py`).

Each collection is an Edge shard in `<data_dir>/collections/<name>/shard`, beside `collection.json` (its vectors'
size). A shard searches its new points exactly (every vector compared, in Qdrant's own code: some 40 ms at 100,000
vectors of 2,048 values on two CPU cores) and, once `index`ed, through an HNSW graph: `lychee index` builds one when a
collection reaches `HNSW_FROM` items (minutes of work, and approximate: docs/performance.md, "Collections",
measures both). One process holds the folder at a time (a lock file; Qdrant's write-ahead log would refuse a second
one anyway): `StoreBusyError` says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

VECTOR = "v"
HNSW_FROM = 200_000  # from this many items lychee index builds an HNSW graph (below it, exact search is fast enough)
GRAPH_SEGMENT = 10_000  # a segment of at least this many vectors (or HNSW_FROM, if fewer) gets a graph when indexed
HNSW_EF = 256  # candidates the HNSW search keeps (at least 4 a wanted item): recall against speed


class LocalCollections:
    """The backend of `store.Store` for a folder (see the module)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.shards: dict[str, Any] = {}
        self._lock_file = (folder / ".lock").open("a+")
        try:
            import fcntl

            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): the shards' write-ahead logs still refuse a second process
            pass
        except OSError:
            self._lock_file.close()
            raise BlockingIOError("held by another process") from None

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
        self.shards.clear()
        self._lock_file.close()

    def names(self) -> list[str]:
        return sorted(path.parent.name for path in self.folder.glob("*/collection.json"))

    def size_of(self, name: str) -> int | None:
        meta = self.folder / name / "collection.json"
        return json.loads(meta.read_text(encoding="utf-8"))["size"] if meta.is_file() else None

    def create(self, name: str, size: int) -> None:
        import qdrant_edge as edge

        folder = self.folder / name
        shutil.rmtree(folder, ignore_errors=True)  # a collection half made before a crash
        # Segments get their HNSW graph (at `index`) from GRAPH_SEGMENT vectors of this size on (Qdrant counts KB).
        threshold = min(HNSW_FROM, GRAPH_SEGMENT) * size * 4 // 1024
        config = edge.EdgeConfig(
            vectors={VECTOR: edge.EdgeVectorParams(size=size, distance=edge.Distance.Cosine)},
            optimizers=edge.EdgeOptimizersConfig(indexing_threshold=threshold),
        )
        self.shards[name] = edge.EdgeShard.create(str(folder / "shard"), config)
        (folder / "collection.json").write_text(json.dumps({"size": size, "distance": "cosine"}), encoding="utf-8")

    def shard(self, name: str):
        if name not in self.shards:
            import qdrant_edge as edge

            self.shards[name] = edge.EdgeShard.load(str(self.folder / name / "shard"))
        return self.shards[name]

    def payloads(self, name: str, match: dict[str, Any] | None = None):
        """Every point's payload (those whose payload has `match`'s values)."""
        import qdrant_edge as edge

        offset = None
        while True:
            request = edge.ScrollRequest(offset=offset, limit=1024, with_payload=True, filter=where(match))
            records, offset = self.shard(name).scroll(request)
            yield from (record.payload for record in records)
            if offset is None:
                return

    def upsert(self, name: str, points: list[tuple[str, list[float], dict]]) -> None:
        import qdrant_edge as edge

        update = edge.UpdateOperation.upsert_points([edge.Point(id, {VECTOR: vector}, payload) for id, vector, payload in points])
        self.shard(name).update(update)

    def delete(self, name: str, match: dict[str, Any]) -> None:
        import qdrant_edge as edge

        self.shard(name).update(edge.UpdateOperation.delete_points_by_filter(where(match)))

    def count(self, name: str) -> int:
        import qdrant_edge as edge

        return self.shard(name).count(edge.CountRequest(exact=True))

    def nearest(self, name: str, vector: list[float], limit: int) -> list[tuple[str, float, dict]]:
        import qdrant_edge as edge

        request = edge.QueryRequest(
            limit=limit,
            query=edge.Query.Nearest(vector, using=VECTOR),
            with_payload=True,
            params=edge.SearchParams(hnsw_ef=max(HNSW_EF, 4 * limit)),
        )
        return [(str(point.id), float(point.score), point.payload) for point in self.shard(name).query(request)]

    def index(self, name: str, force: bool = False) -> None:
        """Build the HNSW graph of a collection of HNSW_FROM items or more (`force`: of any size; synchronous)."""
        if force or self.count(name) >= HNSW_FROM:
            self.shard(name).optimize()


def where(match: dict[str, Any] | None):
    """Qdrant Edge's filter of the points whose payload holds `match`'s values (None: every point)."""
    import qdrant_edge as edge

    if not match:
        return None
    return edge.Filter(must=[edge.FieldCondition(key=key, match=edge.MatchValue(value)) for key, value in match.items()])
