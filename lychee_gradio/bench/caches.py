"""What the score cache and the image cache save on repeated requests (`--caches`)."""

from __future__ import annotations

import statistics
import time
from typing import Callable

from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from .common import QUERY_TEXT, machine_of, synthetic_image, text_documents


def run_caches(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    docs: int = 32,
    runs: int = 3,
    photo_size: tuple[int, int] = (1600, 1200),
    family: str = "qwen2_5_vl",
) -> dict:
    """What the caches save, each timing a median of `runs`, each "first" run on emptied caches:

    - a request sent again (every pair a score-cache hit), in the engine and over /v1/rerank;
    - a request whose first half was sent before (half hits);
    - Image ranking: a new query over the same `docs // 1` photos, image cache off vs on.
    """
    import httpx

    from .. import app

    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)

    def scorer_with(**options) -> LycheeScorer:
        return LycheeScorer(
            model, processor, model_name=f"random-{size}", device=runtime.device, family=FAMILIES[family], **options
        )

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
    running = app.start(cached, app.ServerSettings(port=0))
    try:
        with httpx.Client(timeout=600) as client:
            for attempt in range(runs):
                cached.cache.clear()
                body = {"query": f"{QUERY_TEXT} {attempt}", "documents": texts}
                http_first.append(timed(lambda: client.post(running.url + "v1/rerank", json=body).raise_for_status()))
                http_repeated.append(timed(lambda: client.post(running.url + "v1/rerank", json=body).raise_for_status()))
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
        "model_size": size,
        **machine_of(runtime),
        "documents": docs,
        "runs": runs,
        "photo_size": list(photo_size),
        "first_seconds": median(first),
        "repeated_seconds": median(repeated),
        "http_first_seconds": median(http_first),
        "http_repeated_seconds": median(http_repeated),
        "all_new_seconds": median(all_new),
        "half_repeated_seconds": median(half_new),
        "images_cache_off_seconds": median(without),
        "images_cache_on_seconds": median(with_cache),
        "image_cache_bytes": image_on.image_cache.bytes,
    }


def format_caches(report: dict) -> str:
    r = report
    rows = [
        ("request sent again (engine)", r["first_seconds"], r["repeated_seconds"]),
        ("request sent again (/v1/rerank)", r["http_first_seconds"], r["http_repeated_seconds"]),
        ("half the documents seen before", r["all_new_seconds"], r["half_repeated_seconds"]),
        (
            f"new query over the same {r['documents']} photos ({r['photo_size'][0]}x{r['photo_size'][1]}), image cache off vs on",
            r["images_cache_off_seconds"],
            r["images_cache_on_seconds"],
        ),
    ]
    lines = [
        f"model: random {r['model_size']}, {r['device']} ({r['device_name']}, {r['cpu_threads']} threads), "
        f"{r['dtype']}, {r['documents']} documents, median of {r['runs']} runs",
        "",
        "| case | without the cache | with it | speedup |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, before, after in rows:
        lines.append(f"| {name} | {before * 1000:,.1f} ms | {after * 1000:,.1f} ms | {before / after:.1f}× |")
    lines.append(f"\nimage cache held {r['image_cache_bytes'] / 2**20:,.0f} MiB for {r['documents']} photos")
    return "\n".join(lines)
