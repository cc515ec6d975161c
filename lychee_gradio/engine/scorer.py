"""The engine's scorer: load a reranker once, then `score()`, `rerank()` queries against documents.

`LycheeScorer` serves every family in `families.py`
(lychee-rerank-mm, Qwen3-VL-Reranker); the family comes from the checkpoint's config.json and sets
the defaults, nothing else. What every scorer shares (inputs checked at the edge, the score
cache, `rerank`) is `scoring.ScorerBase`; this class adds how scores are computed: pairs encoded
exactly as the processor would, batched by length and token budget, the shared prefix computed
once, out-of-memory batches split.

The score of a pair is p("yes") from the model's next-token logits after the prompt:
softmax([logit("no"), logit("yes")])[1]. Scores are pointwise: a document's score does not
depend on which other documents share the request, their order, or the batch size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..contract import InputError, Item, PairScore, ProgressCallback, RequestContext
from ..families import DEMO_NAMES, LYCHEE, ModelFamily
from ..score_cache import DigestMemo, ScoreCache
from ..scoring import ScorerBase
from ..settings import default_of
from .cache import ImageCache
from .encoding import EncodedPair, PairEncoder
from .pipeline import PIPELINE_AHEAD, pipelined
from .precision import keep_residual_float32, residual_float32
from .runner import ModelRunner
from .scheduler import Scheduler
from .weights import (
    choose_runtime,
    default_model,
    fit_cpu_threads,
    load_model_and_processor,
    resolve_model_dir,
    split_precision,
    weights_bytes,
)

logger = logging.getLogger(__name__)


def _cut_sides(query: bool, document: bool) -> str:
    return " and ".join(side for side, cut in (("query", query), ("document", document)) if cut)


class LycheeScorer(ScorerBase):
    """A loaded yes/no reranker on a Qwen vision-language backbone (any family of families.py). Build it with
    `LycheeScorer.load(...)`; thread-safe."""

    def __init__(
        self,
        model,
        processor,
        *,
        model_name: str,
        device: str,
        max_pixels: int | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_text_tokens: int | None = None,
        reuse_prefix: bool = True,
        family: ModelFamily = LYCHEE,
        cache_size: int = 0,
        image_cache_bytes: int = 0,
        batch_across_requests: bool = True,
        max_batch_wait_ms: float = default_of("max_batch_wait_ms"),
        quantize: str | None = None,
    ):
        self.family = family
        self.quantize = quantize  # "int8", "nf4" (bitsandbytes), or None: the weights in the compute dtype
        self.model = model
        self.processor = processor
        self.model_name = model_name
        self.device = torch.device(device)
        # Across requests: scores of pairs seen before (by content), and processed images.
        self.cache = ScoreCache(cache_size)
        self.image_cache = ImageCache(image_cache_bytes, size_of=lambda encoded: encoded.nbytes)
        self.encoder = PairEncoder(
            processor,
            model.model.get_rope_index,
            min_pixels=family.min_pixels,
            max_pixels=max_pixels or family.max_pixels,
            max_text_tokens=max_text_tokens or family.max_text_tokens,
            image_cache=self.image_cache if image_cache_bytes else None,
            pixel_dtype=model.dtype,
            clip_frames_wrapped=family.clip_frames_wrapped,
        )
        tokenizer = processor.tokenizer
        self.yes_token_id = _single_token_id(tokenizer, "yes")
        self.no_token_id = _single_token_id(tokenizer, "no")
        # The model's passes, apart from this library front: forward, the shared prefixes, the score formula.
        self.runner = ModelRunner(
            model,
            self.device,
            yes_token_id=self.yes_token_id,
            no_token_id=self.no_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            reuse_prefix=reuse_prefix,
        )
        # On the CPU, a bf16 language model keeps its residual stream in float32 (engine/precision.py): the
        # multiplies stay bf16 and the scores come closer to float32's (docs/performance.md). A model quantized
        # throughout is left as it is (precision.py decides).
        if self.device.type == "cpu":
            keep_residual_float32(model)
        # The one batching policy: concurrent calls share passes (or, with batch_across_requests=False, each
        # pass holds one call's rows); images are processed one call at a time (engine/scheduler.py).
        self.scheduler = Scheduler(self.runner, max_batch_wait_ms / 1000, share_passes=batch_across_requests)
        self.load_seconds: float | None = None
        self.dtype_why: str | None = None  # set by load(): "float32: the CPU has no native bfloat16 ...", ...
        self.threads: int | None = None  # torch's CPU threads, set by load() on the CPU

    @classmethod
    def load(
        cls,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: Any = "auto",
        max_pixels: int | None = None,
        batch_size: int | None = None,
        *,
        attn_implementation: str = "auto",
        max_batch_tokens: int | None = None,
        max_text_tokens: int | None = None,
        reuse_prefix: bool = True,
        cache_size: int = 0,
        image_cache_bytes: int = 0,
        batch_across_requests: bool = True,
        max_batch_wait_ms: float = default_of("max_batch_wait_ms"),
        quantize: str | None = None,
        check_memory: bool = True,
    ) -> "LycheeScorer":
        """Load from a local folder or a ModelScope id (default: $LYCHEE_MODEL or vec-ai/lychee-rerank-mm);
        `"demo"` (or `"demo-qwen3_vl"`) is the tiny random model `lychee load --demo` serves, built offline once
        into the user's cache: it loads anywhere, and its scores mean nothing.

        The checkpoint's config.json picks the family: `qwen2_5_vl` (lychee-rerank-mm) or
        `qwen3_vl` (Qwen3-VL-Reranker-2B/8B); any other is refused, and so is a checkpoint whose
        weights do not all match the model. `device="auto"` picks CUDA, else Apple's MPS, else the
        CPU; `dtype="auto"` bf16 on CUDA (fp16 where bf16 is unsupported, and on MPS), and on the CPU bf16
        where it computes bf16 natively (AVX512-BF16, AMX, Arm BF16), else fp32 (`dtype_why` says which and
        why; on the CPU torch's threads are set to the cores the process may use, `threads`);
        `max_pixels` bounds each image (default: the family's, 1280*28*28 or 1800*32*32; smaller is
        faster); `batch_size` is the most pairs per forward pass (default 32 on CUDA, 8 on CPU);
        `reuse_prefix=False` runs the whole prompt of every pair (same scores, slower; for comparison);
        `cache_size` keeps the scores of that many pairs to answer repeats from (0: off);
        `image_cache_bytes` keeps processed images up to that size, for images ranked again (0: off);
        `batch_across_requests` lets concurrent calls share forward passes (False: one call at a time),
        waiting at most `max_batch_wait_ms` for more work when a pass is not full (0: never waits);
        `quantize="int8"` or `"nf4"` loads the language model's linear layers in 8 or 4 bits with
        bitsandbytes (`pip install -e '.[quantize]'`; the vision tower and the head stay in `dtype`); a
        model name ending in `@int8` or `@nf4` does the same, and the precision becomes part of the
        model's name (`model_name`), so its scores are never mistaken for another precision's.
        Before loading, the memory it needs is estimated and compared with what the device has free
        (engine/memory.py): `WontFitError` says what would fit (`check_memory=False` skips it).
        """
        from . import memory
        from .weights import check_quantization

        started = time.monotonic()
        name, suffix = split_precision(os.fspath(model) if model is not None else default_model())
        if name in DEMO_NAMES and not Path(name).is_dir():  # "demo": the tiny random model, built offline once
            from .random_model import demo_model_dir

            name = str(demo_model_dir(DEMO_NAMES[name]))
        if quantize and suffix and quantize != suffix:
            raise ValueError(f"the model name asks for {suffix} and quantize= for {quantize}; give one")
        quantize = quantize or suffix
        runtime = choose_runtime(device, dtype, attn_implementation)
        check_quantization(quantize, runtime)
        if check_memory:
            memory.check(name, runtime, quantize, max_batch_tokens)
        folder = resolve_model_dir(name)
        threads = fit_cpu_threads() if runtime.device == "cpu" else None
        logger.info(
            "loading %s from %s on %s (%s, %s%s%s)",
            name,
            folder,
            runtime.device,
            runtime.why,
            runtime.attn_implementation,
            f", {quantize} weights" if quantize else "",
            f", {threads} threads" if threads else "",
        )
        hf_model, processor, family = load_model_and_processor(folder, runtime, quantize)
        served = f"{name}@{quantize}" if quantize else name
        scorer = cls(
            hf_model,
            processor,
            model_name=served,
            device=runtime.device,
            max_pixels=max_pixels,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            max_text_tokens=max_text_tokens,
            reuse_prefix=reuse_prefix,
            family=family,
            cache_size=cache_size,
            image_cache_bytes=image_cache_bytes,
            batch_across_requests=batch_across_requests,
            max_batch_wait_ms=max_batch_wait_ms,
            quantize=quantize,
        )
        scorer.load_seconds = time.monotonic() - started
        why = runtime.why
        if scorer.residual_float32:
            why = why.replace(":", " with a float32 residual stream:", 1)
        scorer.dtype_why, scorer.threads = why, threads
        logger.info("%s loaded in %.1f s: weights %.2f GB", served, scorer.load_seconds, scorer.weights_bytes / 2**30)
        return scorer

    def close(self) -> None:
        """Stop the scheduler's worker thread (a later call starts it again). Done at exit for every scorer;
        call it, or use the scorer as a context manager, to end it sooner."""
        self.scheduler.close()

    def __enter__(self) -> "LycheeScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def weights_bytes(self) -> int:
        """Bytes held by the model's parameters and buffers (quantization scales included)."""
        return weights_bytes(self.model)

    @property
    def precision(self) -> str:
        """How the weights are held: "int8", "nf4", or the compute dtype ("bfloat16", "float32", ...)."""
        return self.quantize or str(self.model.dtype).replace("torch.", "")

    @property
    def residual_float32(self) -> bool:
        """Whether the language model's residual stream runs in float32 beside half-precision weights
        (engine/precision.py): on the CPU, in bf16 or fp16, unquantized."""
        return residual_float32(self.model)

    @property
    def max_pixels(self) -> int:
        return self.encoder.max_pixels

    @property
    def max_text_tokens(self) -> int:
        """Tokens a query's or document's text keeps; longer texts are cut (`PairScore.truncated`)."""
        return self.encoder.max_text_tokens

    # -- scoring, through the scheduler ---------------------------------------------------------------

    def token_offsets(self, text: str):
        """Each token's [start, end) in `text`, by the model's own tokenizer (how long texts are cut into chunks)."""
        return self.encoder.literal.plain.encode(text, add_special_tokens=False).offsets

    def check_items(self, query: Item, documents: Sequence[Item]) -> None:
        clips = (["query.video"] if query.video is not None else []) + [
            f"documents[{i}].video" for i, document in enumerate(documents) if document.video is not None
        ]
        if clips and not self.encoder.takes_video():
            from ..registry import display_name  # a folder by its last part: answers name no server path

            raise InputError(clips[0], "no_video_slot", model=display_name(self.model_name))

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
        # Texts are cut to their budget first (cheap: see encoding.truncate); the images are processed by
        # one request at a time, so that few requests hold pixel patches at once.
        cut_query, cut = self.encoder.truncate(query), [self.encoder.truncate(d) for d in documents]
        size = max(1, self.batch_size)
        if (
            self.scheduler.pipeline
            and len(cut) > 2 * size
            and sum(len(document.images) + (document.video is not None) for document in cut) >= size
        ):

            def chunk_encoder(indices: list[int], sub: RequestContext):
                return self.encoder_of(cut_query, [cut[i] for i in indices], instruction, max_pixels, sub, digest)

            results = pipelined(self.scheduler, chunk_encoder, len(cut), size, on_progress, context)
        else:
            results = self.scheduler.score(
                self.encoder_of(cut_query, cut, instruction, max_pixels, context, digest), context, on_progress
            )
        # Which side of each pair had its text cut (a TEI caller's `truncate: false` refuses them).
        return [
            dataclasses.replace(result, truncated=_cut_sides(cut_query is not query, shortened is not document))
            if cut_query is not query or shortened is not document
            else result
            for result, shortened, document in zip(results, cut, documents)
        ]

    def encoder_of(
        self,
        query: Item,
        documents: list[Item],
        instruction: str,
        max_pixels: int | None,
        context: RequestContext,
        digest: DigestMemo | None = None,
    ):
        """The encoding of a call's pairs, as a function (the scheduler runs it, one call at a time): progress
        per document through `context.on_prepared`, its Stop and deadline checked before each."""

        def encode() -> list[EncodedPair]:
            hits, misses = self.image_cache.hits, self.image_cache.misses
            prepared = iter(range(len(documents)))

            def on_document() -> None:  # before each document: Stop and the deadline, and the progress so far
                context.check()
                done = next(prepared)
                if done and context.on_prepared is not None:
                    context.on_prepared(done, len(documents))

            pairs = self.encoder.encode(query, documents, instruction, max_pixels, digest, on_document=on_document)
            if context.on_prepared is not None:
                context.on_prepared(len(documents), len(documents))
            context.stats.image_cache_hits += self.image_cache.hits - hits
            context.stats.image_cache_misses += self.image_cache.misses - misses
            return pairs

        return encode

    def score_uncached_pairs(
        self,
        pairs: list[tuple[Item, Item]],
        instruction: str,
        max_pixels: int | None,
        on_progress: ProgressCallback | None,
        context: RequestContext,
        digest: DigestMemo,
    ) -> list[PairScore]:
        """Pairs whose queries differ (an explanation's query variants): encoded one by one, scored in
        shared batches; the part of the prompt they all share is still computed once."""
        pairs = [(self.encoder.truncate(query), self.encoder.truncate(document)) for query, document in pairs]

        def encode() -> list[EncodedPair]:
            return [
                pair
                for query, document in pairs
                for pair in self.encoder.encode(query, [document], instruction, max_pixels, digest, on_document=context.check)
            ]

        return self.scheduler.score(encode, context, on_progress)

    def inspect(
        self,
        query: Item,
        document: Item,
        instruction: str,
        max_pixels: int | None,
        context: RequestContext,
        explain_tokens: int = 0,
    ) -> tuple[float, list, str | None, str | None]:
        """The pair's yes+no share of next-token probability and its likeliest next tokens; with
        `explain_tokens`, the model's own words (at most that many tokens), or why there are none. A task of the
        scheduler's, which owns the model: it runs between passes, alone."""
        from . import introspect

        query, document = self.encoder.truncate(query), self.encoder.truncate(document)

        def task() -> tuple[float, list, str | None, str | None]:
            (pair,) = self.encoder.encode(query, [document], instruction, max_pixels)
            mass, top = introspect.next_tokens(self, pair)
            if not explain_tokens:
                return mass, top, None, None
            if not introspect.can_generate(self):
                return mass, top, None, "this checkpoint has no language-model head: it cannot write"
            yes, no = self.runner.forward([pair]).tolist()[0][::-1]
            answer = "yes" if yes >= no else "no"
            question = introspect.QUESTION.format(answer=answer)
            (followup,) = self.encoder.encode(query, [document], instruction, max_pixels, followup=(answer, question))
            return mass, top, introspect.generate(self, followup, explain_tokens, context), None

        return self.scheduler.call(task, context)

    # The runner's settings, as the library has always offered them (`scorer.batch_size = 2`).
    batch_size = property(lambda self: self.runner.batch_size, lambda self, v: setattr(self.runner, "batch_size", v))
    max_batch_tokens = property(
        lambda self: self.runner.max_batch_tokens, lambda self, v: setattr(self.runner, "max_batch_tokens", v)
    )
    reuse_prefix = property(lambda self: self.runner.reuse_prefix, lambda self, v: setattr(self.runner, "reuse_prefix", v))
    lock = property(lambda self: self.runner.lock)

    @property
    def documents_in_flight(self) -> int | None:
        """The most documents whose image patches one call holds at once: a pipelined call prepares a few chunks
        of a pass each ahead of the model (engine/pipeline.py); a call too small to pipeline holds at most that
        many documents anyway. None when calls are not pipelined (every document's at once)."""
        return PIPELINE_AHEAD * max(1, self.batch_size) if self.scheduler.pipeline else None

    @property
    def waiting(self) -> int:
        """Calls waiting for the model (for /metrics): for a pass, or to encode their pairs."""
        return self.scheduler.waiting


def _single_token_id(tokenizer, word: str) -> int:
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"the tokenizer encodes {word!r} as {len(ids)} tokens; a yes/no reranker needs one")
    return ids[0]
