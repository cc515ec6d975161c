"""The image cache: processed document images (the model's pixel patches) across requests.

Designers rerun a new description over the same photos: their resizing and patching is kept,
by (image content, pixel bounds), in an LRU bounded by bytes. The score cache, which sits in
front of every scorer (the Ray front end's too), is `score_cache.ScoreCache`.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from ..score_cache import Lru


class ImageCache(Lru):
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
