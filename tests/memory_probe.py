"""Run by test_doors.py in a process of its own: 32 documents of 7000x7000 PNG through /v1/rerank.

Prints one JSON line: the answer's status, the process's peak memory growth during the request and
what stayed afterwards (MB, resident set). The image cache is off, so what stays is what leaked.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import sys
import threading
import time

import httpx
import psutil
from PIL import Image, ImageDraw

from lychee_gradio import LycheeScorer, app


def documents(count: int = 32, side: int = 7000) -> list[dict]:
    found = []
    for i in range(count):
        image = Image.new("RGB", (side, side), (i * 7 % 256, 100, 200))
        ImageDraw.Draw(image).ellipse((1000 + i * 10, 1000, 5000, 5000), fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=True)
        found.append({"image": base64.b64encode(buffer.getvalue()).decode()})
    return found


def main(model: str) -> None:
    scorer = LycheeScorer.load(model, device="cpu", dtype="float32")
    running = app.start(scorer, app.ServerSettings(port=0))
    body = {"query": "a cup", "documents": documents()}
    process = psutil.Process()
    httpx.post(f"{running.url}v1/rerank", json={"query": "warm", "documents": ["up"]}, timeout=120)
    gc.collect()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    answer = httpx.post(f"{running.url}v1/rerank", json=body, timeout=600)
    del body
    gc.collect()
    time.sleep(1)
    done.set()
    sampler.join()
    after = process.memory_info().rss
    running.close()
    print(json.dumps({"status": answer.status_code, "peak_mb": round((peak[0] - base) / 2**20),
                      "after_mb": round((after - base) / 2**20)}))


if __name__ == "__main__":
    main(sys.argv[1])
