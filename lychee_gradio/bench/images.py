"""Image ranking at the speed of the device (`--images N --image-size WxH`): one description against N JPEG
photos, through the library (`scorer.score`) and, where Gradio is installed, through the page's door
(`/rank_images` with gradio_client), before and after (image preparation in a pool of threads, one
attention call per vision layer).

Stages of the library call: decoding the files (at the edge, within the image limits), preparing them for
the model (resize and patches), the vision tower, the language model, and the rest (prompts, batching,
Python). "before" prepares one image after another and runs transformers' per-window vision attention;
"after" is what the app does. Both on the same random model, image cache off, median of `runs`.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..contract import RequestContext
from ..engine import encoding, vision_attention
from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from ..inputs import ImageRules, to_items
from .common import QUERY_TEXT, cpu_name, synthetic_image


class _Timer:
    """Seconds spent inside a module's forward (summed over calls)."""

    def __init__(self, module: torch.nn.Module, device: str):
        self.seconds, self._start, self.device = 0.0, 0.0, device
        module.register_forward_pre_hook(self._enter)
        module.register_forward_hook(self._leave)

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _enter(self, *_):
        self._sync()
        self._start = time.perf_counter()

    def _leave(self, *_):
        self._sync()
        self.seconds += time.perf_counter() - self._start


def _photos(folder: Path, count: int, width: int, height: int) -> list[str]:
    paths = []
    for seed in range(count):
        image = synthetic_image(seed, max(width, height)).resize((width, height))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        path = folder / f"photo-{seed:03d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


def run_images(photos: int = 60, width: int = 1600, height: int = 1200, *, size: str = "tiny",
               family: str = "qwen2_5_vl", device: str = "auto", dtype: str = "auto", runs: int = 3,
               through_page: bool = True) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device,
                          family=FAMILIES[family])
    inner = model.model
    vision, language = _Timer(inner.visual, runtime.device), _Timer(inner.language_model, runtime.device)
    report = {"photos": photos, "image_size": [width, height], "model_size": size, "family": family,
              "device": runtime.device, "dtype": str(runtime.dtype).replace("torch.", ""),
              "attention": runtime.attn_implementation, "runs": runs,
              "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
              "cpu_threads": torch.get_num_threads(), "prepare_workers": encoding.PREPARE_WORKERS, "paths": {}}
    workers = encoding.PREPARE_WORKERS
    with tempfile.TemporaryDirectory(prefix="lychee-bench-images-") as folder:
        paths = _photos(Path(folder), photos, width, height)
        rules = ImageRules(keep_pixels=scorer.max_pixels)
        scores = {}
        for path_name, (pool, packed) in {"before": (1, False), "after": (workers, True)}.items():
            encoding.PREPARE_WORKERS = pool
            scorer.pipeline = packed  # before: every photo prepared first, then the passes
            (vision_attention.install if packed else vision_attention.uninstall)(model)
            stages = {"decode": [], "prepare": [], "vision": [], "language": [], "total": []}
            for run in range(runs + 1):  # the first is a warm-up
                vision.seconds = language.seconds = 0.0
                started = time.perf_counter()
                items = to_items([{"image": path} for path in paths], rules=rules)
                decoded = time.perf_counter()
                prepared_at: list[float] = []
                context = RequestContext(on_prepared=lambda done, total: prepared_at.append(time.perf_counter()))
                found = scorer.score(QUERY_TEXT, items, context=context)
                finished = time.perf_counter()
                if run == 0:
                    continue
                prepare = (prepared_at[-1] - decoded) if prepared_at else 0.0
                stages["decode"].append(decoded - started)
                stages["prepare"].append(prepare)
                stages["vision"].append(vision.seconds)
                stages["language"].append(language.seconds)
                stages["total"].append(finished - started)
                scores[path_name] = found
            with vision_attention.count_attention_calls(model) as calls:
                scorer.score(QUERY_TEXT, to_items([{"image": p} for p in paths[: scorer.batch_size]], rules=rules))
            median = {stage: statistics.median(values) for stage, values in stages.items()}
            median["outside"] = median["total"] - median["decode"] - median["prepare"] - median["vision"] \
                - median["language"]
            report["paths"][path_name] = {
                "seconds": median, "calls_per_vision_layer": max(calls.values()) if calls else 0,
                "images_per_pass": min(scorer.batch_size, photos)}
        encoding.PREPARE_WORKERS = workers
        scorer.pipeline = True
        vision_attention.install(model)
        report["largest_difference"] = max(abs(a - b) for a, b in zip(scores["before"], scores["after"]))
        report["speedup"] = report["paths"]["before"]["seconds"]["total"] / report["paths"]["after"]["seconds"]["total"]
        if through_page:
            report["page"] = _through_page(scorer, paths, runs, scores["after"])
    return report


