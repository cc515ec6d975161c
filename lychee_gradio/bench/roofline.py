"""The machine's own limit (`--roofline`): how close the engine comes to this CPU's (or GPU's) matrix-multiply
rate, in float32 and in the dtype `auto` picks here, on the same random weights, in one run.

For each dtype:
- the **matmul limit**: the rate of `torch.nn.functional.linear` at the model's own shapes (a pass of
  `--roofline-tokens` tokens through the language model's q/up/down projections, and the vision tower's),
  median of several calls;
- the engine on text query × N text documents and text query × M 512² image documents: pairs/s (median of
  `runs`), RSS while scoring, and the **effective rate** = 2 × non-embedding parameters × tokens run / time
  (language model: its parameters without the token embeddings, times the tokens it ran, padding included;
  vision tower: its blocks times the patches, its merger times the merged tokens); the **fraction of the
  limit** = the time the limit would need for that work / the time it took;
- the largest score difference between float32 and `auto` on the same pairs;
- with `--plain-stream`, `auto` (where it is bf16) once more with the residual stream in bf16 too, to show what
  the engine's float32 stream (engine/precision.py) costs and gains.

The dtype `auto` picks and why comes from `engine.weights.choose_runtime`, the rule `LycheeScorer.load`
follows; torch's threads are set as `load` sets them (`fit_cpu_threads`).
"""

from __future__ import annotations

import gc
import statistics
import time

import torch

from ..engine.precision import keep_residual_float32
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime, fit_cpu_threads
from ..families import FAMILIES
from .common import QUERY_TEXT, PeakMemory, cpu_name, synthetic_image, text_documents


class _Counter:
    """Tokens a module was run on: `rows(args, kwargs)` per call, summed."""

    def __init__(self, module: torch.nn.Module, rows):
        self.count = 0
        module.register_forward_pre_hook(lambda _module, args, kwargs: self._add(rows(args, kwargs)), with_kwargs=True)

    def _add(self, rows: int) -> None:
        self.count += rows


def _language_rows(args, kwargs) -> int:
    embeds = kwargs.get("inputs_embeds")
    ids = kwargs.get("input_ids")
    found = embeds if embeds is not None else ids if ids is not None else (args[0] if args else None)
    return int(found.shape[0] * found.shape[1]) if found is not None else 0


def _vision_rows(args, kwargs) -> int:
    found = kwargs.get("hidden_states", args[0] if args else None)
    return int(found.shape[0]) if found is not None else 0


def parameter_counts(model) -> dict[str, int]:
    """Non-embedding parameters: the language model's (without its token embeddings; the head runs two rows
    only), the vision tower's blocks and patch embedding (per patch), and its mergers (per merged token)."""
    inner = model.model
    language = sum(p.numel() for name, p in inner.language_model.named_parameters() if "embed_tokens" not in name)
    merger = sum(p.numel() for name, p in inner.visual.named_parameters() if "merger" in name)
    vision = sum(p.numel() for name, p in inner.visual.named_parameters() if "merger" not in name and "pos_embed" not in name)
    return {"language": language, "vision": vision, "merger": merger}


def matmul_rate(inputs: int, outputs: int, tokens: int, dtype: torch.dtype, device: str, repeats: int = 5) -> float:
    """FLOP/s of `linear` (tokens × inputs) by (outputs × inputs), the median of `repeats` calls."""
    x = torch.randn(tokens, inputs, dtype=dtype, device=device)
    w = torch.randn(outputs, inputs, dtype=dtype, device=device)
    torch.nn.functional.linear(x, w)  # first call: oneDNN picks its kernel
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * tokens * inputs * outputs / statistics.median(times)


def model_limit(config, dtype: torch.dtype, device: str, tokens: int) -> dict[str, float]:
    """The matmul rate at the model's shapes: the language model's h→h, h→i and i→h projections together,
    and the vision tower's."""

    def shapes_rate(hidden: int, intermediate: int) -> float:
        shapes = [(hidden, hidden), (hidden, intermediate), (intermediate, hidden)]
        seconds = sum(2 * tokens * a * b / matmul_rate(a, b, tokens, dtype, device) for a, b in shapes)
        return sum(2 * tokens * a * b for a, b in shapes) / seconds

    text, vision = config.text_config, config.vision_config
    return {
        "language": shapes_rate(text.hidden_size, text.intermediate_size),
        "vision": shapes_rate(vision.hidden_size, vision.intermediate_size),
    }


