"""A job: one call's encoded pairs in the scheduler's queue (`scheduler.py`); a task: other work on the model (a pair's
introspection) that the worker runs between passes; and what the scheduler's runner is."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..contract import PairScore, RequestContext
from .encoding import EncodedPair


class Runner(Protocol):
    """What the scheduler needs of a model (runner.ModelRunner is one): public, and nothing else."""

    lock: threading.Lock  # held for each pass
    batch_size: int  # rows per pass, at most
    max_batch_tokens: int  # padded tokens per pass, at most (rows x longest row, prefix included)
    reuse_prefix: bool

    def encode_prefixes(self, groups: list[list[EncodedPair]]) -> list[Any]: ...

    def forward(self, batch: list[EncodedPair], prefix: Any = None) -> Any: ...  # (rows, 2) (no, yes) logits

    def is_out_of_memory(self, error: BaseException) -> bool: ...

    def release_memory(self) -> None: ...


@dataclass(eq=False)
class Job:
    """One request's pairs in the queue."""

    pairs: list[EncodedPair]
    context: RequestContext
    pending: list[int]  # pairs not run yet, longest first
    results: list[PairScore | None]
    arrived: float = field(default_factory=time.monotonic)
    prefix_length: int = 0  # tokens its pairs share (computed once, then skipped by every row)
    prefix: object = None  # its SharedPrefix, once computed (None: none, or not yet)
    prefix_ready: bool = False
    done: int = 0
    started: float | None = None  # when its first pass began
    error: BaseException | None = None
    gone: bool = False  # stopped or timed out: its pending rows were dropped
    in_pass: bool = False  # rows of it are in the pass running now
    finished: threading.Event = field(default_factory=threading.Event)
    progress: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # `done` after each of its passes


@dataclass(eq=False)
class Task:
    """Work on the model that is not a pass of pairs (a pair's introspection: its next tokens, its own words): the
    worker runs it between passes, alone, holding the runner's lock (`Scheduler.call`)."""

    run: Callable[[], Any]
    context: RequestContext
    result: Any = None
    error: BaseException | None = None
    started: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
