"""Running it like an inference server: caches, timeouts, memory that stays in budget, health and metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time

import httpx
import pytest
import torch
from PIL import Image

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config
from lychee_gradio.contract import ScoreStats, ScoringCancelledError, ScoringTimeoutError
from lychee_gradio.serving import telemetry

from .conftest import CUPS, MUG, TUMBLER
from .helpers import metric

QUERY = "insulated steel mug for camping"


def fresh(scorer, **options) -> LycheeScorer:
    """A scorer of its own (own caches, own batch memory) over the session's tiny model."""
    return LycheeScorer(
        scorer.model,
        scorer.processor,
        model_name=options.pop("model_name", scorer.model_name),
        device="cpu",
        family=scorer.family,
        **options,
    )


@contextlib.contextmanager
def forward_hook(scorer, hook):
    """Run `hook(batch rows, tokens per row incl. the prefix)` before every forward pass of the model."""

    def pre_hook(module, args, kwargs):
        mask = kwargs["attention_mask"]
        hook(mask.shape[0], mask.shape[1])

    handle = scorer.model.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def allocator_limit(max_rows: int | None = None, max_tokens: int | None = None, error=None):
    """A simulated GPU allocator: a forward pass over the limit fails the way CUDA fails."""

    def hook(rows: int, tokens_per_row: int) -> None:
        if (max_rows is not None and rows > max_rows) or (max_tokens is not None and rows * tokens_per_row > max_tokens):
            raise (error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"))

    return hook


def close(scores, expected):
    """Equal up to float noise: a batch of other neighbours (padding, size) moves fp32 scores by ~1e-7."""
    return scores == pytest.approx(expected, abs=1e-6)


def slow(seconds: float, started: threading.Event | None = None):
    """A hook that makes each forward pass take `seconds` more; `started` is set when the first one begins."""

    def hook(rows, tokens):
        if started is not None:
            started.set()
        time.sleep(seconds)

    return hook


def images(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (64 + 8 * i, 48), (10 * i % 255, 80, 200 - 5 * i)) for i in range(count)]


# -- the score cache ---------------------------------------------------------------------------------


def test_cached_scores_equal_fresh_scores_bit_for_bit(scorer):
    cached = fresh(scorer, cache_size=100)
    first, second = ScoreStats(), ScoreStats()
    documents = CUPS + [{"image": MUG}, {"text": "steel tumbler", "image": TUMBLER}]
    before = cached.score_with_logits(QUERY, documents, stats=first)
    again = cached.score_with_logits(QUERY, documents, stats=second)
    assert (first.cached, first.scored) == (0, len(documents))
    assert (second.cached, second.scored) == (len(documents), 0)
    assert again == before == scorer.score_with_logits(QUERY, documents)
    assert second.tokens == first.tokens  # the usage a client is told does not change on a hit


def test_a_half_repeated_request_scores_only_the_new_half(scorer):
    cached = fresh(scorer, cache_size=100)
    cached.score(QUERY, CUPS[:3])
    stats = ScoreStats()
    scores = cached.score(QUERY, CUPS, stats=stats)
    assert (stats.cached, stats.scored) == (3, len(CUPS) - 3)
    assert close(scores, scorer.score(QUERY, CUPS))


@pytest.mark.parametrize("change", ["instruction", "max_pixels", "image bytes", "model", "query"])
def test_a_change_of_what_the_score_depends_on_misses_the_cache(scorer, change):
    cached = fresh(scorer, cache_size=100)
    image = Image.new("RGB", (90, 60), (200, 30, 30))
    cached.score(QUERY, [{"text": "red cup", "image": image}], "Judge relevance.", max_pixels=200_000)
    changed_image = image.copy()
    changed_image.putpixel((5, 5), (201, 30, 30))
    call = {
        "query": QUERY,
        "documents": [{"text": "red cup", "image": image}],
        "instruction": "Judge relevance.",
        "max_pixels": 200_000,
    }
    if change == "instruction":
        call["instruction"] = "Judge relevance!"
    elif change == "max_pixels":
        call["max_pixels"] = 100_000
    elif change == "image bytes":
        call["documents"] = [{"text": "red cup", "image": changed_image}]
    elif change == "query":
        call["query"] = QUERY + "s"
    if change == "model":
        other = fresh(scorer, cache_size=100, model_name="another/model")
        other.cache = cached.cache  # one cache, two models: the model is part of the key
        cached = other
    stats = ScoreStats()
    cached.score(call["query"], call["documents"], call["instruction"], max_pixels=call["max_pixels"], stats=stats)
    assert stats.cached == 0


