"""Model replicas on Ray Serve: `lychee load --replicas N` or `--ray-address auto|ray://host:port`.

Ray Serve does the distributed work (placing replicas on GPUs or CPU shares across a cluster,
routing, queueing, autoscaling, restarting dead replicas). This module only adapts it to the
scorer interface the app and the REST API use: `RayScorer` is a `scorer.Scorer` like
`LycheeScorer` (same `score`, `score_with_logits`, `rerank`, input checks and score cache), and
only its way of scoring the cache's misses differs, so they do not know which one they hold.

A request's documents are split into chunks that run on different replicas at once and are merged
back in input order; scores are pointwise, so they equal the single-process scores. A chunk whose
replica dies is retried once (Ray Serve routes it to a live replica and restarts the dead one).
When every replica is busy and the bounded queue is full, `ScorerBusyError` is raised.

Ray is imported only here, and only when replicas are asked for: plain `lychee load` never imports it.
The replicas' own class (`replica.ScorerReplica`, which wires the engine in) is handed to `Cluster`
by the CLI: this module has no model code.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..contract import InputError, LycheeError, PairScore, RequestContext, ScorerBusyError
from ..families import FAMILIES
from ..score_cache import ScoreCache
from ..scoring import Counter, ScorerBase
from ..settings import default_of

logger = logging.getLogger(__name__)

MAX_CHUNK = 32  # pairs per replica call for large requests: keeps progress moving and work spread
REPLICA_CONCURRENCY = 16  # calls one replica takes at once: its scheduler forms passes from all of them
MIN_SPLIT = 16  # a request is spread over replicas only when each part gets at least this many pairs:
# below that, the shared prefix computed again per part costs more than the parallelism gains, and
# concurrent small requests already keep every replica busy


@dataclass
class ClusterSettings:
    replicas: int = 1
    min_replicas: int | None = None  # with max_replicas: Ray Serve autoscaling
    max_replicas: int | None = None
    ray_address: str | None = None  # None: a local Ray instance, started and stopped here
    max_queued: int = default_of("max_queued")  # requests waiting for a replica before ScorerBusyError (503)
    load_options: dict = field(default_factory=dict)  # LycheeScorer.load keyword arguments
    cpus_per_replica: float | None = None  # default: the CPU cores shared equally among the replicas
    gpus_per_replica: float | None = None  # default: 1 where GPUs are present, else 0
    cache_size: int = 0  # pair scores kept in front of the replicas (0: off)


class RayScorer(ScorerBase):
    """The scorer interface over a Ray Serve deployment of `ScorerReplica`.

    With `application` (the Serve application's name), a watcher asks Ray Serve every few seconds
    how many of the deployment's replicas are running: `replicas_alive`, for `/ready` and `/metrics`.
    """

    WATCH_SECONDS = 2.0

    def __init__(
        self,
        handle,
        description: dict,
        replicas: int,
        cache_size: int = 0,
        application: str | None = None,
        min_alive: int | None = None,
    ):
        self.handle = handle
        self.min_alive = min_alive or replicas  # fewer running replicas than this: /ready answers 503
        self.model_name = description["model_name"]
        self.family = FAMILIES[description["model_type"]]
        self.max_pixels = description["max_pixels"]
        self.load_seconds = description.get("load_seconds")
        self.weights_bytes = description.get("weights_bytes")  # one replica's (each holds its own copy)
        self.precision = description.get("precision")
        self.dtype_why = description.get("dtype_why")
        self.threads = description.get("threads")  # one replica's
        self.max_text_tokens = description.get("max_text_tokens")
        self._tokenizer = _tokenizer(description.get("tokenizer"))
        self.replicas = replicas
        self.cache = ScoreCache(cache_size)
        self._waiting = Counter()  # chunks sent to the replicas and not answered yet
        self.replicas_alive: int | None = None  # running replicas, as Ray Serve last reported (None: not known)
        self._closed = threading.Event()
        if application is not None:
            threading.Thread(target=self._watch, args=(application,), name="lychee-replica-watch", daemon=True).start()

    def token_offsets(self, text: str):
        """Each token's [start, end) in `text` by the replicas' own tokenizer: long texts are cut into the chunks
        a local scorer cuts (parts.py), here in the front end, before any replica is asked."""
        if self._tokenizer is None:
            return None
        return self._tokenizer.encode(text, add_special_tokens=False).offsets

    def _watch(self, application: str) -> None:
        import ray
        from ray import serve

        while not self._closed.is_set():
            if not ray.is_initialized():  # shut down: stop asking (asking would start a new Ray)
                self.replicas_alive = None
                return
            try:
                status = serve.status().applications.get(application)
                deployment = status.deployments.get("scorer") if status is not None else None
                self.replicas_alive = deployment.replica_states.get("RUNNING", 0) if deployment is not None else 0
            except Exception:  # noqa: BLE001 - Ray going away (shutdown) or not answering: not known
                self.replicas_alive = None
            self._closed.wait(self.WATCH_SECONDS)

    def close(self) -> None:
        """Stop watching the replicas (the cluster is going away)."""
        self._closed.set()

    @property
    def waiting(self) -> int:
        """Chunks sent to the replicas and not answered yet (for /metrics)."""
        return self._waiting.value

    def score_uncached(
        self, query_item, items, instruction, max_pixels, on_progress, context: RequestContext, digest=None
    ) -> list[PairScore]:
        """Spread the pairs over the replicas in chunks (retried once when a replica dies), merged in order.

        The chunks are awaited together on one event loop that serves every request of this process
        (`_RayLoop`), not on a thread per chunk; the request's deadline and Stop are checked between waits.
        """
        self._waiting.add(1)
        try:
            return _RayLoop.shared().run(self._score_chunks(query_item, items, instruction, max_pixels, on_progress, context))
        finally:
            self._waiting.add(-1)

    async def _score_chunks(
        self, query_item, items, instruction, max_pixels, on_progress, context: RequestContext
    ) -> list[PairScore]:
        results: list[PairScore | None] = [None] * len(items)
        pending: dict[asyncio.Future, tuple[list[int], int, Any]] = {}

        def submit(chunk: list[int], attempt: int) -> None:
            # The replica stops its own work at the request's deadline, between batches.
            remaining = context.remaining()
            response = self.handle.score_with_logits.remote(
                query_item,
                [items[i] for i in chunk],
                instruction,
                max_pixels,
                None if remaining is None else max(remaining, 0.001),
            )
            pending[asyncio.ensure_future(_answer(response))] = (chunk, attempt, response)

        for chunk in self._chunks(len(items)):
            submit(chunk, 0)
        done_pairs, pids = 0, []
        try:
            while pending:
                context.check()
                remaining = context.remaining()
                finished, _ = await asyncio.wait(
                    list(pending),
                    return_when=asyncio.FIRST_COMPLETED,
                    timeout=0.2 if remaining is None else max(0.0, min(0.2, remaining)),
                )
                for future in finished:
                    chunk, attempt, _ = pending.pop(future)
                    try:
                        pid, scores, chunk_stats = future.result()
                    except Exception as error:  # noqa: BLE001 - sorted below: retry, busy, or the cause
                        if _replica_lost(error) and attempt == 0:
                            logger.warning("a replica was lost while scoring; retrying its %d pairs once", len(chunk))
                            submit(chunk, 1)
                            continue
                        raise _user_facing(error) from None
                    for index, pair in zip(chunk, scores):
                        results[index] = pair
                    chunk_stats.pairs = chunk_stats.cached = chunk_stats.tokens = 0  # counted once, at the front
                    context.stats.add(chunk_stats)
                    pids.append(pid)
                    done_pairs += len(chunk)
                    if on_progress is not None:
                        on_progress(done_pairs, len(items))
        finally:
            # A stopped, timed-out or failed request drops its other chunks: queued ones never run,
            # running ones are cancelled by Serve.
            for future, (_, _, response) in pending.items():
                future.cancel()
                try:
                    response.cancel()
                except Exception:  # noqa: BLE001 - that chunk already ended: nothing to cancel
                    pass
        context.stats.replicas.extend(pids)
        return results  # type: ignore[return-value]

    def inspect(self, query, document, instruction, max_pixels, context: RequestContext, explain_tokens: int = 0):
        """A replica's look inside the model for one pair (next tokens, the model's own words)."""
        remaining = context.remaining()
        response = self.handle.inspect.remote(
            query, document, instruction, max_pixels, explain_tokens, None if remaining is None else max(remaining, 0.001)
        )
        try:
            return _RayLoop.shared().run(_answer(response))
        except Exception as error:  # noqa: BLE001 - sorted by _user_facing
            raise _user_facing(error) from None

    def _chunks(self, count: int) -> list[list[int]]:
        spread = min(self.replicas, count // MIN_SPLIT)
        pieces = max(1, spread, math.ceil(count / MAX_CHUNK))
        size = math.ceil(count / pieces)
        return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


async def _answer(response):
    return await response


class _RayLoop:
    """One event loop thread on which this process awaits every replica call (Ray Serve handles are asyncio-native)."""

    _shared: "_RayLoop | None" = None
    _lock = threading.Lock()

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="lychee-ray-calls", daemon=True).start()

    @classmethod
    def shared(cls) -> "_RayLoop":
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


def _tokenizer(text: str | None):
    """The replicas' plain tokenizer from its JSON (the `tokenizers` library: no torch), or None."""
    if not text:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def _replica_lost(error: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import ReplicaUnavailableError

    return isinstance(error, (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaUnavailableError))


def _user_facing(error: BaseException) -> BaseException:
    """The error a caller should see, without Ray's wrapping: busy when Serve's queue is full; an error of the
    package's raised on the replica as itself (it travels pickled with its code and parameters); a plain
    ValueError there as the bad input it is; anything else a 500 that says the details are in the log."""
    from ray.serve.exceptions import BackPressureError

    if isinstance(error, BackPressureError):
        return ScorerBusyError()
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, LycheeError):
        return cause
    if isinstance(cause, ValueError):
        return InputError(None, "invalid", reason=str(cause))
    logger.error("a replica failed: %r", error)
    return LycheeError(None, "replica_failed")


