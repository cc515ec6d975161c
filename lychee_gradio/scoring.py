"""What every scorer does, whatever computes its scores: inputs checked at the edge, the score cache in
front, `score` / `score_with_logits` / `rerank`. Torch-free: the local engine
(`engine.scorer.LycheeScorer`) and the Ray front end (`serving.cluster.RayScorer`) are both a
`ScorerBase` and differ only in `score_uncached`, how they score the pairs the cache does not have.

The score cache: a pair's score depends only on (model, instruction, query, document, pixel bound),
so it is looked up by a content hash of exactly those; images count by their decoded pixels, so the
same photo sent as a path, bytes or base64 is the same key. Cached values are the very floats
computed the first time. Thread-safe LRU bounded by entries.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence

from PIL import Image

from .contract import (
    InputError,
    Item,
    PairScore,
    ProgressCallback,
    RequestContext,
    RerankResult,
    ScoreStats,
    ScoringCancelledError,
    ScoringTimeoutError,
)
from .explain import DEFAULT_GRID, DEFAULT_SEGMENTS, MAX_GRID, MAX_SEGMENTS, whole_number
from .families import ModelFamily
from .inputs import (
    RETURN_MEMORY_AFTER_PIXELS,
    ImageRules,
    image_pixels,
    resolve_instruction,
    return_memory,
    to_item,
    to_items,
)
from .ranking import best_first, check_top_n

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
        digest.update(b"\x04" + repr((video.timestamps, video.indices, video.fps)).encode()
                      + b"".join(image_digests(frame) for frame in video.frames))
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
    def request_key(model: str, instruction: str, query: Item, max_pixels: int,
                    image_digests: Callable[[Image.Image], bytes] = image_digest, scope: str = "") -> bytes:
        """What every pair of a request shares: the model, instruction, query and pixel bound, and whose
        cache it is (`RequestContext.cache_scope`)."""
        digest = hashlib.blake2b(digest_size=16)
        for part in (scope, model, instruction, str(max_pixels)):
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


def through_cache(cache: ScoreCache, model: str, query: Item, documents: list[Item], instruction: str,
                  max_pixels: int, compute: Callable[[list[int], ProgressCallback], list[PairScore]],
                  on_progress: ProgressCallback | None, stats: ScoreStats,
                  digest: Callable | None = None, scope: str | None = "") -> list[PairScore]:
    """Scores of `documents`, from `cache` where it has them (in `scope`: None reads and keeps nothing);
    `compute(missing indices, progress)` scores the rest."""
    digest = digest or DigestMemo()
    total = len(documents)
    results: list[PairScore | None] = [None] * total
    keys: list[bytes] = []
    if cache.max_entries and scope is not None:
        request_key = ScoreCache.request_key(model, instruction, query, max_pixels, digest, scope)
        keys = [ScoreCache.pair_key(request_key, document, digest) for document in documents]
        results = [cache.get(key) for key in keys]
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


def ranked(documents: Sequence[Any], scores: list[float], top_n: int | None) -> list[RerankResult]:
    """Documents best-first as results, with the id and metadata each dict document carried."""
    def attached(document: Any, key: str) -> Any:
        return document.get(key) if isinstance(document, dict) else None

    return [RerankResult(index=i, score=scores[i], document=documents[i], id=attached(documents[i], "id"),
                         metadata=attached(documents[i], "metadata"))
            for i in best_first(scores)[:top_n]]


def request_context(context: RequestContext | None, timeout: float | None, cancel, stats: ScoreStats | None
                    ) -> RequestContext:
    """The call's context: the one given, or one made of the keyword arguments a library caller may pass."""
    if context is not None:
        if stats is not None:
            context.stats = stats
        return context
    return RequestContext(timeout=timeout, cancel=cancel, stats=stats if stats is not None else ScoreStats())


class Counter:
    """A count that several threads change (calls waiting for the model)."""

    def __init__(self):
        self._value, self._lock = 0, threading.Lock()

    def add(self, amount: int) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> int:
        return self._value