def _through_page(scorer, paths: list[str], runs: int, library_scores: list[float]) -> dict | None:
    """`/rank_images` end to end through gradio_client, the same photos (None without Gradio)."""
    try:
        from gradio_client import Client, handle_file

        from .. import app
    except ImportError:
        return None
    running = app.start(scorer, app.ServerSettings(port=0))
    try:
        found = {}
        expected = sorted(range(len(paths)), key=lambda i: (-library_scores[i], i))
        # gradio_client downloads every image of the answer's gallery by default (a browser loads them as
        # they come into view): timed both ways.
        for name, download in (("seconds", False), ("seconds_with_gallery_download", True)):
            client = Client(running.url, verbose=False, download_files=download)
            times, ranking = [], None
            for run in range(runs + 1):
                started = time.perf_counter()
                _, ranking = client.predict(query_text=QUERY_TEXT, images=[handle_file(p) for p in paths],
                                            api_name="/rank_images")
                if run:
                    times.append(time.perf_counter() - started)
            found[name] = statistics.median(times)
            found["same_ranking"] = found.get("same_ranking", True) and [r["index"] for r in ranking] == expected
        return found
    finally:
        running.close()


def format_images(report: dict) -> str:
    r = report
    lines = [f"Image ranking: {r['photos']} JPEG photos of {r['image_size'][0]}x{r['image_size'][1]}, "
             f"{r['model_size']} random {r['family']} model on {r['device_name']} ({r['device']}, {r['dtype']}, "
             f"{r['attention']}, {r['cpu_threads']} threads; {r['prepare_workers']} preparing threads after), "
             f"median of {r['runs']} runs, image cache off",
             "", "| stage | before | after |", "| --- | ---: | ---: |"]
    names = {"decode": "decode the files (at the edge)", "prepare": "prepare: resize and patches",
             "vision": "vision tower", "language": "language model", "outside": "outside the model (the rest)",
             "total": "library call, end to end"}
    before, after = r["paths"]["before"], r["paths"]["after"]
    for key, name in names.items():
        overlapped = key == "outside"  # after, preparing overlaps the passes: nothing is left to attribute
        lines.append(f"| {name} | {before['seconds'][key]:.2f} s | "
                     f"{'(overlapped)' if overlapped else format(after['seconds'][key], '.2f') + ' s'} |")
    lines.append(f"| vision attention calls per layer, {before['images_per_pass']} images per pass | "
                 f"{before['calls_per_vision_layer']} | {after['calls_per_vision_layer']} |")
    lines.append("")
    lines.append("After, preparing overlaps the model's passes (a chunk of photos is prepared while the one before "
                 "runs): its row is the time until the last photo was prepared, and the stages add up to more than "
                 "the total.")
    lines.append(f"Library call: {r['speedup']:.2f}x faster; largest score difference {r['largest_difference']:.1e}.")
    page = r.get("page")
    if page:
        total = after["seconds"]["total"]
        lines.append(f"/rank_images end to end (gradio_client, same photos, uploads included): {page['seconds']:.2f} s "
                     f"= {page['seconds'] / total:.2f}x the library call; {page['seconds_with_gallery_download']:.2f} s "
                     f"= {page['seconds_with_gallery_download'] / total:.2f}x with the client downloading the "
                     f"gallery's {r['photos']} images; same ranking as the library: {page['same_ranking']}.")
    return "\n".join(lines)
