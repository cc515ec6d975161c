"""Evaluation: what reranking gains over the first-stage order on a labelled set (`lychee eval`, the Evaluate tab).

`data.py` reads the set (one query per line of JSONL, image paths kept inside the data's folder),
`run.py` scores it with one model or several and writes one report shape and one table,
`metrics.py` holds NDCG, MRR, Recall and Hit at k. Torch-free: it is handed scorers.
"""

from .data import BadLine, EvalQuery, load_queries, parse_ks, parse_line
from .run import DEFAULT_KS, evaluate, metric_keys, report_table

__all__ = [
    "BadLine",
    "EvalQuery",
    "load_queries",
    "parse_ks",
    "parse_line",
    "DEFAULT_KS",
    "evaluate",
    "metric_keys",
    "report_table",
]
