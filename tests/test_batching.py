"""Batching across requests: concurrent requests share forward passes and each still gets exactly its own scores."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import torch
from prometheus_client import generate_latest

from lychee_gradio import LycheeScorer
from lychee_gradio.cli import _load_options, build_parser
from lychee_gradio.contract import RequestContext, ScoringCancelledError, ScoringTimeoutError
from lychee_gradio.serving import telemetry

from .conftest import CUPS


def fresh(scorer, **options) -> LycheeScorer:
    """A scorer of its own (own scheduler, caches, batch memory) over the session's tiny model."""
    return LycheeScorer(
        scorer.model,
        scorer.processor,
        model_name=options.pop("model_name", scorer.model_name),
        device="cpu",
        family=scorer.family,
        **options,
    )


class Passes:
    """Watches a scorer's forward passes: the prompt text of every row (prefix passes included); can hold the
    first pass until a number of requests are queued, or call a hook before each pass."""

    def __init__(self, scorer, hold_until_queued: int = 0, before=None):
        self.scorer = scorer
        self.rows: list[list[str]] = []  # per pass, each row's prompt text
        self.hold_until_queued = hold_until_queued
        self.before = before
        self.lock = threading.Lock()

    def _seen(self, texts: list[str]) -> None:
        with self.lock:
            first = not self.rows
            self.rows.append(texts)
        if first and self.hold_until_queued:
            scheduler = self.scorer.scheduler
            with scheduler._changed:
                assert scheduler._changed.wait_for(lambda: len(scheduler._jobs) >= self.hold_until_queued, 60)
        if self.before is not None:
            self.before(texts)

    @contextlib.contextmanager
    def watching(self):
        scorer, decode = self.scorer, self.scorer.processor.tokenizer.decode
        runner = scorer.runner
        forward, prefixes = runner.forward, runner.encode_prefixes

        def spy_forward(batch, prefix=None):
            self._seen([decode(pair.input_ids) for pair in batch])
            return forward(batch, prefix)

        def spy_prefixes(groups):
            self._seen([decode(pairs[0].input_ids) for pairs in groups])
            return prefixes(groups)

        runner.forward, runner.encode_prefixes = spy_forward, spy_prefixes
        try:
            yield self
        finally:
            del runner.forward, runner.encode_prefixes

    def containing(self, word: str) -> int:
        with self.lock:
            return sum(1 for texts in self.rows if any(word in text for text in texts))


