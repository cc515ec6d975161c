"""8- and 4-bit weights, measured (`--quantize int8|nf4|all`): the same random checkpoint loaded through the
real loader (`LycheeScorer.load`, transformers' BitsAndBytesConfig) in full precision and quantized; weights
bytes, pairs per second, peak memory while scoring, and how far the scores move from full precision."""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import torch

from ..contract import Item
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from .common import QUERY_TEXT, cpu_name, synthetic_image, text_documents, time_path


def run_quantize(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
    family: str = "qwen2_5_vl",
    docs: int = 32,
    modes: tuple[str, ...] = ("int8", "nf4"),
) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    texts = text_documents(processor.tokenizer, docs - docs // 4)
    documents = [Item(text=text) for text in texts] + [Item(image=synthetic_image(i, 512)) for i in range(docs // 4)]
    report = {
        "model_size": size,
        "family": family,
        "device": runtime.device,
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "docs": len(documents),
        "runs": runs,
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "precisions": {},
    }
    with tempfile.TemporaryDirectory(prefix="lychee-bench-quantize-") as folder:
        checkpoint = Path(folder) / f"random-{size}"
        started = time.perf_counter()
        # Saved in the compute dtype, as published checkpoints are (bf16 on a GPU).
        build_random_model(processor, size, dtype=runtime.dtype, family=family).save_pretrained(checkpoint)
        processor.save_pretrained(checkpoint)
        report["build_seconds"] = time.perf_counter() - started
        reference = None
        for quantize in (None, *modes):
            started = time.perf_counter()
            scorer = LycheeScorer.load(checkpoint, device=runtime.device, dtype=runtime.dtype, quantize=quantize)
            loaded = time.perf_counter() - started
            timed = time_path(lambda: scorer.score(QUERY_TEXT, documents), runs, torch.device(runtime.device))
            scores = timed["scores"]
            reference = reference or scores
            report["precisions"][quantize or report["dtype"]] = {
                "weights_bytes": scorer.weights_bytes,
                "load_seconds": loaded,
                "median_seconds": timed["median_seconds"],
                "pairs_per_second": len(documents) / timed["median_seconds"],
                "peak_bytes": timed["peak_bytes"],
                "largest_difference": max(abs(a - b) for a, b in zip(scores, reference)),
            }
            scorer = timed = None  # freed before the next precision loads
            gc.collect()
            if runtime.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return report


def format_quantize(report: dict) -> str:
    r = report
    memory = "peak CUDA memory" if r["device"].startswith("cuda") else "peak RSS growth"
    lines = [
        f"Quantized weights: {r['model_size']} random {r['family']} model on {r['device_name']} ({r['device']}, "
        f"compute {r['dtype']}, {r['cpu_threads']} threads), {r['docs']} documents (3/4 text, 1/4 512² images), "
        f"text query, median of {r['runs']} runs",
        "",
        f"| weights | weights size | × full | pairs/s | × full | {memory} while scoring | largest score difference from full |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    full = next(iter(r["precisions"].values()))
    for name, p in r["precisions"].items():
        lines.append(
            f"| {name} | {p['weights_bytes'] / 2**20:,.1f} MiB | {p['weights_bytes'] / full['weights_bytes']:.2f} | "
            f"{p['pairs_per_second']:.1f} | {p['pairs_per_second'] / full['pairs_per_second']:.2f} | "
            f"{p['peak_bytes'] / 2**20:,.0f} MiB | {p['largest_difference']:.4f} |"
        )
    return "\n".join(lines)