def run_roofline(
    size: str = "small",
    family: str = "qwen2_5_vl",
    device: str = "cpu",
    runs: int = 3,
    text_docs: int = 16,
    image_docs: int = 8,
    image_side: int = 512,
    tokens: int = 1024,
    dtypes: tuple[str, ...] = ("float32", "auto"),
    bf16_weights: bool = True,
    plain_stream: bool = False,
) -> dict:
    """With `plain_stream`, each half-precision dtype also runs with its residual stream in that dtype (plain bf16,
    the engine's own float32 stream turned off: engine/precision.py), on the same pairs."""
    threads = fit_cpu_threads() if device == "cpu" else None
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=torch.float32, device=device, family=family)
    if bf16_weights:  # as a published checkpoint holds them: bf16 values, upcast for the float32 run
        model.to(torch.bfloat16).to(torch.float32)
    counts = parameter_counts(model)
    merge = model.config.vision_config.spatial_merge_size**2
    texts = text_documents(processor.tokenizer, text_docs)
    images = [synthetic_image(seed, image_side) for seed in range(image_docs)]
    scenarios = {f"text query × {text_docs} text docs": texts, f"text query × {image_docs} {image_side}² image docs": images}
    report = {
        "family": FAMILIES[family].name,
        "model_size": size,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "cpu_threads": threads,
        "torch": torch.__version__,
        "runs": runs,
        "parameters": counts,
        "limit_tokens": tokens,
        "bf16_weights": bf16_weights,
        "dtypes": {},
    }
    scores_by_dtype: dict[str, dict[str, list[float]]] = {}
    variants = [(asked, False) for asked in dtypes]
    if plain_stream:
        variants += [
            (asked, True) for asked in dtypes if choose_runtime(device, asked, "sdpa").dtype in (torch.bfloat16, torch.float16)
        ]
    for asked, plain in variants:
        runtime = choose_runtime(device, asked, "sdpa")
        model.to(runtime.dtype)
        gc.collect()
        scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=device, family=FAMILIES[family])
        keep_residual_float32(model, on=not plain)
        label = f"{asked}, plain stream" if plain else asked
        language = _Counter(model.model.language_model, _language_rows)
        vision = _Counter(model.model.visual, _vision_rows)
        limit = model_limit(model.config, runtime.dtype, device, tokens)
        rows = {}
        scores_by_dtype[label] = {}
        for name, documents in scenarios.items():
            scorer.score(QUERY_TEXT, documents[:2])  # warm-up: first-call allocations and kernel choices
            times, scores = [], None
            with PeakMemory(torch.device(device)) as rss:
                for _ in range(runs):
                    language.count = vision.count = 0
                    start = time.perf_counter()
                    scores = scorer.score(QUERY_TEXT, documents)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            flops = {
                "language": 2 * counts["language"] * language.count,
                "vision": 2 * (counts["vision"] * vision.count + counts["merger"] * vision.count // merge),
            }
            needed = flops["language"] / limit["language"] + flops["vision"] / limit["vision"]
            rows[name] = {
                "seconds": times,
                "median_seconds": seconds,
                "pairs_per_second": len(documents) / seconds,
                "language_tokens": language.count,
                "vision_patches": vision.count,
                "effective_flops": (flops["language"] + flops["vision"]) / seconds,
                "fraction_of_limit": needed / seconds,
                "rss_bytes": rss.peak_rss,
            }
            scores_by_dtype[label][name] = scores
        report["dtypes"][label] = {
            "dtype": runtime.dtype_name,
            "why": runtime.why,
            "limit_flops": limit,
            "residual_float32": scorer.residual_float32,
            "scenarios": rows,
        }
        scorer.close()
        keep_residual_float32(model)
    if len(variants) > 1:
        first, *others = scores_by_dtype
        report["largest_difference"] = {
            other: {
                name: max(abs(a - b) for a, b in zip(scores_by_dtype[first][name], scores_by_dtype[other][name]))
                for name in scenarios
            }
            for other in others
        }
    return report


def format_roofline(report: dict) -> str:
    lines = [
        f"{report['family']} random-{report['model_size']} on {report['device_name']} ({report['device']}, "
        f"{report['cpu_threads'] or '-'} threads, torch {report['torch']}), median of {report['runs']}; weights "
        + ("bf16 values (as the published checkpoints hold them)" if report["bf16_weights"] else "float32 values"),
        f"non-embedding parameters: language model {report['parameters']['language'] / 1e6:.0f} M, vision "
        f"{(report['parameters']['vision'] + report['parameters']['merger']) / 1e6:.0f} M",
        "",
    ]
    for asked, row in report["dtypes"].items():
        limit = row["limit_flops"]
        stream = " (float32 residual stream)" if row.get("residual_float32") else ""
        lines.append(
            f"--dtype {asked}: {row['why']}{stream}; matmul limit at the model's shapes "
            f"({report['limit_tokens']} tokens): language {limit['language'] / 1e9:.0f} GFLOP/s, "
            f"vision {limit['vision'] / 1e9:.0f} GFLOP/s"
        )
        lines.append(f"  {'scenario':<34} {'pairs/s':>8} {'s':>8} {'GFLOP/s':>8} {'of limit':>9} {'RSS GB':>7}")
        for name, figures in row["scenarios"].items():
            lines.append(
                f"  {name:<34} {figures['pairs_per_second']:>8.3f} {figures['median_seconds']:>8.2f} "
                f"{figures['effective_flops'] / 1e9:>8.1f} {figures['fraction_of_limit']:>8.0%} "
                f"{figures['rss_bytes'] / 2**30:>7.2f}"
            )
    first, *others = list(report["dtypes"])
    if others:
        lines.append("")
    for second in others:
        for name in report["dtypes"][first]["scenarios"]:
            ratio = (
                report["dtypes"][second]["scenarios"][name]["pairs_per_second"]
                / report["dtypes"][first]["scenarios"][name]["pairs_per_second"]
            )
            lines.append(
                f"{name}: {second} / {first} = {ratio:.2f}x pairs/s; largest score difference "
                f"{report['largest_difference'][second][name]:.4f}"
            )
    return "\n".join(lines)
