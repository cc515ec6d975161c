"""`torch.compile` of the language model's forward, against the eager engine: the same random weights and pairs.

    python -m lychee_gradio.bench --compile                                   # small, CPU
    python -m lychee_gradio.bench --compile --family qwen3_vl --model-size 2b --image-docs 0

A probe of a lever the engine does not pull (docs/performance.md says why): eager first, then the language
model's forward compiled (dynamic shapes; inductor unless `backend` says otherwise) and timed after one
warm-up request per scenario, whose time (the compilation) is reported apart.
"""

from __future__ import annotations

import time

import torch

from .common import QUERY_TEXT, cpu_name, synthetic_image, text_documents, time_path
from .images import random_scorer


def run_compile(
    size: str = "small",
    family: str = "qwen2_5_vl",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
    text_docs: int = 16,
    image_docs: int = 4,
    backend: str = "inductor",
    freezing: bool = False,
) -> dict:
    runtime, scorer, _, _ = random_scorer(size, family, device, dtype)
    tokenizer = scorer.processor.tokenizer
    scenarios = {f"text query × {text_docs} text docs": text_documents(tokenizer, text_docs)}
    if image_docs:
        scenarios[f"text query × {image_docs} 512² image docs"] = [synthetic_image(seed) for seed in range(image_docs)]
    report = {
        "family": family,
        "model_size": size,
        "device": runtime.device,
        "dtype": runtime.dtype_name,
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "runs": runs,
        "backend": backend,
        "freezing": freezing,
        "scenarios": {},
    }
    device_type = torch.device(runtime.device)
    eager = {
        name: time_path(lambda docs=docs: scorer.score(QUERY_TEXT, docs), runs, device_type) for name, docs in scenarios.items()
    }
    language = scorer.model.model.language_model
    import torch._inductor.config as inductor
    from torch import _dynamo

    frozen = inductor.freezing
    try:
        inductor.freezing = freezing
        language.forward = torch.compile(language.forward, dynamic=True, backend=backend)
        for name, docs in scenarios.items():
            start = time.perf_counter()
            scorer.score(QUERY_TEXT, docs)  # the compilation, for this scenario's shapes
            first = time.perf_counter() - start
            compiled = time_path(lambda docs=docs: scorer.score(QUERY_TEXT, docs), runs, device_type)
            report["scenarios"][name] = {
                "eager_seconds": eager[name]["seconds"],
                "compiled_seconds": compiled["seconds"],
                "eager_pairs_per_second": len(docs) / eager[name]["median_seconds"],
                "compiled_pairs_per_second": len(docs) / compiled["median_seconds"],
                "ratio": eager[name]["median_seconds"] / compiled["median_seconds"],
                "first_compiled_seconds": first,
                "largest_difference": max(abs(a - b) for a, b in zip(eager[name]["scores"], compiled["scores"])),
            }
    finally:
        language.__dict__.pop("forward", None)  # the module's own forward again
        _dynamo.reset()  # and no compiled code kept (nor the model, through it)
        inductor.freezing = frozen
        scorer.close()
    return report


def format_compile(report: dict) -> str:
    lines = [
        f"{report['family']} random-{report['model_size']}, {report['dtype']}, on {report['device_name']} "
        f"({report['device']}, {report['cpu_threads']} threads, torch {report['torch']}), median of "
        f"{report['runs']}; torch.compile(backend={report['backend']}, dynamic=True"
        + (", inductor freezing" if report["freezing"] else "")
        + ") of the language model's forward",
        f"  {'scenario':<34} {'eager':>9} {'compiled':>9} {'ratio':>6} {'1st call s':>10} {'max diff':>9}",
    ]
    for name, row in report["scenarios"].items():
        lines.append(
            f"  {name:<34} {row['eager_pairs_per_second']:>9.3f} {row['compiled_pairs_per_second']:>9.3f} "
            f"{row['ratio']:>5.2f}x {row['first_compiled_seconds']:>10.1f} {row['largest_difference']:>9.1e}"
        )
    lines.append("  (pairs/s)")
    return "\n".join(lines)
