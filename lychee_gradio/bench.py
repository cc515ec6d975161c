"""Throughput benchmark: the per-pair loop of the tutorials against the engine, with and without prefix reuse.

    python -m lychee_gradio.bench                         # CPU, the "small" random model
    python -m lychee_gradio.bench --model-size 7b         # GPU: Qwen2.5-VL-7B sizes, bf16
    python -m lychee_gradio.bench --family qwen3_vl --model-size 2b   # Qwen3-VL-Reranker-2B sizes
    python -m lychee_gradio.bench --stability --dtype bfloat16   # how far scores move with batching
    python -m lychee_gradio.bench --serving               # concurrent /v1/rerank clients: 1 process vs replicas
    python -m lychee_gradio.bench --caches                # repeated requests: score cache and image cache

All three paths run in one process on the same random-weight model (built from a config: the
same compute as real weights of that size) and the same inputs. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, ImageDraw

from .families import FAMILIES
from .naive import NaiveScorer
from .random_model import SIZES, build_processor, build_random_model
from .scorer import LycheeScorer
from .weights import choose_runtime

QUERY_TEXT = "white ceramic coffee cup with a minimalist mountain line pattern, 北欧风 350ml"
_WORDS = (
    "ceramic cup mug coffee white mountain pattern glaze handmade minimalist travel steel vacuum "
    "insulated double wall leak proof lid handle porcelain stoneware matte glossy blue red gift "
    "北欧 手绘 白瓷 咖啡杯 高温 釉下彩 工艺 容量 不锈钢 真空 保温 旅行杯 双层 设计 防漏 硅胶圈"
).split()


def text_documents(tokenizer, count: int, seed: int = 0, min_tokens: int = 60, max_tokens: int = 200) -> list[str]:
    """Product-description-like texts of `min_tokens`..`max_tokens` tokens each."""
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        target = rng.randint(min_tokens, max_tokens)
        words: list[str] = []
        while len(tokenizer.encode(" ".join(words), add_special_tokens=False)) < target:
            words.append(rng.choice(_WORDS))
        documents.append(" ".join(words))
    return documents


def synthetic_image(seed: int, size: int = 512) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        box = (x0, y0, x0 + rng.randrange(20, size // 2), y0 + rng.randrange(20, size // 2))
        draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def scenarios(tokenizer, docs: int) -> dict[str, tuple[object, list]]:
    texts = text_documents(tokenizer, docs)
    return {
        f"text query, {docs} text docs": (QUERY_TEXT, texts),
        f"512² image query, {docs} text docs": (synthetic_image(10_000), texts),
        f"text query, {max(1, docs // 2)} 512² image docs": (
            QUERY_TEXT, [synthetic_image(i) for i in range(max(1, docs // 2))]
        ),
    }


class PeakMemory:
    """Peak memory while a block runs: CUDA allocations on a GPU, else the process RSS above its start."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        process = psutil.Process()
        self._start = process.memory_info().rss
        self._peak = self._start
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.005):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = self._peak - self._start


def time_path(run: Callable[[], list[float]], runs: int, device: torch.device) -> dict:
    run()  # warm-up: first-call allocations and kernel selection are not what we measure
    times, scores, peak = [], None, 0
    for _ in range(runs):
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            scores = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = max(peak, memory.peak_bytes)
    return {"seconds": times, "median_seconds": statistics.median(times), "scores": scores, "peak_bytes": peak}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def run_benchmark(size: str = "small", device: str = "auto", dtype: str = "auto", docs: int = 64,
                  runs: int = 3, attn_implementation: str = "auto", max_pixels: int | None = None,
                  family: str = "qwen2_5_vl") -> dict:
    runtime = choose_runtime(device, dtype, attn_implementation)
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    if runtime.attn_implementation != "sdpa":
        model.set_attn_implementation(runtime.attn_implementation)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device, max_pixels=max_pixels,
                          family=FAMILIES[family])
    naive = NaiveScorer(model, processor, FAMILIES[family])
    torch_device = torch.device(runtime.device)

    def per_pair_loop(query, documents):
        scores = []
        for document in documents:
            query_pair = (query, None) if isinstance(query, str) else (None, query)
            doc_pair = (document, None) if isinstance(document, str) else (None, document)
            scores.append(naive.score(query_pair, doc_pair))
            if torch_device.type == "cuda":
                torch.cuda.empty_cache()
        return scores

    def engine(reuse_prefix: bool):
        def run(query, documents):
            scorer.reuse_prefix = reuse_prefix
            return scorer.score(query, documents)
        return run

    paths = {
        "per-pair loop": per_pair_loop,
        "engine, no prefix reuse": engine(False),
        "engine, prefix reuse": engine(True),
    }
    report = {
        "family": FAMILIES[family].name,
        "model_size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": runtime.device,
        "device_name": torch.cuda.get_device_name() if torch_device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "attn_implementation": runtime.attn_implementation,
        "batch_size": scorer.batch_size,
        "max_pixels": scorer.max_pixels,
        "runs": runs,
        "torch": torch.__version__,
        "scenarios": {},
    }
    for name, (query, documents) in scenarios(processor.tokenizer, docs).items():
        results = {path: time_path(functools.partial(run, query, documents), runs, torch_device)
                   for path, run in paths.items()}
        baseline = results["per-pair loop"]
        for result in results.values():
            result["pairs_per_second"] = len(documents) / result["median_seconds"]
            result["speedup"] = baseline["median_seconds"] / result["median_seconds"]
            result["max_score_diff"] = max(abs(a - b) for a, b in zip(result["scores"], baseline["scores"]))
        report["scenarios"][name] = {"documents": len(documents), "paths": results}
    return report


