"""Run by the tests in a process of its own: 32 documents of 7000x7000 PNG through /v1/rerank; or, with
`--concurrent N --pool-mb M`, N such requests (of `--documents` each) at once under an image-memory pool of
M MB.

Prints one JSON line: the answers' statuses, the process's peak memory growth during the requests and
what stayed afterwards (MB, resident set). The image cache is off, so what stays is what leaked.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import threading
import time

import httpx
import psutil
from PIL import Image, ImageDraw

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config, Limits


def documents(count: int = 32, side: int = 7000, seed: int = 0) -> list[dict]:
    found = []
    for i in range(count):
        image = Image.new("RGB", (side, side), ((i * 7 + seed * 31) % 256, 100, 200))
        ImageDraw.Draw(image).ellipse((1000 + i * 10, 1000 + seed * 10, 5000, 5000), fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=True)
        found.append({"image": base64.b64encode(buffer.getvalue()).decode()})
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--pool-mb", type=float, default=None)
    args = parser.parse_args()
    scorer = LycheeScorer.load(args.model, device="cpu", dtype="float32")
    # With a pool, the requests queue for it as long as they need (--image-memory-wait): the proof is their memory.
    limits = (
        Limits() if args.pool_mb is None else Limits(image_memory_in_flight=int(args.pool_mb * 2**20), image_memory_wait=900.0)
    )
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=limits)))
    bodies = [{"query": "a cup", "documents": documents(args.documents, seed=k)} for k in range(args.concurrent)]
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
    statuses: list[int] = []

    def send(body: dict) -> None:
        statuses.append(httpx.post(f"{running.url}v1/rerank", json=body, timeout=900).status_code)

    senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    del bodies
    gc.collect()
    time.sleep(1)
    done.set()
    sampler.join()
    after = process.memory_info().rss
    running.close()
    print(
        json.dumps(
            {
                "status": statuses[0] if len(statuses) == 1 else sorted(statuses),
                "peak_mb": round((peak[0] - base) / 2**20),
                "after_mb": round((after - base) / 2**20),
            }
        )
    )


if __name__ == "__main__":
    main()
