"""The `lychee` command: `lychee load` serves the app locally, `lychee share` behind a public link, `lychee eval` measures
a labelled set (`lychee index`: cli_index.py). It only wires: flags parsed, scorers loaded and handed to the server
or the evaluation library. Nothing in the package imports it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import signal
import sys
from pathlib import Path

from . import config as configs
from . import settings
from .cli_index import add_collection_eval_arguments, add_index_parser, evaluate_collection, load_embedders, run_index
from .config import Config, Limits
from .families import DEMO_MODELS  # --demo's random models, one per family, by the folder name they are served under


def _demo_families(text: str) -> list[str]:
    families = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [family for family in families if family not in DEMO_MODELS]
    if unknown or not families:
        raise argparse.ArgumentTypeError(f"expected families among {', '.join(DEMO_MODELS)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(families))


def _add_model_options(parser: argparse.ArgumentParser, *, eval_only: bool = False) -> None:
    """The table's model settings (settings.SETTINGS), --demo and --check."""
    settings.add_flags(parser, ("model",) if not eval_only else ("model", "server"), eval_only=eval_only)
    parser.add_argument(
        "--demo",
        nargs="?",
        const=",".join(DEMO_MODELS),
        default=None,
        type=_demo_families,
        metavar="FAMILIES",
        help="also serve tiny random models built on the spot, one per family (no download; scores "
        "are meaningless): both families by default, so the model picker and Compare show; "
        "--demo qwen2_5_vl for lychee's alone. Combines with --model (real models first)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="print the memory each model needs and what the device has free, then exit without "
        "loading (exit code 1 if one would not fit)",
    )


def _add_serving_options(parser: argparse.ArgumentParser) -> None:
    """Every setting of the table: the model's, the server's, what every door shares, the limits, the replicas."""
    _add_model_options(parser)
    settings.add_flags(parser, ("server", "doors", "limits"))
    settings.add_flags(parser.add_argument_group("replicas on Ray Serve (pip install -e '.[cluster]')"), ("cluster",))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lychee", description="Rerank text and image candidates with lychee-rerank-mm, in the browser or by API."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    load = commands.add_parser(
        "load",
        help="load the model and serve the app on this machine",
        description="Load the model and serve the app (http://127.0.0.1:7860 by default).",
    )
    _add_serving_options(load)
    share = commands.add_parser(
        "share",
        help="like load, plus a temporary public link behind a password",
        description="Serve the app and open a temporary public Gradio link, protected "
        "by a username and password (printed, or --auth).",
    )
    _add_serving_options(share)
    share.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASS",
        help="username and password for the link (default: lychee and a random password)",
    )
    evaluate = commands.add_parser(
        "eval",
        help="measure what reranking gains on a labelled JSONL set",
        description=EVAL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_eval_arguments(evaluate)
    add_collection_eval_arguments(evaluate)
    _add_model_options(evaluate, eval_only=True)
    add_index_parser(commands)
    return parser


EVAL_DESCRIPTION = """\
Measure what reranking gains over the first-stage order on a labelled set.

One query per line:
    {"query": "text" | {"text", "image"}, "documents": ["text" | {"text", "image"}, ...],
     "relevant": [0, 3]}                 # or graded: "labels": [2, 0, 0, 1, ...], one per document
     "instruction": "..."                # optional, this query's task
Image paths are relative to the data file and must stay inside its folder. The documents' order
is the first-stage order (the baseline). Prints NDCG, MRR, Recall and Hit at each k before and
after reranking; --output writes the same as JSON.
"""


def _cutoffs(text: str) -> list[int]:
    from .evaluation import parse_ks

    try:
        return parse_ks(text)
    except ValueError as error:  # contract.InputError
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="JSON Lines file, one query per line")
    parser.add_argument("--k", type=_cutoffs, default=[1, 5, 10], help="cutoffs (default 1,5,10)")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--instruction", default=None, help="the task, for lines without their own instruction")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad lines (counted) instead of stopping")
    parser.add_argument(
        "--calibrate",
        type=Path,
        default=None,
        metavar="OUT.json",
        help="also fit each model's thresholds per modality pair on these labels and write them here (docs/calibration.md)",
    )
    parser.add_argument("--target-precision", type=float, default=0.9, help="--calibrate: 'show it first' precision (0.9)")
    parser.add_argument(
        "--relevant-missed",
        type=float,
        default=0.05,
        help="--calibrate: share of relevant pairs 'safe to filter out' may drop (0.05)",
    )