def run_stability(size: str = "small", device: str = "auto", dtype: str = "bfloat16", docs: int = 32,
                  family: str = "qwen2_5_vl") -> dict:
    """The largest score difference between batch size 1, batch size 8 and prefix reuse, per scenario.

    Scores are pointwise in exact arithmetic; in low precision different batch shapes round
    differently. This measures how much, on one random model, for the three request kinds.
    """
    runtime = choose_runtime(device, dtype, "sdpa")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    configurations = {"batch 1": (1, False), "batch 8": (8, False), "batch 8 + prefix reuse": (8, True)}
    report = {"model_size": size, "device": runtime.device, "dtype": str(runtime.dtype).replace("torch.", ""),
              "scenarios": {}}
    for name, (query, documents) in scenarios(processor.tokenizer, docs).items():
        scores = {}
        for label, (batch_size, reuse) in configurations.items():
            scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device,
                                  batch_size=batch_size, reuse_prefix=reuse, family=FAMILIES[family])
            scores[label] = scorer.score(query, documents)
        labels = list(scores)
        report["scenarios"][name] = {
            f"{a} vs {b}": max(abs(x - y) for x, y in zip(scores[a], scores[b]))
            for i, a in enumerate(labels) for b in labels[i + 1:]
        }
    return report


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

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"requests": len(latencies), "errors": errors, "seconds": wall, "requests_per_second": len(latencies) / wall,
            "pairs_per_second": pairs / wall, "p50_seconds": percentile(0.5), "p95_seconds": percentile(0.95)}


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

    from . import server
    from .cluster import Cluster, ClusterSettings
    from .random_model import build_checkpoint

    folder = build_checkpoint(Path(tempfile.mkdtemp(prefix="lychee-bench-")) / size, size)
    bodies = _serving_requests(build_processor().tokenizer)
    cores = os.cpu_count() or 1
    report = {"model_size": size, "clients": clients, "seconds": seconds, "cores": cores, "cpu": _cpu_name(),
              "configurations": {}, "large_request_seconds": {}}

    def measure(name: str, scorer, concurrency: int, large: bool) -> None:
        running = server.start(scorer, server.ServerSettings(port=0, concurrency=concurrency))
        try:
            _drive(running.url, bodies[:2], 2, 2.0)  # warm-up
            report["configurations"][name] = _drive(running.url, bodies, clients, seconds)
            if large:
                report["large_request_seconds"][name] = _large_request(running.url, runs)
        finally:
            running.close()

    torch.set_num_threads(cores)
    measure(f"single process ({cores} threads)", LycheeScorer.load(folder, device="cpu"), 1, False)
    cluster = Cluster(ClusterSettings(replicas=1, cpus_per_replica=1, load_options={"device": "cpu"}))
    try:
        for replicas in (1, 2):
            cluster.settings = ClusterSettings(replicas=replicas, cpus_per_replica=1, max_queued=1024,
                                               load_options={"device": "cpu"})
            scorer = cluster.deploy(str(folder), replicas)
            measure(f"{replicas} replica{'s' if replicas > 1 else ''} (1 core each)", scorer, replicas, True)
            from ray import serve

            serve.delete(f"lychee-{replicas}")
            cluster.applications.remove(f"lychee-{replicas}")
    finally:
        cluster.close()
    return report


