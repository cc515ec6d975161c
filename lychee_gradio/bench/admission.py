"""Admission: what large image requests cost a server, and whether others wait behind them (`--admission`).

Starts `lychee load --demo` (the tiny random model) as a process of its own on 127.0.0.1 and samples its resident
memory while it answers, on each `--image-memory-mb` given:

1. one `/v1/rerank` request of 10 documents x 16 distinct 999 x 999 PNGs;
2. one request of 100 photos of 1200 x 900 and a 3-second clip, with a one-photo request sent 1 s after it.

For each: the status, the seconds to answer, and the server's peak memory above what it held before. With the
default pool (2048 MB) the large requests need more than it holds and are refused at once (413); with a pool large
enough to take them whole (8192 MB), the same requests run, which is what a request alone cost before it was bounded.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image


def _png(width: int, height: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)  # distinct, compressible
    image = Image.fromarray(small).resize((width, height), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _clip(seconds: float = 3.0) -> str:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 7 % 255, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return base64.b64encode(buffer.getvalue()).decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """`lychee load --demo` on 127.0.0.1, stopped by its handle; `peak_above(start)` samples its RSS."""

    def __init__(self, image_memory_mb: int, request_timeout: float):
        self.port = _free_port()
        command = [
            sys.executable,
            "-m",
            "lychee_gradio.cli",
            "load",
            "--demo",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--image-memory-mb",
            str(image_memory_mb),
            "--request-timeout",
            str(request_timeout),
            "--dtype",
            "float32",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 300
        while not any("lychee-gradio is ready:" in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("lychee load --demo did not start:\n" + "".join(self.lines))
            time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}/"

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def _measure(server: _Server, send) -> dict:
    """Run `send()` (returns a dict of figures) while sampling the server's RSS every 20 ms."""
    start = server.rss()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss())
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        figures = send()
    finally:
        done.set()
        sampler.join()
    return {**figures, "rss_before_mb": round(start / 2**20), "peak_rise_mb": round((peak[0] - start) / 2**20)}


def run_admission(pools: tuple[int, ...] = (2048, 8192), request_timeout: float = 90.0) -> dict:
    import httpx

    many = [{"images": [_png(999, 999, 16 * d + k) for k in range(16)]} for d in range(10)]
    photos = [{"image": _png(1200, 900, 1000 + k)} for k in range(100)]
    clip = {"video": _clip()}
    one = [{"image": _png(1200, 900, 5000)}]
    rows = []
    for pool in pools:
        server = _Server(pool, request_timeout)
        try:
            httpx.post(f"{server.url}v1/rerank", json={"query": "warm", "documents": one}, timeout=120)

            def distinct_images() -> dict:
                started = time.perf_counter()
                answer = httpx.post(f"{server.url}v1/rerank", json={"query": "q", "documents": many}, timeout=600)
                return {"status": answer.status_code, "seconds": round(time.perf_counter() - started, 2)}

            def photos_and_clip() -> dict:
                found: dict = {}

                def big() -> None:
                    started = time.perf_counter()
                    answer = httpx.post(f"{server.url}v1/rerank", json={"query": "q", "documents": [*photos, clip]}, timeout=600)
                    found.update(status=answer.status_code, seconds=round(time.perf_counter() - started, 2))

                worker = threading.Thread(target=big)
                worker.start()
                time.sleep(1.0)
                started = time.perf_counter()
                small = httpx.post(f"{server.url}v1/rerank", json={"query": "q", "documents": one}, timeout=600)
                found.update(one_photo_status=small.status_code, one_photo_seconds=round(time.perf_counter() - started, 2))
                worker.join()
                return found

            rows.append({"pool_mb": pool, "case": "10 docs x 16 distinct 999x999 PNGs", **_measure(server, distinct_images)})
            rows.append({"pool_mb": pool, "case": "100 photos 1200x900 + a 3 s clip", **_measure(server, photos_and_clip)})
        finally:
            server.close()
    from .common import cpu_name

    return {"machine": cpu_name(), "request_timeout": request_timeout, "rows": rows}


def format_admission(report: dict) -> str:
    lines = [
        f"admission on {report['machine']} (lychee load --demo, request timeout {report['request_timeout']:g} s)",
        "| image memory | request | status | seconds | one photo meanwhile | peak rise |",
        "| ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for row in report["rows"]:
        meanwhile = f"{row['one_photo_status']} in {row['one_photo_seconds']:g} s" if "one_photo_status" in row else "–"
        lines.append(
            f"| {row['pool_mb']} MB | {row['case']} | {row['status']} | {row['seconds']:g} | {meanwhile} | "
            f"{row['peak_rise_mb']} MB |"
        )
    return "\n".join(lines)
