"""The contract every layer shares, with no torch in it.

What a caller gives (`Item`), what a scorer answers (`PairScore`, `RerankResult`, `ScoreStats`),
how one request travels (`RequestContext`), and what a scorer is (the `Scorer` protocol). The engine
implements `Scorer`; the HTTP layer, MCP, the page and the Ray front end are handed scorers and know only
the core. What can go wrong is `errors.py` (re-exported here).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from PIL import Image

from .errors import (  # noqa: F401 - the errors, re-exported: every layer reads them here too
    ERRORS,
    ImagesBusyError,
    InputError,
    LycheeError,
    ScorerBusyError,
    ScoringCancelledError,
    ScoringOutOfMemoryError,
    ScoringTimeoutError,
    WordedError,
    is_callers,
    is_expected,
    status_of,
)

ProgressCallback = Callable[[int, int], None]


# -- what a caller gives, what a scorer answers -------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    """A clip as the model sees it (`video.load_video`): the sampled frames (RGB), each one's time in the clip
    (seconds) and its index among the clip's frames, the clip's frame rate and duration."""

    frames: tuple = field(repr=False)
    timestamps: tuple = ()
    indices: tuple = ()
    fps: float = 0.0
    duration: float = 0.0


@dataclass(frozen=True)
class Pages:
    """A PDF as the model sees it (`inputs.pdf.read_pdf`): each page rendered (RGB), its 1-based number, and its
    text layer where the server takes it (`--pdf-text`; else empty)."""

    images: tuple = field(repr=False)
    numbers: tuple = ()
    texts: tuple = ()
    count: int = 0  # the PDF's pages


@dataclass(frozen=True)
class Part:
    """Which part of a long or many-part document a score is for (docs/design.md, "Long documents"): a PDF's
    page, a long text's chunk or a long clip's segment; `index` counts from 0 among the document's `count` parts.
    `page` is 1-based; `chars` is [start, end) into the document's text; `seconds` is [start, end) of the clip."""

    kind: str  # "page" | "chunk" | "segment"
    index: int
    count: int
    page: int | None = None
    chars: tuple[int, int] | None = None
    seconds: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        """The part as the JSON doors answer it."""
        answer: dict = {"kind": self.kind, "index": self.index, "count": self.count}
        if self.page is not None:
            answer["page"] = self.page
        if self.chars is not None:
            answer["chars"] = list(self.chars)
        if self.seconds is not None:
            answer["seconds"] = [round(self.seconds[0], 3), round(self.seconds[1], 3)]
        return answer


@dataclass(frozen=True)
class Item:
    """One query or document: text, RGB images (any number, in the caller's order), a video, or several of
    these (never none).

    `images` holds them all; `image` is the first (None without one), so `Item(text, image=x)` is the one-image
    item it always was. Give `images` for several; the two must agree when both are given."""

    text: str | None = None
    image: Image.Image | None = None
    images: tuple = ()
    video: Video | None = None  # at most one; in a document (after its images, before its text)
    pages: Pages | None = None  # a PDF: each page becomes a part of its own before scoring (`parts.py`)

    def __post_init__(self):
        if self.images:
            images = tuple(self.images)
            if self.image is not None and self.image is not images[0]:
                raise ValueError("Item: image is the first of images; give one of them")
            object.__setattr__(self, "images", images)
            object.__setattr__(self, "image", images[0])
        elif self.image is not None:
            object.__setattr__(self, "images", (self.image,))


