"""What every benchmark shares: product-like documents and photos, timing, peak memory, the machine's name."""

from __future__ import annotations

import platform
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, ImageDraw

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
        f"text query, {max(1, docs // 2)} 512² image docs": (QUERY_TEXT, [synthetic_image(i) for i in range(max(1, docs // 2))]),
    }


class PeakMemory:
    """Peak memory while a block runs: CUDA allocations on a GPU, else the process RSS above its start
    (`peak_bytes`); on the CPU also the largest RSS itself (`peak_rss`)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self.peak_rss = 0

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
            self.peak_rss = self._peak


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


def drive_clients(clients: int, client: Callable[[int], None]) -> float:
    """Run `client(k)` on `clients` threads at once, k = 0..clients-1; the wall seconds until all are done."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def load_summary(latencies: list[float], errors: int, wall: float, pairs: int) -> dict:
    """A load run's figures: requests and pairs per second, p50 and p95 latency (seconds)."""
    latencies = sorted(latencies)

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "pairs_per_second": pairs / wall,
        "p50_seconds": percentile(0.5),
        "p95_seconds": percentile(0.95),
    }


def machine_of(runtime) -> dict:
    """What a report says of where it ran: the device, dtype, the device's name and the CPU threads."""
    return {
        "device": runtime.device,
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