def run_caches(size: str = "small", device: str = "auto", dtype: str = "auto", docs: int = 32, runs: int = 3,
               photo_size: tuple[int, int] = (1600, 1200), family: str = "qwen2_5_vl") -> dict:
    """What the caches save, each timing a median of `runs`, each "first" run on emptied caches:

    - a request sent again (every pair a score-cache hit), in the engine and over /v1/rerank;
    - a request whose first half was sent before (half hits);
    - Image ranking: a new query over the same `docs // 1` photos, image cache off vs on.
    """
    import httpx

    from . import server
    from .rest_api import RestSettings

    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)

    def scorer_with(**options) -> LycheeScorer:
        return LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device,
                            family=FAMILIES[family], **options)

    texts = text_documents(processor.tokenizer, docs)
    cached = scorer_with(cache_size=100_000)
    cached.score("warm-up", texts[:2])  # first-call allocations are not what we measure

    def timed(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    first, repeated, half_new, all_new = [], [], [], []
    for _ in range(runs):
        cached.cache.clear()
        first.append(timed(lambda: cached.score(QUERY_TEXT, texts)))
        repeated.append(timed(lambda: cached.score(QUERY_TEXT, texts)))
        cached.cache.clear()
        all_new.append(timed(lambda: cached.score(QUERY_TEXT + " 2", texts)))
        cached.cache.clear()
        cached.score(QUERY_TEXT + " 3", texts[: docs // 2])
        half_new.append(timed(lambda: cached.score(QUERY_TEXT + " 3", texts)))

    # The same over HTTP, as a pipeline sees it: JSON in and out, the server's own cache.
    http_first, http_repeated = [], []
    running = server.start(cached, server.ServerSettings(port=0, rest=RestSettings()))
    try:
        with httpx.Client(timeout=600) as client:
            for attempt in range(runs):
                cached.cache.clear()
                body = {"query": f"{QUERY_TEXT} {attempt}", "documents": texts}
                http_first.append(timed(lambda: client.post(running.url + "v1/rerank", json=body).raise_for_status()))
                http_repeated.append(timed(lambda: client.post(running.url + "v1/rerank", json=body)
                                           .raise_for_status()))
    finally:
        running.close()

    # Image ranking: photos decoded once (as the page does at the edge); a new description each run.
    photos = [synthetic_image(i, 512).resize(photo_size) for i in range(docs)]
    image_off = scorer_with()
    image_on = scorer_with(image_cache_bytes=4 * 2**30)
    image_on.score("a photo", photos)  # the designer's first query fills the cache
    image_off.score("a photo", photos[:2])
    without, with_cache = [], []
    for attempt in range(runs):
        without.append(timed(lambda: image_off.score(f"another description {attempt}", photos)))
        with_cache.append(timed(lambda: image_on.score(f"another description {attempt}", photos)))
    median = statistics.median
    return {
        "model_size": size, "device": runtime.device, "dtype": str(runtime.dtype).replace("torch.", ""),
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else _cpu_name(),
        "cpu_threads": torch.get_num_threads(), "documents": docs, "runs": runs, "photo_size": list(photo_size),
        "first_seconds": median(first), "repeated_seconds": median(repeated),
        "http_first_seconds": median(http_first), "http_repeated_seconds": median(http_repeated),
        "all_new_seconds": median(all_new), "half_repeated_seconds": median(half_new),
        "images_cache_off_seconds": median(without), "images_cache_on_seconds": median(with_cache),
        "image_cache_bytes": image_on.image_cache.bytes,
    }


def format_caches(report: dict) -> str:
    r = report
    rows = [
        ("request sent again (engine)", r["first_seconds"], r["repeated_seconds"]),
        ("request sent again (/v1/rerank)", r["http_first_seconds"], r["http_repeated_seconds"]),
        ("half the documents seen before", r["all_new_seconds"], r["half_repeated_seconds"]),
        (f"new query over the same {r['documents']} photos ({r['photo_size'][0]}x{r['photo_size'][1]}), "
         "image cache off vs on", r["images_cache_off_seconds"], r["images_cache_on_seconds"]),
    ]
    lines = [f"model: random {r['model_size']}, {r['device']} ({r['device_name']}, {r['cpu_threads']} threads), "
             f"{r['dtype']}, {r['documents']} documents, median of {r['runs']} runs", "",
             "| case | without the cache | with it | speedup |", "| --- | ---: | ---: | ---: |"]
    for name, before, after in rows:
        lines.append(f"| {name} | {before * 1000:,.1f} ms | {after * 1000:,.1f} ms | {before / after:.1f}× |")
    lines.append(f"\nimage cache held {r['image_cache_bytes'] / 2**20:,.0f} MiB for {r['documents']} photos")
    return "\n".join(lines)


def format_serving(report: dict) -> str:
    names = list(report["configurations"])
    single, one, two = names
    rows = report["configurations"]
    lines = [f"model: random {report['model_size']}, {report['cores']} cores ({report['cpu']}), {report['clients']} "
             f"concurrent clients for {report['seconds']:.0f} s, /v1/rerank with 8-16 documents, text and image queries",
             "", "| server | requests/s | pairs/s | p50 latency | p95 latency | errors |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in names:
        r = rows[name]
        lines.append(f"| {name} | {r['requests_per_second']:.2f} | {r['pairs_per_second']:.1f} | "
                     f"{r['p50_seconds']:.2f} s | {r['p95_seconds']:.2f} s | {r['errors']} |")
    large = report["large_request_seconds"]
    lines += ["", f"2 replicas vs 1 replica: {rows[two]['requests_per_second'] / rows[one]['requests_per_second']:.2f}x "
              f"requests/s; vs the single process: {rows[two]['requests_per_second'] / rows[single]['requests_per_second']:.2f}x",
              f"one request of 64 image documents (median of runs): 1 replica {large[one]:.2f} s, 2 replicas "
              f"{large[two]:.2f} s ({large[two] / large[one]:.2f}x the latency)"]
    return "\n".join(lines)


def format_stability(report: dict) -> str:
    pairs = list(next(iter(report["scenarios"].values())))
    lines = [f"model: random {report['model_size']}, {report['device']}, {report['dtype']}: largest score difference",
             "", "| scenario | " + " | ".join(pairs) + " |", "| --- |" + " ---: |" * len(pairs)]
    for name, diffs in report["scenarios"].items():
        lines.append(f"| {name} | " + " | ".join(f"{diffs[p]:.1e}" for p in pairs) + " |")
    return "\n".join(lines)


def format_table(report: dict) -> str:
    lines = [
        f"model: random {report['family']} {report['model_size']} ({report['parameters'] / 1e6:,.1f} M parameters), "
        f"{report['device']} ({report['device_name']}, {report['cpu_threads']} threads), {report['dtype']}, "
        f"{report['attn_implementation']}, batch {report['batch_size']}, median of {report['runs']} runs",
        "",
        "| scenario | path | pairs/s | speedup | max score diff | peak memory |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, scenario in report["scenarios"].items():
        for path, result in scenario["paths"].items():
            lines.append(
                f"| {name} | {path} | {result['pairs_per_second']:.2f} | {result['speedup']:.2f}× | "
                f"{result['max_score_diff']:.1e} | {result['peak_bytes'] / 2**20:,.0f} MiB |"
            )
    memory_note = "peak CUDA allocation" if report["device"].startswith("cuda") else "peak RSS above the start of a run"
    lines.append(f"\nspeedup: against the per-pair loop; peak memory: {memory_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lychee_gradio.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(SIZES), default="qwen2_5_vl",
                        help="qwen2_5_vl (lychee-rerank-mm) or qwen3_vl (Qwen3-VL-Reranker)")
    parser.add_argument("--model-size", default="small",
                        help="tiny, small; 7b for qwen2_5_vl; 2b or 8b for qwen3_vl")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--attn", default="auto", help="auto, sdpa or flash_attention_2")
    parser.add_argument("--docs", type=int, default=None,
                        help="documents per text scenario (default 64; image docs: half); --caches: per request "
                             "(default 32); --stability: default 32")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per path (the median is reported)")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--serving", action="store_true",
                        help="instead: concurrent /v1/rerank clients against one process, 1 and 2 Ray replicas")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of --serving")
    parser.add_argument("--seconds", type=float, default=20, help="how long --serving drives each server")
    parser.add_argument("--caches", action="store_true",
                        help="instead: what the score cache and the image cache save on repeated requests")
    parser.add_argument("--stability", action="store_true",
                        help="instead of timing: the largest score difference between batch 1, batch 8 and prefix "
                             "reuse (use with --dtype bfloat16)")
    args = parser.parse_args(argv)
    if args.model_size not in SIZES[args.family]:
        parser.error(f"--model-size for {args.family}: one of {', '.join(sorted(SIZES[args.family]))}")
    if args.stability:
        print(format_stability(run_stability(args.model_size, args.device, args.dtype, args.docs or 32, args.family)))
        return
    if args.caches:
        report = run_caches(args.model_size, args.device, args.dtype, args.docs or 32, args.runs, family=args.family)
        print(format_caches(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("caches.json").write_text(json.dumps(report, indent=2))
        return
    if args.serving:
        report = run_serving(args.model_size, args.clients, args.seconds, args.runs)
        print(format_serving(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("serving.json").write_text(json.dumps(report, indent=2))
        return

    report = run_benchmark(args.model_size, args.device, args.dtype, args.docs or 64, args.runs, args.attn, args.max_pixels,
                           args.family)
    print(format_table(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