def test_the_same_image_in_another_form_hits_the_cache(scorer):
    cached = fresh(scorer, cache_size=100)
    cached.score(QUERY, [{"image": MUG}])
    with open(MUG, "rb") as file:
        data = file.read()
    stats = ScoreStats()
    cached.score(QUERY, [{"image": data}], stats=stats)
    assert stats.cached == 1


def test_the_score_cache_never_holds_more_than_its_bound(scorer):
    cached = fresh(scorer, cache_size=5)
    cached.score(QUERY, CUPS + [f"cup number {i}" for i in range(10)])
    assert len(cached.cache) == 5
    stats = ScoreStats()
    cached.score(QUERY, [f"cup number {i}" for i in range(5, 10)], stats=stats)
    assert stats.cached == 5  # the most recent ones stayed


def test_a_cache_size_of_zero_keeps_nothing(scorer):
    uncached = fresh(scorer, cache_size=0)
    uncached.score(QUERY, CUPS)
    stats = ScoreStats()
    uncached.score(QUERY, CUPS, stats=stats)
    assert len(uncached.cache) == 0 and stats.cached == 0


# -- the image cache ---------------------------------------------------------------------------------


def test_images_ranked_again_with_a_new_query_reuse_their_processing_and_score_the_same(scorer):
    photos = images(6)
    cached = fresh(scorer, image_cache_bytes=64 * 2**20)
    cached.score("a blue photo", photos)
    stats = ScoreStats()
    scores = cached.score("a red photo", photos, stats=stats)
    assert stats.image_cache_hits == 6 and stats.image_cache_misses == 0
    assert scores == scorer.score("a red photo", photos)


def test_the_image_cache_never_holds_more_bytes_than_its_bound(scorer):
    photos = images(6)
    one = fresh(scorer, image_cache_bytes=64 * 2**20)
    one.score("a photo", photos[:1])
    size = one.image_cache.bytes
    bounded = fresh(scorer, image_cache_bytes=int(size * 2.5))
    bounded.score("a photo", photos)
    assert 0 < bounded.image_cache.bytes <= bounded.image_cache.max_bytes
    assert len(bounded.image_cache) < len(photos)


# -- timeouts ------------------------------------------------------------------------------------------


def test_a_request_past_its_timeout_stops_between_batches(scorer):
    timed = fresh(scorer, batch_size=1, reuse_prefix=False)
    forwards = []
    with forward_hook(timed, lambda rows, tokens: (forwards.append(rows), time.sleep(0.2))):
        with pytest.raises(ScoringTimeoutError, match="timeout of 0.5 s"):
            timed.score(QUERY, CUPS + CUPS, timeout=0.5)
        stopped_at = len(forwards)
        # The call has returned: the engine runs on the caller's thread, so nothing of it can still run.
        assert len(forwards) == stopped_at < len(CUPS + CUPS)
    assert close(timed.score(QUERY, CUPS[:2], timeout=30), scorer.score(QUERY, CUPS[:2]))


def test_a_cancelled_request_stops_and_the_next_one_runs(scorer):
    stoppable = fresh(scorer, batch_size=1, reuse_prefix=False)
    cancel = threading.Event()
    with forward_hook(stoppable, lambda rows, tokens: cancel.set()):
        with pytest.raises(ScoringCancelledError):
            stoppable.score(QUERY, CUPS, cancel=cancel)
    assert close(stoppable.score(QUERY, CUPS[:2]), scorer.score(QUERY, CUPS[:2]))


def test_waiting_for_the_model_counts_against_the_timeout(scorer):
    busy = fresh(scorer, batch_size=1, reuse_prefix=False)
    holding = threading.Event()
    with forward_hook(busy, slow(0.3, holding)):
        worker = threading.Thread(target=busy.score, args=(QUERY, CUPS))
        worker.start()
        assert holding.wait(30)  # the worker holds the model: its first forward pass has begun
        with pytest.raises(ScoringTimeoutError):
            busy.score(QUERY, ["another document"], timeout=0.3)
        worker.join()


# -- out of memory -------------------------------------------------------------------------------------


def test_after_running_out_of_memory_the_batch_shrinks_and_the_next_request_starts_at_the_size_that_fit(scorer):
    limited = fresh(scorer, batch_size=8)
    documents = CUPS + [f"cup number {i}" for i in range(10)]
    expected = scorer.score(QUERY, documents)
    first, second = ScoreStats(), ScoreStats()
    with forward_hook(limited, allocator_limit(max_rows=3)):
        assert close(limited.score(QUERY, documents, stats=first), expected)
        assert limited.scheduler.fitting_batch_size == 2
        assert close(limited.score(QUERY, documents, stats=second), expected)
    assert first.oom_retries == 2 and max(first.batches) == 2  # 8 -> 4 -> 2
    assert second.oom_retries == 0 and second.batches[0] == 2  # starts at the size that fit


