"""Why this score, timed (`--explain`): an image document's 8x8 map and a text's weights through the engine
(variants batched behind the shared prefix) against scoring each variant on its own, one call each."""

from __future__ import annotations

import statistics
import time

import torch

from ..contract import Item
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..explain import DEFAULT_GRID, cells_of, mean_colour, occluded, segments_of, without
from ..families import FAMILIES
from .common import QUERY_TEXT, cpu_name, synthetic_image, text_documents


def run_explain(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
    family: str = "qwen2_5_vl",
    grid: int = DEFAULT_GRID,
) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device, family=FAMILIES[family])
    photo = synthetic_image(7, 512)
    text = text_documents(processor.tokenizer, 1, min_tokens=120, max_tokens=121)[0]
    cases = {"image": Item(image=photo), "text": Item(text=text)}
    report = {
        "model_size": size,
        "device": runtime.device,
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "runs": runs,
        "grid": grid,
        "cases": {},
    }
    for name, document in cases.items():
        if name == "image":
            colour = mean_colour(photo)
            variants = [
                Item(image=occluded(photo, box, colour))
                for box in cells_of(photo, grid, scorer.family.pixel_factor, scorer.family.min_pixels, scorer.max_pixels)
            ]
        else:
            variants = [Item(text=without(text, a, b)) for a, b in segments_of(text)]

        def engine():
            found = scorer.explain(QUERY_TEXT, document, grid=grid, targets=("document",))
            return [
                value.delta
                for part in found.images + found.text
                for value in getattr(part, "cells", []) + getattr(part, "segments", [])
            ]

        def one_by_one():
            base = scorer.score(QUERY_TEXT, [document])[0]
            return [base - scorer.score(QUERY_TEXT, [variant])[0] for variant in variants]

        engine(), one_by_one()  # warm-up
        timings = {"engine": [], "one_by_one": []}
        values = {}
        for _ in range(runs):
            for path, run in (("engine", engine), ("one_by_one", one_by_one)):
                started = time.perf_counter()
                values[path] = run()
                timings[path].append(time.perf_counter() - started)
        median = {path: statistics.median(seconds) for path, seconds in timings.items()}
        report["cases"][name] = {
            "variants": len(variants),
            "engine_seconds": median["engine"],
            "one_by_one_seconds": median["one_by_one"],
            "speedup": median["one_by_one"] / median["engine"],
            "largest_difference": max(abs(a - b) for a, b in zip(values["engine"], values["one_by_one"])),
        }
    return report


def format_explain(report: dict) -> str:
    r = report
    lines = [
        f"Why this score: {r['model_size']} random model on {r['device_name']} ({r['device']}, {r['dtype']}, "
        f"{r['cpu_threads']} threads), median of {r['runs']} runs, query: text",
        "",
        "| document | variants | through the engine | one variant per call | speedup | largest difference |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, case in r["cases"].items():
        what = f"512x512 image, {r['grid']}x{r['grid']} map" if name == "image" else "text, one weight per segment"
        lines.append(
            f"| {what} | {case['variants']} | {case['engine_seconds']:.2f} s | "
            f"{case['one_by_one_seconds']:.2f} s | {case['speedup']:.1f}x | {case['largest_difference']:.1e} |"
        )
    return "\n".join(lines)
