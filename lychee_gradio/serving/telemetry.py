"""What operators watch: Prometheus metrics (`GET /metrics`) and one structured log line per request.

The metrics live in this process: the scorer reports what a call did in a `ScoreStats`, which the
door that took the request (the page, the Gradio API, `/v1/rerank`) records here. On Ray replicas
the stats travel back with each chunk's scores, so the same metrics come out of the one process
that serves HTTP, with no Ray metrics setup.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

REQUESTS = Counter(
    "lychee_requests",
    "Requests answered, by endpoint and status (HTTP codes; 499: stopped by the user)",
    ["endpoint", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "lychee_request_duration_seconds",
    "Time from a request's arrival to its answer",
    ["endpoint"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
IN_FLIGHT = Gauge(
    "lychee_requests_in_flight", "Requests being answered now (waiting for a model or running)", ["endpoint"], registry=REGISTRY
)
PAIRS = Counter("lychee_pairs", "Query-document pairs asked for", ["model"], registry=REGISTRY)
PAIRS_SCORED = Counter(
    "lychee_pairs_scored", "Pairs run through the model (not answered from the cache)", ["model"], registry=REGISTRY
)
TOKENS_SCORED = Counter("lychee_tokens_scored", "Prompt tokens of the pairs run through the model", ["model"], registry=REGISTRY)
BATCH_SIZE = Histogram(
    "lychee_batch_size",
    "Pairs per forward pass (from every request in it)",
    ["model"],
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
PASS_TOKENS = Histogram(
    "lychee_pass_tokens",
    "Prompt tokens per forward pass (whole prompts, prefixes included)",
    ["model"],
    registry=REGISTRY,
    buckets=(64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072),
)
PASS_REQUESTS = Histogram(
    "lychee_pass_requests",
    "Requests sharing one forward pass",
    ["model"],
    registry=REGISTRY,
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
QUEUE_WAIT = Histogram(
    "lychee_pass_wait_seconds",
    "Time a scoring call waited for its first forward pass",
    ["model"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CACHE_HITS = Counter("lychee_score_cache_hits", "Pairs answered from the score cache", ["model"], registry=REGISTRY)
CACHE_MISSES = Counter("lychee_score_cache_misses", "Pairs not in the score cache", ["model"], registry=REGISTRY)
IMAGE_CACHE_HITS = Counter("lychee_image_cache_hits", "Images taken processed from the image cache", ["model"], registry=REGISTRY)
IMAGE_CACHE_MISSES = Counter("lychee_image_cache_misses", "Images processed afresh", ["model"], registry=REGISTRY)
OOM_RETRIES = Counter("lychee_oom_retries", "Batches that ran out of GPU memory and were split", ["model"], registry=REGISTRY)
LOAD_SECONDS = Gauge("lychee_model_load_seconds", "Time the model took to load", ["model"], registry=REGISTRY)
WEIGHTS_BYTES = Gauge(
    "lychee_model_weights_bytes",
    "Bytes held by the model's parameters and buffers (one replica's on Ray), quantization scales included",
    ["model"],
    registry=REGISTRY,
)
WAITING = Gauge(
    "lychee_scorer_waiting",
    "Calls waiting for the model (one process), or chunks sent to the replicas and not answered yet (Ray)",
    ["model"],
    registry=REGISTRY,
)
REPLICAS_ALIVE = Gauge(
    "lychee_replicas_alive", "Model replicas running, as Ray Serve reports them (Ray only)", ["model"], registry=REGISTRY
)
MODEL_INFO = Info(
    "lychee_model",
    'How each model runs: its precision, why that dtype (e.g. "bfloat16: the CPU has '
    "AVX512-BF16\"), and torch's CPU threads (one replica's on Ray)",
    ["model"],
    registry=REGISTRY,
)
READY = Gauge("lychee_ready", "1 once every model is loaded and has scored its warm-up pair", registry=REGISTRY)

access_log = logging.getLogger("lychee_gradio.access")


def watch_models(models: dict[str, Any]) -> None:
    """Gauges read at scrape time: each model's load time and waiting calls; GPU memory where CUDA is present."""
    for name, scorer in models.items():
        if getattr(scorer, "load_seconds", None) is not None:
            LOAD_SECONDS.labels(model=name).set(scorer.load_seconds)
        if getattr(scorer, "weights_bytes", None) is not None:
            WEIGHTS_BYTES.labels(model=name).set(scorer.weights_bytes)
        MODEL_INFO.labels(model=name).info(runtime_of(scorer))
        WAITING.labels(model=name).set_function(lambda scorer=scorer: getattr(scorer, "waiting", 0))
        if hasattr(scorer, "replicas_alive"):
            REPLICAS_ALIVE.labels(model=name).set_function(lambda scorer=scorer: scorer.replicas_alive or 0)
    _watch_gpus()