def test_the_remembered_batch_size_grows_back_slowly(scorer):
    limited = fresh(scorer, batch_size=8)
    with forward_hook(limited, allocator_limit(max_rows=3)):
        limited.score(QUERY, CUPS)
    assert limited.scheduler.fitting_batch_size == 2
    many = [f"document {i}" for i in range(2 * limited.scheduler.GROW_AFTER)]
    limited.score(QUERY, many)  # the limit is gone: batches of 2 fit, then the size grows
    assert limited.scheduler.fitting_batch_size == 3


def test_cublas_allocation_failures_count_as_out_of_memory(scorer):
    limited = fresh(scorer, batch_size=8)
    cublas = RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
    stats = ScoreStats()
    with forward_hook(limited, allocator_limit(max_rows=2, error=cublas)):
        assert close(limited.score(QUERY, CUPS, stats=stats), scorer.score(QUERY, CUPS))
    assert stats.oom_retries >= 1


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(scorer):
    broken = fresh(scorer)
    with forward_hook(broken, allocator_limit(max_rows=0, error=RuntimeError("shape mismatch"))):
        with pytest.raises(RuntimeError, match="shape mismatch"):
            broken.score(QUERY, CUPS)


def test_the_shared_prefix_copied_into_each_row_counts_in_the_token_budget(scorer):
    budget = 600
    limited = fresh(scorer, batch_size=32, max_batch_tokens=budget)
    stats = ScoreStats()
    # The allocator holds exactly the budget: every row's tokens, prefix included.
    with forward_hook(limited, allocator_limit(max_tokens=budget)):
        scores = limited.score(QUERY, CUPS * 3, "Judge whether the document is a product that meets the query.", stats=stats)
    assert stats.oom_retries == 0
    assert close(scores, scorer.score(QUERY, CUPS * 3, "Judge whether the document is a product that meets the query."))


def test_memory_is_released_after_the_exception_is_gone(scorer, monkeypatch):
    limited = fresh(scorer, batch_size=8)
    seen = []
    monkeypatch.setattr(limited.runner, "release_memory", lambda: seen.append(sys.exc_info()[0]))
    with forward_hook(limited, allocator_limit(max_rows=3)):
        limited.score(QUERY, CUPS)
    assert seen and all(kind is None for kind in seen)


# -- health, readiness, metrics, request ids, logs -----------------------------------------------------