@dataclass(frozen=True)
class PairScore:
    """The score of one pair, the two logits it comes from, the prompt's length in tokens, and which text was
    cut to the model's text budget (`truncated`: "query", "document", "query and document"; "" for none)."""

    score: float
    yes_logit: float
    no_logit: float
    tokens: int = 0
    truncated: str = ""
    part: Part | None = None  # which part of a long document this is the score of (None: the whole document)
    parts: tuple = ()  # a split document's best part: every part's `PairScore`, in the document's order


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
    part: Part | None = None  # the best part of a long document (`long_documents="split"`: this row's own part)


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
    # Forward passes this call reports (each pass once, by one of the calls in it): (pairs, tokens, calls)
    passes: list[tuple[int, int, int]] = field(default_factory=list)
    queue_seconds: float = 0.0  # waiting for its first forward pass
    chunks_in_flight: int = 0  # a call of many images in a pipeline: the most chunks prepared at once
    replicas: list = field(default_factory=list)  # on Ray: the replica processes (pids) that scored its chunks
    split: int = 0  # long documents scored as parts (pages, chunks)
    parts: int = 0  # the parts of those documents, scored as documents of their own

    def add(self, other: "ScoreStats") -> None:
        for name in (
            "pairs",
            "cached",
            "scored",
            "tokens",
            "tokens_scored",
            "oom_retries",
            "image_cache_hits",
            "image_cache_misses",
            "queue_seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.batches.extend(other.batches)
        self.passes.extend(other.passes)
        self.replicas.extend(other.replicas)
        self.chunks_in_flight = max(self.chunks_in_flight, other.chunks_in_flight)


# Reading a score (docs/design.md, "Reading a score"): the one place the default thresholds are written.
VERDICTS = {"green": "highly relevant", "yellow": "partly relevant", "red": "not relevant"}


@dataclass(frozen=True)
class Bands:
    """The two thresholds that read a score: at or above `show_first` green ("highly relevant": show it first),
    below `filter_below` red ("not relevant": safe to filter out), yellow between. The defaults come from one model's
    tutorial; a calibration file (`lychee eval --calibrate`) gives each model and modality pair its own, fitted on
    `pairs` labelled pairs (None: the defaults), for the modality pair `kind` ("text->image": calibration.pair_kind).
    """

    show_first: float = 0.7
    filter_below: float = 0.4
    pairs: int | None = None
    kind: str = ""

    def colour(self, score: float) -> str:
        return "green" if score >= self.show_first else "yellow" if score >= self.filter_below else "red"

    def threshold(self, band: str) -> float:
        """The score `band` asks for: "relevant" (show it first) or "partly" (not safe to filter out)."""
        return self.show_first if band == "relevant" else self.filter_below

    def reading(self, score: float) -> dict[str, Any]:
        """The English verdict and colour of a score, as the JSON answers carry them (with the labelled pairs
        behind the thresholds where they are calibrated)."""
        colour = self.colour(score)
        return {"verdict": VERDICTS[colour], "colour": colour, **({"calibrated_pairs": self.pairs} if self.pairs else {})}

    def as_dict(self) -> dict[str, Any]:
        return {"show_first": self.show_first, "filter_below": self.filter_below, "calibrated_pairs": self.pairs}


DEFAULT_BANDS = Bands()


# -- one request's context ----------------------------------------------------------------------------------


@dataclass
class RequestContext:
    """What travels with one request to the scorer: its deadline, its Stop event, its stats, its id, its language.

    Every door makes one per request and passes it to the scorer call (`context=`); the scorer checks
    `check()` between batches (and while it waits for the model) and fills in `stats`. `timeout` is
    in seconds from when the context was made; `deadline` (a `time.monotonic()` time) may be given
    instead, for a run of several calls that shares one deadline.
    """

    timeout: float | None = None
    cancel: threading.Event | None = None
    stats: ScoreStats = field(default_factory=ScoreStats)
    request_id: str | None = None
    language: str = "en"
    deadline: float | None = None
    calls: list = field(default_factory=list)  # (scorer, its context) for each scorer `use`d in this request
    closers: list = field(default_factory=list)  # what to give back when the request ends (`on_close`)
    # Called (documents prepared so far, documents to prepare) as the engine decodes, resizes and patches a
    # call's documents before scoring them: for a progress bar that moves during that work too.
    on_prepared: Callable[[int, int], None] | None = None
    # Whose score cache this request reads and fills: "" everyone's (a library's own process), a caller's
    # identity (its API key, its page session) so that no caller learns from answer times what another
    # asked, or None: no cache at all (`config.Config.cache_scope`).
    cache_scope: str | None = ""
    # What the request is doing, for a timeout's words: "reading its images" while the service decodes them,
    # else "scoring" (waiting for the model included).
    stage: str = "scoring"

    def __post_init__(self):
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.deadline is None and self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def use(self, scorer: Any) -> "RequestContext":
        """The context for one scorer's calls within this request (Compare and Evaluate use several): the
        same deadline, Stop event, id and language, stats of its own; remembered in `calls`."""
        for used, context in self.calls:
            if used is scorer:
                return context
        context = RequestContext(
            timeout=self.timeout,
            cancel=self.cancel,
            request_id=self.request_id,
            language=self.language,
            deadline=self.deadline,
            on_prepared=self.on_prepared,
            cache_scope=self.cache_scope,
        )
        self.calls.append((scorer, context))
        return context

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the request ends (`close`): e.g. give its decoded pixels back to the pool."""
        self.closers.append(callback)

    def close(self) -> None:
        """The request ended (the door that made the context calls this, answered or not)."""
        while self.closers:
            self.closers.pop()()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise if the request was stopped or is past its deadline (called between batches)."""
        if self.cancel is not None and self.cancel.is_set():
            raise ScoringCancelledError()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            allowed = self.timeout if self.timeout is not None else 0
            raise ScoringTimeoutError(allowed, self.stage)

    def __call__(self) -> None:
        self.check()


# -- what a scorer is -------------------------------------------------------------------------------------


@runtime_checkable
class Scorer(Protocol):
    """What every door needs of a scorer: the local engine (`engine.scorer.LycheeScorer`) and the Ray front end
    (`serving.cluster.RayScorer`) both are one."""

    model_name: str
    max_pixels: int
    family: Any  # families.ModelFamily

    def score(
        self,
        query: Any,
        documents: Sequence[Any],
        instruction: str | None = None,
        *,
        max_pixels: int | None = None,
        on_progress: ProgressCallback | None = None,
        context: RequestContext | None = None,
    ) -> list[float]: ...

    def score_with_logits(
        self,
        query: Any,
        documents: Sequence[Any],
        instruction: str | None = None,
        *,
        max_pixels: int | None = None,
        on_progress: ProgressCallback | None = None,
        context: RequestContext | None = None,
    ) -> list[PairScore]: ...

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
    ) -> list[RerankResult]: ...


class Observer(Protocol):
    """Where a door reports each request (serving/telemetry.py implements it; the page is handed one)."""

    def request(self, endpoint: str, request_id: str | None = None) -> Any:
        """A context manager for one request, with `.request_id`, `.status` and `.fields` to fill in."""

    def scored(self, model: str, stats: ScoreStats) -> None:
        """Count what one scoring call did."""


class _NullRecord:
    def __init__(self, endpoint: str, request_id: str | None = None):
        self.endpoint, self.request_id, self.status, self.fields = endpoint, request_id or "-", 200, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class NullObserver:
    """An observer that records nothing (a page built without the server's telemetry)."""

    def request(self, endpoint: str, request_id: str | None = None) -> _NullRecord:
        return _NullRecord(endpoint, request_id)

    def scored(self, model: str, stats: ScoreStats) -> None:
        return None