def demo_model_dir(family: str = "qwen2_5_vl") -> Path:
    """The tiny random checkpoint of a family for --demo, built once into the user's cache."""
    from .engine.random_model import demo_model_dir as built

    return built(family)


def model_names(args: argparse.Namespace) -> list:
    """The models the flags name, in order: the --model values, then --demo's random ones; else the default."""
    from .engine.weights import default_model

    names = list(settings.values_of(args)["model"]) + [demo_model_dir(family) for family in args.demo or []]
    return names or [default_model()]


def load_scorers(args: argparse.Namespace) -> list:
    """Every model the flags name, loaded once, in order."""
    from .engine.scorer import LycheeScorer

    return [LycheeScorer.load(name, **_load_options(args, name)) for name in model_names(args)]


def _load_options(args: argparse.Namespace, name=None, *, cache: bool = True) -> dict:
    """LycheeScorer.load's options from the flags; `--quantize` applies to models named without `@int8`/`@nf4`."""
    from .engine.weights import split_precision

    options = configs.load_options(settings.values_of(args), cache=cache)
    if name is not None and split_precision(name)[1]:
        options["quantize"] = None
    return options


def check_memory(args: argparse.Namespace) -> int:
    """`--check`: each model's memory estimate against the device's free memory, without loading anything."""
    from .engine import memory
    from .engine.weights import ModelLoadError, choose_runtime, split_precision

    try:
        runtime = choose_runtime(args.device, args.dtype)
    except ModelLoadError as error:
        print(f"lychee {args.command}: {error}", file=sys.stderr)
        return 2
    worst = 0
    for name in model_names(args):
        quantize = None if split_precision(name)[1] else args.quantize
        found = memory.estimate(name, runtime, quantize, args.max_batch_tokens)
        if found is None:
            print(f"{name}: its size is not known before it is downloaded (not a published model, not in the cache)")
            continue
        print(found.describe())
        if found.fits is False:
            print("  " + memory.wont_fit_message(found, runtime))
            worst = 1
    return worst


def model_runtime(scorer) -> str:
    """How a model runs, for the startup lines: "bfloat16 with a float32 residual stream: the CPU has AVX512-BF16,
    2 threads"."""
    why = getattr(scorer, "dtype_why", None) or getattr(scorer, "precision", None) or "?"
    quantize = getattr(scorer, "quantize", None) or (scorer.precision if scorer.precision in ("int8", "nf4") else None)
    threads = getattr(scorer, "threads", None)
    return why + (f", {quantize} weights" if quantize else "") + (f", {threads} threads" if threads else "")


def uses_ray(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in ("replicas", "ray_address", "min_replicas", "max_replicas"))


