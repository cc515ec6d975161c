"""The score cache: a pair's score depends only on (model, instruction, query, document, pixel bound), so it is
looked up by a content hash of exactly those; images count by their decoded pixels, so the same photo sent as a
path, bytes or base64 is the same key. Cached values are the very floats computed the first time. Thread-safe LRU
bounded by entries; `through_cache` is the one cache path of every scorer (`scoring.ScorerBase`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

from PIL import Image

from .contract import Item, PairScore, ProgressCallback, ScoreStats, ScoringCancelledError, ScoringTimeoutError

# -- content hashes ------------------------------------------------------------------------------------


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
        encoded = item.text.encode("utf-8", "surrogatepass")
        digest.update(b"\x01" + len(encoded).to_bytes(8, "big") + encoded)  # length first: no text spells an image
    if item.video is not None:  # its sampled frames and their times: the same clip sampled alike, the same key
        video = item.video
        digest.update(
            b"\x04"
            + repr((video.timestamps, video.indices, video.fps)).encode()
            + b"".join(image_digests(frame) for frame in video.frames)
        )
    # One image hashes as it always did (cached scores stay valid); several, each in order, with their count.
    if len(item.images) > 1:
        digest.update(b"\x03" + str(len(item.images)).encode() + b"".join(image_digests(i) for i in item.images))
    else:
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


# -- LRUs ------------------------------------------------------------------------------------------------


class Lru:
    """A thread-safe LRU map that counts its hits and misses (the caches' common part)."""

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


class ScoreCache(Lru):
    """Pair scores by content key, at most `max_entries` of them (0: a cache that keeps nothing)."""

    def __init__(self, max_entries: int):
        super().__init__()
        if max_entries < 0:
            raise ValueError("cache size must be 0 (off) or positive")
        self.max_entries = max_entries

    @staticmethod
    def request_key(
        model: str,
        instruction: str,
        query: Item,
        max_pixels: int,
        image_digests: Callable[[Image.Image], bytes] = image_digest,
        scope: str = "",
    ) -> bytes:
        """What every pair of a request shares: the model, instruction, query and pixel bound, and whose
        cache it is (`RequestContext.cache_scope`)."""
        digest = hashlib.blake2b(digest_size=16)
        for part in (scope, model, instruction, str(max_pixels)):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
        digest.update(item_digest(query, image_digests))
        return digest.digest()

    @staticmethod
    def pair_key(request_key: bytes, document: Item, image_digests: Callable[[Image.Image], bytes] = image_digest) -> bytes:
        return request_key + item_digest(document, image_digests)

    def put(self, key: bytes, value: Any) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def through_cache(
    cache: ScoreCache,
    model: str,
    query: Item,
    documents: list[Item],
    instruction: str,
    max_pixels: int,
    compute: Callable[[list[int], ProgressCallback], list[PairScore]],
    on_progress: ProgressCallback | None,
    stats: ScoreStats,
    digest: Callable | None = None,
    scope: str | None = "",
) -> list[PairScore]:
    """Scores of `documents`, from `cache` where it has them (in `scope`: None reads and keeps nothing);
    `compute(missing indices, progress)` scores the rest."""
    digest = digest or DigestMemo()
    keys: list[bytes] = []
    if cache.max_entries and scope is not None:
        request_key = ScoreCache.request_key(model, instruction, query, max_pixels, digest, scope)
        keys = [ScoreCache.pair_key(request_key, document, digest) for document in documents]
    return through_keys(cache, keys, len(documents), compute, on_progress, stats)


def through_keys(
    cache: ScoreCache,
    keys: list[bytes],
    total: int,
    compute: Callable[[list[int], ProgressCallback], list[PairScore]],
    on_progress: ProgressCallback | None,
    stats: ScoreStats,
) -> list[PairScore]:
    """The one cache path: `total` pairs by their `keys` (empty: the cache is not used), the cache's where it has
    them, `compute(missing indices, progress)` for the rest (kept in the cache, those of a stopped call too)."""
    results: list[PairScore | None] = [cache.get(key) for key in keys] if keys else [None] * total
    missing = [i for i, result in enumerate(results) if result is None]
    stats.pairs += total
    stats.cached += total - len(missing)
    found = total - len(missing)
    if found and on_progress is not None:
        on_progress(found, total)
    if missing:

        def progress(done: int, _: int) -> None:
            if on_progress is not None:
                on_progress(found + done, total)

        try:
            fresh = compute(missing, progress)
        except (ScoringCancelledError, ScoringTimeoutError) as error:
            # Stopped: what was scored before it stopped, in input order (kept in the cache too, so a second
            # run does not score them again).
            for i, pair in zip(missing, error.partial or []):
                if pair is not None:
                    results[i] = pair
                    if keys:
                        cache.put(keys[i], pair)
            error.partial = results
            raise
        for i, pair in zip(missing, fresh):
            results[i] = pair
            if keys:
                cache.put(keys[i], pair)
    stats.tokens += sum(pair.tokens for pair in results)  # type: ignore[union-attr]
    return results  # type: ignore[return-value]
