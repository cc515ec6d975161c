"""Throughput benchmark: the per-pair loop of the tutorials against the engine, with and without prefix reuse.

    python -m lychee_gradio.bench                         # CPU, the "small" random model
    python -m lychee_gradio.bench --model-size 7b         # GPU: Qwen2.5-VL-7B sizes, bf16
    python -m lychee_gradio.bench --family qwen3_vl --model-size 2b   # Qwen3-VL-Reranker-2B sizes
    python -m lychee_gradio.bench --stability --dtype bfloat16   # how far scores move with batching
    python -m lychee_gradio.bench --serving               # concurrent /v1/rerank clients: batching, replicas
    python -m lychee_gradio.bench --batching              # only the batching-across-requests rows of --serving
    python -m lychee_gradio.bench --caches                # repeated requests: score cache and image cache
    python -m lychee_gradio.bench --documents             # a PDF, a long text, a long clip: scored by their parts
    python -m lychee_gradio.bench --explain               # why this score: maps and weights vs. one call each
    python -m lychee_gradio.bench --quantize all          # int8 and nf4 weights vs. full precision
    python -m lychee_gradio.bench --images 60 --image-size 1600x1200 --model-size tiny   # image ranking, by stage
    python -m lychee_gradio.bench --roofline              # float32 and auto against this machine's matmul rate
    python -m lychee_gradio.bench --roofline --family qwen3_vl --model-size 2b   # the same at 2B shapes
    python -m lychee_gradio.bench --video 8               # 8 clips of 10 s against one description, by stage
    python -m lychee_gradio.bench --vision 12             # the vision tower: one attention call per layer or not
    python -m lychee_gradio.bench --compile               # the language model eager vs. torch.compile'd
    python -m lychee_gradio.bench --admission             # large image requests against a server: memory, refusals
    python -m lychee_gradio.bench --collection            # embedding, the store at 10,000 and 100,000 vectors, a search

All three paths run in one process on the same random-weight model (built from a config: the
same compute as real weights of that size) and the same inputs. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine.random_model import SIZES
from .admission import format_admission, run_admission
from .batching import format_batching, run_batching
from .caches import format_caches, run_caches
from .collection import format_collection, run_collection
from .compiled import format_compile, run_compile
from .documents import format_documents, run_documents
from .engine import format_stability, format_table, run_benchmark, run_stability
from .explain import format_explain, run_explain
from .images import format_images, run_images
from .quantize import format_quantize, run_quantize
from .roofline import format_roofline, run_roofline
from .serving import format_serving, run_serving
from .video import format_video, run_video
from .vision import format_vision, run_vision


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lychee_gradio.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--family",
        choices=sorted(SIZES),
        default="qwen2_5_vl",
        help="qwen2_5_vl (lychee-rerank-mm) or qwen3_vl (Qwen3-VL-Reranker)",
    )
    parser.add_argument("--model-size", default="small", help="tiny, small; 7b for qwen2_5_vl; 2b or 8b for qwen3_vl")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--attn", default="auto", help="auto, sdpa or flash_attention_2")
    parser.add_argument(
        "--docs",
        type=int,
        default=None,
        help="documents per text scenario (default 64; image docs: half); --caches: per request "
        "(default 32); --stability: default 32",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per path (the median is reported)")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument(
        "--serving", action="store_true", help="instead: concurrent /v1/rerank clients against one process, 1 and 2 Ray replicas"
    )
    parser.add_argument(
        "--batching",
        action="store_true",
        help="instead: many small concurrent requests with and without batching across requests",
    )
    parser.add_argument("--max-batch-wait-ms", type=float, default=5.0, help="the scheduler's wait, for --batching")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of --serving")
    parser.add_argument("--seconds", type=float, default=20, help="how long --serving drives each server")
    parser.add_argument(
        "--caches", action="store_true", help="instead: what the score cache and the image cache save on repeated requests"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="instead: an image's 8x8 map and a text's weights through the engine vs. one variant per call",
    )
    parser.add_argument(
        "--quantize",
        choices=("int8", "nf4", "all"),
        default=None,
        help="instead: the same checkpoint loaded in full precision and in int8, nf4 or both "
        "(bitsandbytes): weights bytes, pairs/s, peak memory, score differences",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        metavar="N",
        help="instead: N JPEG photos against one description, by stage (decode, prepare, vision "
        "tower, language model, the rest), before/after, and /rank_images end to end",
    )
    parser.add_argument("--image-size", default="1600x1200", help="WxH of --images and --vision photos")
    parser.add_argument(
        "--vision",
        type=int,
        default=None,
        metavar="N",
        help="instead: N photos through the vision tower alone, transformers' per-window attention vs. one call per layer",
    )
    parser.add_argument(
        "--stability",
        action="store_true",
        help="instead of timing: the largest score difference between batch 1, batch 8 and prefix "
        "reuse (use with --dtype bfloat16)",
    )
    parser.add_argument(
        "--roofline",
        action="store_true",
        help="instead: float32 and --dtype auto on the same weights, text query x 16 text docs and "
        "x 8 512² image docs, against this machine's matmul rate at the model's shapes",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="instead: the engine eager and with the language model's forward torch.compile'd "
        "(dynamic shapes), text query x --docs (16) text docs and x --image-docs 512² image docs",
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile's backend for --compile")
    parser.add_argument(
        "--freezing",
        action="store_true",
        help="--compile: inductor's freezing (constant weights, oneDNN weight prepacking on the CPU)",
    )
    parser.add_argument("--roofline-tokens", type=int, default=1024, help="tokens of --roofline's matmul limit")
    parser.add_argument("--image-docs", type=int, default=8, help="image documents of --roofline and --compile")
    parser.add_argument(
        "--plain-stream",
        action="store_true",
        help="--roofline: also run bf16 with its residual stream in bf16 (the engine keeps it in float32)",
    )
    parser.add_argument(
        "--fp32-weights",
        action="store_true",
        help="--roofline: random weights of float32 values (default: bf16 values, as the published "
        "checkpoints hold them, so float32 and bfloat16 start from the same weights)",
    )
    parser.add_argument(
        "--video", type=int, default=None, metavar="N", help="instead: N generated clips (PyAV) against one description, by stage"
    )
    parser.add_argument("--video-seconds", type=float, default=10.0, help="the length of --video's clips")
    parser.add_argument(
        "--admission",
        action="store_true",
        help="instead: large image requests against `lychee load --demo` (a process of its own): "
        "status, seconds and the server's peak memory, per --image-memory-mb of --pools",
    )
    parser.add_argument("--pools", default="2048,8192", help="--admission: the --image-memory-mb values, in MB")
    parser.add_argument(
        "--documents",
        action="store_true",
        help="instead: a 30-page PDF, a 12,000-token text and a 5-minute clip against one query, scored by their "
        "parts: parts/s, time a part, shared passes against one call a part, peak RSS",
    )
    parser.add_argument(
        "--collection",
        action="store_true",
        help="instead: embedding items/s (texts, images), the collections' store (Qdrant Edge) at "
        "--collection-sizes 2,048-value vectors (write, HNSW, disk, reopen, search p50/p95, recall, RSS), and a "
        "whole search (embed the query, search, rerank 20); --dtype auto means float32 here",
    )
    parser.add_argument(
        "--collection-sizes", default="10000,100000", help="--collection: how many vectors the store holds, in turn"
    )
    args = parser.parse_args(argv)
    if args.admission:
        report = run_admission(tuple(int(mb) for mb in args.pools.split(",")))
        print(format_admission(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("admission.json").write_text(json.dumps(report, indent=2))
        return
    if args.model_size not in SIZES[args.family]:
        parser.error(f"--model-size for {args.family}: one of {', '.join(sorted(SIZES[args.family]))}")
    if args.collection:
        if args.model_size not in SIZES["qwen3_vl"]:
            parser.error(f"--collection: the embedding model is Qwen3-VL's: one of {', '.join(sorted(SIZES['qwen3_vl']))}")
        try:
            sizes = tuple(int(n) for n in args.collection_sizes.replace("_", "").split(","))
        except ValueError:
            parser.error("--collection-sizes: numbers, e.g. 10000,100000")
        report = run_collection(
            args.model_size,
            args.device,
            "float32" if args.dtype == "auto" else args.dtype,
            args.runs,
            args.family,
            sizes,
            items=args.docs or 64,
        )
        print(format_collection(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("collection.json").write_text(json.dumps(report, indent=2))
        return
    if args.video:
        report = run_video(
            args.video,
            args.video_seconds,
            size=args.model_size,
            family=args.family,
            device=args.device,
            dtype=args.dtype,
            runs=args.runs,
        )
        print(format_video(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("video.json").write_text(json.dumps(report, indent=2))
        return
    if args.compile:
        report = run_compile(
            args.model_size,
            args.family,
            args.device,
            args.dtype,
            args.runs,
            args.docs or 16,
            args.image_docs,
            backend=args.compile_backend,
            freezing=args.freezing,
        )
        print(format_compile(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name(f"compile-{args.family}-{args.model_size}.json").write_text(json.dumps(report, indent=2))
        return
    if args.roofline:
        device = "cpu" if args.device == "auto" and not torch_cuda() else args.device
        if device == "auto":
            device = "cuda"
        dtypes = ("float32", args.dtype) if args.dtype != "float32" else ("float32",)
        report = run_roofline(
            args.model_size,
            args.family,
            device,
            args.runs,
            args.docs or 16,
            args.image_docs,
            tokens=args.roofline_tokens,
            dtypes=dtypes,
            bf16_weights=not args.fp32_weights,
            plain_stream=args.plain_stream,
        )
        print(format_roofline(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name(f"roofline-{args.family}-{args.model_size}.json").write_text(json.dumps(report, indent=2))
        return
    if args.stability:
        print(format_stability(run_stability(args.model_size, args.device, args.dtype, args.docs or 32, args.family)))
        return
    if args.explain:
        report = run_explain(args.model_size, args.device, args.dtype, args.runs, args.family)
        print(format_explain(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("explain.json").write_text(json.dumps(report, indent=2))
        return
    if args.images or args.vision:
        try:
            width, height = (int(side) for side in args.image_size.lower().split("x"))
        except ValueError:
            parser.error("--image-size: WxH, e.g. 1600x1200")
        if args.images:
            report = run_images(
                args.images,
                width,
                height,
                size=args.model_size,
                family=args.family,
                device=args.device,
                dtype=args.dtype,
                runs=args.runs,
            )
            print(format_images(report))
            name = "images.json"
        else:
            report = run_vision(
                args.vision,
                width,
                height,
                size=args.model_size,
                family=args.family,
                device=args.device,
                dtype=args.dtype,
                runs=args.runs,
            )
            print(format_vision(report))
            name = "vision.json"
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name(name).write_text(json.dumps(report, indent=2))
        return
    if args.quantize:
        modes = ("int8", "nf4") if args.quantize == "all" else (args.quantize,)
        report = run_quantize(args.model_size, args.device, args.dtype, args.runs, args.family, args.docs or 32, modes)
        print(format_quantize(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("quantize.json").write_text(json.dumps(report, indent=2))
        return
    if args.documents:
        report = run_documents(args.model_size, args.device, args.dtype, args.runs, args.family)
        print(format_documents(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("documents.json").write_text(json.dumps(report, indent=2))
        return
    if args.caches:
        report = run_caches(args.model_size, args.device, args.dtype, args.docs or 32, args.runs, family=args.family)
        print(format_caches(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("caches.json").write_text(json.dumps(report, indent=2))
        return
    if args.batching or args.serving:
        batching = run_batching(args.model_size, args.device, args.dtype, args.seconds, args.family, args.max_batch_wait_ms)
        print(format_batching(batching))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("batching.json").write_text(json.dumps(batching, indent=2))
        if args.batching:
            return
        print()
    if args.serving:
        report = run_serving(args.model_size, args.clients, args.seconds, args.runs)
        print(format_serving(report))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_name("serving.json").write_text(json.dumps(report, indent=2))
        return

    report = run_benchmark(
        args.model_size, args.device, args.dtype, args.docs or 64, args.runs, args.attn, args.max_pixels, args.family
    )
    print(format_table(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