@pytest.fixture(scope="module")
def operated(scorer):
    """A server with an API key, a 3 s request timeout and a cache, over a scorer a test may slow down (3 s: an
    unslowed request on a busy 2-core machine took over 1 s)."""
    served = fresh(scorer, cache_size=1000, batch_size=1, reuse_prefix=False)
    settings = app.ServerSettings(port=0, config=Config(api_key="sekrit", request_timeout=3.0))
    running = app.start(served, settings)
    deadline = time.monotonic() + 30
    while httpx.get(running.url + "ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    yield running.url, served
    running.close()


KEY = {"Authorization": "Bearer sekrit"}


def test_health_ready_and_metrics_answer_without_the_api_key(operated):
    url, _ = operated
    assert httpx.get(url + "health").json() == {"status": "ok"}
    assert httpx.get(url + "ready").json()["status"] == "ready"
    response = httpx.get(url + "metrics")
    assert response.status_code == 200 and "lychee_requests_total" in response.text
    assert metric(url, "lychee_ready") == 1
    assert httpx.post(url + "v1/rerank", json={"query": "q", "documents": ["d"]}).status_code == 401


def test_health_and_metrics_answer_while_a_long_request_runs(operated):
    url, served = operated
    running = threading.Event()
    with forward_hook(served, slow(0.15, running)):
        long = threading.Thread(
            target=httpx.post,
            args=(url + "v1/rerank",),
            kwargs={"json": {"query": "slow", "documents": [f"slow {i}" for i in range(5)]}, "headers": KEY, "timeout": 30},
        )
        long.start()
        assert running.wait(30)  # the long request is in the model
        assert httpx.get(url + "health", timeout=5).status_code == 200
        assert httpx.get(url + "metrics", timeout=5).status_code == 200
        assert httpx.get(url + "ready", timeout=5).status_code == 200
        assert long.is_alive()  # they did not wait for it
        long.join()


def test_metric_counters_move_by_the_right_amounts(operated):
    url, served = operated
    model = served.model_name.rsplit("/", 1)[-1]
    ok_before = metric(url, "lychee_requests_total", endpoint="/v1/rerank", status="200")
    bad_before = metric(url, "lychee_requests_total", endpoint="/v1/rerank", status="400")
    pairs_before = metric(url, "lychee_pairs_total", model=model)
    hits_before = metric(url, "lychee_score_cache_hits_total", model=model)
    body = {"query": "metrics query", "documents": ["one", "two", "three"]}
    assert httpx.post(url + "v1/rerank", json=body, headers=KEY).status_code == 200
    assert httpx.post(url + "v1/rerank", json=body, headers=KEY).status_code == 200
    assert httpx.post(url + "v1/rerank", json={**body, "model": "nope"}, headers=KEY).status_code == 400
    assert metric(url, "lychee_requests_total", endpoint="/v1/rerank", status="200") - ok_before == 2
    assert metric(url, "lychee_requests_total", endpoint="/v1/rerank", status="400") - bad_before == 1
    assert metric(url, "lychee_pairs_total", model=model) - pairs_before == 6
    assert metric(url, "lychee_score_cache_hits_total", model=model) - hits_before == 3
    assert metric(url, "lychee_request_duration_seconds_count", endpoint="/v1/rerank") >= 3


def test_a_repeated_request_is_answered_from_the_cache_with_identical_scores(operated):
    url, _ = operated
    body = {"query": "repeat me", "documents": [f"candidate {i}" for i in range(8)]}
    first = httpx.post(url + "v1/rerank", json=body, headers=KEY).json()
    second = httpx.post(url + "v1/rerank", json=body, headers=KEY).json()
    assert first["results"] == second["results"]
    assert first["usage"] == second["usage"]


def test_every_rerank_answer_carries_its_request_id(operated, caplog):
    url, _ = operated
    with caplog.at_level(logging.INFO, logger="lychee_gradio.access"):
        ok = httpx.post(url + "v1/rerank", json={"query": "q", "documents": ["d"]}, headers=KEY)
        bad = httpx.post(url + "v1/rerank", json={"query": "q", "documents": [7]}, headers=KEY)
        mine = httpx.post(url + "v1/rerank", json={"query": "q", "documents": ["d"]}, headers={**KEY, "X-Request-ID": "trace-42"})
    assert ok.headers["x-request-id"] == ok.json()["id"]
    assert bad.status_code == 422 and bad.headers["x-request-id"] == bad.json()["id"]
    assert mine.headers["x-request-id"] == mine.json()["id"] == "trace-42"
    lines = {record.fields["request_id"]: record.fields for record in caplog.records if hasattr(record, "fields")}
    assert lines[ok.json()["id"]]["status"] == 200 and lines[ok.json()["id"]]["documents"] == 1
    assert lines[bad.json()["id"]]["status"] == 422
    assert {"endpoint", "latency_ms", "tokens"} <= set(lines["trace-42"])


def test_a_request_past_its_timeout_gets_504_and_the_next_one_is_answered(operated):
    url, served = operated
    with forward_hook(served, slow(0.5)):  # 8 forward passes of 0.5 s: past 3 s
        late = httpx.post(
            url + "v1/rerank", json={"query": "late", "documents": [f"late {i}" for i in range(8)]}, headers=KEY, timeout=30
        )
    assert late.status_code == 504
    assert "timeout" in late.json()["message"] and late.json()["id"] == late.headers["x-request-id"]
    on_time = httpx.post(url + "v1/rerank", json={"query": "on time", "documents": ["a", "b"]}, headers=KEY)
    assert on_time.status_code == 200 and len(on_time.json()["results"]) == 2
    assert metric(url, "lychee_requests_total", endpoint="/v1/rerank", status="504") >= 1


def test_the_page_api_is_counted_and_times_out_with_a_message(operated):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, served = operated
    client = Client(url, headers=KEY, verbose=False)
    before = metric(url, "lychee_requests_total", endpoint="/rerank", status="200")
    client.predict(query_text="q", documents="a\n---\nb", api_name="/rerank")
    assert metric(url, "lychee_requests_total", endpoint="/rerank", status="200") - before == 1
    with forward_hook(served, slow(0.5)):
        with pytest.raises(AppError, match="took longer than this server's limit of 3 s"):
            client.predict(query_text="slow page", documents="\n---\n".join(f"p{i}" for i in range(8)), api_name="/rerank")
    assert metric(url, "lychee_requests_total", endpoint="/rerank", status="504") >= 1


def test_json_log_lines_carry_the_request_fields():
    formatter = telemetry.JsonFormatter()
    record = logging.LogRecord("lychee_gradio.access", logging.INFO, __file__, 1, "request done", None, None)
    record.fields = {"request_id": "abc", "status": 200, "documents": 3}
    line = json.loads(formatter.format(record))
    assert line["request_id"] == "abc" and line["status"] == 200 and line["level"] == "INFO"
