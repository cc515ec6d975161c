"""The Ray-native entry point: `serve run` / `serve deploy` (and KubeRay) serve the same app.

    serve run lychee_gradio.serve_app:build model=/models/lychee-rerank-mm replicas=2
    serve deploy deploy/serve-config.yaml          # replicas, resources and model path in a file

Two deployments: `scorer`, the model replicas (`replica.ScorerReplica`, one GPU or a CPU share
each, autoscaled if asked), and `frontend`, one replica that serves the page, the Gradio API,
MCP and /v1/rerank on its own port exactly as `lychee load` does, over a `RayScorer` of the
scorer deployment. The page is served by the frontend's own web server rather than Serve's HTTP
proxy because Gradio's queue and streamed updates need one long-lived app process.

Unlike the rest of the package, this module imports Ray: only Ray imports it. Like the CLI, it
wires the layers: the replicas run the engine (`replica.py`), the frontend the assembled app.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve

from .serving.cluster import RayScorer, scorer_deployment
from .settings import Config


class Frontend:
    """Serves the app on `host:port` from inside the Ray cluster, scoring through the replicas."""

    async def __init__(self, scorer_handle, options: dict):
        from . import app

        description = await scorer_handle.describe.remote()  # a replica's constructor runs in an event loop
        replicas = int(options.get("max_replicas") or options.get("replicas") or 1)
        batching = str(options.get("batch_across_requests", "true")).lower() not in ("0", "false", "no")
        config = Config.from_options({"api_key": os.environ.get("LYCHEE_API_KEY"), **options})
        scorer = RayScorer(scorer_handle, description, replicas, cache_size=config.cache_size)
        settings = app.ServerSettings(host=options.get("host", "0.0.0.0"), port=int(options.get("port", 7860)),
                                      config=config, mcp=str(options.get("mcp", "")).lower() in ("1", "true", "yes"),
                                      concurrency=replicas * (8 if batching else 1))
        self.running = app.start(scorer, settings)

    def url(self) -> str:
        return self.running.url

    def check_health(self) -> None:
        if not self.running.is_alive():
            raise RuntimeError("the frontend's web server stopped")

    def __del__(self):
        running = getattr(self, "running", None)
        if running is not None:
            running.close()


def build(args: dict[str, Any]):
    """A Serve application from `args` (the config file's `args`, or `key=value` after `serve run`).

    The model and its replicas: model (default $LYCHEE_MODEL or vec-ai/lychee-rerank-mm), replicas (1),
    min_replicas and max_replicas (autoscaling), num_gpus (1 per replica where GPUs exist, else 0),
    num_cpus (per replica), device, dtype, max_pixels, batch_size, max_queued, image_cache_mb (per
    replica, default 0), max_batch_wait_ms, batch_across_requests, quantize (int8 or nf4). The server: host (0.0.0.0), port (7860), mcp. Everything every door
    shares, with the same names and defaults as `lychee load` (`settings.Config`): api_key (or
    $LYCHEE_API_KEY), request_timeout, cache_size (pair scores kept by the frontend), max_documents,
    max_image_pixels, max_request_pixels, max_body_bytes, max_upload_bytes, allow_image_urls,
    allowed_image_hosts, image_url_timeout, max_image_url_bytes.
    """
    from .engine.weights import default_model
    from .replica import ScorerReplica

    options = dict(args)
    model = os.fspath(options.get("model") or default_model())
    replicas = int(options.get("replicas", 1))
    load_options = {key: options[key] for key in ("device", "dtype", "max_pixels", "batch_size") if key in options}
    if "image_cache_mb" in options:
        load_options["image_cache_bytes"] = int(float(options["image_cache_mb"]) * 2**20)
    if options.get("quantize"):
        load_options["quantize"] = str(options["quantize"])
    if "max_batch_wait_ms" in options:
        load_options["max_batch_wait_ms"] = float(options["max_batch_wait_ms"])
    if "batch_across_requests" in options:
        load_options["batch_across_requests"] = str(options["batch_across_requests"]).lower() not in ("0", "false", "no")
    actor = {"num_cpus": float(options.get("num_cpus", 1)), "num_gpus": float(options.get("num_gpus", 0))}
    threads = None if actor["num_gpus"] else max(1, int(actor["num_cpus"]))
    bound = {key: int(options[key]) if key in options else None for key in ("min_replicas", "max_replicas")}
    scorer = scorer_deployment(ScorerReplica, replicas=replicas, actor_options=actor,
                               max_queued=int(options.get("max_queued", 64)),
                               batch_across_requests=load_options.get("batch_across_requests", True), **bound)
    frontend = serve.deployment(Frontend, name="frontend", num_replicas=1, ray_actor_options={"num_cpus": 0})
    return frontend.bind(scorer.bind(model, load_options, threads), options)
