"""Collections (`--collection`): what a search over the user's own files costs, part by part.

- Embedding: items per second of the random Qwen3-VL-Embedding model at `--model-size` (built in memory from the
  Qwen3-VL sizes; `build_embedding_checkpoint` writes the tiny one only), texts and 512² images, median of runs.
- The store (`search.store.Store` on a folder: Qdrant Edge, search/local_store.py) at each of `sizes` random unit
  vectors of 2,048 values (from `INDEX_FROM` on, clustered ones too: `data_of`), written in batches through
  `Store.put`: write time, `Store.index` (forced from `INDEX_FROM` items, to measure the HNSW graph lychee index
  builds from `HNSW_FROM`), size on disk, reopen time (a new `Store` on the folder, then a count),
  search latency p50/p95 of random queries at top 20 as written (exact), after the index and after reopening, each
  with its recall@20 against numpy's exact search of the same vectors, and RSS (peaks include the bench's own copy
  of the vectors, kept for that exact search).
- A whole search on the small models: a folder of texts and images indexed (`index_folders`, then `Store.index`),
  then `searching.search` end to end (embed the query, the store's top 20, read and rerank the 20) and its stages,
  for a text query and a 512² image query.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..engine.embedder import LycheeEmbedder
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES, QWEN3_VL_EMBEDDING
from ..inputs import to_item
from ..search.indexing import index_folders
from ..search.local_store import HNSW_EF, HNSW_FROM
from ..search.searching import read_hits, rerank_hits, search
from ..search.store import Store
from ..service import Service
from .common import QUERY_TEXT, PeakMemory, machine_of, synthetic_image, text_documents

DIMENSIONS = 2048
INDEX_FROM = 100_000  # the sizes whose HNSW graph the bench builds and measures (lychee index: from HNSW_FROM)
CLUSTERS = 1000  # the clustered data's centres (about 100 vectors each at 100,000)
NAME = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def random_embedder(size: str, runtime) -> LycheeEmbedder:
    """A random Qwen3-VL-Embedding model of `size` (the Qwen3-VL backbone alone, as the loader builds it)."""
    processor = build_processor("qwen3_vl")
    backbone = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family="qwen3_vl").model
    return LycheeEmbedder(
        backbone, processor, model_name=f"random-embedding-{size}", device=runtime.device, family=QWEN3_VL_EMBEDDING
    )


def time_embedding(embedder: LycheeEmbedder, count: int, runs: int) -> dict:
    """Items per second of `count` texts (60-200 tokens) and `count` 512² images, each one call, median of `runs`."""
    kinds = {
        "texts": [to_item(text, "text") for text in text_documents(embedder.processor.tokenizer, count)],
        "images": [to_item(synthetic_image(k), "image") for k in range(count)],
    }
    found = {}
    for kind, items in kinds.items():
        embedder.embed_items(items[:4])  # warm-up: first-call allocations
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            embedder.embed_items(items)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        found[kind] = {"items": count, "seconds": times, "median_seconds": seconds, "items_per_second": count / seconds}
    return found


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSIONS), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def data_of(kind: str, count: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(`count` unit vectors, `queries` unit queries) of `kind`: "random" (independent: no neighbour stands out, the
    worst case for a graph index) or "clustered" (CLUSTERS random centres, each vector and query a centre plus
    random noise of the same norm: cosine about 0.5 within a cluster, about 0 between clusters)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return unit_vectors(rng, count), unit_vectors(rng, queries)
    centres = unit_vectors(rng, CLUSTERS)

    def around(n: int) -> np.ndarray:
        vectors = centres[rng.integers(0, CLUSTERS, n)] + unit_vectors(rng, n)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return around(count), around(queries)


def probe(store: Store, vectors: np.ndarray, probes: np.ndarray, top_k: int) -> dict:
    """Each probe alone through `Store.search` (after 3 warm-up queries): p50/p95, and recall@k against numpy's exact
    top k of the same vectors (also timed: what the brute force costs in numpy, for scale)."""
    for query in probes[:3]:
        store.search(NAME, query.tolist(), top_k)
    latencies, exact_latencies, recalls, same_order, score_error = [], [], [], 0, 0.0
    for query in probes:
        started = time.perf_counter()
        hits = store.search(NAME, query.tolist(), top_k)
        latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = vectors @ query
        best = np.argpartition(-scores, top_k)[:top_k]
        exact = best[np.argsort(-scores[best])].tolist()
        exact_latencies.append(time.perf_counter() - started)
        got = [int(hit.path[1:]) for hit in hits]
        recalls.append(len(set(got) & set(exact)) / top_k)
        same_order += got == exact
        score_error = max([score_error, *(abs(h.score - float(scores[i])) for h, i in zip(hits, got))])
    return {
        "seconds": latencies,
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "numpy_exact_p50": percentile(exact_latencies, 0.5),
        "recall_at_k": statistics.mean(recalls),
        "recall_min": min(recalls),
        "same_order": same_order,
        "largest_score_difference": score_error,
    }


def time_store(count: int, *, batch: int, queries: int, top_k: int, seed: int, where: Path, data: str = "random") -> dict:
    """`count` unit vectors (`data_of`) in a new Store: write, search (exact), `Store.index` (the HNSW graph from
    local_store.HNSW_FROM items) and search again, size on disk, reopen and search again, memory."""
    vectors, probes = data_of(data, count, queries, seed)
    folder = Path(tempfile.mkdtemp(prefix="lychee-bench-store-", dir=where))
    cpu = torch.device("cpu")
    found: dict = {
        "data": data,
        "vectors": count,
        "dimensions": DIMENSIONS,
        "batch": batch,
        "queries": queries,
        "top_k": top_k,
        "bench_matrix_bytes": int(vectors.nbytes),
        "search": {},
    }
    try:
        start_rss = rss()
        store = Store(folder)
        store.ensure(NAME, DIMENSIONS)
        rows_seconds = 0.0
        with warnings.catch_warnings(record=True) as caught, PeakMemory(cpu) as memory:
            warnings.simplefilter("always")
            started = time.perf_counter()
            for first in range(0, count, batch):
                made = time.perf_counter()
                rows = [
                    ({"root": "/bench", "path": f"v{i}", "page": None, "kind": "text", "sha256": ""}, vectors[i].tolist())
                    for i in range(first, min(count, first + batch))
                ]
                rows_seconds += time.perf_counter() - made
                store.put(NAME, rows)
            write = time.perf_counter() - started
        found.update(
            write_seconds=write,
            rows_seconds=rows_seconds,  # our part: the rows' dicts and vectors as lists; the rest is Store.put
            points_per_second=count / write,
            write_peak_rss=memory.peak_rss,
            write_peak_above_start=memory.peak_rss - start_rss,
            warnings=sorted({str(w.message) for w in caught}),
        )
        found["search"]["as written"] = probe(store, vectors, probes, top_k)
        with PeakMemory(cpu) as memory:
            started = time.perf_counter()
            store.index(NAME, force=count >= INDEX_FROM)  # the graph, measured where a collection would want one
            index_seconds = time.perf_counter() - started
        found.update(index_seconds=index_seconds, index_peak_rss=memory.peak_rss, indexed=count >= INDEX_FROM)
        shard = getattr(getattr(store, "backend", None), "shard", None)
        if shard is not None:  # the local store: how many vectors its graph holds
            found["indexed_vectors"] = shard(NAME).info().indexed_vectors_count
        if found["indexed"]:
            found["search"]["after Store.index"] = probe(store, vectors, probes, top_k)
        found["rss_before_close"] = rss()
        store.close()
        del store
        gc.collect()
        found["disk_bytes"] = folder_bytes(folder)
        before = rss()
        with PeakMemory(cpu) as memory:
            started = time.perf_counter()
            store = Store(folder)
            counted = store.count(NAME)
            found.update(reopen_seconds=time.perf_counter() - started, reopened_count=counted)
        found.update(reopen_peak_rss=memory.peak_rss, reopen_rss_added=rss() - before)
        found["search"]["reopened"] = probe(store, vectors, probes, top_k)
        found["peak_rss"] = max(found["write_peak_rss"], found["index_peak_rss"], found["reopen_peak_rss"], rss())
        found["peak_above_start"] = found["peak_rss"] - start_rss
        store.close()
        del store
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()
    return found


def make_catalogue(folder: Path, tokenizer, count: int) -> tuple[int, int]:
    """`count` files: half product texts (.txt, 60-200 tokens), half 512² photos (.png). (texts, images)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts, images = count - count // 2, count // 2
    for k, text in enumerate(text_documents(tokenizer, texts, seed=1)):
        (folder / f"text-{k:04d}.txt").write_text(text, encoding="utf-8")
    for k in range(images):
        synthetic_image(1000 + k).save(folder / f"photo-{k:04d}.png")
    return texts, images


