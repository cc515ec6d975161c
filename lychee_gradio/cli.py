"""The `lychee` command: `lychee load` serves the app locally, `lychee share` behind a public link."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

DEFAULT_PORT = 7860


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None,
                        help="local folder with the weights, or a ModelScope id "
                             "(default: $LYCHEE_MODEL or vec-ai/lychee-rerank-mm)")
    source.add_argument("--demo", action="store_true",
                        help="run on a tiny random model built on the spot (no download; scores are meaningless)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:1, cpu")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bfloat16, float16, float32")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="largest image size in pixels (default 1280*28*28 = 1003520; smaller is faster)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per forward pass (default 32 GPU, 8 CPU)")


def _add_serving_options(parser: argparse.ArgumentParser) -> None:
    _add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--max-documents", type=int, default=None,
                        help="documents per request (default 200 on the page, 100 on /v1/rerank)")
    parser.add_argument("--api-key", default=os.environ.get("LYCHEE_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on /v1/rerank (default: $LYCHEE_API_KEY)")
    parser.add_argument("--allow-image-urls", action="store_true",
                        help="let /v1/rerank fetch http(s) image URLs (off: images come as base64)")
    parser.add_argument("--max-image-pixels", type=int, default=50_000_000,
                        help="largest image /v1/rerank accepts, in pixels (default 50,000,000)")
    parser.add_argument("--max-body-mb", type=float, default=64, help="largest /v1/rerank request body (default 64)")
    parser.add_argument("--mcp", action="store_true", help="also serve the endpoints as MCP tools (for agents)")


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
    from .eval import __doc__ as eval_doc, add_arguments as add_eval_arguments

    evaluate = commands.add_parser("eval", help="measure what reranking gains on a labelled JSONL set",
                                   description=eval_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(evaluate)
    _add_model_options(evaluate)
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


def server_settings(args: argparse.Namespace, auth: tuple[str, str] | None):
    from .app import DEFAULT_MAX_DOCUMENTS
    from .rest_api import RestSettings
    from .server import ServerSettings

    # A public link must not leave the rerank API open: without --api-key it takes the share password.
    api_key = args.api_key or (auth[1] if auth else None)
    rest = RestSettings(max_documents=args.max_documents or RestSettings.max_documents,
                        max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
                        allow_image_urls=args.allow_image_urls, api_key=api_key)
    return ServerSettings(host=args.host, port=args.port, demo_mode=args.demo,
                          max_documents=args.max_documents or DEFAULT_MAX_DOCUMENTS, rest=rest, auth=auth,
                          mcp=args.mcp)


def serve(args: argparse.Namespace, *, share: bool) -> int:
    from . import server
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
    settings = server_settings(args, auth)
    try:
        running = server.start(scorer, settings)
    except OSError as error:
        print(f"lychee {args.command}: cannot listen on {args.host}:{args.port} ({error}). "
              f"Is another app using the port? Try --port {args.port + 1}.", file=sys.stderr)
        return 1
    url = running.url
    if share:
        try:
            url = server.open_share_link(running)
        except Exception as error:  # noqa: BLE001 - the tunnel fails in many ways; all mean "no link"
            running.close()
            print(f"lychee share: could not create a public link ({error}). It needs internet access to "
                  "Gradio's share servers. Use `lychee load` for this machine or your network only "
                  "(`--host 0.0.0.0` to listen on every interface).", file=sys.stderr)
            return 1
    print(f"lychee-gradio is ready: {url}", flush=True)
    print(f"rerank API: POST {url}v1/rerank (docs: {url}docs)", flush=True)
    if settings.mcp:
        print(f"MCP server: {url}gradio_api/mcp/", flush=True)
    if share:
        print(f"username: {auth[0]}\npassword: {auth[1]} (also the API key of /v1/rerank unless --api-key is set)\n"
              "(the link expires when this command stops)", flush=True)
    try:
        running.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        from .eval import run

        return run(args, load_scorer)
    return serve(args, share=args.command == "share")


if __name__ == "__main__":
    sys.exit(main())
