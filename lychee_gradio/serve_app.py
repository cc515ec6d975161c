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

from . import config as configs
from . import settings
from .serving.cluster import RayScorer, scorer_deployment


class Frontend:
    """Serves the app on `host:port` from inside the Ray cluster, scoring through the replicas."""

    async def __init__(self, scorer_handle, values: dict):
        from . import app

        description = await scorer_handle.describe.remote()  # a replica's constructor runs in an event loop
        replicas = values["max_replicas"] or values["replicas"] or 1
        config = configs.Config.from_values(values)
        scorer = RayScorer(scorer_handle, description, replicas, cache_size=config.cache_size)
        served = app.ServerSettings(
            host=values["host"],
            port=values["port"],
            config=config,
            mcp=values["mcp"],
            concurrency=configs.page_concurrency(values, replicas),
        )
        self.running = app.start(scorer, served)

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
    """A Serve application from `args` (the config file's `args`, or `key=value` after `serve run`): the
    settings of `lychee load`, by their names in settings.SETTINGS (`max_body_mb`, `replicas`,
    `gpus_per_replica`, ...), read by the same parser, with the same defaults, except `host` (0.0.0.0
    here: the frontend is reached from outside its node) and `replicas` (1). Unknown names are refused.
    """
    from .engine.weights import default_model
    from .replica import ScorerReplica

    unknown = sorted(set(args) - set(settings.BY_NAME))
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)}; see docs/configuration.md")
    given = settings.parse_options(args)
    values = {
        setting.name: given.get(setting.name, settings.env_default_of(setting.name))
        for setting in settings.SETTINGS
        if setting.name != "model"  # $LYCHEE_MODEL is one folder or id, whole (as `lychee load` reads it)
    }
    values["model"] = given.get("model") or []
    values["host"] = given.get("host") or os.environ.get("LYCHEE_HOST") or "0.0.0.0"
    values["replicas"] = values["replicas"] or 1
    values["model"] = values["model"] or [os.environ.get("LYCHEE_MODEL") or default_model()]
    values["api_key"] = values["api_key"] or os.environ.get("LYCHEE_API_KEY")
    gpus = values["gpus_per_replica"] or 0
    cpus = values["cpus_per_replica"] or 1
    actor = {"num_cpus": cpus, "num_gpus": gpus}
    threads = None if gpus else max(1, int(cpus))
    load = configs.load_options(values, cache=False)  # the score cache sits in front of the replicas
    scorer = scorer_deployment(
        ScorerReplica,
        replicas=values["replicas"],
        actor_options=actor,
        max_queued=values["max_queued"],
        batch_across_requests=values["batch_across_requests"],
        min_replicas=values["min_replicas"],
        max_replicas=values["max_replicas"],
    )
    frontend = serve.deployment(Frontend, name="frontend", num_replicas=1, ray_actor_options={"num_cpus": 0})
    return frontend.bind(scorer.bind(os.fspath(values["model"][0]), load, threads), values)
