"""The one request path of every door: the page's handlers, the Gradio API, `/v1/*`, MCP and Evaluate.

A door translates its own shapes (a page's boxes, a JSON body, a tool's arguments) into plain values, opens one
`Request` here, and translates the answer back. The request does, once, for every door:

- its context (`contract.RequestContext`): the server's timeout, the door's Stop event, a request id, the
  caller's language and whose score cache it reads (`config.cache_scope`);
- the limits: documents per request, image URLs fetched (by the door's fetcher, on its event loop), every image
  checked and decoded under the request's `ImageRules` (pixels before decoding, decoded straight down, its
  share of the image memory pool), `max_pixels` within the model's bound;
- the work: score, rerank (`top_n` checked here), explain (its variant and text budgets), evaluate;
- the end: decoded pixels given back, telemetry recorded for each model used (the door's `Observer`), one
  access-log line with the request's status.

Torch-free: it is handed scorers (`contract.Scorer`) and knows no HTTP, no Gradio and no model code.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .calibration import DEFAULT_MISS, DEFAULT_PRECISION, Calibration, from_report, min_score_of, pair_kind
from .config import Config, Limits, cache_scope
from .contract import (
    Bands,
    InputError,
    Item,
    LycheeError,
    NullObserver,
    Observer,
    PairScore,
    Part,
    RequestContext,
    ScoringCancelledError,
)
from .explain import DEFAULT_GRID
from .inputs import read_items
from .parts import check_mode, rows
from .ranking import best_first, check_top_n
from .registry import ModelSet

logger = logging.getLogger(__name__)


def above(found: list, bands: list[Bands], order: list[int], wanted: float | str | None) -> tuple[list[int], dict]:
    """The rows of `order` at or above `wanted` (`calibration.min_score_of`: a number, or "relevant" / "partly":
    each row's `bands`, its model and modality pair's calibrated threshold or the default), and the threshold used
    by modality pair."""
    if wanted is None:
        return order, {}
    used: dict = {}
    for k in order:
        kind = bands[k].kind
        if kind not in used:
            threshold = wanted if isinstance(wanted, float) else bands[k].threshold(wanted)
            used[kind] = {"min_score": threshold, "calibrated_pairs": None if isinstance(wanted, float) else bands[k].pairs}
    kept = [k for k in order if found[k][1].score >= used[bands[k].kind]["min_score"]]
    return kept, used


@dataclass
class Ranked:
    """A rerank's answer: the results best-first (index, pair score), and when a Stop ended it early, how
    many documents it had scored (the results then rank those among themselves). With a `min_score`: how many
    rows it left out, and the threshold each modality pair used (`{"q->d": {"min_score", "calibrated_pairs"}}`).
    `bands`: the thresholds that read each result's score (`Request.bands`), in the results' order."""

    results: list[tuple[int, PairScore]]
    stopped_after: int | None = None
    total: int = 0
    filtered_out: int = 0
    thresholds: dict = field(default_factory=dict)
    bands: list[Bands] = field(default_factory=list)


@dataclass
class Request:
    """One request of a door (see the module's docstring). Made by `Service.request`."""

    service: "Service"
    context: RequestContext
    record: Any
    used: list = field(default_factory=list)

    @property
    def limits(self) -> Limits:
        return self.service.config.limits

    def model(self, name: str | None = None):
        """The served model called `name` (empty: the default); an `InputError` naming the served ones."""
        scorer = self.service.models.get(name)
        self.record.fields["model"] = self.service.models.name_of(scorer)
        return scorer

    def context_for(self, scorer) -> RequestContext:
        """This request's context for one model's calls (stats of its own, counted in telemetry at the end)."""
        if scorer not in self.used:
            self.used.append(scorer)
        return self.context.use(scorer)

    def check_count(self, count: int, field: str = "documents") -> None:
        self.limits.check_documents(count, field)
        self.record.fields["documents"] = count

    def check_max_pixels(self, scorer, max_pixels: int | None) -> None:
        """A caller's own bound on its images, for this request: within the model's."""
        if max_pixels is not None and max_pixels > scorer.max_pixels:
            raise InputError("max_pixels", "max_pixels_high", limit=scorer.max_pixels)

    async def fetch(self, values: list[tuple[str, Any]], client: str = "-") -> dict[str, bytes]:
        """The image URLs among (field, value) pairs, fetched by the door's fetcher within the request's deadline
        (an empty dict when the door has none, as the page: it takes uploads only)."""
        if self.service.fetch is None:
            return {}
        urls = [
            field
            for field, value in values
            if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))
        ]
        limit = self.limits.max_documents  # media URLs per request, counted before any is fetched
        if len(urls) > limit:
            raise InputError(urls[limit], "too_many_urls", count=len(urls), limit=limit)
        return await self.service.fetch(values, self.context, client)

    def read(
        self,
        query: Any,
        documents: Sequence[Any],
        *scorers,
        field: str = "documents",
        max_pixels: int | None = None,
        on_read: Callable[[int, int], None] | None = None,
        query_field: str = "query",
        fields: Sequence[str] | None = None,
        long_documents: str | None = None,
    ) -> tuple[Item, list[Item]]:
        """The request's query and documents as items (`read_items`), decoded down to the largest bound of the
        models that will score them (or the caller's `max_pixels`); errors name `query_field` and `field[i]`. A long
        clip keeps a frame a second for its segments unless the request's `long_documents` is "truncate"."""
        if documents:
            self.record.fields["documents"] = len(documents)
        keep = max_pixels or max(scorer.max_pixels for scorer in scorers)
        self.context.stage = "reading its images"  # a timeout now names what took the time
        # Whose patches a scorer holds at once (a pipelined request: a few chunks'); None when any scorer says not.
        in_flight = [getattr(scorer, "documents_in_flight", None) for scorer in scorers]
        at_once = None if not in_flight or None in in_flight else max(in_flight)
        try:
            return read_items(
                self.limits,
                self.context,
                query,
                documents,
                keep,
                field,
                on_read,
                query_field,
                fields,
                documents_in_flight=at_once,
                clip_segments=self.long_documents(long_documents) != "truncate",
            )
        finally:
            self.context.stage = "scoring"

    def embedder(self, name: str | None = None):
        """The served embedding model called `name` (empty: the default); an `InputError` where none is served."""
        if self.service.embedders is None:
            raise InputError("model", "no_embedding_model")
        embedder = self.service.embedders.get(name)
        self.record.fields["model"] = self.service.embedders.name_of(embedder)
        return embedder

    def embed(self, embedder, values: Sequence[Any], instruction: str | None = None, dimensions: Any = None, field="input"):
        """One unit vector per value (text, image, both, a clip: as documents are read), in order; errors name
        `field[i]`. The values are read under the request's limits, as every door's documents are."""
        if not values:
            raise InputError(field, "empty")
        embedder.check_dimensions(dimensions)
        names = [f"{field}[{i}]" for i in range(len(values))]
        self.check_count(len(values), field)
        first, rest = self.read(values[0], list(values[1:]), embedder, field=field, query_field=names[0], fields=names[1:])
        self.record.fields["documents"] = len(values)
        return embedder.embed_items([first, *rest], instruction, dimensions, context=self.context).tolist()

    def long_documents(self, value: Any = None) -> str:
        """The request's `long_documents` (`parts.py`): the caller's, checked, else the server's."""
        return check_mode(value if value not in (None, "") else self.service.config.long_documents)

    def score(
        self,
        scorer,
        query: Item,
        items: list[Item],
        instruction: str | None = None,
        *,
        max_pixels: int | None = None,
        on_progress=None,
        long_documents: str | None = None,
        chunk_tokens: int | None = None,
    ) -> list[PairScore]:
        """Each document's score (a long document's best part's, `PairScore.part`), in input order. `chunk_tokens`:
        the caller's own chunk (or truncation) length, within the server's."""
        context = self.context_for(scorer)
        pairs = scorer.score_with_logits(
            query,
            items,
            instruction,
            max_pixels=max_pixels,
            on_progress=on_progress,
            context=context,
            long_documents=self.long_documents(long_documents),
            chunk_tokens=min((x for x in (chunk_tokens, self.service.config.chunk_tokens) if x), default=None),
            max_parts=self.limits.max_parts,
        )
        if context.stats.split:
            self.record.fields.update(split=context.stats.split, parts=context.stats.parts)
        return pairs

    def rerank(
        self,
        scorer,
        query: Item,
        items: list[Item],
        instruction: str | None = None,
        top_n: Any = None,
        *,
        max_pixels: int | None = None,
        on_progress=None,
        partial: bool = False,
        long_documents: str | None = None,
        chunk_tokens: int | None = None,
        min_score: Any = None,
    ) -> Ranked:
        """The documents best-first, the best `top_n` (0 or None: all); with `long_documents="split"` one row a
        part of a long document (several rows may share an index). With `partial`, a Stop hands back the documents
        scored before it, ranked among themselves (the page shows them); else it raises."""
        top_n = check_top_n(top_n)
        mode = self.long_documents(long_documents)
        wanted = min_score_of(min_score)  # checked before any scoring
        try:
            pairs = self.score(
                scorer,
                query,
                items,
                instruction,
                max_pixels=max_pixels,
                on_progress=on_progress,
                long_documents=mode,
                chunk_tokens=chunk_tokens,
            )
        except ScoringCancelledError as error:
            scored = {i: pair for i, pair in enumerate(error.partial or []) if pair is not None}
            if not partial or not scored:
                raise
            found = [(i, part) for i in sorted(scored) for _, part in rows([scored[i]], mode)]
            order = best_first([pair.score for _, pair in found])[:top_n]
            results = [found[k] for k in order]
            return Ranked(results, len(scored), len(items), bands=self.bands_of(scorer, query, items, results))
        found = rows(pairs, mode)
        order = best_first([pair.score for _, pair in found])
        bands = self.bands_of(scorer, query, items, found)  # each row's, once: the filter and the answer read them
        kept, thresholds = above(found, bands, order, wanted)
        return Ranked(
            [found[k] for k in kept[:top_n]],
            total=len(items),
            filtered_out=len(order) - len(kept),
            thresholds=thresholds,
            bands=[bands[k] for k in kept[:top_n]],
        )

    def bands(self, scorer, query: Item, item: Item, part: Part | None = None) -> Bands:
        """The thresholds that read `scorer`'s score of `item` (its `part`) for `query`: the calibrated ones of the
        model and modality pair where `--calibration` has them, else the defaults (`contract.Bands`)."""
        return self.service.calibration.bands(self.service.models.name_of(scorer), pair_kind(query, item, part))

    def bands_of(self, scorer, query: Item, items: list[Item], results: list[tuple[int, PairScore]]) -> list[Bands]:
        """`bands` of each (index, pair) of `results`."""
        return [self.bands(scorer, query, items[index], pair.part) for index, pair in results]

    def explain(
        self,
        scorer,
        query: Item,
        document: Item,
        instruction: str | None = None,
        *,
        grid: Any = DEFAULT_GRID,
        explanation: bool = False,
    ):
        """Why `document` scored what it did (`explain.Explanation`), within the server's explanation budgets."""
        return scorer.explain(
            query,
            document,
            instruction,
            grid=DEFAULT_GRID if grid is None else grid,
            explanation=bool(explanation),
            context=self.context_for(scorer),
            max_variants=self.limits.max_explain_variants,
            max_text_chars=self.limits.max_explain_text_chars,
            max_parts=self.limits.max_parts,
        )

    def evaluate(
        self,
        scorers: dict,
        queries,
        ks,
        *,
        instruction: str | None = None,
        skip_bad: bool = False,
        skipped=None,
        on_progress=None,
        limits: Limits | None = None,
    ) -> dict:
        """A labelled set scored by each model (`evaluation.evaluate`): each line one request of its own under
        `limits` (the server's; the command line's own file: none on the number of documents)."""
        from .evaluation import evaluate

        for scorer in scorers.values():
            self.context_for(scorer)
        return evaluate(
            scorers,
            queries,
            ks,
            instruction=instruction,
            skip_bad=skip_bad,
            skipped=skipped,
            on_progress=on_progress,
            limits=limits or self.limits,
            context=self.context,
            read=read_items,
        )


