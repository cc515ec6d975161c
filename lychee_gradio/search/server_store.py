"""The collections in a Qdrant server (`--collections-url http://HOST:6333`): the same engine as the local store
(Qdrant Edge), through Qdrant's Python client, with the server's own HNSW index built in the background; for a
collection that outgrows one machine. The backend of `store.Store` for a URL."""

from __future__ import annotations

from typing import Any


class ServerCollections:
    def __init__(self, url: str):
        from qdrant_client import QdrantClient

        self.client = QdrantClient(url=url, timeout=30)

    def close(self) -> None:
        self.client.close()

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def size_of(self, name: str) -> int | None:
        if not self.client.collection_exists(name):
            return None
        return self.client.get_collection(name).config.params.vectors.size

    def create(self, name: str, size: int) -> None:
        from qdrant_client import models

        self.client.create_collection(name, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))

    def payloads(self, name: str, match: dict[str, Any] | None = None):
        offset = None
        while True:
            points, offset = self.client.scroll(
                name, limit=1024, offset=offset, with_payload=True, with_vectors=False, scroll_filter=where(match)
            )
            yield from (point.payload for point in points)
            if offset is None:
                return

    def upsert(self, name: str, points: list[tuple[str, list[float], dict]]) -> None:
        from qdrant_client import models

        structs = [models.PointStruct(id=id, vector=vector, payload=payload) for id, vector, payload in points]
        self.client.upsert(name, points=structs, wait=True)

    def delete(self, name: str, match: dict[str, Any]) -> None:
        from qdrant_client import models

        self.client.delete(name, points_selector=models.FilterSelector(filter=where(match)), wait=True)

    def count(self, name: str) -> int:
        return self.client.count(name).count

    def nearest(self, name: str, vector: list[float], limit: int) -> list[tuple[str, float, dict]]:
        points = self.client.query_points(name, query=vector, limit=limit, with_payload=True).points
        return [(str(point.id), float(point.score), point.payload) for point in points]

    def index(self, name: str, force: bool = False) -> None:
        """Nothing to do: the server builds its index in the background."""


def where(match: dict[str, Any] | None):
    """qdrant-client's filter of the points whose payload holds `match`'s values (None: every point)."""
    from qdrant_client import models

    if not match:
        return None
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in match.items()]
    )
