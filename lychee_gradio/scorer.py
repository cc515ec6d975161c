"""`LycheeScorer`: load a reranker once, then `score()` and `rerank()` queries against documents.

It serves every family in `families.py` (lychee-rerank-mm, Qwen3-VL-Reranker); the family comes
from the checkpoint's config.json and sets the defaults, nothing else.

The score of a pair is p("yes") from the model's next-token logits after the prompt:
softmax([logit("no"), logit("yes")])[1]. Scores are pointwise: a document's score does not
depend on which other documents share the request, their order, or the batch size.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers import DynamicCache

from .cache import DigestMemo, ImageCache, ScoreCache
from .encoding import EncodedPair, PairEncoder, shared_prefix_length
from .families import LYCHEE, ModelFamily
from .inputs import RETURN_MEMORY_AFTER_PIXELS, ImageRules, Item, image_pixels, return_memory, to_item, to_items
from .ranking import best_first, check_top_n
from .prompt import resolve_instruction
from .weights import choose_runtime, default_model, load_model_and_processor, resolve_model_dir

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class PairScore:
    """The score of one pair, the two logits it comes from, and the prompt's length in tokens."""

    score: float
    yes_logit: float
    no_logit: float
    tokens: int = 0


@dataclass(frozen=True)
class RerankResult:
    """One document of a rerank: its 0-based position in the input, its score, and the document.

    `id` and `metadata` are those the caller put on a dict document (`{"text": ..., "id": 7,
    "metadata": {...}}`), handed back unchanged; `None` otherwise.
    """

    index: int
    score: float
    document: Any
    id: Any = None
    metadata: Any = None


class ScoringOutOfMemoryError(RuntimeError):
    """Even a batch of one pair did not fit in GPU memory."""


class ScorerBusyError(RuntimeError):
    """Every model replica is busy and the waiting queue is full (served on Ray replicas): retry shortly."""

    retry_after_seconds = 2


class ScoringTimeoutError(RuntimeError):
    """The request waited for the model, or ran, longer than its timeout; its remaining work was dropped."""


class ScoringCancelledError(RuntimeError):
    """The caller stopped the request (the page's Stop button); its remaining work was dropped."""


