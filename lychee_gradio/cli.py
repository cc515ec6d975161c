"""The `lychee` command: `lychee load` serves the app locally, `lychee share` behind a public link."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

DEFAULT_PORT = 7860


def _add_serving_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None,
                        help="local folder with the weights, or a ModelScope id "
                             "(default: $LYCHEE_MODEL or vec-ai/lychee-rerank-mm)")
    source.add_argument("--demo", action="store_true",
                        help="run on a tiny random model built on the spot (no download; scores are meaningless)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:1, cpu")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bfloat16, float16, float32")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="largest image size in pixels (default 1280*28*28 = 1003520; smaller is faster)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per forward pass (default 32 GPU, 8 CPU)")
    parser.add_argument("--max-documents", type=int, default=None, help="documents per request (default 200)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lychee", description="Rerank text and image candidates with lychee-rerank-mm, in the browser or by API."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    load = commands.add_parser("load", help="load the model and serve the app on this machine",
                               description="Load the model and serve the app (http://127.0.0.1:7860 by default).")
    _add_serving_options(load)
    share = commands.add_parser("share", help="like load, plus a temporary public link behind a password",
                                description="Serve the app and open a temporary public Gradio link, protected "
                                            "by a username and password (printed, or --auth).")
    _add_serving_options(share)
    share.add_argument("--auth", default=None, metavar="USER:PASS",
                       help="username and password for the link (default: lychee and a random password)")
    return parser


def demo_model_dir() -> Path:
    """The tiny random checkpoint of --demo, built once into the user's cache."""
    from .random_model import build_tiny_checkpoint

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lychee-gradio" / "demo-tiny"
    if not (cache / "config.json").is_file():
        build_tiny_checkpoint(cache)
    return cache


def load_scorer(args: argparse.Namespace):
    from .scorer import LycheeScorer

    model = demo_model_dir() if args.demo else args.model
    return LycheeScorer.load(model, device=args.device, dtype=args.dtype, max_pixels=args.max_pixels,
                             batch_size=args.batch_size)


def _auth(value: str | None) -> tuple[str, str]:
    if value is None:
        return "lychee", secrets.token_urlsafe(9)
    user, separator, password = value.partition(":")
    if not separator or not user or not password:
        raise ValueError("--auth must look like USER:PASS")
    return user, password


def serve(args: argparse.Namespace, *, share: bool) -> int:
    from .app import DEFAULT_MAX_DOCUMENTS, build_demo, launch
    from .weights import ModelLoadError

    try:
        auth = _auth(getattr(args, "auth", None)) if share else None
    except ValueError as error:
        print(f"lychee share: {error}", file=sys.stderr)
        return 2
    print("loading the model ...", flush=True)
    try:
        scorer = load_scorer(args)
    except (ModelLoadError, ValueError) as error:
        print(f"lychee {args.command}: {error}", file=sys.stderr)
        return 2
    demo = build_demo(scorer, demo_mode=args.demo, max_documents=args.max_documents or DEFAULT_MAX_DOCUMENTS)
    try:
        launch(demo, server_name=args.host, server_port=args.port, share=share, auth=auth,
               prevent_thread_lock=True, quiet=True)
    except OSError as error:
        print(f"lychee {args.command}: cannot listen on {args.host}:{args.port} ({error}). "
              f"Is another app using the port? Try --port {args.port + 1}.", file=sys.stderr)
        return 1
    if share and not demo.share_url:
        demo.close()
        print("lychee share: could not create a public link (it needs internet access to Gradio's share "
              "servers). Use `lychee load` for this machine or your network only "
              "(`--host 0.0.0.0` to listen on every interface).", file=sys.stderr)
        return 1
    print(f"lychee-gradio is ready: {demo.share_url if share else demo.local_url}", flush=True)
    if share:
        print(f"username: {auth[0]}\npassword: {auth[1]}\n(the link expires when this command stops)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return serve(args, share=args.command == "share")


if __name__ == "__main__":
    sys.exit(main())
