"""`lychee index FOLDER... --collection NAME`: the user's files embedded into a collection on disk (docs/search.md),
and the embedding model `lychee load` serves beside the rerankers (`--embedding-model`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import settings


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
    for name in ("embedding_model", "data_dir", "collections_dir"):
        setting = settings.BY_NAME[name]
        index.add_argument(
            setting.option,
            default=settings.parse_value(setting, os.environ.get(setting.env, setting.default)),
            type=lambda text, setting=setting: settings.parse_value(setting, text),
            help=setting.help,
        )
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
        store = Store(args.data_dir)
    except (ModelLoadError, LycheeError, ValueError) as error:
        print(f"lychee index: {error}", file=sys.stderr)
        return 2
    try:
        total = sum(len(files_of(folder.expanduser().resolve())) for folder in args.folders)
        with tqdm(total=total, desc=f"indexing {args.collection}", unit="file", file=sys.stderr) as bar:
            done = index_folders(store, args.collection, args.folders, embedder, on_file=lambda _: bar.update(1))
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
