"""The engine paths: the per-pair loop of the tutorials against the engine, with and without prefix
reuse (`python -m lychee_gradio.bench`); and how far scores move with batching (`--stability`)."""

from __future__ import annotations

import functools

import torch

from ..engine.naive import NaiveScorer
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from .common import cpu_name, scenarios, time_path


def run_benchmark(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    docs: int = 64,
    runs: int = 3,
    attn_implementation: str = "auto",
    max_pixels: int | None = None,
    family: str = "qwen2_5_vl",
) -> dict:
    runtime = choose_runtime(device, dtype, attn_implementation)
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    if runtime.attn_implementation != "sdpa":
        model.set_attn_implementation(runtime.attn_implementation)
    scorer = LycheeScorer(
        model, processor, model_name=f"random-{size}", device=runtime.device, max_pixels=max_pixels, family=FAMILIES[family]
    )
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

    paths = {"per-pair loop": per_pair_loop, "engine, no prefix reuse": engine(False), "engine, prefix reuse": engine(True)}
    report = {
        "family": FAMILIES[family].name,
        "model_size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": runtime.device,
        "device_name": torch.cuda.get_device_name() if torch_device.type == "cuda" else cpu_name(),
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
        results = {path: time_path(functools.partial(run, query, documents), runs, torch_device) for path, run in paths.items()}
        baseline = results["per-pair loop"]
        for result in results.values():
            result["pairs_per_second"] = len(documents) / result["median_seconds"]
            result["speedup"] = baseline["median_seconds"] / result["median_seconds"]
            result["max_score_diff"] = max(abs(a - b) for a, b in zip(result["scores"], baseline["scores"]))
        report["scenarios"][name] = {"documents": len(documents), "paths": results}
    return report


def run_stability(
    size: str = "small", device: str = "auto", dtype: str = "bfloat16", docs: int = 32, family: str = "qwen2_5_vl"
) -> dict:
    """The largest score difference between batch size 1, batch size 8 and prefix reuse, per scenario.

    Scores are pointwise in exact arithmetic; in low precision different batch shapes round
    differently. This measures how much, on one random model, for the three request kinds.
    """
    runtime = choose_runtime(device, dtype, "sdpa")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    configurations = {"batch 1": (1, False), "batch 8": (8, False), "batch 8 + prefix reuse": (8, True)}
    report = {"model_size": size, "device": runtime.device, "dtype": str(runtime.dtype).replace("torch.", ""), "scenarios": {}}
    for name, (query, documents) in scenarios(processor.tokenizer, docs).items():
        scores = {}
        for label, (batch_size, reuse) in configurations.items():
            scorer = LycheeScorer(
                model,
                processor,
                model_name=f"random-{size}",
                device=runtime.device,
                batch_size=batch_size,
                reuse_prefix=reuse,
                family=FAMILIES[family],
            )
            scores[label] = scorer.score(query, documents)
        labels = list(scores)
        report["scenarios"][name] = {
            f"{a} vs {b}": max(abs(x - y) for x, y in zip(scores[a], scores[b]))
            for i, a in enumerate(labels)
            for b in labels[i + 1 :]
        }
    return report


def format_stability(report: dict) -> str:
    pairs = list(next(iter(report["scenarios"].values())))
    lines = [
        f"model: random {report['model_size']}, {report['device']}, {report['dtype']}: largest score difference",
        "",
        "| scenario | " + " | ".join(pairs) + " |",
        "| --- |" + " ---: |" * len(pairs),
    ]
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