def runtime_of(scorer) -> dict[str, str]:
    """A model's precision, why its dtype was chosen, and its CPU threads, as far as the scorer says."""
    found = {
        "precision": getattr(scorer, "precision", None),
        "dtype_why": getattr(scorer, "dtype_why", None),
        "threads": getattr(scorer, "threads", None),
    }
    return {key: str(value) for key, value in found.items() if value is not None}


_gpus_watched = False


def _watch_gpus() -> None:
    global _gpus_watched
    if _gpus_watched:
        return
    _gpus_watched = True
    # Only where this process runs a model itself (torch already loaded by the engine): the HTTP
    # layer never imports torch, and a Ray front end has no GPU of its own to report.
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    allocated = Gauge("lychee_gpu_memory_allocated_bytes", "GPU memory held by tensors", ["device"], registry=REGISTRY)
    reserved = Gauge(
        "lychee_gpu_memory_reserved_bytes", "GPU memory held by torch's caching allocator", ["device"], registry=REGISTRY
    )
    for index in range(torch.cuda.device_count()):
        allocated.labels(device=str(index)).set_function(lambda i=index: torch.cuda.memory_allocated(i))
        reserved.labels(device=str(index)).set_function(lambda i=index: torch.cuda.memory_reserved(i))


def record_scoring(model: str, stats: Any) -> None:
    """Count what one scoring call did (a scorer.ScoreStats)."""
    PAIRS.labels(model=model).inc(stats.pairs)
    PAIRS_SCORED.labels(model=model).inc(stats.scored)
    TOKENS_SCORED.labels(model=model).inc(stats.tokens_scored)
    CACHE_HITS.labels(model=model).inc(stats.cached)
    CACHE_MISSES.labels(model=model).inc(stats.pairs - stats.cached)
    IMAGE_CACHE_HITS.labels(model=model).inc(stats.image_cache_hits)
    IMAGE_CACHE_MISSES.labels(model=model).inc(stats.image_cache_misses)
    OOM_RETRIES.labels(model=model).inc(stats.oom_retries)
    for pairs, tokens, requests in stats.passes:
        BATCH_SIZE.labels(model=model).observe(pairs)
        PASS_TOKENS.labels(model=model).observe(tokens)
        PASS_REQUESTS.labels(model=model).observe(requests)
    if stats.scored:
        QUEUE_WAIT.labels(model=model).observe(stats.queue_seconds)


class Telemetry:
    """The `contract.Observer` the doors report to: one `RequestRecord` per request, `record_scoring` per call."""

    def request(self, endpoint: str, request_id: str | None = None) -> "RequestRecord":
        return RequestRecord(endpoint, request_id)

    def scored(self, model: str, stats: Any) -> None:
        record_scoring(model, stats)


TELEMETRY = Telemetry()


def new_request_id(given: str | None = None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    if given and len(given) <= 128 and all(c.isalnum() or c in "-_.:" for c in given):
        return given
    return uuid.uuid4().hex


class RequestRecord:
    """One request's metrics and log line: `with RequestRecord(endpoint) as record: ... record.status = 400`."""

    def __init__(self, endpoint: str, request_id: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.endpoint = endpoint
        self.request_id = request_id or new_request_id()
        self.status = 200
        self.fields: dict[str, Any] = {}  # model, documents, tokens, cached, ...
        self._clock = clock
        self.started = clock()

    def __enter__(self) -> "RequestRecord":
        IN_FLIGHT.labels(endpoint=self.endpoint).inc()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None and self.status < 400:
            self.status = 500
        self.finish()
        IN_FLIGHT.labels(endpoint=self.endpoint).dec()

    def finish(self) -> None:
        latency = self._clock() - self.started
        LATENCY.labels(endpoint=self.endpoint).observe(latency)
        REQUESTS.labels(endpoint=self.endpoint, status=str(self.status)).inc()
        fields = {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "latency_ms": round(latency * 1000, 1),
            **self.fields,
        }
        # A caller's mistake is a WARNING (one line, with its request id); a fault of ours an ERROR (its
        # traceback was logged where it happened); the rest, a stopped run (499) included, INFO.
        level = logging.ERROR if self.status >= 500 else logging.WARNING if 400 <= self.status < 499 else logging.INFO
        access_log.log(level, " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items()), extra={"fields": fields})


def _logfmt(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, level, logger, message, and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """The process's logging: plain lines (`text`) or one JSON object per line (`json`)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise ValueError(f"log format: 'text' or 'json', got {log_format!r}")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "PIL"):  # a line per HTTP call or file is noise
        logging.getLogger(noisy).setLevel(logging.WARNING)
