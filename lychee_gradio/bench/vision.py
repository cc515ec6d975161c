"""The vision tower alone, with and without one attention call per layer (engine/vision_attention.py).

N synthetic photos (width x height, then resized by the family's image processor within its default
max_pixels, or `max_pixels`) go through the random model's vision tower: transformers' own per-window /
per-image attention against the batched one. Reports the SDPA calls each vision layer makes, the tower's
median seconds (and the parts spent in its attention modules, all of them and the windowed layers' alone:
q/k/v projection, attention, output projection), and the largest difference between the two outputs. The
two ways alternate run by run.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..engine import vision_attention
from ..engine.random_model import build_processor, build_random_model
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from .common import cpu_name, synthetic_image


def run_vision(
    photos: int = 60,
    width: int = 1600,
    height: int = 1200,
    *,
    size: str = "small",
    family: str = "qwen2_5_vl",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
    max_pixels: int | None = None,
    attn_implementation: str = "sdpa",
) -> dict:
    """Time `photos` photos through the vision tower of a random `size` model, both ways (median of `runs`)."""
    runtime = choose_runtime(device, dtype, attn_implementation)
    spec = FAMILIES[family]
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    if runtime.attn_implementation != "sdpa":
        model.set_attn_implementation(runtime.attn_implementation)
    images = [synthetic_image(seed, max(width, height)).resize((width, height)) for seed in range(photos)]
    bound = max_pixels or spec.max_pixels
    encoded = processor.image_processor(
        images=images, return_tensors="pt", size={"shortest_edge": spec.min_pixels, "longest_edge": bound}
    )
    pixels = encoded["pixel_values"].to(runtime.device, runtime.dtype)
    grid = encoded["image_grid_thw"].to(runtime.device)
    visual = model.model.visual
    torch_device = torch.device(runtime.device)

    def tower():
        with torch.inference_mode():
            output = visual(pixels, grid_thw=grid).pooler_output
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
        return output

    layers = len(visual.blocks)
    full = getattr(visual, "fullatt_block_indexes", range(layers))  # Qwen3-VL: every layer attends per image
    windowed = [layer for layer in range(layers) if layer not in full]
    layer_seconds = [0.0] * layers  # this run's seconds inside each vision attention module

    def time_attention():
        """Hooks adding up the seconds spent inside each vision attention module."""
        started = {}

        def sync():
            if torch_device.type == "cuda":
                torch.cuda.synchronize()

        def enter(layer):
            def hook(_module, _args):
                sync()
                started[layer] = time.perf_counter()

            return hook

        def leave(layer):
            def hook(_module, _args, _output):
                sync()
                layer_seconds[layer] += time.perf_counter() - started[layer]

            return hook

        modules = vision_attention.vision_attention_modules(model)
        return [m.register_forward_pre_hook(enter(i)) for i, m in enumerate(modules)] + [
            m.register_forward_hook(leave(i)) for i, m in enumerate(modules)
        ]

    ways = (("per_chunk", vision_attention.uninstall), ("batched", vision_attention.install))
    results, outputs = {}, {}
    for key, use in ways:
        use(model)
        with vision_attention.count_attention_calls(model) as counts:
            outputs[key] = tower().float().cpu()  # also the warm-up
        results[key] = {
            "calls_per_layer": [counts.get(layer, 0) for layer in range(layers)],
            "seconds": [],
            "attention_seconds": [],
            "windowed_attention_seconds": [],
        }
    patched = vision_attention.installed(model)
    handles = time_attention()
    try:
        for _ in range(runs):
            for key, use in ways:  # the two ways alternate, so that a busy machine slows both alike
                use(model)
                layer_seconds[:] = [0.0] * layers
                start = time.perf_counter()
                tower()
                results[key]["seconds"].append(time.perf_counter() - start)
                results[key]["attention_seconds"].append(sum(layer_seconds))
                results[key]["windowed_attention_seconds"].append(sum(layer_seconds[i] for i in windowed))
    finally:
        for handle in handles:
            handle.remove()
        vision_attention.install(model)
    for result in results.values():
        for name in ("seconds", "attention_seconds", "windowed_attention_seconds"):
            result[f"median_{name}"] = statistics.median(result[name])
    per_chunk, batched = results["per_chunk"], results["batched"]
    difference = (outputs["per_chunk"] - outputs["batched"]).abs().max().item()
    return {
        "family": spec.name,
        "model_size": size,
        "photos": photos,
        "photo_size": f"{width}x{height}",
        "max_pixels": bound,
        "patches": int(grid.prod(-1).sum()),
        "grid": grid[0].tolist(),
        "vision_layers": layers,
        "windowed_layers": windowed,
        "device": runtime.device,
        "device_name": torch.cuda.get_device_name() if torch_device.type == "cuda" else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "attn_implementation": runtime.attn_implementation,
        "runs": runs,
        "torch": torch.__version__,
        "batched_installed": patched,
        "per_chunk": per_chunk,
        "batched": batched,
        "speedup": per_chunk["median_seconds"] / batched["median_seconds"],
        "max_abs_difference": difference,
    }


def format_vision(report: dict) -> str:
    lines = [
        f"vision tower: random {report['family']} {report['model_size']} ({report['vision_layers']} layers), "
        f"{report['photos']} photos of {report['photo_size']} (max_pixels {report['max_pixels']:,}: grid "
        f"{report['grid']}, {report['patches']:,} patches), {report['device']} ({report['device_name']}, "
        f"{report['cpu_threads']} threads), {report['dtype']}, {report['attn_implementation']}, "
        f"median of {report['runs']} runs",
        "",
        "| attention | calls per layer | calls in all | tower seconds | speedup | in attention | in windowed layers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("per window / image (transformers)", "per_chunk"), ("one call per layer", "batched")):
        result = report[key]
        calls = result["calls_per_layer"]
        speedup = report["speedup"] if key == "batched" else 1.0
        windowed = f"{result['median_windowed_attention_seconds']:.3f}" if report["windowed_layers"] else "-"
        lines.append(
            f"| {label} | {', '.join(map(str, calls))} | {sum(calls):,} | {result['median_seconds']:.3f} | "
            f"{speedup:.2f}× | {result['median_attention_seconds']:.3f} | {windowed} |"
        )
    lines.append(f"\nlargest output difference: {report['max_abs_difference']:.1e}")
    if not report["batched_installed"]:
        lines.append("(the batched attention was not installed: transformers version outside its range)")
    return "\n".join(lines)
