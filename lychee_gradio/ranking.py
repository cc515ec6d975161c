"""Best-first ordering and `top_n`, written once for the scorer, the page, the REST API and eval."""

from __future__ import annotations

import math
from typing import Any, Sequence

from .contract import InputError


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; equal scores keep their input order, so runs are reproducible."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def check_top_n(top_n: Any, field: str = "top_n") -> int | None:
    """`None`, empty or 0 mean all; otherwise a positive whole number (a whole float such as 3.0 is fine).

    Anything else, 2.5 or -1 or "3", is an `InputError` (a `ValueError`) naming the field, never silently rounded.
    """
    if top_n is None or top_n == "":
        return None
    whole = (
        isinstance(top_n, (int, float))
        and not isinstance(top_n, bool)
        and math.isfinite(top_n)
        and top_n == int(top_n)
        and top_n >= 0
    )
    if not whole:
        raise InputError(field, "top_n", value=repr(top_n))
    return int(top_n) or None
