"""Serving: concurrent `/v1/rerank` clients against one process and Ray replicas (`--serving`)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

import torch

from ..engine.random_model import build_processor
from ..engine.scorer import LycheeScorer
from .common import QUERY_TEXT, cpu_name, drive_clients, load_summary, synthetic_image, text_documents


def _serving_requests(tokenizer, count: int = 24) -> list[dict]:
    """/v1/rerank bodies: text and image queries alternating, 8 to 16 text documents each."""
    import base64
    import io

    rng = random.Random(7)
    texts = text_documents(tokenizer, 64, min_tokens=30, max_tokens=90)
    buffer = io.BytesIO()
    synthetic_image(3, 384).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    bodies = []
    for i in range(count):
        documents = rng.sample(texts, rng.randint(8, 16))
        query = QUERY_TEXT if i % 2 == 0 else {"image": image}
        bodies.append({"query": query, "documents": documents})
    return bodies


def _drive(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    """`clients` threads send the bodies round-robin for `seconds`; latencies, errors and pairs counted."""
    import httpx

    latencies, errors, pairs = [], 0, 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        nonlocal errors, pairs
        with httpx.Client(timeout=300) as http:
            i = offset
            while time.monotonic() < stop:
                body = bodies[i % len(bodies)]
                i += clients
                started = time.perf_counter()
                answer = http.post(f"{url}v1/rerank", json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    if answer.status_code == 200:
                        latencies.append(elapsed)
                        pairs += len(body["documents"])
                    else:
                        errors += 1

    wall = drive_clients(clients, client)
    return load_summary(latencies, errors, wall, pairs)


def _large_request(url: str, runs: int) -> float:
    """Median latency of one /v1/rerank request with 64 image documents."""
    import base64
    import io

    import httpx

    documents = []
    for i in range(64):
        buffer = io.BytesIO()
        synthetic_image(100 + i, 256).save(buffer, format="PNG")
        documents.append({"image": base64.b64encode(buffer.getvalue()).decode()})
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = httpx.post(f"{url}v1/rerank", json={"query": QUERY_TEXT, "documents": documents}, timeout=600)
        answer.raise_for_status()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def run_serving(size: str = "small", clients: int = 8, seconds: float = 20.0, runs: int = 3) -> dict:
    """Concurrent /v1/rerank clients against one process, 1 replica and 2 replicas (one core each)."""
    import os
    import tempfile

    from .. import app
    from ..engine.random_model import build_checkpoint
    from ..replica import ScorerReplica
    from ..serving.cluster import Cluster, ClusterSettings

    folder = build_checkpoint(Path(tempfile.mkdtemp(prefix="lychee-bench-")) / size, size)
    bodies = _serving_requests(build_processor().tokenizer)
    cores = os.cpu_count() or 1
    report = {
        "model_size": size,
        "clients": clients,
        "seconds": seconds,
        "cores": cores,
        "cpu": cpu_name(),
        "configurations": {},
        "large_request_seconds": {},
    }

    def measure(name: str, scorer, concurrency: int, large: bool) -> None:
        running = app.start(scorer, app.ServerSettings(port=0, concurrency=concurrency))
        try:
            _drive(running.url, bodies[:2], 2, 2.0)  # warm-up
            report["configurations"][name] = _drive(running.url, bodies, clients, seconds)
            if large:
                report["large_request_seconds"][name] = _large_request(running.url, runs)
        finally:
            running.close()

    torch.set_num_threads(cores)
    measure(f"single process ({cores} threads)", LycheeScorer.load(folder, device="cpu"), 1, False)
    cluster = Cluster(ClusterSettings(replicas=1, cpus_per_replica=1, load_options={"device": "cpu"}), ScorerReplica)
    try:
        for replicas in (1, 2):
            cluster.settings = ClusterSettings(
                replicas=replicas, cpus_per_replica=1, max_queued=1024, load_options={"device": "cpu"}
            )
            scorer = cluster.deploy(str(folder), replicas)
            measure(f"{replicas} replica{'s' if replicas > 1 else ''} (1 core each)", scorer, replicas, True)
            from ray import serve

            serve.delete(f"lychee-{replicas}")
            cluster.applications.remove(f"lychee-{replicas}")
    finally:
        cluster.close()
    return report


def format_serving(report: dict) -> str:
    names = list(report["configurations"])
    single, one, two = names
    rows = report["configurations"]
    lines = [
        f"model: random {report['model_size']}, {report['cores']} cores ({report['cpu']}), {report['clients']} "
        f"concurrent clients for {report['seconds']:.0f} s, /v1/rerank with 8-16 documents, text and image queries",
        "",
        "| server | requests/s | pairs/s | p50 latency | p95 latency | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        r = rows[name]
        lines.append(
            f"| {name} | {r['requests_per_second']:.2f} | {r['pairs_per_second']:.1f} | "
            f"{r['p50_seconds']:.2f} s | {r['p95_seconds']:.2f} s | {r['errors']} |"
        )
    large = report["large_request_seconds"]
    lines += [
        "",
        f"2 replicas vs 1 replica: {rows[two]['requests_per_second'] / rows[one]['requests_per_second']:.2f}x "
        f"requests/s; vs the single process: {rows[two]['requests_per_second'] / rows[single]['requests_per_second']:.2f}x",
        f"one request of 64 image documents (median of runs): 1 replica {large[one]:.2f} s, 2 replicas "
        f"{large[two]:.2f} s ({large[two] / large[one]:.2f}x the latency)",
    ]
    return "\n".join(lines)
