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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import DynamicCache

from .encoding import EncodedPair, PairEncoder, shared_prefix_length
from .families import LYCHEE, ModelFamily
from .inputs import to_item, to_items
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


@dataclass
class SharedPrefix:
    """Keys and values of the tokens every pair of a request starts with, computed once."""

    length: int
    key_values: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each (1, kv_heads, length, head_dim)


class LycheeScorer:
    """A loaded yes/no reranker (any family of families.py). Build it with `LycheeScorer.load(...)`; thread-safe."""

    def __init__(self, model, processor, *, model_name: str, device: str,
                 max_pixels: int | None = None, batch_size: int | None = None,
                 max_batch_tokens: int | None = None, max_text_tokens: int | None = None,
                 reuse_prefix: bool = True, family: ModelFamily = LYCHEE):
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
        self.encoder = PairEncoder(
            processor, model.model.get_rope_index,
            min_pixels=family.min_pixels, max_pixels=max_pixels or family.max_pixels,
            max_text_tokens=max_text_tokens or family.max_text_tokens,
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

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, device: str = "auto", dtype: Any = "auto",
             max_pixels: int | None = None, batch_size: int | None = None, *,
             attn_implementation: str = "auto", max_batch_tokens: int | None = None,
             max_text_tokens: int | None = None, reuse_prefix: bool = True) -> "LycheeScorer":
        """Load from a local folder or a ModelScope id (default: $LYCHEE_MODEL or vec-ai/lychee-rerank-mm).

        The checkpoint's config.json picks the family: `qwen2_5_vl` (lychee-rerank-mm) or
        `qwen3_vl` (Qwen3-VL-Reranker-2B/8B); any other is refused, and so is a checkpoint whose
        weights do not all match the model. `device="auto"` picks CUDA, else Apple's MPS, else the
        CPU; `dtype="auto"` bf16 on CUDA (fp16 where bf16 is unsupported, and on MPS), fp32 on CPU;
        `max_pixels` bounds each image (default: the family's, 1280*28*28 or 1800*32*32; smaller is
        faster); `batch_size` is the most pairs per forward pass (default 32 on CUDA, 8 on CPU);
        `reuse_prefix=False` runs the whole prompt of every pair (same scores, slower; for comparison).
        """
        name = os.fspath(model) if model is not None else default_model()
        folder = resolve_model_dir(name)
        runtime = choose_runtime(device, dtype, attn_implementation)
        logger.info("loading %s from %s on %s (%s, %s)", name, folder, runtime.device, runtime.dtype,
                    runtime.attn_implementation)
        hf_model, processor, family = load_model_and_processor(folder, runtime)
        return cls(hf_model, processor, model_name=name, device=runtime.device, max_pixels=max_pixels,
                   batch_size=batch_size, max_batch_tokens=max_batch_tokens, max_text_tokens=max_text_tokens,
                   reuse_prefix=reuse_prefix, family=family)

    @property
    def max_pixels(self) -> int:
        return self.encoder.max_pixels

    # -- public API ---------------------------------------------------------------------------

    def score(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
              max_pixels: int | None = None, on_progress: ProgressCallback | None = None) -> list[float]:
        """The score (0..1) of each document against the query, in input order.

        `max_pixels` bounds the images of this call only (default: the scorer's).
        """
        pairs = self.score_with_logits(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress)
        return [pair.score for pair in pairs]

    def score_with_logits(self, query: Any, documents: Sequence[Any], instruction: str | None = None, *,
                          max_pixels: int | None = None,
                          on_progress: ProgressCallback | None = None) -> list[PairScore]:
        """Like `score`, with the yes/no logits and the prompt length of each pair."""
        query_item = to_item(query, "query")
        document_items = to_items(documents)
        instruction_text = resolve_instruction(instruction, self.family.default_instruction)
        if not document_items:
            return []
        with self._lock:
            pairs = self.encoder.encode(query_item, document_items, instruction_text, max_pixels)
            return self._score_pairs(pairs, on_progress)

    def rerank(self, query: Any, documents: Sequence[Any], instruction: str | None = None,
               top_n: int | None = None, *, max_pixels: int | None = None,
               on_progress: ProgressCallback | None = None) -> list[RerankResult]:
        """Documents best-first, each with its input index and score; `top_n` keeps the best n (0 or None: all)."""
        top_n = check_top_n(top_n)
        scores = self.score(query, documents, instruction, max_pixels=max_pixels, on_progress=on_progress)
        return ranked(documents, scores, top_n)

    # -- batching -------------------------------------------------------------------------------

    def _batches(self, order: list[int], pairs: list[EncodedPair], batch_size: int, skip: int) -> list[list[int]]:
        """Consecutive runs of `order` (longest first) within the pair and padded-token budgets.

        `skip` leading tokens of each pair come from the shared prefix and are not run again.
        """
        batches, current = [], []
        for index in order:
            longest = (pairs[current[0]].length if current else pairs[index].length) - skip
            if current and (len(current) >= batch_size or longest * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _score_pairs(self, pairs: list[EncodedPair], on_progress: ProgressCallback | None) -> list[PairScore]:
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory
        # error shows on the first, largest batch.
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
        results: list[PairScore | None] = [None] * len(pairs)
        batch_size = self.batch_size
        done = 0
        prefix = None
        if self.reuse_prefix and len(pairs) > 1:
            try:
                prefix = self._encode_prefix(pairs)
            except torch.OutOfMemoryError:
                self._release_memory()
                logger.warning("out of GPU memory computing the shared prefix; running whole prompts instead")
        skip = prefix.length if prefix else 0
        pending = self._batches(order, pairs, batch_size, skip)
        while pending:
            batch = pending.pop(0)
            try:
                logits = self._forward([pairs[i] for i in batch], prefix)
            except torch.OutOfMemoryError:
                self._release_memory()
                if len(batch) == 1:
                    raise ScoringOutOfMemoryError(
                        f"out of GPU memory scoring a single pair of {pairs[batch[0]].length} tokens; "
                        "lower max_pixels or max_text_tokens, or use a GPU with more memory"
                    ) from None
                batch_size = (len(batch) + 1) // 2
                logger.warning("out of GPU memory with %d pairs per batch; retrying with %d", len(batch), batch_size)
                remaining = batch + [i for rest in pending for i in rest]
                pending = self._batches(remaining, pairs, batch_size, skip)
                continue
            for i, (no_logit, yes_logit) in zip(batch, logits.tolist()):
                results[i] = PairScore(score=_p_yes(yes_logit, no_logit), yes_logit=yes_logit, no_logit=no_logit,
                                       tokens=pairs[i].length)
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(pairs))
        return results  # type: ignore[return-value]

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

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
