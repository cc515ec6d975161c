"""Caches across requests: scores of pairs seen before, and processed document images.

People click Rerank again after changing top-N, eval sweeps and RAG pipelines resend the same
candidates, designers rerun a new description over the same photos. A pair's score depends only
on (model, instruction, query, document, pixel bound), so it is looked up by a content hash of
exactly those; the images count by their decoded pixels, so the same photo sent as a path, bytes
or base64 is the same key. Cached values are the very floats computed the first time.

Both caches are thread-safe LRUs: `ScoreCache` bounded by entries, `ImageCache` by bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

from PIL import Image

from .inputs import Item


def image_digest(image: Image.Image) -> bytes:
    """A hash of an image's decoded content: mode, size and pixels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.digest()


def item_digest(item: Item, image_digests: Callable[[Image.Image], bytes] = image_digest) -> bytes:
    """A hash of an item's text and image content (text None and "" stay apart)."""
    digest = hashlib.blake2b(digest_size=16)
    if item.text is None:
        digest.update(b"\x00no-text")
    else:
        digest.update(b"\x01" + item.text.encode("utf-8", "surrogatepass"))
    digest.update(b"\x02" + (image_digests(item.image) if item.image is not None else b"no-image"))
    return digest.digest()


class DigestMemo:
    """`image_digest` that hashes each image object once (within one request)."""

    def __init__(self):
        self._seen: dict[int, tuple[Image.Image, bytes]] = {}

    def __call__(self, image: Image.Image) -> bytes:
        entry = self._seen.get(id(image))
        if entry is None or entry[0] is not image:
            entry = (image, image_digest(image))
            self._seen[id(image)] = entry
        return entry[1]


class _Lru:
    def __init__(self):
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class ScoreCache(_Lru):
    """Pair scores by content key, at most `max_entries` of them (0: a cache that keeps nothing)."""

    def __init__(self, max_entries: int):
        super().__init__()
        if max_entries < 0:
            raise ValueError("cache size must be 0 (off) or positive")
        self.max_entries = max_entries

    @staticmethod
    def request_key(model: str, instruction: str, query: Item, max_pixels: int,
                    image_digests: Callable[[Image.Image], bytes] = image_digest) -> bytes:
        """What every pair of a request shares: the model, instruction, query and pixel bound."""
        digest = hashlib.blake2b(digest_size=16)
        for part in (model, instruction, str(max_pixels)):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
        digest.update(item_digest(query, image_digests))
        return digest.digest()

    @staticmethod
    def pair_key(request_key: bytes, document: Item,
                 image_digests: Callable[[Image.Image], bytes] = image_digest) -> bytes:
        return request_key + item_digest(document, image_digests)

    def put(self, key: bytes, value: Any) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class ImageCache(_Lru):
    """Processed images (the model's pixel patches) by (image content, pixel bound), at most `max_bytes` of them."""

    def __init__(self, max_bytes: int, size_of: Callable[[Any], int]):
        super().__init__()
        if max_bytes < 0:
            raise ValueError("image cache size must be 0 (off) or positive")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._size_of = size_of

    def put(self, key: Hashable, value: Any) -> None:
        size = self._size_of(value)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self.bytes -= self._size_of(self._entries.pop(key))
            self._entries[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= self._size_of(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
