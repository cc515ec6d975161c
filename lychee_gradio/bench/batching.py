"""Batching across requests: many concurrent small requests, with the scheduler and one request at a time
(`--serving`, or `--batching` alone).

Each configuration serves the same random model through `/v1/rerank` on 127.0.0.1 (or, where Gradio is
not installed, e.g. on a bare GPU machine, by calling the scorer from the client threads directly). Every
request has a query of its own, so no score is answered from a cache. Rows: 16 clients x 4 documents,
4 clients x 64 documents, and one client alone (the latency a lone request pays for the scheduler's
wait). Afterwards, requests answered under load are sent again alone: their scores must be the same.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time

from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from .common import QUERY_TEXT, drive_clients, load_summary, machine_of, text_documents

CASES = (("16 clients x 4 documents", 16, 4), ("4 clients x 64 documents", 4, 64))
LONE_REQUESTS = 30


class _Door:
    """How requests reach the scorer: /v1/rerank on a local server, or direct calls without Gradio."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.local = threading.local()
        try:
            from .. import app
        except ImportError:
            self.running, self.name = None, "in-process calls (Gradio not installed)"
            return
        from ..config import Config

        self.running = app.start(scorer, app.ServerSettings(port=0, concurrency=16, config=Config(cache_size=0)))
        self.name = "/v1/rerank on 127.0.0.1"

    def send(self, query: str, documents: list[str]) -> list[float]:
        if self.running is None:
            return self.scorer.score(query, documents)
        import httpx

        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = httpx.Client(timeout=600)
        answer = http.post(
            f"{self.running.url}v1/rerank", json={"query": query, "documents": documents, "return_documents": False}
        )
        answer.raise_for_status()
        scores = [0.0] * len(documents)
        for result in answer.json()["results"]:
            scores[result["index"]] = result["relevance_score"]
        return scores

    def close(self) -> None:
        if self.running is not None:
            self.running.close()


def _load(door: _Door, texts: list[str], clients: int, documents: int, seconds: float, keep: list | None = None) -> dict:
    """`clients` threads send requests of `documents` texts, each with a query of its own, for `seconds`."""
    numbers = itertools.count()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(_: int) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            n = next(numbers)
            rng = random.Random(n)
            query, chosen = f"{QUERY_TEXT} (request {n})", rng.sample(texts, documents)
            started = time.perf_counter()
            try:
                scores = door.send(query, chosen)
            except Exception:  # noqa: BLE001 - counted, the load goes on
                with lock:
                    errors += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if keep is not None and len(keep) < 24:
                    keep.append((query, chosen, scores))

    wall = drive_clients(clients, client)
    return load_summary(latencies, errors, wall, len(latencies) * documents)


def run_batching(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    seconds: float = 20.0,
    family: str = "qwen2_5_vl",
    wait_ms: float = 5.0,
) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    texts = text_documents(processor.tokenizer, 256, min_tokens=30, max_tokens=90)
    report = {
        "model_size": size,
        **machine_of(runtime),
        "seconds": seconds,
        "max_batch_wait_ms": wait_ms,
        "rows": {},
        "lone_p50_seconds": {},
    }
    kept: list = []
    for batching in (False, True):
        label = "batching across requests" if batching else "one request at a time"
        scorer = LycheeScorer(
            model,
            processor,
            model_name=f"random-{size}",
            device=runtime.device,
            family=FAMILIES[family],
            batch_across_requests=batching,
            max_batch_wait_ms=wait_ms,
        )
        door = _Door(scorer)
        report["door"] = door.name
        try:
            _load(door, texts, 4, 4, 2.0)  # warm-up
            for name, clients, documents in CASES:
                keep = kept if batching and clients == 16 else None
                report["rows"].setdefault(name, {})[label] = _load(door, texts, clients, documents, seconds, keep)
            lone = []
            for n in range(LONE_REQUESTS):
                started = time.perf_counter()
                door.send(f"{QUERY_TEXT} (alone {n})", random.Random(n).sample(texts, 4))
                lone.append(time.perf_counter() - started)
            report["lone_p50_seconds"][label] = statistics.median(lone)
            if batching:  # the requests answered under load, each again alone
                report["largest_difference_alone"] = max(
                    (abs(a - b) for query, chosen, scores in kept for a, b in zip(scores, door.send(query, chosen))),
                    default=float("nan"),
                )
                report["compared_alone"] = len(kept)
        finally:
            door.close()
    return report


def format_batching(report: dict) -> str:
    lines = [
        f"model: random {report['model_size']} on {report['device_name']} ({report['device']}, {report['dtype']}, "
        f"{report['cpu_threads']} threads); {report['door']}; {report['seconds']:.0f} s per row; every request "
        f"with its own query; --max-batch-wait-ms {report['max_batch_wait_ms']:g}",
        "",
        "| load | server | requests/s | pairs/s | p50 latency | p95 latency | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, configurations in report["rows"].items():
        for label, r in configurations.items():
            lines.append(
                f"| {name} | {label} | {r['requests_per_second']:.2f} | {r['pairs_per_second']:.1f} | "
                f"{r['p50_seconds']:.3f} s | {r['p95_seconds']:.3f} s | {r['errors']} |"
            )
    lines.append("")
    for name, configurations in report["rows"].items():
        off, on = configurations["one request at a time"], configurations["batching across requests"]
        lines.append(
            f"{name}: batching across requests gives {on['requests_per_second'] / off['requests_per_second']:.2f}x the requests/s"
        )
    lone = report["lone_p50_seconds"]
    off, on = lone["one request at a time"], lone["batching across requests"]
    lines.append(
        f"a lone request of 4 documents (median of {LONE_REQUESTS}): {off * 1000:.1f} ms one at a time, "
        f"{on * 1000:.1f} ms with the scheduler ({on / off:.2f}x)"
    )
    lines.append(
        f"{report.get('compared_alone', 0)} requests answered under load, sent again alone: largest score "
        f"difference {report.get('largest_difference_alone', float('nan')):.2e}"
    )
    return "\n".join(lines)
