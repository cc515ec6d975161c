"""`lychee index FOLDER... --collection NAME`: the user's files embedded into a collection on disk (docs/search.md),
and the embedding model `lychee load` serves beside the rerankers (`--embedding-model`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import settings

COLLECTION_SETTINGS = ("embedding_model", "data_dir", "collections_dir", "collections_url")  # index's and eval's flags


def load_embedders(args: argparse.Namespace, *, on_ray: bool = False) -> list:
    """--embedding-model's embedding model (with --demo and none named: the tiny random one, except on Ray, whose
    front end loads no model), loaded once in this process."""
    demo = getattr(args, "demo", None) and not on_ray
    name = getattr(args, "embedding_model", None) or ("demo" if demo else None)
    if name is None:
        return []
    from .engine.embedder import LycheeEmbedder

    print("loading the embedding model ...", flush=True)
    return [LycheeEmbedder.load(name, device=args.device, dtype=args.dtype)]


def add_index_parser(commands) -> None:
    index = commands.add_parser(
        "index",
        help="embed folders of images, PDFs, texts and clips into a collection, for /v1/search",
        description="Embed every image, PDF (page by page), text (.txt, .md) and clip of the folders into a "
        "collection on disk; again later, only what changed (removed files leave it).",
    )
    index.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="folders to index (their subfolders too)")
    index.add_argument("--collection", required=True, help="the collection's name (letters, digits, - and _)")
    index.add_argument("--json", action="store_true", help='print {"embedded": n, "unchanged": n, "removed": n}')
    settings.add_flags(index, (), names=COLLECTION_SETTINGS)
    index.add_argument("--device", default="auto", help="auto, cuda, cpu")
    index.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")


def run_index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .contract import LycheeError
    from .engine.weights import ModelLoadError
    from .search.indexing import files_of, index_folders
    from .search.store import Store, inside

    missing = [str(folder) for folder in args.folders if not folder.is_dir()]
    if missing:
        print(f"lychee index: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    outside = [str(folder) for folder in args.folders if args.collections_dir and not inside(folder, args.collections_dir)]
    if outside:
        print(
            f"lychee index: not inside --collections-dir ({', '.join(args.collections_dir)}): {', '.join(outside)}",
            file=sys.stderr,
        )
        return 2
    if not args.embedding_model:
        print("lychee index: give --embedding-model (a Qwen3-VL-Embedding folder or id; demo: a tiny one)", file=sys.stderr)
        return 2
    try:
        (embedder,) = load_embedders(args)
        store = Store(args.data_dir, args.collections_dir, args.collections_url)
    except (ModelLoadError, LycheeError, ValueError) as error:
        print(f"lychee index: {error}", file=sys.stderr)
        return 2
    try:
        total = sum(len(files_of(folder.expanduser().resolve())) for folder in args.folders)
        with tqdm(total=total, desc=f"indexing {args.collection}", unit="file", file=sys.stderr) as bar:
            done = index_folders(store, args.collection, args.folders, embedder, on_file=lambda _: bar.update(1))
        store.index(args.collection)  # a big collection's approximate index (search/local_store.py)
    except LycheeError as error:
        print(f"lychee index: {error}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for path, why in done.skipped:
        print(f"lychee index: skipped {path}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps(done.as_dict()))
    else:
        print(f"{args.collection}: {done.embedded} embedded, {done.unchanged} unchanged, {done.removed} removed")
    return 0


def add_collection_eval_arguments(evaluate) -> None:
    """`lychee eval DATA --collection NAME`: the labelled set's documents are a collection's files."""
    evaluate.add_argument(
        "--collection", default=None, help="evaluate search over this collection end to end (docs/search.md, 'Evaluating')"
    )
    evaluate.add_argument("--top-k", type=int, default=100, help="--collection: the first stage's nearest items (100)")
    evaluate.add_argument("--rerank-top-n", type=int, default=20, help="--collection: how many of them are reranked (20)")
    settings.add_flags(evaluate, (), names=COLLECTION_SETTINGS)


def evaluate_collection(args: argparse.Namespace, load_scorers) -> int:
    """`lychee eval --collection`: each query searched as /v1/search does, through the request service, measured
    before and after reranking (evaluation/collection.py)."""
    from tqdm import tqdm

    from .config import Config, Limits
    from .contract import LycheeError
    from .engine.weights import ModelLoadError
    from .evaluation import BadLine
    from .evaluation.collection import collection_table, load_search_queries
    from .evaluation.collection import evaluate_collection as measure
    from .search.store import Store
    from .service import Service

    if not args.embedding_model:
        print("lychee eval: --collection needs --embedding-model (the one the collection was indexed with)", file=sys.stderr)
        return 2
    try:
        queries = load_search_queries(args.data)
    except BadLine as error:
        print(f"lychee eval: {args.data}: {error}", file=sys.stderr)
        return 2
    try:
        scorers, embedders = load_scorers(args), load_embedders(args)
    except (ModelLoadError, ValueError) as error:
        print(f"lychee eval: {error}", file=sys.stderr)
        return 2
    # The operator's own run: no request deadline, and the first stage may hand the reranker up to --top-k items.
    config = Config(request_timeout=None, limits=Limits(max_documents=1_000_000))
    service = Service(
        scorers, config, embedders=embedders, collections=lambda: Store(args.data_dir, args.collections_dir, args.collections_url)
    )
    try:
        with tqdm(total=len(queries), desc="searching", unit="query", file=sys.stderr) as bar:
            with service.request("lychee eval") as req:
                scorer, embedder = req.model(None), req.embedder(None)
                report = measure(
                    req,
                    service.collections(),
                    embedder,
                    scorer,
                    args.collection,
                    queries,
                    args.k,
                    args.top_k,
                    args.rerank_top_n,
                    on_progress=lambda done, total: bar.update(1),
                )
    except LycheeError as error:
        print(f"lychee eval: {error}", file=sys.stderr)
        return 2
    finally:
        service.close()
    report.update(data=str(args.data), model=service.models.names[0], embedding_model=service.embedders.names[0])
    print(collection_table(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0
