"""Ranking metrics at a cutoff k: NDCG, MRR, Recall and Hit, for graded or binary relevance.

`ranking` is a list of document indices, best first; `labels[i]` is document i's relevance grade
(0 = not relevant; binary data uses 0/1). Conventions, the common ones (trec_eval, scikit-learn):
- NDCG uses linear gain, rel / log2(rank + 1), normalised by the ideal ordering of the labels.
- A document counts as relevant for MRR, Recall and Hit when its grade is above 0.
- A query with no relevant document scores 0 on every metric (and still counts in averages).
"""

from __future__ import annotations

import math
from typing import Sequence

METRICS = ("ndcg", "mrr", "recall", "hit")


def dcg_at_k(grades: Sequence[float], k: int) -> float:
    return sum(grade / math.log2(rank + 2) for rank, grade in enumerate(grades[:k]))


def ndcg_at_k(ranking: Sequence[int], labels: Sequence[float], k: int) -> float:
    ideal = dcg_at_k(sorted(labels, reverse=True), k)
    if ideal == 0:
        return 0.0
    return dcg_at_k([labels[i] for i in ranking], k) / ideal


def mrr_at_k(ranking: Sequence[int], labels: Sequence[float], k: int) -> float:
    for rank, index in enumerate(ranking[:k], start=1):
        if labels[index] > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Sequence[int], labels: Sequence[float], k: int) -> float:
    relevant = sum(1 for grade in labels if grade > 0)
    if relevant == 0:
        return 0.0
    return sum(1 for index in ranking[:k] if labels[index] > 0) / relevant


def hit_at_k(ranking: Sequence[int], labels: Sequence[float], k: int) -> float:
    return 1.0 if any(labels[index] > 0 for index in ranking[:k]) else 0.0


_FUNCTIONS = {"ndcg": ndcg_at_k, "mrr": mrr_at_k, "recall": recall_at_k, "hit": hit_at_k}


def query_metrics(ranking: Sequence[int], labels: Sequence[float], ks: Sequence[int]) -> dict[str, float]:
    """Every metric at every cutoff, keyed like "ndcg@10"."""
    return {f"{name}@{k}": _FUNCTIONS[name](ranking, labels, k) for name in METRICS for k in ks}


def mean_metrics(per_query: Sequence[dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {}
    return {key: sum(metrics[key] for metrics in per_query) / len(per_query) for key in per_query[0]}


# -- agreement between two rankings of the same documents (the Compare view) ---------------------------


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Kendall's tau-b between two score lists of the same documents (ties handled as scipy does).

    1 means the same order, -1 the reverse; None when it is undefined (fewer than two documents,
    or every score of one list equal).
    """
    if len(first) != len(second):
        raise ValueError("kendall_tau: both lists must score the same documents")
    concordant_minus_discordant = tied_first = tied_second = pairs = 0
    for i in range(len(first)):
        for j in range(i + 1, len(first)):
            a = (first[i] > first[j]) - (first[i] < first[j])
            b = (second[i] > second[j]) - (second[i] < second[j])
            pairs += 1
            tied_first += a == 0
            tied_second += b == 0
            concordant_minus_discordant += a * b
    denominator = math.sqrt((pairs - tied_first) * (pairs - tied_second))
    return concordant_minus_discordant / denominator if denominator else None


def top_k_overlap(first: Sequence[int], second: Sequence[int], k: int) -> float:
    """The share of the top k of one ranking (indices, best first) that is also in the other's top k."""
    k = min(k, len(first), len(second))
    return len(set(first[:k]) & set(second[:k])) / k if k else 0.0