def scorer_deployment(
    replica: type,
    *,
    replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    actor_options: dict,
    max_queued: int,
    batch_across_requests: bool = True,
):
    """The Serve deployment of the model replicas, fixed or autoscaled: the one place its config is written."""
    from ray import serve

    scaling: dict[str, Any] = {"num_replicas": replicas}
    if min_replicas is not None or max_replicas is not None:
        scaling = {
            "autoscaling_config": {
                "min_replicas": min_replicas or 1,
                "max_replicas": max_replicas or max(replicas, 1),
                "initial_replicas": replicas,
                "target_ongoing_requests": 1,
            }
        }
    # Each replica batches what it receives (its scorer's scheduler): it takes several calls at once, or one
    # at a time when batching across requests is off.
    ongoing = REPLICA_CONCURRENCY if batch_across_requests else 1
    from ray.serve.config import RequestRouterConfig

    router = RequestRouterConfig(request_router_class="lychee_gradio.serving.replica_routing.LeastLoadedRouter")
    return serve.deployment(
        replica,
        name="scorer",
        ray_actor_options=actor_options,
        max_ongoing_requests=ongoing,
        request_router_config=router,
        max_queued_requests=max_queued,
        **scaling,
    )


def local_only() -> None:
    """Keep a Ray instance started here on this machine's loopback: every Ray port (GCS, raylets,
    workers, object manager, agents) then listens on 127.0.0.1 instead of the node's address.

    Ray picks loopback for its node address when "cluster mode" is off, the setting Ray itself
    uses on Windows and macOS (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`); it is read when Ray is
    imported, so it is set in the environment and, if Ray was already imported, on its constant.
    Only for `--replicas N` without `--ray-address`: a real cluster's nodes must reach each other.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


class Cluster:
    """The Ray side of a server: started once, one Serve deployment per model, stopped on close."""

    def __init__(self, settings: ClusterSettings, replica: type):
        import ray
        from ray import serve

        self.settings = settings
        self.replica = replica  # the class each replica runs (replica.ScorerReplica: the engine, wired in)
        self._owns_ray = settings.ray_address is None
        if self._owns_ray:
            local_only()
        if not ray.is_initialized():
            if self._owns_ray:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=settings.ray_address, log_to_driver=False)
        serve.start(proxy_location="Disabled")  # the app serves HTTP itself, on its own port
        self.applications: list[str] = []
        self.scorers: list[RayScorer] = []

    def resources(self, device: str) -> tuple[dict, int | None]:
        """Each replica's Ray resources and torch threads: one GPU where GPUs are present, else an equal
        (possibly fractional) share of the CPU cores, with as many torch threads as whole cores in it."""
        import ray

        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0))
        wanted = self.settings.gpus_per_replica
        if (wanted if wanted is not None else gpus) and gpus >= 1 and not str(device).startswith("cpu"):
            share = wanted if wanted is not None else 1
            if self._owns_ray and gpus < self.replica_count * share:
                raise ValueError(f"{self.replica_count} replicas need {share:g} GPU each; this machine has {gpus}")
            return {"num_gpus": share}, None
        share = self.settings.cpus_per_replica or round(total.get("CPU", 1) / max(1, self.replica_count), 2)
        return {"num_cpus": share}, max(1, int(share))

    @property
    def replica_count(self) -> int:
        s = self.settings
        return s.max_replicas or s.replicas

    def deploy(self, model: str, index: int = 0) -> RayScorer:
        from ray import serve

        s = self.settings
        options, threads = self.resources(s.load_options.get("device", "auto"))
        deployment = scorer_deployment(
            self.replica,
            replicas=s.replicas,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            actor_options=options,
            max_queued=s.max_queued,
            batch_across_requests=s.load_options.get("batch_across_requests", True),
        )
        name = f"lychee-{index}"
        handle = serve.run(deployment.bind(os.fspath(model), s.load_options, threads), name=name, route_prefix=None)
        self.applications.append(name)
        description = handle.describe.remote().result()
        scorer = RayScorer(
            handle,
            description,
            self.replica_count,
            cache_size=s.cache_size,
            application=name,
            min_alive=s.min_replicas or s.replicas,
        )
        self.scorers.append(scorer)
        return scorer

    def close(self) -> None:
        import ray
        from ray import serve

        for scorer in self.scorers:
            scorer.close()
        for name in self.applications:
            try:
                serve.delete(name)
            except Exception:  # noqa: BLE001 - shutting down; nothing left to do about it
                pass
        if self._owns_ray:
            serve.shutdown()
            ray.shutdown()
