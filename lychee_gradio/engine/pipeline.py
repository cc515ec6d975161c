"""Many image documents in one call, in a pipeline: a chunk of a pass's size is prepared (resized, cut into
patches, in the encoder's pool of threads) while the model runs the chunks before it, instead of every photo
first. `LycheeScorer.score_uncached` sends a call here when it has more than two passes of documents and at
least a pass of images; each chunk is one call of the scheduler's (`Scheduler.score`).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from ..contract import PairScore, ProgressCallback, RequestContext, ScoringCancelledError, ScoringTimeoutError

# Chunks of a pipelined call in flight at once: one in the model, one ready, one being prepared.
PIPELINE_AHEAD = 3


def pipelined(
    scheduler,
    chunk_encoder: Callable[[list[int], RequestContext], Callable],
    count: int,
    size: int,
    on_progress: ProgressCallback | None,
    context: RequestContext,
) -> list[PairScore]:
    """A call of `count` documents, many of them images, in chunks of `size` (a pass) each: a chunk's images
    are prepared (`chunk_encoder(indices, its context)` gives its encoding) while the model runs the chunks
    before it, instead of all of them first. At most `PIPELINE_AHEAD` chunks are prepared and not yet scored
    (memory stays bounded however many photos come). Each chunk is a call of the scheduler's (its passes may
    hold other requests' rows too, each row behind its own chunk's prefix); the results come back in input
    order. Progress, Stop and the deadline are the call's: told and checked on the caller's thread; a Stop
    hands up the scores of every chunk scored so far (`partial`). `context.stats.chunks_in_flight`: the most
    chunks in flight at once."""
    chunks = [list(range(start, min(start + size, count))) for start in range(0, count, size)]
    halt = threading.Event()  # the call's Stop, its deadline or a chunk's error: every chunk stops
    events: queue.SimpleQueue = queue.SimpleQueue()
    room = threading.Semaphore(PIPELINE_AHEAD)
    scored, prepared = [0] * len(chunks), [0] * len(chunks)
    outcome: dict[int, object] = {}
    subcontexts = [
        RequestContext(cancel=halt, deadline=context.deadline, request_id=context.request_id, language=context.language)
        for _ in chunks
    ]
    running: set[int] = set()
    peak = 0

    def run(k: int) -> None:
        sub = subcontexts[k]
        sub.on_prepared = lambda done, total: events.put(("prepared", k, done))
        try:
            found = scheduler.score(chunk_encoder(chunks[k], sub), sub, lambda done, total: events.put(("scored", k, done)))
            events.put(("done", k, found))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there
            events.put(("failed", k, error))

    def handle(event) -> None:
        kind, k, value = event
        if kind == "prepared":
            prepared[k] = value
            if context.on_prepared is not None:
                context.on_prepared(sum(prepared), count)
        elif kind == "scored":
            scored[k] = value
            if on_progress is not None:
                on_progress(sum(scored), count)
        else:
            outcome[k] = value
            running.discard(k)
            room.release()
            if kind == "failed":
                halt.set()

    def wait_for_event(block_until) -> None:
        """Handle events until `block_until()`; the call's Stop and deadline stop every chunk."""
        while not block_until():
            try:
                handle(events.get(timeout=0.05))
            except queue.Empty:
                pass
            if not halt.is_set():
                try:
                    context.check()
                except (ScoringCancelledError, ScoringTimeoutError):
                    halt.set()

    started: list[threading.Thread] = []
    for k in range(len(chunks)):
        wait_for_event(lambda: halt.is_set() or room.acquire(blocking=False))
        if halt.is_set():
            break
        running.add(k)
        peak = max(peak, len(running))
        thread = threading.Thread(target=run, args=(k,), name="lychee-pipeline", daemon=True)
        thread.start()
        started.append(thread)
    wait_for_event(lambda: len(outcome) == len(started))
    for thread in started:  # each has handed in its outcome; none may outlive the call (see Scheduler)
        thread.join()
    for sub in subcontexts:
        context.stats.add(sub.stats)
    context.stats.chunks_in_flight = max(context.stats.chunks_in_flight, peak)
    results: list[PairScore | None] = [None] * count
    for k, found in outcome.items():
        if isinstance(found, list):
            for i, pair in zip(chunks[k], found):
                results[i] = pair
    failures = [found for found in outcome.values() if isinstance(found, BaseException)]
    if halt.is_set() or failures:
        try:
            context.check()  # the call's own Stop or deadline first: with what was scored
        except (ScoringCancelledError, ScoringTimeoutError) as error:
            for k, found in outcome.items():
                if isinstance(found, (ScoringCancelledError, ScoringTimeoutError)) and found.partial:
                    for i, pair in zip(chunks[k], found.partial):
                        results[i] = results[i] or pair
            error.partial = results
            raise error from None
        real = [found for found in failures if not isinstance(found, (ScoringCancelledError, ScoringTimeoutError))]
        raise (real or failures)[0]
    return results  # type: ignore[return-value]
