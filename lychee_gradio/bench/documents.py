"""Long documents against one query (`--documents`): a PDF of many pages, a text of many tokens and a long clip, each
scored by its parts (parts.py) on a random model: parts per second, time per part, the engine (every part of the
request in shared passes behind one prefix) against the per-part loop (one call a part), and peak RSS."""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..engine.random_model import build_processor, build_random_model
from ..engine.scorer import LycheeScorer
from ..engine.weights import choose_runtime
from ..families import FAMILIES
from ..inputs import to_item
from ..inputs.images import ImageRules
from ..parts import parts_of
from .common import QUERY_TEXT, PeakMemory, machine_of, synthetic_image, text_documents


def pdf_of(pages: int, size: tuple[int, int] = (612, 792)) -> bytes:
    """A PDF of `pages` pages (US Letter at 72 dpi), each a picture (Pillow writes it)."""
    images = [synthetic_image(k, 512).resize(size) for k in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buffer.getvalue()


def long_text(tokenizer, tokens: int) -> str:
    """Product-page-like text of at least `tokens` tokens, in paragraphs."""
    paragraphs: list[str] = []
    while len(tokenizer.encode("\n\n".join(paragraphs), add_special_tokens=False)) < tokens:
        paragraphs.extend(text_documents(tokenizer, 8, seed=len(paragraphs), min_tokens=120, max_tokens=240))
    return "\n\n".join(paragraphs)


def run_documents(
    size: str = "small",
    device: str = "auto",
    dtype: str = "auto",
    runs: int = 2,
    family: str = "qwen2_5_vl",
    pages: int = 30,
    text_tokens: int = 12_000,
    clip_seconds: float = 300.0,
) -> dict:
    runtime = choose_runtime(device, dtype, "auto")
    processor = build_processor(family)
    model = build_random_model(processor, size, dtype=runtime.dtype, device=runtime.device, family=family)
    scorer = LycheeScorer(model, processor, model_name=f"random-{size}", device=runtime.device, family=FAMILIES[family])
    rules = ImageRules(keep_pixels=scorer.max_pixels, max_video_seconds=clip_seconds + 1, clip_segments=True)
    documents = {
        f"a PDF of {pages} pages": pdf_of(pages),
        f"a text of {text_tokens:,} tokens": long_text(processor.tokenizer, text_tokens),
    }
    with tempfile.TemporaryDirectory() as folder:
        from .video import make_clips

        (clip,) = make_clips(Path(folder), 1, clip_seconds, fps=4, size=(160, 120))
        length = f"{clip_seconds / 60:g} minutes" if clip_seconds % 60 == 0 else f"{clip_seconds:g} s"
        documents[f"a clip of {length}"] = to_item({"video": clip}, "clip", rules=rules)
    scorer.score("warm-up", ["a short text"])
    report = {"model_size": size, **machine_of(runtime), "runs": runs, "documents": {}}
    for name, document in documents.items():
        item = to_item(document, "document", rules=rules)
        parted = parts_of([item], "max", scorer.chunking())
        together, alone, peak = [], [], 0

        def shared() -> tuple:
            return scorer.score_with_logits(QUERY_TEXT, [item])[0]

        def one_by_one() -> list:
            return [scorer.score_with_logits(QUERY_TEXT, [part], long_documents="truncate")[0] for part in parted.items]

        # Both paths once on two parts first (first-call allocations), then timed in turn, each run starting with
        # the other path, on an emptied score cache.
        scorer.score_with_logits(QUERY_TEXT, parted.items[:2], long_documents="truncate")
        for run in range(runs):
            for path in ("shared", "alone") if run % 2 else ("alone", "shared"):
                scorer.cache.clear()
                if path == "shared":
                    with PeakMemory(torch.device(runtime.device)) as memory:
                        start = time.perf_counter()
                        best = shared()
                        together.append(time.perf_counter() - start)
                    peak = max(peak, memory.peak_rss or memory.peak_bytes)
                else:
                    start = time.perf_counter()
                    singles = one_by_one()
                    alone.append(time.perf_counter() - start)
        count = len(parted.items)
        report["documents"][name] = {
            "parts": count,
            "kind": best.part.kind if best.part is not None else "whole",
            "best_part": best.part.as_dict() if best.part is not None else None,
            "seconds": statistics.median(together),
            "per_part_loop_seconds": statistics.median(alone),
            "parts_per_second": count / statistics.median(together),
            "max_difference": max(abs(a.score - b.score) for a, b in zip(best.parts or (best,), singles)),
            "peak_rss": peak,
        }
    return report


def format_documents(report: dict) -> str:
    r = report
    lines = [
        f"model: random {r['model_size']}, {r['device']} ({r['device_name']}, {r['cpu_threads']} threads), {r['dtype']}, "
        f"one query, median of {r['runs']} run(s)",
        "",
        "| document | parts | shared passes | a part | parts/s | one call a part | speedup | largest difference | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, d in r["documents"].items():
        kind = {"page": "pages", "chunk": "chunks", "segment": "segments"}.get(d["kind"], "whole (64 frames)")
        lines.append(
            f"| {name} | {d['parts']} {kind} | {d['seconds']:.2f} s | {d['seconds'] / d['parts'] * 1000:,.0f} ms | "
            f"{d['parts_per_second']:.1f} | {d['per_part_loop_seconds']:.2f} s | "
            f"{d['per_part_loop_seconds'] / d['seconds']:.2f}× | {d['max_difference']:.1e} | {d['peak_rss'] / 2**30:.2f} GiB |"
        )
    return "\n".join(lines)
