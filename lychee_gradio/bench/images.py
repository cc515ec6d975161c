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
import json
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


def random_scorer(size: str, family: str, device: str, dtype: str):
    """A random model of `size` and its scorer, with timers on its vision tower and language model:
    (runtime, scorer, vision timer, language timer)."""
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device, family=FAMILIES[family])
    inner = model.model
    return runtime, scorer, _Timer(inner.visual, runtime.device), _Timer(inner.language_model, runtime.device)


def run_images(
    photos: int = 60,
    width: int = 1600,
    height: int = 1200,
    *,
    size: str = "tiny",
    family: str = "qwen2_5_vl",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
    through_page: bool = True,
) -> dict:
    runtime, scorer, vision, language = random_scorer(size, family, device, dtype)
    model = scorer.model
    report = {
        "photos": photos,
        "image_size": [width, height],
        "model_size": size,
        "family": family,
        "device": runtime.device,
        "dtype": str(runtime.dtype).replace("torch.", ""),
        "attention": runtime.attn_implementation,
        "runs": runs,
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "prepare_workers": encoding.PREPARE_WORKERS,
        "paths": {},
    }
    workers = encoding.PREPARE_WORKERS
    with tempfile.TemporaryDirectory(prefix="lychee-bench-images-") as folder:
        paths = _photos(Path(folder), photos, width, height)
        rules = ImageRules(keep_pixels=scorer.max_pixels)
        scores = {}
        for path_name, (pool, packed) in {"before": (1, False), "after": (workers, True)}.items():
            encoding.PREPARE_WORKERS = pool
            scorer.scheduler.pipeline = packed  # before: every photo prepared first, then the passes
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
            median["outside"] = median["total"] - median["decode"] - median["prepare"] - median["vision"] - median["language"]
            report["paths"][path_name] = {
                "seconds": median,
                "calls_per_vision_layer": max(calls.values()) if calls else 0,
                "images_per_pass": min(scorer.batch_size, photos),
            }
        encoding.PREPARE_WORKERS = workers
        scorer.scheduler.pipeline = True
        vision_attention.install(model)
        report["largest_difference"] = max(abs(a - b) for a, b in zip(scores["before"], scores["after"]))
        report["speedup"] = report["paths"]["before"]["seconds"]["total"] / report["paths"]["after"]["seconds"]["total"]
        if through_page:
            report["page"] = _through_page(scorer, paths, runs, scores["after"])
    return report


def _through_page(scorer, paths: list[str], runs: int, library_scores: list[float]) -> dict | None:
    """`/rank_images` end to end, the same photos (None without Gradio), three ways: as the page sends it (one
    upload request with every photo, then the call, over Gradio's HTTP API), and through gradio_client (one
    upload request per photo), without and with downloading the answer's gallery."""
    try:
        import httpx
        from gradio_client import Client, handle_file

        from .. import app
    except ImportError:
        return None
    running = app.start(scorer, app.ServerSettings(port=0))
    try:
        expected = sorted(range(len(paths)), key=lambda i: (-library_scores[i], i))

        def as_the_page_sends_it() -> list[int]:
            files = [("files", (Path(path).name, Path(path).read_bytes(), "image/jpeg")) for path in paths]
            uploaded = httpx.post(f"{running.url}gradio_api/upload", files=files, timeout=300).json()
            images = [
                {"path": path, "orig_name": Path(original).name, "meta": {"_type": "gradio.FileData"}}
                for path, original in zip(uploaded, paths)
            ]
            event = httpx.post(
                f"{running.url}gradio_api/call/rank_images",
                timeout=60,
                json={"data": [QUERY_TEXT, None, images, None, 0, None, 0]},
            ).json()
            answer = httpx.get(f"{running.url}gradio_api/call/rank_images/{event['event_id']}", timeout=600).text
            kind, data = answer.strip().splitlines()[-2:]
            if kind != "event: complete":
                raise RuntimeError(f"/rank_images answered {kind}: {data[:300]}")
            return [row["index"] for row in json.loads(data.removeprefix("data: "))[1]]

        def through(client) -> list[int]:
            _, ranking = client.predict(query_text=QUERY_TEXT, images=[handle_file(p) for p in paths], api_name="/rank_images")
            return [row["index"] for row in ranking]

        # gradio_client uploads each photo in a request of its own, each with a new HTTP client (which loads
        # the CA certificates again), and downloads every image of the answer's gallery by default (a browser
        # loads them as they come into view): timed each way.
        ways = {
            "seconds_as_the_page_sends_it": as_the_page_sends_it,
            "seconds": lambda: through(Client(running.url, verbose=False, download_files=False)),
            "seconds_with_gallery_download": lambda: through(Client(running.url, verbose=False)),
        }
        found = {"same_ranking": True}
        for name, call in ways.items():
            times = []
            for run in range(runs + 1):  # the first is a warm-up
                started = time.perf_counter()
                ranking = call()
                if run:
                    times.append(time.perf_counter() - started)
                found["same_ranking"] = found["same_ranking"] and ranking == expected
            found[name] = statistics.median(times)
        return found
    finally:
        running.close()


def format_images(report: dict) -> str:
    r = report
    lines = [
        f"Image ranking: {r['photos']} JPEG photos of {r['image_size'][0]}x{r['image_size'][1]}, "
        f"{r['model_size']} random {r['family']} model on {r['device_name']} ({r['device']}, {r['dtype']}, "
        f"{r['attention']}, {r['cpu_threads']} threads; {r['prepare_workers']} preparing threads after), "
        f"median of {r['runs']} runs, image cache off",
        "",
        "| stage | before | after |",
        "| --- | ---: | ---: |",
    ]
    names = {
        "decode": "decode the files (at the edge)",
        "prepare": "prepare: resize and patches",
        "vision": "vision tower",
        "language": "language model",
        "outside": "outside the model (the rest)",
        "total": "library call, end to end",
    }
    before, after = r["paths"]["before"], r["paths"]["after"]
    for key, name in names.items():
        overlapped = key == "outside"  # after, preparing overlaps the passes: nothing is left to attribute
        lines.append(
            f"| {name} | {before['seconds'][key]:.2f} s | "
            f"{'(overlapped)' if overlapped else format(after['seconds'][key], '.2f') + ' s'} |"
        )
    lines.append(
        f"| vision attention calls per layer, {before['images_per_pass']} images per pass | "
        f"{before['calls_per_vision_layer']} | {after['calls_per_vision_layer']} |"
    )
    lines.append("")
    lines.append(
        "After, preparing overlaps the model's passes (a chunk of photos is prepared while the one before "
        "runs): its row is the time until the last photo was prepared, and the stages add up to more than "
        "the total."
    )
    lines.append(f"Library call: {r['speedup']:.2f}x faster; largest score difference {r['largest_difference']:.1e}.")
    page = r.get("page")
    if page:
        total = after["seconds"]["total"]
        ways = (
            ("as the page sends it (one upload request, then the call)", "seconds_as_the_page_sends_it"),
            ("through gradio_client (one upload request per photo)", "seconds"),
            ("through gradio_client, downloading the gallery's images too (its default)", "seconds_with_gallery_download"),
        )
        lines.append("")
        lines.append(
            f"/rank_images end to end, the same {r['photos']} photos, uploads included "
            f"(same ranking as the library: {page['same_ranking']}):"
        )
        for name, key in ways:
            lines.append(f"- {name}: {page[key]:.2f} s = {page[key] / total:.2f}x the library call")
    return "\n".join(lines)
