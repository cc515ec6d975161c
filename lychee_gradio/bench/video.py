"""Video documents (`--video N`): N clips of `--video-seconds` (10) against one description, by stage: decoding and
sampling the frames (video.py, PyAV), preparing them (the processor's video path), the vision tower, the language
model and the rest; pairs/s and the RSS while scoring, median of `runs`, on one random model."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..contract import Item
from ..engine.weights import fit_cpu_threads
from ..video import load_video
from .common import PeakMemory, cpu_name
from .images import random_scorer


def make_clips(folder: Path, count: int, seconds: float, fps: int = 24, size=(320, 240)) -> list[str]:
    """`count` H.264 clips of moving shapes, `seconds` long at `fps` (PyAV)."""
    import av
    import numpy as np

    paths = []
    for seed in range(count):
        path = folder / f"clip-{seed:02d}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            frames = int(seconds * fps)
            for i in range(frames):
                pixels = np.full((size[1], size[0], 3), (seed * 37) % 256, dtype=np.uint8)
                x = int(i * (size[0] - 40) / max(1, frames - 1))
                pixels[60 + seed * 8 : 100 + seed * 8, x : x + 40] = (255, 60 + seed * 20, 40)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(str(path))
    return paths


def run_video(
    clips: int = 8,
    seconds: float = 10.0,
    *,
    size: str = "small",
    family: str = "qwen2_5_vl",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 3,
) -> dict:
    runtime, scorer, vision, language = random_scorer(size, family, device, dtype)
    threads = fit_cpu_threads() if runtime.device == "cpu" else None
    query = "a red rectangle moving from left to right"
    preparing = {"seconds": 0.0}
    encode_video = scorer.encoder.encode_video

    def timed_encode_video(*args, **kwargs):
        start = time.perf_counter()
        try:
            return encode_video(*args, **kwargs)
        finally:
            preparing["seconds"] += time.perf_counter() - start

    scorer.encoder.encode_video = timed_encode_video
    with tempfile.TemporaryDirectory() as folder:
        paths = make_clips(Path(folder), clips, seconds)
        decode_times, prepare_times, totals, visions, languages = [], [], [], [], []
        scorer.score(query, [{"video": paths[0]}])  # warm-up
        with PeakMemory(torch.device(runtime.device)) as rss:
            for _ in range(runs):
                start = time.perf_counter()
                videos = [
                    load_video(path, f"documents[{i}].video", keep_pixels=scorer.max_pixels) for i, path in enumerate(paths)
                ]
                decoded = time.perf_counter()
                vision.seconds = language.seconds = preparing["seconds"] = 0.0
                scorer.score(query, [{"video": video} for video in videos])
                totals.append(time.perf_counter() - start)
                decode_times.append(decoded - start)
                prepare_times.append(preparing["seconds"])
                visions.append(vision.seconds)
                languages.append(language.seconds)
        frames = len(videos[0].frames)
        (pair,) = scorer.encoder.encode(Item(text=query), [Item(video=videos[0])], scorer.family.default_instruction)
    scorer.close()
    median = statistics.median
    total = median(totals)
    return {
        "family": scorer.family.name,
        "model_size": size,
        "device": runtime.device,
        "dtype": runtime.dtype_name,
        "device_name": torch.cuda.get_device_name() if runtime.device.startswith("cuda") else cpu_name(),
        "cpu_threads": threads,
        "clips": clips,
        "seconds": seconds,
        "frames_per_clip": frames,
        "tokens_per_pair": pair.length,
        "runs": runs,
        "stages": {
            "decode and sample": median(decode_times),
            "prepare (processor)": median(prepare_times),
            "vision tower": median(visions),
            "language model": median(languages),
            "rest": total - median(decode_times) - median(prepare_times) - median(visions) - median(languages),
        },
        "total_seconds": total,
        "pairs_per_second": clips / total,
        "rss_bytes": rss.peak_rss,
    }


def format_video(report: dict) -> str:
    lines = [
        f"{report['family']} random-{report['model_size']} on {report['device_name']} ({report['device']}, "
        f"{report['dtype']}, {report['cpu_threads'] or '-'} threads), median of {report['runs']}: "
        f"{report['clips']} clips of {report['seconds']:g} s, {report['frames_per_clip']} frames each, "
        f"{report['tokens_per_pair']} tokens per pair",
        "",
        f"{'stage':<22} {'seconds':>8}",
    ]
    for stage, seconds in report["stages"].items():
        lines.append(f"{stage:<22} {seconds:>8.2f}")
    lines += [
        f"{'total':<22} {report['total_seconds']:>8.2f}",
        "",
        f"pairs/s {report['pairs_per_second']:.2f}; RSS while scoring {report['rss_bytes'] / 2**30:.2f} GB",
    ]
    return "\n".join(lines)