def concurrently(calls, scorer=None) -> list:
    """Run the calls on threads of their own, started together; their results (or exceptions), in order.

    With `scorer`, every call is on its way before any of them is encoded: the scheduler then sees the others
    arriving and (with a long `max_batch_wait_ms`) forms full passes from several requests."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))
    if scorer is not None:
        scorer.scheduler._encoding.acquire()

    def run(index, call):
        start.wait()
        try:
            results[index] = call()
        except Exception as error:  # noqa: BLE001 - handed back to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    if scorer is not None:
        deadline = time.monotonic() + 60
        while scorer.scheduler.arriving < len(calls) and time.monotonic() < deadline:
            time.sleep(0.001)  # until every call waits to encode
        scorer.scheduler._encoding.release()
    for thread in threads:
        thread.join(120)
    return results


def queries_and_documents(red_image, blue_image):
    """16 requests of 4 documents with distinct queries: text, and image with text; documents with images too."""
    requests = []
    for i in range(16):
        query = f"request {i}: an insulated steel mug, size {i}"
        if i % 3 == 1:
            query = {"text": query, "image": red_image}
        documents = [f"cup number {i}.{j}" for j in range(3)] + [{"text": f"photo {i}", "image": blue_image}]
        requests.append((query, documents))
    return requests


def test_sixteen_concurrent_requests_get_the_scores_each_would_get_alone(scorer, red_image, blue_image):
    requests = queries_and_documents(red_image, blue_image)
    alone = [fresh(scorer, batch_across_requests=False).score(query, documents) for query, documents in requests]
    shared = fresh(scorer, batch_size=8, max_batch_wait_ms=60_000)
    contexts = [RequestContext() for _ in requests]
    results = concurrently([lambda q=q, d=d, c=c: shared.score(q, d, context=c) for (q, d), c in zip(requests, contexts)], shared)
    for got, expected in zip(results, alone):
        assert not isinstance(got, Exception), got
        assert got == pytest.approx(expected, abs=1e-5)
    passes = [p for context in contexts for p in context.stats.passes]
    assert max(requests for _, _, requests in passes) >= 2  # passes really were shared
    assert sum(pairs for pairs, _, _ in passes) == 64  # every pair ran once, and each pass was told once


def test_pass_sizes_and_waits_reach_the_metrics(scorer):
    shared = fresh(scorer, batch_size=8, model_name="batching-metrics")
    contexts = [RequestContext() for _ in range(4)]
    concurrently([lambda i=i, c=c: shared.score(f"query {i}", CUPS[:3], context=c) for i, c in enumerate(contexts)], shared)
    for context in contexts:
        telemetry.record_scoring("batching-metrics", context.stats)
    text = generate_latest(telemetry.REGISTRY).decode()
    total = sum(len(context.stats.passes) for context in contexts)
    assert f'lychee_pass_requests_count{{model="batching-metrics"}} {float(total)}' in text
    assert 'lychee_pass_tokens_count{model="batching-metrics"}' in text
    assert 'lychee_pass_wait_seconds_count{model="batching-metrics"} 4.0' in text


def wait_until_queued(scorer, count: int) -> None:
    scheduler = scorer.scheduler
    with scheduler._changed:
        assert scheduler._changed.wait_for(lambda: len(scheduler._jobs) >= count, 60)


def test_a_request_stopped_while_it_waits_leaves_the_queue_and_never_runs(scorer):
    shared = fresh(scorer, batch_size=2)
    running, release = threading.Event(), threading.Event()

    def hold(texts):
        if any("aardvark" in text for text in texts):
            running.set()
            assert release.wait(60)

    passes = Passes(shared, before=hold)
    cancel = threading.Event()
    stopped: list = []

    def stoppable():
        try:
            shared.score("zebra query", CUPS, cancel=cancel)
        except ScoringCancelledError as error:
            stopped.append(error)

    with passes.watching():
        first = threading.Thread(target=shared.score, args=("aardvark query", CUPS))
        first.start()
        assert running.wait(60)  # the first request holds the model
        zebra = threading.Thread(target=stoppable)
        zebra.start()
        wait_until_queued(shared, 2)
        cancel.set()
        zebra.join(60)
        assert len(stopped) == 1  # answered while the model is still busy with the first request
        with pytest.raises(ScoringTimeoutError):
            shared.score("walrus query", CUPS, timeout=0.2)
        release.set()
        first.join(60)
        shared.score("a later query", CUPS[:2])  # the worker has moved on past anything left in the queue
    assert passes.containing("zebra") == 0 and passes.containing("walrus") == 0
    assert shared.scheduler.waiting == 0


def test_a_request_stopped_mid_way_runs_nothing_after_its_answer(scorer):
    shared = fresh(scorer, batch_size=1)
    cancel = threading.Event()
    passes = Passes(shared, before=lambda texts: cancel.set() if passes.containing("zebra") >= 3 else None)
    with passes.watching():
        with pytest.raises(ScoringCancelledError):
            shared.score("zebra query", CUPS * 3, cancel=cancel)
        ran = passes.containing("zebra")
        shared.score("a later query", CUPS[:2])
    assert 3 <= ran < len(CUPS * 3) + 1
    assert passes.containing("zebra") == ran


def test_small_requests_are_not_held_behind_a_big_one(scorer):
    shared = fresh(scorer, batch_size=4)
    finished: list[str] = []
    lock = threading.Lock()

    def request(name: str, documents: list[str]):
        def call():
            shared.score(f"{name} query", documents)
            with lock:
                finished.append(name)

        return call

    big = [f"catalogue item {i}" for i in range(40)]  # ten passes of four
    with Passes(shared, hold_until_queued=4).watching():
        concurrently(
            [request("big", big), request("small-1", CUPS[:2]), request("small-2", CUPS[:3]), request("small-3", CUPS[:1])]
        )
    assert finished[-1] == "big"


def test_an_out_of_memory_pass_of_several_requests_is_split_and_everyone_gets_scores(scorer):
    def allocator(texts):  # a simulated GPU: more than three rows in a pass do not fit
        if len(texts) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    requests = [(f"query {i}", CUPS[:4]) for i in range(4)]
    alone = [fresh(scorer, batch_across_requests=False).score(q, d) for q, d in requests]
    # Passes start only when full (8 rows: two requests), so the first one mixes requests.
    shared = fresh(scorer, batch_size=8, max_batch_wait_ms=60_000)
    contexts = [RequestContext() for _ in requests]
    with Passes(shared, before=allocator).watching():
        results = concurrently(
            [lambda q=q, d=d, c=c: shared.score(q, d, context=c) for (q, d), c in zip(requests, contexts)], shared
        )
    for got, expected in zip(results, alone):
        assert not isinstance(got, Exception), got
        assert got == pytest.approx(expected, abs=1e-5)
    assert sum(context.stats.oom_retries for context in contexts) >= 1
    assert shared.scheduler.fitting_batch_size is not None and shared.scheduler.fitting_batch_size <= 3


def test_what_one_request_brings_into_a_shared_pass_fails_only_that_request(scorer):
    def poisoned(texts):
        if any("poison" in text for text in texts):
            raise ValueError("this document cannot be scored")

    shared = fresh(scorer, batch_size=5, max_batch_wait_ms=60_000)  # the first pass waits for both requests
    expected = fresh(scorer, batch_across_requests=False).score("good query", CUPS[:3])
    with Passes(shared, before=poisoned).watching() as watched:
        good, bad = concurrently(
            [lambda: shared.score("good query", CUPS[:3]), lambda: shared.score("other query", ["fine", "poison pill"])], shared
        )
    assert good == pytest.approx(expected, abs=1e-5)
    assert isinstance(bad, ValueError) and "cannot be scored" in str(bad)
    assert any(len(texts) == 5 for texts in watched.rows)  # the two requests did meet in one pass


def test_without_batching_across_requests_each_pass_holds_one_request(scorer):
    alone = fresh(scorer, batch_across_requests=False, batch_size=8)
    assert not alone.scheduler.share_passes  # the one scheduler, each pass from one request
    contexts = [RequestContext() for _ in range(4)]
    concurrently([lambda i=i, c=c: alone.score(f"query {i}", CUPS[:3], context=c) for i, c in enumerate(contexts)])
    assert all(requests == 1 for context in contexts for _, _, requests in context.stats.passes)


def test_the_command_line_switches_batching_and_its_wait():
    args = build_parser().parse_args(["load", "--demo", "--no-batch-across-requests", "--max-batch-wait-ms", "0"])
    options = _load_options(args)
    assert options["batch_across_requests"] is False and options["max_batch_wait_ms"] == 0
    defaults = _load_options(build_parser().parse_args(["load", "--demo"]))
    assert defaults["batch_across_requests"] is True and defaults["max_batch_wait_ms"] == 5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["load", "--max-batch-wait-ms", "-1"])


def test_a_lone_request_does_not_wait_for_company_that_is_not_coming(scorer):
    patient = fresh(scorer, batch_size=8, max_batch_wait_ms=600_000)  # would wait ten minutes for a full pass
    expected = fresh(scorer, batch_across_requests=False).score("alone", CUPS[:2])
    assert patient.score("alone", CUPS[:2], timeout=60) == pytest.approx(expected, abs=1e-5)


def test_introspection_runs_on_the_worker_between_passes_and_a_stop_while_it_waits_ends_it(scorer, monkeypatch):
    from lychee_gradio.contract import Item
    from lychee_gradio.engine import introspect

    shared = fresh(scorer, batch_size=2)
    running, release = threading.Event(), threading.Event()
    ran_on: list[str] = []
    next_tokens = introspect.next_tokens

    def spy(scorer, pair):
        ran_on.append(threading.current_thread().name)
        return next_tokens(scorer, pair)

    monkeypatch.setattr(introspect, "next_tokens", spy)

    def hold(texts):
        if any("aardvark" in text for text in texts):
            running.set()
            assert release.wait(60)

    query, document = Item(text="cup"), Item(text="a white cup")
    with Passes(shared, before=hold).watching():
        first = threading.Thread(target=shared.score, args=("aardvark query", CUPS))
        first.start()
        assert running.wait(60)  # a pass holds the model: the introspection waits in the queue ...
        with pytest.raises(ScoringTimeoutError):
            shared.inspect(query, document, "judge", None, RequestContext(timeout=0.3))
        assert ran_on == []  # ... and, timed out there, never ran
        release.set()
        first.join(60)
        mass, top, _, _ = shared.inspect(query, document, "judge", None, RequestContext())
    assert ran_on == ["lychee-scheduler"] and 0.0 < mass <= 1.0 and top