def time_whole_search(embedder, scorer, *, indexed: int, runs: int, top_k: int, rerank: int, where: Path) -> dict:
    """Index `indexed` files, then for a text query and a 512² image query: `search()` end to end and its stages,
    median of `runs` each (one warm-up first). What the 20 candidates are (texts or images) is the random
    embedding model's doing, and it sets the reranker's cost: the report says which they were."""
    top = tempfile.mkdtemp(prefix="lychee-bench-search-", dir=where)
    try:
        catalogue = Path(top) / "catalogue"
        texts, images = make_catalogue(catalogue, embedder.processor.tokenizer, indexed)
        store = Store(Path(top) / "data")
        started = time.perf_counter()
        done = index_folders(store, NAME, [catalogue], embedder)
        store.index(NAME)  # as lychee index does (a no-op below HNSW_FROM items)
        index_seconds = time.perf_counter() - started
        service = Service(scorer, Config(), embedders=[embedder], collections=lambda: store)
        found = {}
        for label, query in (("text query", QUERY_TEXT), ("512² image query", synthetic_image(10_000))):
            stages: dict[str, list[float]] = {
                "embed the query": [],
                "first stage": [],
                "read + rerank": [],
                "whole search() call": [],
            }
            kinds: dict[str, int] = {}

            def whole(query=query) -> dict:
                with service.request("/v1/search") as req:
                    return search(req, service.collections(), embedder, scorer, NAME, query, top_k, rerank)

            def staged(query=query, stages=stages, kinds=kinds) -> None:
                with service.request("/v1/search") as req:
                    started = time.perf_counter()
                    query_item, _ = req.read(query, [], embedder)
                    (vector,) = embedder.embed_items([query_item], context=req.context).tolist()
                    stages["embed the query"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    hits = store.search(NAME, vector, top_k)
                    stages["first stage"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    candidates = hits[:rerank]
                    rerank_hits(req, scorer, query_item, candidates, read_hits(req, store, scorer, query, candidates))
                    stages["read + rerank"].append(time.perf_counter() - started)
                    kinds.clear()
                    for hit in candidates:
                        kinds[hit.kind] = kinds.get(hit.kind, 0) + 1

            answer = whole()  # warm-up
            for _ in range(runs):
                scorer.cache.clear()
                started = time.perf_counter()
                answer = whole()
                stages["whole search() call"].append(time.perf_counter() - started)
                scorer.cache.clear()
                staged()
            found[label] = {
                "candidates": kinds,
                "results": len(answer["results"]),
                "stages": {name: {"seconds": t, "median_seconds": statistics.median(t)} for name, t in stages.items()},
            }
        store.close()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return {
        "indexed": {"texts": texts, "images": images, **done.as_dict()},
        "index_seconds": index_seconds,
        "index_items_per_second": indexed / index_seconds,
        "top_k": top_k,
        "rerank_top_n": rerank,
        "queries": found,
    }


def run_collection(
    size: str = "small",
    device: str = "auto",
    dtype: str = "float32",
    runs: int = 3,
    family: str = "qwen2_5_vl",
    sizes: tuple[int, ...] = (10_000, 100_000),
    *,
    items: int = 64,
    indexed: int = 200,
    queries: int = 50,
    top_k: int = 20,
    rerank: int = 20,
    batch: int = 1000,
    seed: int = 0,
) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    where = Path(tempfile.gettempdir())
    report: dict = {
        "model_size": size,
        "family": FAMILIES[family].name,
        **machine_of(runtime),
        "runs": runs,
        "store": "Qdrant Edge",
        "qdrant_edge": version("qdrant-edge-py"),
        "hnsw_from": HNSW_FROM,
        "index_from": INDEX_FROM,
        "hnsw_ef": HNSW_EF,
        "start_rss": rss(),
        "load_average_at_start": os.getloadavg(),  # others' work on the machine makes the timings noisier
    }
    # The store first, before any model is built: its RSS figures are then the store's and the vectors' alone.
    options = {"batch": batch, "queries": queries, "top_k": top_k, "seed": seed, "where": where}
    report["sizes"] = [time_store(n, **options) for n in sizes]
    # Where the store builds its graph, the same size again on clustered data: random vectors are a graph's worst case.
    report["sizes"] += [time_store(n, **options, data="clustered") for n in sizes if n >= INDEX_FROM]
    embedder = random_embedder(size, runtime)
    report["embedding_model"] = {
        "name": embedder.model_name,
        "size": size,
        "parameters": sum(p.numel() for p in embedder.model.parameters()),
        "dimensions": embedder.dimensions,
        "built": "in memory: build_random_model(qwen3_vl) backbone (build_embedding_checkpoint writes tiny only)",
    }
    report["embedding"] = time_embedding(embedder, items, runs)
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device, family=FAMILIES[family])
    report["search"] = time_whole_search(embedder, scorer, indexed=indexed, runs=runs, top_k=top_k, rerank=rerank, where=where)
    report["peak_rss_of_process"] = rss_peak()
    report["load_average_at_end"] = os.getloadavg()
    return report


def rss_peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _gib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:,.0f} MiB"


