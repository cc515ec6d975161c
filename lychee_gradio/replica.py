"""A model replica on Ray Serve: the engine wired into a Serve deployment (`serving.cluster` runs it).

Like the CLI, this module is where the engine meets the serving side: the Ray front end
(`serving.cluster.RayScorer`) sends chunks of pairs here and knows no model code.
"""

from __future__ import annotations

import os

from .contract import PairScore, RequestContext, ScoreStats


class ScorerReplica:
    """One Serve replica: a `LycheeScorer` of its own, with torch threads matching its CPU share."""

    def __init__(self, model: str, load_options: dict, threads: int | None = None):
        import torch

        from .engine.scorer import LycheeScorer

        if threads:
            torch.set_num_threads(threads)
        # The score cache sits in front of the replicas (RayScorer), where every request passes.
        self.scorer = LycheeScorer.load(model, **{**load_options, "cache_size": 0})
        self.pairs = 0

    def describe(self) -> dict:
        scorer = self.scorer
        return {"model_name": scorer.model_name, "model_type": scorer.family.model_type,
                "max_pixels": scorer.max_pixels, "pid": os.getpid(), "load_seconds": scorer.load_seconds}

    def inspect(self, query, document, instruction, max_pixels, explain_tokens: int = 0,
                timeout: float | None = None) -> tuple:
        """The pair's next-token view and, asked for, the model's own words (`ScorerBase._inspect`)."""
        return self.scorer._inspect(query, document, instruction, max_pixels, RequestContext(timeout=timeout),
                                    explain_tokens)

    def score_with_logits(self, query, documents, instruction, max_pixels,
                          timeout: float | None = None) -> tuple[int, list[PairScore], ScoreStats]:
        context = RequestContext(timeout=timeout)
        scores = self.scorer.score_with_logits(query, documents, instruction, max_pixels=max_pixels, context=context)
        self.pairs += len(scores)
        return os.getpid(), scores, context.stats