class Service:
    """The request path over the served models, the doors' shared settings and an observer (telemetry).

    `fetch(values, context, client)`: the door's image-URL fetcher (serving's, for /v1/* and MCP); None where a
    door takes no URLs."""

    def __init__(
        self,
        models,
        config: Config = Config(),
        observer: Observer | None = None,
        fetch: Callable | None = None,
        embedders=None,
        collections: Callable | None = None,
    ):
        self.models = ModelSet.of(models)
        self.embedders = ModelSet.of(embedders) if embedders else None  # --embedding-model: the first stage
        self._collections, self._store, self._store_lock = collections, None, threading.Lock()
        self.config = config
        self.observer = observer or NullObserver()
        self.fetch = fetch
        # --calibration: thresholds by model and modality pair; a file for a model not served is refused here.
        self.calibration = Calibration.load(config.calibration) if config.calibration else Calibration()
        served = {name: getattr(scorer, "precision", None) for name, scorer in zip(self.models.names, self.models.scorers)}
        for warning in self.calibration.check(served):
            logger.warning(warning)

    def collections(self):
        """The collections (`search.store.Store`), opened on first use; an `InputError` where none are served."""
        if self._collections is None or self.embedders is None:
            raise InputError("collection", "no_collections")
        with self._store_lock:
            if self._store is None:
                self._store = self._collections()
            return self._store

    def close(self) -> None:
        """Give back what the service opened (the collections' store: one process holds it at a time)."""
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def calibrate(self, report: dict, precision: float = DEFAULT_PRECISION, miss: float = DEFAULT_MISS) -> dict:
        """The calibration file of an evaluation report of the served models (`lychee eval --calibrate`, the
        Evaluate tab's download): each model named as the API reports it, with its checkpoint and precision."""
        details = {
            name: {"model": report["models"][name]["model"], "precision": getattr(scorer, "precision", None)}
            for name, scorer in zip(self.models.names, self.models.scorers)
            if name in report["models"]
        }
        return from_report(report, precision=precision, miss=miss, details=details)

    @contextlib.contextmanager
    def request(
        self,
        endpoint: str,
        *,
        record: Any = None,
        request_id: str | None = None,
        cancel=None,
        language: str = "en",
        identity: str = "",
    ) -> Iterator[Request]:
        """One request: yields a `Request`. On the way out its images are given back, each model's work counted,
        and one access-log line written with its status (an error's own: 400, 413, 499, 504 ...). `record`: the
        door's own record when it made one (the JSON API's middleware does, for its request id)."""
        with contextlib.ExitStack() as stack:
            if record is None:
                record = stack.enter_context(self.observer.request(endpoint, request_id))
            context = RequestContext(
                timeout=self.config.request_timeout,
                cancel=cancel,
                request_id=record.request_id,
                language=language,
                cache_scope=cache_scope(self.config, identity),
            )
            request = Request(self, context, record)
            try:
                yield request
            except LycheeError as error:  # ours: its own status (a page's mistake a 4xx too)
                record.status = error.status
                raise
            finally:
                context.close()
                stats = []
                for scorer, used in context.calls:
                    name = self.models.name_of(scorer)
                    self.observer.scored(name, used.stats)
                    stats.append(used.stats)
                if stats:
                    record.fields.update(
                        model=",".join(self.models.name_of(s) for s, _ in context.calls),
                        tokens=sum(s.tokens for s in stats),
                        cached=sum(s.cached for s in stats),
                        scored=sum(s.scored for s in stats),
                    )