def format_collection(report: dict) -> str:
    r, model = report, report["embedding_model"]
    lines = [
        f"embedding model: random Qwen3-VL-Embedding, {model['size']} sizes ({model['parameters'] / 1e6:.0f} M parameters, "
        f"{model['dimensions']} dimensions, built {model['built']}); {r['device']} ({r['device_name']}, "
        f"{r['cpu_threads']} threads), {r['dtype']}, median of {r['runs']} run(s)",
        "",
        "| items, one call | count | seconds | items/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, label in (("texts", "texts (60–200 tokens)"), ("images", "512² images")):
        e = r["embedding"][kind]
        lines.append(f"| {label} | {e['items']} | {e['median_seconds']:.2f} | {e['items_per_second']:.1f} |")
    first = r["sizes"][0] if r["sizes"] else {}
    lines += [
        "",
        f"store: {r['store']} (qdrant-edge-py {r['qdrant_edge']}), unit vectors of {DIMENSIONS:,} values (random; "
        f"clustered too where the bench builds a graph: {CLUSTERS:,} centres), "
        f"written in batches of {first.get('batch', 0):,} through Store.put; the bench builds the HNSW graph from "
        f"{r.get('index_from', INDEX_FROM):,} items (lychee index: from {r['hnsw_from']:,}; searched at hnsw_ef {r['hnsw_ef']})",
        "",
        "| data | vectors | write | points/s | Store.index | in the graph | on disk | reopen + count | "
        "peak RSS (above start) | RSS added by reopening |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in r["sizes"]:
        index = f"{s['index_seconds']:.1f} s" if s["indexed"] else f"none ({s['index_seconds'] * 1000:.0f} ms)"
        lines.append(
            f"| {s['data']} | {s['vectors']:,} | {s['write_seconds']:.1f} s | {s['points_per_second']:,.0f} | {index} | "
            f"{s.get('indexed_vectors', 0):,} | {_gib(s['disk_bytes'])} | {_ms(s['reopen_seconds'])} | {_gib(s['peak_rss'])} "
            f"({_gib(s['peak_above_start'])}) | {_gib(s['reopen_rss_added'])} |"
        )
    lines += [
        "",
        f"search: {first.get('queries', 0)} queries drawn as each data set is, one at a time, top "
        f"{first.get('top_k', 0)}; recall against numpy's exact top k of the same vectors",
        "",
        "| data | vectors | searched | p50 | p95 | recall@k (lowest) | in exact order | numpy exact p50 |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in r["sizes"]:
        for name, f in s["search"].items():
            lines.append(
                f"| {s['data']} | {s['vectors']:,} | {name} | {_ms(f['p50'])} | {_ms(f['p95'])} | {f['recall_at_k']:.3f} "
                f"({f['recall_min']:.2f}) | {f['same_order']}/{s['queries']} | {_ms(f['numpy_exact_p50'])} |"
            )
    for s in r["sizes"]:
        note = f"{s['data']} {s['vectors']:,}: our rows {s['rows_seconds']:.1f} s of the write (the rest is Store.put)"
        note += f", reopened count {s['reopened_count']:,}, the bench's own matrix {_gib(s['bench_matrix_bytes'])}"
        lines.append(note + "".join(f"; warned: {w}" for w in s["warnings"]))
    q = r["search"]
    ix = q["indexed"]
    lines += [
        "",
        f"whole search: {ix['texts']} texts + {ix['images']} 512² images indexed (index_folders, Store.index) in "
        f"{q['index_seconds']:.1f} s ({q['index_items_per_second']:.1f} items/s); top_k {q['top_k']}, rerank "
        f"{q['rerank_top_n']} by the random {r['family']} reranker, {r['model_size']} sizes",
        "",
        "| query | the candidates | stage | median | runs |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for label, found in q["queries"].items():
        kinds = ", ".join(f"{n} {k}s" for k, n in sorted(found["candidates"].items()))
        for name, stage in found["stages"].items():
            times = ", ".join(_ms(t) for t in stage["seconds"])
            lines.append(f"| {label} | {kinds} | {name} | {_ms(stage['median_seconds'])} | {times} |")
            label = kinds = ""
    lines.append(f"\npeak RSS of the process: {_gib(r['peak_rss_of_process'])}")
    loads = (r["load_average_at_start"][0], r["load_average_at_end"][0])
    lines.append("load average (1 min) at start, end: " + ", ".join(f"{x:.2f}" for x in loads))
    return "\n".join(lines)