def start_cluster(args: argparse.Namespace):
    """Ray Serve replicas of every model the flags name: `(cluster, scorers)`."""
    try:
        from .replica import ScorerReplica
        from .serving.cluster import Cluster, ClusterSettings, local_only

        if args.ray_address is None:
            local_only()  # before Ray is imported: its ports on loopback
        import ray  # noqa: F401 - only to tell a missing install apart
    except ImportError:
        raise ValueError("--replicas and --ray-address need Ray Serve: pip install -e '.[cluster]'") from None
    replicas = args.replicas or args.min_replicas or 1
    if args.max_replicas is not None and args.max_replicas < replicas:
        raise ValueError("--replicas / --min-replicas must be at most --max-replicas")
    cluster_settings = ClusterSettings(
        replicas=replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        ray_address=args.ray_address,
        max_queued=args.max_queued,
        load_options=_load_options(args, cache=False),
        cache_size=args.cache_size,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
    )
    # Each replica loads its model with these options: --quantize applies to models named without a suffix.
    # (A suffix on a name is read by LycheeScorer.load itself.)
    cluster = Cluster(cluster_settings, ScorerReplica)
    try:
        return cluster, [cluster.deploy(os.fspath(name), i) for i, name in enumerate(model_names(args))]
    except Exception:
        cluster.close()
        raise


def _auth(value: str | None) -> tuple[str, str]:
    if value is None:
        return "lychee", secrets.token_urlsafe(9)
    user, separator, password = value.partition(":")
    if not separator or not user or not password:
        raise ValueError("--auth must look like USER:PASS")
    return user, password