@dataclass
class ScoreStats:
    """What one call did, for logs and metrics: filled in by the scorer when the caller passes one."""

    pairs: int = 0  # pairs asked for
    cached: int = 0  # of them, answered from the score cache
    scored: int = 0  # run through the model
    tokens: int = 0  # prompt tokens of all pairs asked for (the usage a client is told)
    tokens_scored: int = 0  # prompt tokens of the pairs run through the model
    batches: list[int] = field(default_factory=list)  # pairs per forward pass
    oom_retries: int = 0  # batches that ran out of memory and were split
    image_cache_hits: int = 0
    image_cache_misses: int = 0

    def add(self, other: "ScoreStats") -> None:
        for name in ("pairs", "cached", "scored", "tokens", "tokens_scored", "oom_retries", "image_cache_hits",
                     "image_cache_misses"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.batches.extend(other.batches)


class StopCheck:
    """Raises between batches once the call is past its timeout or its cancel event is set."""

    def __init__(self, timeout: float | None = None, cancel: threading.Event | None = None):
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout, self.cancel = timeout, cancel
        self.deadline = time.monotonic() + timeout if timeout is not None else None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def __call__(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ScoringCancelledError("stopped")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ScoringTimeoutError(f"the request took longer than its timeout of {self.timeout:g} s and was stopped")


def _is_out_of_memory(error: BaseException) -> bool:
    """CUDA allocation failures: torch's OutOfMemoryError, and cuBLAS/CUDA ones that arrive as RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        sign in text for sign in ("CUBLAS_STATUS_ALLOC_FAILED", "CUDA out of memory", "CUDA error: out of memory",
                                  "CUDNN_STATUS_ALLOC_FAILED", "MPS backend out of memory"))


def through_cache(cache: ScoreCache, model: str, query: Item, documents: list[Item], instruction: str,
                  max_pixels: int, compute: Callable[[list[int], ProgressCallback], list[PairScore]],
                  on_progress: ProgressCallback | None, stats: ScoreStats,
                  digest: Callable | None = None) -> list[PairScore]:
    """Scores of `documents`, from `cache` where it has them; `compute(missing indices, progress)` scores the rest."""
    digest = digest or DigestMemo()
    total = len(documents)
    results: list[PairScore | None] = [None] * total
    keys: list[bytes] = []
    if cache.max_entries:
        request_key = ScoreCache.request_key(model, instruction, query, max_pixels, digest)
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

        for i, pair in zip(missing, compute(missing, progress)):
            results[i] = pair
            if keys:
                cache.put(keys[i], pair)
    stats.tokens += sum(pair.tokens for pair in results)  # type: ignore[union-attr]
    return results  # type: ignore[return-value]


@dataclass
class SharedPrefix:
    """Keys and values of the tokens every pair of a request starts with, computed once."""

    length: int
    key_values: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each (1, kv_heads, length, head_dim)


class Scorer:
    """What every scorer answers (`LycheeScorer` here, `cluster.RayScorer` over replicas): `score`,
    `score_with_logits` and `rerank`, with inputs checked at the edge and the score cache in front.

    A subclass has `family`, `model_name`, `max_pixels` and `cache`, and scores the pairs the cache
    does not have in `_score_fresh`.
    """

    family: ModelFamily
    model_name: str
    cache: ScoreCache

    def score(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
              max_pixels: int | None = None, on_progress: ProgressCallback | None = None,
              timeout: float | None = None, cancel: threading.Event | None = None,
              stats: ScoreStats | None = None) -> list[float]:
        """The score (0..1) of each document against the query, in input order.

        `max_pixels` bounds the images of this call only (default: the scorer's). `timeout`
        (seconds, waiting for the model included) raises `ScoringTimeoutError` and `cancel` (an
        event set by the caller) `ScoringCancelledError`: both are checked between batches, so the
        work stops there. `stats`, a `ScoreStats`, is filled in with what the call did.
        """
        pairs = self.score_with_logits(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress,
                                       timeout=timeout, cancel=cancel, stats=stats)
        return [pair.score for pair in pairs]

    def score_with_logits(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
                          max_pixels: int | None = None, on_progress: ProgressCallback | None = None,
                          timeout: float | None = None, cancel: threading.Event | None = None,
                          stats: ScoreStats | None = None) -> list[PairScore]:
        """Like `score`, with the yes/no logits and the prompt length of each pair."""
        # Inputs are checked here, at the edge, so that a bad document is named before any work starts.
        stop = StopCheck(timeout, cancel)
        stats = stats if stats is not None else ScoreStats()
        if max_pixels is not None and max_pixels < self.family.min_pixels:
            raise ValueError(f"max_pixels: must be at least {self.family.min_pixels}, got {max_pixels}")
        # Images larger than the model will look at are decoded straight down (inputs.ImageRules);
        # the doors pass items already decoded under their limits, the same way.
        rules = ImageRules(keep_pixels=max_pixels or self.max_pixels)
        query_item = to_item(query, "query", rules=rules)
        document_items = to_items(documents, rules=rules)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        if not document_items:
            return []
        digest = DigestMemo()

        def compute(missing: list[int], progress: ProgressCallback) -> list[PairScore]:
            return self._score_fresh(query_item, [document_items[i] for i in missing], instruction_text, max_pixels,
                                     progress, stop, stats, digest)

        try:
            return through_cache(self.cache, self.model_name, query_item, document_items, instruction_text,
                                 max_pixels or self.max_pixels, compute, on_progress, stats, digest)
        finally:
            if image_pixels([query_item, *document_items]) >= RETURN_MEMORY_AFTER_PIXELS:
                del compute, document_items, digest
                return_memory()

    def rerank(self, query: Any, documents: Sequence[Any], instruction: str | None = None,
               top_n: int | None = None, *, max_pixels: int | None = None,
               on_progress: ProgressCallback | None = None, timeout: float | None = None,
               cancel: threading.Event | None = None, stats: ScoreStats | None = None) -> list[RerankResult]:
        """Documents best-first, each with its input index and score; `top_n` keeps the best n (0 or None: all)."""
        top_n = check_top_n(top_n)
        scores = self.score(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress,
                            timeout=timeout, cancel=cancel, stats=stats)
        return ranked(documents, scores, top_n)

    def _score_fresh(self, query: Item, documents: list[Item], instruction: str, max_pixels: int | None,
                     on_progress: ProgressCallback, stop: StopCheck, stats: ScoreStats,
                     digest: DigestMemo) -> list[PairScore]:
        raise NotImplementedError


class LycheeScorer(Scorer):
    """A loaded yes/no reranker (any family of families.py). Build it with `LycheeScorer.load(...)`; thread-safe."""

    def __init__(self, model, processor, *, model_name: str, device: str,
                 max_pixels: int | None = None, batch_size: int | None = None,
                 max_batch_tokens: int | None = None, max_text_tokens: int | None = None,
                 reuse_prefix: bool = True, family: ModelFamily = LYCHEE,
                 cache_size: int = 0, image_cache_bytes: int = 0):
        self.family = family
        self.model = model
        self.processor = processor
        self.model_name = model_name
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.batch_size = batch_size or (32 if on_cuda else 8)
        self.max_batch_tokens = max_batch_tokens or (32768 if on_cuda else 8192)
        if self.batch_size < 1 or self.max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be positive")
        # Across requests: scores of pairs seen before (by content), and processed images.
        self.cache = ScoreCache(cache_size)
        self.image_cache = ImageCache(image_cache_bytes, size_of=lambda encoded: encoded.nbytes)
        self.encoder = PairEncoder(
            processor, model.model.get_rope_index,
            min_pixels=family.min_pixels, max_pixels=max_pixels or family.max_pixels,
            max_text_tokens=max_text_tokens or family.max_text_tokens,
            image_cache=self.image_cache if image_cache_bytes else None, pixel_dtype=model.dtype,
        )
        tokenizer = processor.tokenizer
        self.yes_token_id = _single_token_id(tokenizer, "yes")
        self.no_token_id = _single_token_id(tokenizer, "no")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # The two rows of the output layer that make the score, kept in float32: the (no, yes)
        # logits are computed from the last hidden state in full precision, whatever the model's
        # dtype, so bf16 adds no rounding of its own at the step that decides the score.
        head = model.get_output_embeddings()
        rows = [self.no_token_id, self.yes_token_id]
        self._score_weight = head.weight.detach()[rows].float()
        self._score_bias = head.bias.detach()[rows].float() if getattr(head, "bias", None) is not None else None
        # Every pair of a request shares system prompt, instruction and query: with reuse on, their
        # keys/values (and the query image's vision encoding) are computed once per request.
        self.reuse_prefix = reuse_prefix
        self._lock = threading.Lock()
        self.waiting = 0  # calls waiting for the model (another call holds it)
        # After running out of memory, the batch size that fit is remembered for later calls and
        # grows back by a quarter after every GROW_AFTER batches that fit.
        self.fitting_batch_size: int | None = None
        self._fits_since_oom = 0
        self.load_seconds: float | None = None

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, device: str = "auto", dtype: Any = "auto",
             max_pixels: int | None = None, batch_size: int | None = None, *,
             attn_implementation: str = "auto", max_batch_tokens: int | None = None,
             max_text_tokens: int | None = None, reuse_prefix: bool = True, cache_size: int = 0,
             image_cache_bytes: int = 0) -> "LycheeScorer":
        """Load from a local folder or a ModelScope id (default: $LYCHEE_MODEL or vec-ai/lychee-rerank-mm).

        The checkpoint's config.json picks the family: `qwen2_5_vl` (lychee-rerank-mm) or
        `qwen3_vl` (Qwen3-VL-Reranker-2B/8B); any other is refused, and so is a checkpoint whose
        weights do not all match the model. `device="auto"` picks CUDA, else Apple's MPS, else the
        CPU; `dtype="auto"` bf16 on CUDA (fp16 where bf16 is unsupported, and on MPS), fp32 on CPU;
        `max_pixels` bounds each image (default: the family's, 1280*28*28 or 1800*32*32; smaller is
        faster); `batch_size` is the most pairs per forward pass (default 32 on CUDA, 8 on CPU);
        `reuse_prefix=False` runs the whole prompt of every pair (same scores, slower; for comparison);
        `cache_size` keeps the scores of that many pairs to answer repeats from (0: off);
        `image_cache_bytes` keeps processed images up to that size, for images ranked again (0: off).
        """
        started = time.monotonic()
        name = os.fspath(model) if model is not None else default_model()
        folder = resolve_model_dir(name)
        runtime = choose_runtime(device, dtype, attn_implementation)
        logger.info("loading %s from %s on %s (%s, %s)", name, folder, runtime.device, runtime.dtype,
                    runtime.attn_implementation)
        hf_model, processor, family = load_model_and_processor(folder, runtime)
        scorer = cls(hf_model, processor, model_name=name, device=runtime.device, max_pixels=max_pixels,
                     batch_size=batch_size, max_batch_tokens=max_batch_tokens, max_text_tokens=max_text_tokens,
                     reuse_prefix=reuse_prefix, family=family, cache_size=cache_size,
                     image_cache_bytes=image_cache_bytes)
        scorer.load_seconds = time.monotonic() - started
        return scorer

    @property
    def max_pixels(self) -> int:
        return self.encoder.max_pixels

    # -- public API ---------------------------------------------------------------------------

    def _score_fresh(self, query: Item, documents: list[Item], instruction: str, max_pixels: int | None,
                     on_progress: ProgressCallback, stop: StopCheck, stats: ScoreStats,
                     digest: DigestMemo) -> list[PairScore]:
        # Encoding (text cut to its budget, images processed) needs no model: it runs before the
        # model is taken, so a request with huge inputs never holds the model for more than its scoring.
        hits, misses = self.image_cache.hits, self.image_cache.misses
        pairs = self.encoder.encode(query, documents, instruction, max_pixels, digest, on_document=stop)
        stats.image_cache_hits += self.image_cache.hits - hits
        stats.image_cache_misses += self.image_cache.misses - misses
        self._acquire(stop)
        try:
            return self._score_pairs(pairs, on_progress, stop, stats)
        finally:
            self._lock.release()

    def _acquire(self, stop: StopCheck) -> None:
        """Take the model, waiting at most until the call's deadline (and no longer once it is cancelled)."""
        self.waiting += 1
        try:
            while True:
                stop()
                remaining = stop.remaining()
                if self._lock.acquire(timeout=0.1 if remaining is None else max(0.0, min(0.1, remaining))):
                    return
        finally:
            self.waiting -= 1

    # -- batching -------------------------------------------------------------------------------

    GROW_AFTER = 16  # batches that fit at a remembered size before it grows by a quarter

    def _batches(self, order: list[int], pairs: list[EncodedPair], batch_size: int) -> list[list[int]]:
        """Consecutive runs of `order` (longest first) within the pair and padded-token budgets.

        The token budget counts each row's whole length, the shared prefix included: every row
        attends to its own copy of the prefix's keys/values, which takes memory like its own tokens.
        """
        batches, current = [], []
        for index in order:
            longest = pairs[current[0]].length if current else pairs[index].length
            if current and (len(current) >= batch_size or longest * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _score_pairs(self, pairs: list[EncodedPair], on_progress: ProgressCallback | None,
                     stop: StopCheck | None = None, stats: ScoreStats | None = None) -> list[PairScore]:
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory
        # error shows on the first, largest batch.
        stop = stop or StopCheck()
        stats = stats if stats is not None else ScoreStats()
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
        results: list[PairScore | None] = [None] * len(pairs)
        batch_size = min(self.batch_size, self.fitting_batch_size or self.batch_size)
        done = 0
        prefix = None
        if self.reuse_prefix and len(pairs) > 1:
            out_of_memory = False
            try:
                prefix = self._encode_prefix(pairs)
            except RuntimeError as error:
                if not _is_out_of_memory(error):
                    raise
                out_of_memory = True
            if out_of_memory:  # released here, once the exception (and the tensors its traceback holds) is gone
                self._release_memory()
                stats.oom_retries += 1
                logger.warning("out of GPU memory computing the shared prefix; running whole prompts instead")
        pending = self._batches(order, pairs, batch_size)
        while pending:
            stop()
            batch = pending.pop(0)
            out_of_memory = False
            try:
                logits = self._forward([pairs[i] for i in batch], prefix)
            except RuntimeError as error:
                if not _is_out_of_memory(error):
                    raise
                out_of_memory = True
            if out_of_memory:
                self._release_memory()
                stats.oom_retries += 1
                if len(batch) == 1:
                    raise ScoringOutOfMemoryError(
                        f"out of GPU memory scoring a single pair of {pairs[batch[0]].length} tokens; "
                        "lower max_pixels or max_text_tokens, or use a GPU with more memory"
                    )
                batch_size = (len(batch) + 1) // 2
                self._remember_fit(batch_size)
                logger.warning("out of GPU memory with %d pairs per batch; retrying with %d", len(batch), batch_size)
                remaining = batch + [i for rest in pending for i in rest]
                pending = self._batches(remaining, pairs, batch_size)
                continue
            self._note_fit()
            for i, (no_logit, yes_logit) in zip(batch, logits.tolist()):
                results[i] = PairScore(score=_p_yes(yes_logit, no_logit), yes_logit=yes_logit, no_logit=no_logit,
                                       tokens=pairs[i].length)
            stats.batches.append(len(batch))
            stats.scored += len(batch)
            stats.tokens_scored += sum(pairs[i].length for i in batch)
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(pairs))
        return results  # type: ignore[return-value]

    def _remember_fit(self, batch_size: int) -> None:
        self.fitting_batch_size = batch_size
        self._fits_since_oom = 0

    def _note_fit(self) -> None:
        """A batch fit: after GROW_AFTER of them, let the remembered size grow back by a quarter."""
        if self.fitting_batch_size is None:
            return
        self._fits_since_oom += 1
        if self._fits_since_oom >= self.GROW_AFTER:
            grown = self.fitting_batch_size + max(1, self.fitting_batch_size // 4)
            self.fitting_batch_size = None if grown >= self.batch_size else grown
            self._fits_since_oom = 0

    def _release_memory(self) -> None:
        """Give cached blocks back after an out-of-memory error (called outside the except block)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    @torch.inference_mode()
    def _encode_prefix(self, pairs: list[EncodedPair]) -> SharedPrefix | None:
        length = shared_prefix_length(pairs)
        if length < 1:
            return None
        first = pairs[0]
        images = first.images[: first.query_image_count]
        device = self.device
        outputs = self.model.model(
            input_ids=first.input_ids[None, :length].to(device),
            attention_mask=torch.ones((1, length), dtype=torch.long, device=device),
            position_ids=first.position_ids[:, None, :length].to(device),
            mm_token_type_ids=first.mm_token_type_ids[None, :length].to(device),
            pixel_values=torch.cat([image.pixel_values for image in images]).to(device) if images else None,
            image_grid_thw=torch.stack([image.grid_thw for image in images]).to(device) if images else None,
            use_cache=True,
        )
        cache = outputs.past_key_values
        return SharedPrefix(length, [(layer.keys, layer.values) for layer in cache.layers])

    @torch.inference_mode()
    def _forward(self, batch: list[EncodedPair], prefix: SharedPrefix | None = None) -> torch.Tensor:
        """(no, yes) logits at the last position of each pair, as a float32 (B, 2) tensor on the CPU.

        With a shared prefix, only each pair's tail (the tokens after the prefix) runs, attending
        to the prefix's cached keys/values; positions stay those of the whole sequence.
        """
        skip = prefix.length if prefix else 0
        size = len(batch)
        width = max(pair.length for pair in batch) - skip
        input_ids = torch.full((size, width), self.pad_token_id, dtype=torch.long)
        mm_token_type_ids = torch.zeros((size, width), dtype=torch.long)
        attention_mask = torch.zeros((size, skip + width), dtype=torch.long)
        attention_mask[:, :skip] = 1
        position_ids = torch.zeros((3, size, width), dtype=torch.long)
        # Left padding: every pair's last real token sits in the last column, where the score is read.
        for row, pair in enumerate(batch):
            start = width - (pair.length - skip)
            input_ids[row, start:] = pair.input_ids[skip:]
            mm_token_type_ids[row, start:] = pair.mm_token_type_ids[skip:]
            attention_mask[row, skip + start:] = 1
            position_ids[:, row, start:] = pair.position_ids[:, skip:]
        images = [image for pair in batch for image in pair.images[pair.query_image_count if prefix else 0:]]
        device = self.device
        past_key_values = None
        if prefix is not None:
            past_key_values = DynamicCache(config=self.model.config.text_config)
            for layer, (keys, values) in enumerate(prefix.key_values):
                past_key_values.update(keys.expand(size, -1, -1, -1), values.expand(size, -1, -1, -1), layer)
        outputs = self.model.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            mm_token_type_ids=mm_token_type_ids.to(device),
            pixel_values=torch.cat([image.pixel_values for image in images]).to(device) if images else None,
            image_grid_thw=torch.stack([image.grid_thw for image in images]).to(device) if images else None,
            past_key_values=past_key_values,
            use_cache=False,
        )
        last = outputs.last_hidden_state[:, -1, :].float()
        logits = last @ self._score_weight.T
        if self._score_bias is not None:
            logits = logits + self._score_bias
        return logits.cpu()


def ranked(documents: Sequence[Any], scores: list[float], top_n: int | None) -> list[RerankResult]:
    """Documents best-first as results, with the id and metadata each dict document carried."""
    def attached(document: Any, key: str) -> Any:
        return document.get(key) if isinstance(document, dict) else None

    return [RerankResult(index=i, score=scores[i], document=documents[i], id=attached(documents[i], "id"),
                         metadata=attached(documents[i], "metadata"))
            for i in best_first(scores)[:top_n]]


def _p_yes(yes_logit: float, no_logit: float) -> float:
    return float(torch.softmax(torch.tensor([no_logit, yes_logit], dtype=torch.float64), dim=0)[1])


def _single_token_id(tokenizer, word: str) -> int:
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"the tokenizer encodes {word!r} as {len(ids)} tokens; a yes/no reranker needs one")
    return ids[0]
