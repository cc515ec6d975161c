"""A model replica on Ray Serve: the engine wired into a Serve deployment (`serving.cluster` runs it).

Like the CLI, this module is where the engine meets the serving side: the Ray front end
(`serving.cluster.RayScorer`) sends chunks of pairs here and knows no model code.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .contract import PairScore, RequestContext, ScoreStats
from .serving.cluster import REPLICA_CONCURRENCY


class ScorerReplica:
    """One Serve replica: a `LycheeScorer` of its own, with torch threads matching its CPU share.

    Ray Serve hands it up to `REPLICA_CONCURRENCY` calls at once (one when batching across requests is
    off); each runs on a thread of its own and the scorer's scheduler lets them share forward passes.
    A call Ray Serve cancels (the request was stopped or failed elsewhere) stops its work here too.
    """

    def __init__(self, model: str, load_options: dict, threads: int | None = None):
        from .engine.scorer import LycheeScorer
        from .engine.weights import fit_cpu_threads, split_precision

        if threads:
            fit_cpu_threads(threads)  # this replica's share of the node's cores (load() keeps it)
        options = {**load_options, "cache_size": 0}  # the score cache sits in front of the replicas (RayScorer)
        if split_precision(model)[1]:
            options["quantize"] = None  # the name's own @int8/@nf4 counts for it, not --quantize
        self.scorer = LycheeScorer.load(model, **options)
        self.pairs = 0
        self._threads = ThreadPoolExecutor(REPLICA_CONCURRENCY, thread_name_prefix="lychee-replica")

    async def _call(self, work, context: RequestContext):
        """Run `work(context)` on a thread of this replica; Ray Serve cancelling the call stops it."""
        context.cancel = context.cancel or threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work, context)
        except asyncio.CancelledError:
            context.cancel.set()
            raise

    def describe(self) -> dict:
        scorer = self.scorer
        return {
            "model_name": scorer.model_name,
            "model_type": scorer.family.model_type,
            "max_pixels": scorer.max_pixels,
            "pid": os.getpid(),
            "load_seconds": scorer.load_seconds,
            "weights_bytes": scorer.weights_bytes,
            "precision": scorer.precision,
            "dtype_why": scorer.dtype_why,
            "threads": scorer.threads,
            "max_text_tokens": scorer.max_text_tokens,
            # The plain tokenizer (JSON), so that the front end cuts long texts into the chunks a local scorer cuts.
            "tokenizer": scorer.encoder.literal.plain.to_str(),
        }

    async def inspect(
        self, query, document, instruction, max_pixels, explain_tokens: int = 0, timeout: float | None = None
    ) -> tuple:
        """The pair's next-token view and, asked for, the model's own words (`ScorerBase._inspect`)."""
        return await self._call(
            lambda context: self.scorer.inspect(query, document, instruction, max_pixels, context, explain_tokens),
            RequestContext(timeout=timeout),
        )

    async def score_with_logits(
        self, query, documents, instruction, max_pixels, timeout: float | None = None
    ) -> tuple[int, list[PairScore], ScoreStats]:
        def work(context: RequestContext) -> list[PairScore]:
            return self.scorer.score_with_logits(query, documents, instruction, max_pixels=max_pixels, context=context)

        context = RequestContext(timeout=timeout)
        scores = await self._call(work, context)
        self.pairs += len(scores)
        return os.getpid(), scores, context.stats