def server_settings(args: argparse.Namespace, auth: tuple[str, str] | None, concurrency: int = 1):
    from .serving.server import ServerSettings

    values = settings.values_of(args)
    config = configs.Config.from_values(values)
    if config.api_key is None and auth is not None:
        # A public link must not leave the rerank API open: without --api-key it takes the share password.
        config = dataclasses.replace(config, api_key=auth[1])
    return ServerSettings(
        host=args.host,
        port=args.port,
        demo_mode=bool(args.demo),
        config=config,
        auth=auth,
        mcp=args.mcp,
        concurrency=concurrency,
        data_dir=args.data_dir,
        collections_dir=tuple(args.collections_dir),
        collections_url=args.collections_url,
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(args: argparse.Namespace, *, share: bool) -> int:
    from . import app
    from .engine.weights import ModelLoadError
    from .serving import telemetry
    from .ui import gradio_compat

    telemetry.configure_logging(args.log_format)
    if args.check:
        return check_memory(args)

    try:
        auth = _auth(getattr(args, "auth", None)) if share else None
    except ValueError as error:
        print(f"lychee share: {error}", file=sys.stderr)
        return 2
    if args.api_key_file is not None and not args.api_key_file.is_file():
        print(f"lychee {args.command}: --api-key-file: no such file: {args.api_key_file}", file=sys.stderr)
        return 2
    cluster = None
    try:
        if uses_ray(args):
            print("starting the model replicas on Ray Serve ...", flush=True)
            cluster, scorers = start_cluster(args)
        else:
            print("loading the model ...", flush=True)
            scorers = load_scorers(args)
        embedders = load_embedders(args, on_ray=uses_ray(args))
    except (ModelLoadError, ValueError) as error:
        print(f"lychee {args.command}: {error}", file=sys.stderr)
        return 2
    # `docker stop`, systemd and `kill` send SIGTERM: stop as Ctrl+C does, so Ray's processes stop too.
    signal.signal(signal.SIGTERM, _interrupt)
    # Page requests run at once: one per replica, or several per replica that batches across requests.
    served = server_settings(
        args, auth, concurrency=configs.page_concurrency(settings.values_of(args), cluster.replica_count if cluster else 1)
    )
    try:
        running = app.start(scorers, served, embedders)
    except ValueError as error:  # a --calibration file for models this server does not serve
        print(f"lychee {args.command}: {error}", file=sys.stderr)
        if cluster:
            cluster.close()
        return 2
    except OSError as error:
        print(
            f"lychee {args.command}: cannot listen on {args.host}:{args.port} ({error}). "
            f"Is another app using the port? Try --port {args.port + 1}.",
            file=sys.stderr,
        )
        if cluster:
            cluster.close()
        return 1
    url = running.url
    if share:
        try:
            url = gradio_compat.open_share_link(running.port)
            running.allow_host(url)  # the link's host: the tunnel forwards requests with it
        except Exception as error:  # noqa: BLE001 - the tunnel fails in many ways; all mean "no link"
            running.close()
            print(
                f"lychee share: could not create a public link ({error}). It needs internet access to "
                "Gradio's share servers. Use `lychee load` for this machine or your network only "
                "(`--host 0.0.0.0` to listen on every interface).",
                file=sys.stderr,
            )
            return 1
    print(f"lychee-gradio is ready: {url}", flush=True)
    for scorer in scorers:
        print(f"model {scorer.model_name}: {model_runtime(scorer)}", flush=True)
    print(f"rerank API: POST {url}v1/rerank (docs: {url}docs)", flush=True)
    print(f"health: {url}health · ready: {url}ready · metrics: {url}metrics", flush=True)
    if served.mcp:
        print(f"MCP server: {url}gradio_api/mcp/", flush=True)
    if served.config.api_key and not share:
        print(
            "API key required: 'Authorization: Bearer KEY' on /v1/rerank, the Gradio API and MCP; "
            "the page's login is user 'lychee' with the key as password",
            flush=True,
        )
    if share:
        print(
            f"username: {auth[0]}\npassword: {auth[1]} (also the API key of /v1/rerank, the Gradio API and MCP "
            "unless --api-key is set)\n"
            "(the link expires when this command stops)",
            flush=True,
        )
    if cluster:
        print(f"model replicas: {cluster.replica_count} per model on Ray Serve", flush=True)
    try:
        running.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
        if cluster:
            cluster.close()
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .engine.weights import ModelLoadError
    from .evaluation import BadLine, load_queries, report_table
    from .registry import ModelSet
    from .service import Service

    if not args.data.is_file():
        print(f"lychee eval: no such file: {args.data}", file=sys.stderr)
        return 2
    if args.collection:  # the user's own search, end to end: the first stage against the reranked
        return evaluate_collection(args, load_scorers)
    try:
        queries, skipped = load_queries(args.data, skip_bad=args.skip_bad)
    except BadLine as error:
        print(f"lychee eval: {args.data}: {error} (--skip-bad skips such lines)", file=sys.stderr)
        return 2
    if not queries:
        print(f"lychee eval: {args.data}: no query to evaluate", file=sys.stderr)
        return 2
    try:
        models = ModelSet(load_scorers(args))
    except (ModelLoadError, ValueError) as error:
        print(f"lychee eval: {error}", file=sys.stderr)
        return 2
    # The operator's own file: no per-request document cap (first stages may return 1,000 candidates);
    # image paths stay inside the data folder and images keep the pixel limits of every door.
    options = {
        "instruction": args.instruction,
        "skip_bad": args.skip_bad,
        "skipped": skipped,
        "limits": Limits(max_documents=1_000_000),
    }
    # Through the one request service, as the Evaluate tab: the same checks, limits and errors.
    service = Service(models, Config(request_timeout=None))  # the operator's own run: no request deadline
    with tqdm(total=len(queries) * len(models), desc="scoring", unit="query", file=sys.stderr) as bar:
        progress = lambda done, total: bar.update(1)
        try:
            with service.request("lychee eval") as req:
                report = req.evaluate(dict(zip(models.names, models.scorers)), queries, args.k, on_progress=progress, **options)
        except BadLine as error:
            print(f"lychee eval: {args.data}: {error} (--skip-bad skips such lines)", file=sys.stderr)
            return 2
    report["data"] = str(args.data)
    print(report_table(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.output}")
    if args.calibrate:
        from .calibration import summary

        found = service.calibrate(report, precision=args.target_precision, miss=args.relevant_missed)
        print("\n" + summary(found))
        args.calibrate.parent.mkdir(parents=True, exist_ok=True)
        args.calibrate.write_text(json.dumps(found, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.calibrate}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        return evaluate(args)
    if args.command == "index":
        return run_index(args)
    return serve(args, share=args.command == "share")


if __name__ == "__main__":
    sys.exit(main())
