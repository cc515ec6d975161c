"""What every scorer does, whatever computes its scores: inputs checked at the edge, the score cache in
front, `score` / `score_with_logits` / `rerank`. Torch-free: the local engine
(`engine.scorer.LycheeScorer`) and the Ray front end (`serving.cluster.RayScorer`) are both a
`ScorerBase` and differ only in `score_uncached`, how they score the pairs the cache does not have.

The score cache in front of every scorer is `score_cache.py`.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Sequence

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
from .inputs import RETURN_MEMORY_AFTER_PIXELS, ImageRules, image_pixels, resolve_instruction, return_memory, to_item, to_items
from .parts import DEFAULT_OVERLAP, Chunking, best_index, best_of, check_mode, check_query, parts_of, rows
from .ranking import best_first, check_top_n
from .score_cache import DigestMemo, ScoreCache, through_cache, through_keys


def ranked(
    documents: Sequence[Any], pairs: list[PairScore], top_n: int | None, long_documents: str = "max"
) -> list[RerankResult]:
    """Documents best-first as results, with the id and metadata each dict document carried and the part each
    score is for (with "split", one result a part: several may share an index)."""

    def attached(document: Any, key: str) -> Any:
        return document.get(key) if isinstance(document, dict) else None

    found = rows(pairs, long_documents)
    return [
        RerankResult(
            index=found[k][0],
            score=found[k][1].score,
            document=documents[found[k][0]],
            id=attached(documents[found[k][0]], "id"),
            metadata=attached(documents[found[k][0]], "metadata"),
            part=found[k][1].part,
        )
        for k in best_first([pair.score for _, pair in found])[:top_n]
    ]


def request_context(context: RequestContext | None, timeout: float | None, cancel, stats: ScoreStats | None) -> RequestContext:
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

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        instruction: str | None = None,
        *,
        max_pixels: int | None = None,
        on_progress: ProgressCallback | None = None,
        context: RequestContext | None = None,
        timeout: float | None = None,
        cancel=None,
        stats: ScoreStats | None = None,
        long_documents: str | None = None,
    ) -> list[float]:
        """The score (0..1) of each document against the query, in input order.

        `max_pixels` bounds the images of this call only (default: the scorer's). A long document (a PDF, a text
        over the chunk size) scores as its best part (`long_documents`: "max", the default; "truncate": cut at
        the model's budget; "refuse": an `InputError`); `score_with_logits` names the part.
        """
        pairs = self.score_with_logits(
            query,
            documents,
            instruction,
            max_pixels=max_pixels,
            on_progress=on_progress,
            context=context,
            timeout=timeout,
            cancel=cancel,
            stats=stats,
            long_documents=long_documents,
        )
        return [pair.score for pair in pairs]

    def score_with_logits(
        self,
        query: Any,
        documents: Sequence[Any],
        instruction: str | None = None,
        *,
        max_pixels: int | None = None,
        on_progress: ProgressCallback | None = None,
        context: RequestContext | None = None,
        timeout: float | None = None,
        cancel=None,
        stats: ScoreStats | None = None,
        long_documents: str | None = None,
        chunk_tokens: int | None = None,
        max_parts: int | None = None,
    ) -> list[PairScore]:
        """Like `score`, with the yes/no logits and the prompt length of each pair, and for a document of several
        parts its best part (`PairScore.part`) and every part's score (`PairScore.parts`). `chunk_tokens`: a
        smaller chunk size than the model's text budget, for this call; `max_parts`: the most parts it may score."""
        context = request_context(context, timeout, cancel, stats)
        mode = check_mode(long_documents if long_documents is not None else self.long_documents)
        if max_pixels is not None and max_pixels < self.family.min_pixels:
            raise InputError("max_pixels", "max_pixels_low", minimum=self.family.min_pixels, value=max_pixels)
        # Inputs are checked here, at the edge, so that a bad document is named before any work starts.
        # Images larger than the model will look at are decoded straight down (inputs.ImageRules); the
        # doors pass items already decoded under their limits, the same way.
        rules = ImageRules(keep_pixels=max_pixels or self.max_pixels, clip_segments=mode != "truncate")
        query_item = to_item(query, "query", rules=rules)
        document_items = to_items(documents, rules=rules)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        if not document_items:
            return []
        check_query(query_item)
        parted = parts_of(document_items, mode, self.chunking(chunk_tokens, max_parts))
        self.check_items(query_item, parted.items)
        context.stats.split += parted.split
        context.stats.parts += parted.split_parts
        digest = DigestMemo()
        parts = parted.items

        def compute(missing: list[int], progress: ProgressCallback) -> list[PairScore]:
            return self.score_uncached(
                query_item, [parts[i] for i in missing], instruction_text, max_pixels, progress, context, digest
            )

        try:
            return best_of(
                parted,
                through_cache(
                    self.cache,
                    self.model_name,
                    query_item,
                    parts,
                    instruction_text,
                    max_pixels or self.max_pixels,
                    compute,
                    on_progress,
                    context.stats,
                    digest,
                    context.cache_scope,
                ),
            )
        except (ScoringCancelledError, ScoringTimeoutError) as error:
            error.partial = None if error.partial is None else best_of(parted, error.partial)
            raise
        finally:
            if image_pixels([query_item, *document_items, *parts]) >= RETURN_MEMORY_AFTER_PIXELS:
                del compute, document_items, digest, parts, parted
                return_memory()

    # How long documents are taken when a call does not say (`long_documents`; the server's --long-documents), and
    # the chunk size when smaller than the model's text budget (None: the budget).
    long_documents: str = "max"
    chunk_tokens: int | None = None

    def token_offsets(self, text: str) -> Sequence[tuple[int, int]] | None:
        """Each token's [start, end) in `text`, by the model's tokenizer; None where this scorer has none (then
        long texts are cut at the model's budget, never split)."""
        return None

    def chunking(self, chunk_tokens: int | None = None, max_parts: int | None = None) -> Chunking | None:
        """How this scorer cuts long texts (`parts.Chunking`), or None where it cannot count tokens."""
        budget = getattr(self, "max_text_tokens", None)
        if not budget or self.token_offsets("a") is None:
            return None
        size = min(budget, chunk_tokens or self.chunk_tokens or budget)
        return Chunking(
            max_tokens=size,
            offsets=self.token_offsets,
            overlap=min(DEFAULT_OVERLAP, size // 4),
            max_parts=max_parts,
            budget=budget,
        )

    def check_items(self, query: Item, documents: Sequence[Item]) -> None:
        """Refuse, naming the field, what this model cannot take (a clip, for a checkpoint whose chat template has
        no video slot). Nothing by default."""

    def rerank(
        self,
        query: Any,
        documents: Sequence[Any],
        instruction: str | None = None,
        top_n: int | None = None,
        *,
        max_pixels: int | None = None,
        on_progress: ProgressCallback | None = None,
        context: RequestContext | None = None,
        timeout: float | None = None,
        cancel=None,
        stats: ScoreStats | None = None,
        long_documents: str | None = None,
    ) -> list[RerankResult]:
        """Documents best-first, each with its input index, score and best part; `top_n` keeps the best n (0 or
        None: all). `long_documents="split"`: one result per part of a long document (a PDF's pages among other
        documents), best first."""
        top_n = check_top_n(top_n)
        mode = check_mode(long_documents if long_documents is not None else self.long_documents)
        pairs = self.score_with_logits(
            query,
            documents,
            instruction,
            max_pixels=max_pixels,
            on_progress=on_progress,
            context=context,
            timeout=timeout,
            cancel=cancel,
            stats=stats,
            long_documents=mode,
        )
        return ranked(documents, pairs, top_n, mode)

    def explain(
        self,
        query: Any,
        document: Any,
        instruction: str | None = None,
        *,
        grid: int = DEFAULT_GRID,
        max_segments: int = DEFAULT_SEGMENTS,
        explanation: bool = False,
        max_pixels: int | None = None,
        targets: Sequence[str] = ("query", "document"),
        context: RequestContext | None = None,
        timeout: float | None = None,
        cancel=None,
        stats: ScoreStats | None = None,
        max_variants: int | None = None,
        max_text_chars: int | None = None,
        max_parts: int | None = None,
    ):
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
        rules = ImageRules(keep_pixels=max_pixels or self.max_pixels, clip_segments=True)
        query_item = to_item(query, "query", rules=rules)
        document_item = to_item(document, "document", rules=rules)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        check_query(query_item)
        document_item, part = self.best_part(query_item, document_item, instruction_text, max_pixels, context, max_parts)
        found = explain_pair(
            self,
            query_item,
            document_item,
            instruction_text,
            grid=grid,
            max_segments=max_segments,
            explanation=explanation,
            max_pixels=max_pixels,
            context=context,
            targets=tuple(targets),
            max_variants=max_variants,
            max_text_chars=max_text_chars,
        )
        return found if part is None else replace(found, part=part)

    def best_part(
        self,
        query: Item,
        document: Item,
        instruction: str,
        max_pixels: int | None,
        context: RequestContext,
        max_parts: int | None = None,
    ) -> tuple[Item, Any]:
        """A long document's best part (the one an explanation explains) and its `Part`; else the document itself."""
        parted = parts_of([document], "max", self.chunking(None, max_parts), "document")
        if not parted.split:
            return document, None
        scores = self.score_with_logits(
            query, parted.items, instruction, max_pixels=max_pixels, context=context, long_documents="truncate"
        )
        best = best_index(scores)
        return parted.items[best], parted.parts[best]

    def score_pairs(
        self,
        pairs: Sequence[tuple[Item, Item]],
        instruction: str,
        *,
        max_pixels: int | None = None,
        context: RequestContext | None = None,
    ) -> list[PairScore]:
        """Scores of (query, document) pairs whose queries differ, items already read, through the cache."""
        context = context or RequestContext()
        digest = DigestMemo()
        bound = max_pixels or self.max_pixels
        scope = context.cache_scope
        keys = (
            [
                ScoreCache.pair_key(ScoreCache.request_key(self.model_name, instruction, q, bound, digest, scope), d, digest)
                for q, d in pairs
            ]
            if self.cache.max_entries and scope is not None
            else []
        )

        def compute(missing: list[int], progress: ProgressCallback) -> list[PairScore]:
            return self.score_uncached_pairs([pairs[i] for i in missing], instruction, max_pixels, None, context, digest)

        return through_keys(self.cache, keys, len(pairs), compute, None, context.stats)

    def score_uncached(
        self,
        query: Item,
        documents: list[Item],
        instruction: str,
        max_pixels: int | None,
        on_progress: ProgressCallback,
        context: RequestContext,
        digest: DigestMemo,
    ) -> list[PairScore]:
        raise NotImplementedError  # each scorer says how it computes scores

    def score_uncached_pairs(
        self,
        pairs: list[tuple[Item, Item]],
        instruction: str,
        max_pixels: int | None,
        on_progress: ProgressCallback | None,
        context: RequestContext,
        digest: DigestMemo,
    ) -> list[PairScore]:
        """Pairs with different queries: by default one query at a time (the engine batches them)."""
        return [
            self.score_uncached(query, [document], instruction, max_pixels, None, context, digest)[0] for query, document in pairs
        ]

    def inspect(
        self,
        query: Item,
        document: Item,
        instruction: str,
        max_pixels: int | None,
        context: RequestContext,
        explain_tokens: int = 0,
    ) -> tuple[float, list, str | None, str | None]:
        """(yes+no probability share, [(token, probability)] likeliest next, explanation, why none)."""
        raise NotImplementedError  # a scorer that can look inside its model says how