# -- the shared scorer ------------------------------------------------------------------------------------


class ScorerBase:
    """`score`, `score_with_logits` and `rerank` for any scorer: inputs normalised and checked at the
    edge, the score cache in front. A subclass sets `family`, `model_name`, `max_pixels` and `cache`,
    and scores the pairs the cache does not have in `score_uncached`.

    Each call takes a `context` (`contract.RequestContext`: deadline, Stop event, stats, request id);
    a library caller may pass `timeout` (seconds), `cancel` (a `threading.Event`) and `stats` instead.
    A timeout raises `ScoringTimeoutError` and a set cancel event `ScoringCancelledError`, checked
    between batches, so the work stops there.
    """

    family: ModelFamily
    model_name: str
    max_pixels: int
    cache: ScoreCache

    def score(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
              max_pixels: int | None = None, on_progress: ProgressCallback | None = None,
              context: RequestContext | None = None, timeout: float | None = None, cancel=None,
              stats: ScoreStats | None = None) -> list[float]:
        """The score (0..1) of each document against the query, in input order.

        `max_pixels` bounds the images of this call only (default: the scorer's).
        """
        pairs = self.score_with_logits(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress,
                                       context=context, timeout=timeout, cancel=cancel, stats=stats)
        return [pair.score for pair in pairs]

    def score_with_logits(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
                          max_pixels: int | None = None, on_progress: ProgressCallback | None = None,
                          context: RequestContext | None = None, timeout: float | None = None, cancel=None,
                          stats: ScoreStats | None = None) -> list[PairScore]:
        """Like `score`, with the yes/no logits and the prompt length of each pair."""
        context = request_context(context, timeout, cancel, stats)
        if max_pixels is not None and max_pixels < self.family.min_pixels:
            raise InputError("max_pixels", "max_pixels_low", minimum=self.family.min_pixels, value=max_pixels)
        # Inputs are checked here, at the edge, so that a bad document is named before any work starts.
        # Images larger than the model will look at are decoded straight down (inputs.ImageRules); the
        # doors pass items already decoded under their limits, the same way.
        rules = ImageRules(keep_pixels=max_pixels or self.max_pixels)
        query_item = to_item(query, "query", rules=rules)
        document_items = to_items(documents, rules=rules)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        if not document_items:
            return []
        self.check_items(query_item, document_items)
        digest = DigestMemo()

        def compute(missing: list[int], progress: ProgressCallback) -> list[PairScore]:
            return self.score_uncached(query_item, [document_items[i] for i in missing], instruction_text, max_pixels,
                                     progress, context, digest)

        try:
            return through_cache(self.cache, self.model_name, query_item, document_items, instruction_text,
                                 max_pixels or self.max_pixels, compute, on_progress, context.stats, digest,
                                 context.cache_scope)
        finally:
            if image_pixels([query_item, *document_items]) >= RETURN_MEMORY_AFTER_PIXELS:
                del compute, document_items, digest
                return_memory()

    def check_items(self, query: Item, documents: Sequence[Item]) -> None:
        """Refuse, naming the field, what this model cannot take (a clip, for a checkpoint whose chat template has
        no video slot). Nothing by default."""

    def rerank(self, query: Any, documents: Sequence[Any], instruction: str | None = None,
               top_n: int | None = None, *, max_pixels: int | None = None,
               on_progress: ProgressCallback | None = None, context: RequestContext | None = None,
               timeout: float | None = None, cancel=None, stats: ScoreStats | None = None) -> list[RerankResult]:
        """Documents best-first, each with its input index and score; `top_n` keeps the best n (0 or None: all)."""
        top_n = check_top_n(top_n)
        scores = self.score(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress,
                            context=context, timeout=timeout, cancel=cancel, stats=stats)
        return ranked(documents, scores, top_n)

    def explain(self, query: Any, document: Any, instruction: str | None = None, *, grid: int = DEFAULT_GRID,
                max_segments: int = DEFAULT_SEGMENTS, explanation: bool = False, max_pixels: int | None = None,
                targets: Sequence[str] = ("query", "document"), context: RequestContext | None = None,
                timeout: float | None = None, cancel=None, stats: ScoreStats | None = None,
                max_variants: int | None = None, max_text_chars: int | None = None):
        """Why `document` scored what it did against `query` (`explain.Explanation`): each image of the
        pair as a map of `grid` x `grid` cells at most, each text as at most `max_segments` weighted
        segments, the raw output, and with `explanation=True` the model's own words (which can be wrong).
        `targets` says which of the pair's items get maps and weights ("query", "document", or both).

        Every value is exact: a cell's is score(pair) - score(pair with that box filled with the
        image's mean colour); a segment's is score(pair) - score(pair without that segment). The
        variants run in batches, through the score cache, the document's behind the shared prefix.
        `max_variants` and `max_text_chars` bound what one call may cost (a server's limits; 413 past them).
        """
        from .explain import explain_pair

        context = request_context(context, timeout, cancel, stats)
        grid = whole_number(grid, "grid", "grid", MAX_GRID)
        max_segments = whole_number(max_segments, "max_segments", "segments", MAX_SEGMENTS)
        if max_pixels is not None and max_pixels < self.family.min_pixels:
            raise InputError("max_pixels", "max_pixels_low", minimum=self.family.min_pixels, value=max_pixels)
        rules = ImageRules(keep_pixels=max_pixels or self.max_pixels)
        query_item = to_item(query, "query", rules=rules)
        document_item = to_item(document, "document", rules=rules)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        return explain_pair(self, query_item, document_item, instruction_text, grid=grid, max_segments=max_segments,
                            explanation=explanation, max_pixels=max_pixels, context=context, targets=tuple(targets),
                            max_variants=max_variants, max_text_chars=max_text_chars)

    def score_pairs(self, pairs: Sequence[tuple[Item, Item]], instruction: str, *, max_pixels: int | None = None,
                    context: RequestContext | None = None) -> list[PairScore]:
        """Scores of (query, document) pairs whose queries differ, items already read, through the cache."""
        context = context or RequestContext()
        digest = DigestMemo()
        bound = max_pixels or self.max_pixels
        scope = context.cache_scope
        keys = ([ScoreCache.pair_key(ScoreCache.request_key(self.model_name, instruction, q, bound, digest, scope), d,
                                     digest) for q, d in pairs] if self.cache.max_entries and scope is not None else [])
        results: list[PairScore | None] = [self.cache.get(key) for key in keys] if keys else [None] * len(pairs)
        missing = [i for i, found in enumerate(results) if found is None]
        context.stats.pairs += len(pairs)
        context.stats.cached += len(pairs) - len(missing)
        if missing:
            fresh = self.score_uncached_pairs([pairs[i] for i in missing], instruction, max_pixels, None, context, digest)
            for i, pair in zip(missing, fresh):
                results[i] = pair
                if keys:
                    self.cache.put(keys[i], pair)
        context.stats.tokens += sum(pair.tokens for pair in results)  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def score_uncached(self, query: Item, documents: list[Item], instruction: str, max_pixels: int | None,
                     on_progress: ProgressCallback, context: RequestContext, digest: DigestMemo) -> list[PairScore]:
        raise NotImplementedError  # each scorer says how it computes scores

    def score_uncached_pairs(self, pairs: list[tuple[Item, Item]], instruction: str, max_pixels: int | None,
                           on_progress: ProgressCallback | None, context: RequestContext,
                           digest: DigestMemo) -> list[PairScore]:
        """Pairs with different queries: by default one query at a time (the engine batches them)."""
        return [self.score_uncached(query, [document], instruction, max_pixels, None, context, digest)[0]
                for query, document in pairs]

    def inspect(self, query: Item, document: Item, instruction: str, max_pixels: int | None,
                 context: RequestContext, explain_tokens: int = 0) -> tuple[float, list, str | None, str | None]:
        """(yes+no probability share, [(token, probability)] likeliest next, explanation, why none)."""
        raise NotImplementedError  # a scorer that can look inside its model says how
