"""Every setting, declared once: `SETTINGS`, a table of (name, type, default, help, env var, section).

From this table come `lychee load`'s and `lychee share`'s flags (`add_flags`: `--max-body-mb` for
`max_body_mb`), the Ray-native entry point's arguments (`serve_app`, `key=value` or a Serve config's `args`,
read by the same parser: `parse_options`), the replicas' load options, and docs/configuration.md's table
(`markdown_table`, which a test holds to the file). A setting's default is written nowhere else: `Limits` and
`Config` (what the doors share, in bytes and seconds) take theirs from it.

Torch-free. What the doors share (`Config`, `Limits`), built from the table, is `config.py`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Mapping

MB = 2**20
CACHE_SCOPES = ("user", "global", "request")
LONG_DOCUMENTS = ("max", "split", "truncate", "refuse")  # parts.py's modes (the core states them; parts imports them)


@dataclass(frozen=True)
class Setting:
    """One setting. `kind`: "int", "float", "bool", "str", "list" (comma-separated), "choice", "path".
    `section`: "model" (how each model is loaded), "server", "doors" (what every door shares), "limits",
    "cluster" (Ray Serve replicas). `flag`: the flag when it is not `--name` (a bool that defaults to on is
    turned off by a flag of its own). `eval`: `lychee eval` takes it too."""

    name: str
    kind: str
    default: Any
    help: str
    section: str
    env: str | None = None
    choices: tuple = ()
    flag: str | None = None
    eval: bool = False
    minimum: float | None = 0

    def __post_init__(self):
        # Every setting has an environment variable, LYCHEE_ and its name (a flag given wins over it).
        if self.env is None:
            object.__setattr__(self, "env", "LYCHEE_" + self.name.upper())

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def opposite_option(self) -> str:
        """A boolean's flag for the other direction (`--no-mcp`; `--check-memory` for `--skip-memory-check`)."""
        plain = "--" + self.name.replace("_", "-")
        if self.option != plain:
            return plain
        return "--no-" + self.name.replace("_", "-")


S = Setting
# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
SETTINGS: list[Setting] = [
    # -- each model
    S("model", "list", [], "local folder with the weights, or a ModelScope id: vec-ai/lychee-rerank-mm, "
      "Qwen/Qwen3-VL-Reranker-2B, Qwen/Qwen3-VL-Reranker-8B; repeat for several (the first is the default). "
      "Default: vec-ai/lychee-rerank-mm", "model", env="LYCHEE_MODEL", eval=True),
    S("device", "str", "auto", "auto (CUDA when available, else Apple's MPS, else the CPU), cuda, cuda:1, cpu",
      "model", eval=True),
    S("dtype", "choice", "auto", "auto (bf16 on CUDA; on the CPU bf16 where it computes bf16 natively, else "
      "fp32), bfloat16, float16, float32", "model", env="LYCHEE_DTYPE",
      choices=("auto", "bfloat16", "float16", "float32"), eval=True),
    S("quantize", "choice", None, "load the language model's weights in 8 or 4 bits (bitsandbytes: pip install "
      "-e '.[quantize]'); per model: --model X@nf4", "model", choices=("int8", "nf4"), eval=True),
    S("max_pixels", "int", None, "the model's bound on each image's pixels (default: the family's, 1280*28*28 or "
      "1800*32*32); smaller is faster", "model", eval=True, minimum=1),
    S("batch_size", "int", None, "pairs per forward pass (default 32 on a GPU, 8 on the CPU)", "model", eval=True,
      minimum=1),
    S("max_batch_tokens", "int", None, "prompt tokens per forward pass, padding included (default 32768 GPU, "
      "8192 CPU)", "model", eval=True, minimum=1),
    S("image_cache_mb", "int", 1024, "processed images kept for images ranked again (0: off); per replica on Ray",
      "model", eval=True),
    S("max_batch_wait_ms", "float", 5.0, "when a pass is not full, wait at most this long for other requests to "
      "share it (0: never)", "model", eval=True),
    S("batch_across_requests", "bool", True, "score one request at a time per model (for comparison)", "model",
      flag="--no-batch-across-requests", eval=True),
    S("check_memory", "bool", True, "load even when the estimate says the model will not fit", "model",
      flag="--skip-memory-check", eval=True),
    # -- the server
    S("host", "str", "127.0.0.1", "address to listen on (0.0.0.0: every interface)", "server"),
    S("port", "int", 7860, "port", "server"),
    S("embedding_model", "str", None, "a Qwen3-VL-Embedding folder or ModelScope id (Qwen/Qwen3-VL-Embedding-2B, "
      "-8B): also serve POST /v1/embeddings and TEI's /embed (with --demo: a tiny random one)", "server"),
    S("data_dir", "path", None, "where collections are kept (lychee index, /v1/search; default: "
      "$XDG_DATA_HOME/lychee-gradio, else ~/.local/share/lychee-gradio)", "server"),
    S("collections_dir", "list", [], "the folders whose files a collection may be indexed from and a search may "
      "read (comma-separated; the callers' uploads besides); default: the folders lychee index was given", "server"),
    S("collections_url", "str", None, "keep the collections in a Qdrant server (http://HOST:6333, with its HNSW "
      "index) instead of the data directory's folder; uploads stay in the data directory", "server"),
    S("mcp", "bool", False, "also serve the endpoints as MCP tools (for agents) at /gradio_api/mcp/", "server"),
    S("log_format", "choice", "text", "log lines as text, or one JSON object per line", "server",
      choices=("text", "json"), eval=True),
    # -- what every door shares
    S("api_key", "str", None, "require 'Authorization: Bearer KEY' on every door but /health, /ready, /metrics; "
      "the page asks for user 'lychee' and the key (on the command line it shows in `ps`: prefer the variable "
      "or --api-key-file)", "doors", env="LYCHEE_API_KEY"),
    S("api_key_file", "path", None, "read the API key from this file's first line", "doors"),
    S("request_timeout", "float", 300.0, "seconds a request may wait for the model and run (0: none); then 504 "
      "on the API, a message on the page", "doors"),
    S("cache_size", "int", 200_000, "pair scores kept to answer repeats at once (0: off)", "doors"),
    S("cache_scope", "choice", "user", "whose repeats the score cache answers: user (each API key, page session "
      "or address), global (everyone's: answer times then tell what others asked), request (none)", "doors",
      choices=CACHE_SCOPES),
    S("allow_image_urls", "bool", False, "fetch http(s) image URLs on /v1/rerank and MCP (public addresses only)",
      "doors"),
    S("allowed_image_hosts", "list", [], "with --allow-image-urls: hosts fetched even if loopback or private (an "
      "internal CDN; *.example.com for subdomains)", "doors"),
    S("image_url_timeout", "float", 10.0, "seconds for one image URL, all of it: lookup, redirects, body", "doors"),
    S("allowed_hosts", "list", [], "host names this server answers to besides localhost, its address and the "
      "machine's names (a reverse proxy's; *.example.com; * for any)", "doors"),
    S("allowed_origins", "list", [], "web pages of other sites that may call the API from a browser (CORS)",
      "doors"),
    S("temp_file_minutes", "float", 60.0, "uploads and result files are deleted after this many minutes",
      "doors", minimum=1),
    S("header_timeout", "float", 10.0, "seconds a connection has to send its request headers (then 408)", "doors",
      minimum=0.1),
    S("long_documents", "choice", "max", "how a PDF or a text longer than the chunk size is scored when a request "
      "does not say: max (by its best page or chunk, named in the answer), split (a row per part), truncate (the "
      "text cut at the model's budget, a PDF's first page), refuse (413)", "doors", choices=LONG_DOCUMENTS),
    S("chunk_tokens", "int", None, "cut long texts into chunks of at most this many tokens (default: the model's "
      "text budget, 4096 or 10240)", "doors", minimum=16),
    S("calibration", "list", [], "thresholds from lychee eval --calibrate (JSON; several files comma-separated, or one "
      "with each model): min_score's \"relevant\" and \"partly\" and the verdicts use them where one exists for the "
      "model and modality pair, the default bands elsewhere", "doors"),
    S("pdf_text", "bool", False, "send each PDF page's text layer with its image (default: the image alone, as page "
      "rerankers are trained and as a scanned page has it)", "doors"),
    # -- limits, the same on every door
    S("max_documents", "int", 200, "documents (or images) per request", "limits", minimum=1),
    S("max_images_per_item", "int", 16, "images in one query or document", "limits", minimum=1),
    S("max_video_seconds", "float", 600, "a video's duration, checked from its header before decoding (at most 64 "
      "frames are sampled, 1 per second)", "limits", minimum=1),
    S("max_video_mb", "float", 64, "one video file (its bytes, before decoding)", "limits", minimum=0.01),
    S("max_pdf_pages", "int", 100, "PDF pages of one request, counted before any is rendered", "limits", minimum=1),
    S("max_pdf_mb", "float", 64, "one PDF file (its bytes, before it is read)", "limits", minimum=0.01),
    S("max_parts", "int", 200, "parts one request scores: the pages, chunks and segments of its long documents, each "
      "scored as a document", "limits", minimum=1),
    S("max_image_pixels", "int", 50_000_000, "pixels of one image, checked before it is decoded", "limits",
      minimum=1),
    S("max_request_pixels", "int", 400_000_000, "decoded pixels of one request's images together (413 past it)",
      "limits", minimum=1),
    S("image_memory_mb", "int", 2048, "memory of the images and clips of every request in flight together, decoded "
      "and cut into patches (taken from their headers before decoding); a request that alone needs more is refused "
      "(413), one that finds it taken waits up to --image-memory-wait", "limits", minimum=1),
    S("image_memory_wait", "float", 10.0, "seconds a request waits for image memory that other requests hold; then "
      "503 with Retry-After", "limits", minimum=0),
    S("max_body_mb", "float", 64.0, "one request body (/v1/*, MCP, the Gradio API)", "limits", minimum=0.001),
    S("max_upload_mb", "float", 64.0, "one uploaded file", "limits", minimum=0.001),
    S("max_upload_request_mb", "float", 1024.0, "the files of one upload request together", "limits",
      minimum=0.001),
    S("upload_space_mb", "float", 8192.0, "what uploads may hold on disk while they are kept, from every caller",
      "limits", minimum=0.001),
    S("upload_client_mb", "float", 2048.0, "the same, from one client address", "limits", minimum=0.001),
    S("max_image_url_mb", "float", 20.0, "one fetched image URL", "limits", minimum=0.001),
    S("max_explain_variants", "int", 256, "changed pairs one explanation scores (image cells and text segments)",
      "limits", minimum=1),
    S("max_explain_text_chars", "int", 32_768, "characters of a text an explanation takes", "limits", minimum=1),
    S("max_echo_chars", "int", 32_768, "characters of each document return_documents echoes", "limits"),
    S("max_zip_mb", "float", 2048.0, "what an uploaded evaluation zip unpacks to", "limits", minimum=0.001),
    S("max_zip_members", "int", 20_000, "files in an uploaded evaluation zip", "limits", minimum=1),
    # -- replicas on Ray Serve
    S("replicas", "int", None, "serve each model from N replicas on Ray Serve (a local Ray unless "
      "--ray-address; one GPU each where GPUs are present, else a share of the CPU cores)", "cluster", minimum=1),
    S("ray_address", "str", None, "join an existing Ray cluster (auto, ray://HOST:PORT) instead of starting one",
      "cluster"),
    S("min_replicas", "int", None, "with --max-replicas: Ray Serve autoscaling", "cluster", minimum=1),
    S("max_replicas", "int", None, "with --min-replicas: Ray Serve autoscaling", "cluster", minimum=1),
    S("max_queued", "int", 64, "requests waiting for a busy replica before new ones get 503", "cluster"),
    S("cpus_per_replica", "float", None, "CPU cores per replica (default: the cores shared equally)", "cluster"),
    S("gpus_per_replica", "float", None, "GPUs per replica (default: 1 where GPUs are present, else 0)", "cluster"),
]
# fmt: on
del S
BY_NAME = {setting.name: setting for setting in SETTINGS}


def default_of(name: str) -> Any:
    default = BY_NAME[name].default
    return list(default) if isinstance(default, list) else default


def env_default_of(name: str) -> Any:
    """A setting's default where it is not given: its environment variable's value (parsed), where the table
    names one and it is set, else the table's default. `lychee load`'s flags and `serve_app` share this rule."""
    setting = BY_NAME[name]
    if setting.env and os.environ.get(setting.env):
        return parse_value(setting, os.environ[setting.env])
    return default_of(name)


# -- flags and options ----------------------------------------------------------------------------------------------


def _checked(setting: Setting, value: Any) -> Any:
    if setting.kind in ("int", "float") and value is not None and setting.minimum is not None:
        if value < setting.minimum or value != value:
            raise ValueError(f"{setting.name}: expected {setting.minimum:g} or more, got {value!r}")
    if setting.kind == "choice" and value is not None and value not in setting.choices:
        raise ValueError(f"{setting.name}: expected one of {', '.join(setting.choices)}, got {value!r}")
    return value


def parse_value(setting: Setting, text: Any) -> Any:
    """One setting's value from text (a flag, a `key=value`, a YAML value), the one way: booleans are
    true/false, yes/no, on/off, 1/0 (anything else is an error); lists are comma-separated."""
    if text is None:
        return None
    if setting.kind == "bool":
        if isinstance(text, bool):
            return text
        word = str(text).strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{setting.name}: expected true or false, got {text!r}")
    if setting.kind == "list":
        items = text if isinstance(text, (list, tuple)) else str(text).split(",")
        return [str(item).strip() for item in items if str(item).strip()]
    if isinstance(text, str) and text.strip().lower() in ("", "none", "null") and setting.default is None:
        return None
    try:
        if setting.kind == "int":
            if isinstance(text, float) and not text.is_integer():
                raise ValueError
            return _checked(setting, int(str(text).replace("_", "")) if isinstance(text, str) else int(text))
        if setting.kind == "float":
            return _checked(setting, float(text))
    except (TypeError, ValueError):
        raise ValueError(f"{setting.name}: expected a number, got {text!r}") from None
    return _checked(setting, str(text))


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The table's values from flat options (serve_app's args): each known name parsed as its flag would be;
    names the table does not know are left to the caller."""
    return {name: parse_value(BY_NAME[name], value) for name, value in options.items() if name in BY_NAME}


def add_flags(
    parser: argparse.ArgumentParser, sections: tuple[str, ...], *, eval_only: bool = False, names: tuple[str, ...] = ()
) -> None:
    """The table's settings of `sections` (and those called `names`) as flags (`--name`, or the setting's own flag),
    with its defaults (its environment variable, `LYCHEE_NAME`, overrides the default; the flag overrides both)."""
    for setting in SETTINGS:
        if setting.name not in names and (setting.section not in sections or (eval_only and not setting.eval)):
            continue
        help_text = setting.help.replace("%", "%%")
        if setting.env:
            help_text += f" (${setting.env})"
        try:
            default = env_default_of(setting.name)
        except ValueError as error:  # a variable set to something the setting cannot take: said before anything runs
            raise SystemExit(f"${setting.env}: {error}") from None
        if setting.kind == "bool":
            # Both directions, so that a flag wins over the variable either way: `--mcp` / `--no-mcp`,
            # `--no-batch-across-requests` / `--batch-across-requests`, `--skip-memory-check` / `--check-memory`.
            action = "store_false" if setting.default else "store_true"
            opposite = "store_true" if setting.default else "store_false"
            parser.add_argument(
                setting.opposite_option, dest=setting.name, action=opposite, default=default, help=argparse.SUPPRESS
            )
            parser.add_argument(setting.option, dest=setting.name, action=action, default=default, help=help_text)
            continue
        if setting.kind == "list" and setting.name == "model":
            default = [os.environ[setting.env]] if os.environ.get(setting.env) else None  # one folder or id, whole
            parser.add_argument(setting.option, dest=setting.name, action="append", default=None, help=help_text)
            parser.set_defaults(**{f"{setting.name}_default": default})
            continue

        def typed(text, setting=setting):
            try:
                return parse_value(setting, text)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error).split(": ", 1)[1]) from None

        shown = (
            f" (default {setting.default:,})"
            if isinstance(setting.default, int) and setting.default > 9999
            else (
                f" (default {setting.default:g})"
                if isinstance(setting.default, (int, float)) and not isinstance(setting.default, bool)
                else (f" (default {setting.default})" if setting.default else "")
            )
        )
        parser.add_argument(
            setting.option,
            dest=setting.name,
            type=typed,
            default=default,
            choices=setting.choices or None,
            metavar=None if setting.choices else setting.name.upper(),
            help=help_text + shown,
        )


def values_of(args: argparse.Namespace) -> dict[str, Any]:
    """The table's values from parsed flags (names a command does not take: their defaults)."""
    found = {setting.name: getattr(args, setting.name, default_of(setting.name)) for setting in SETTINGS}
    if not found["model"]:
        found["model"] = getattr(args, "model_default", None) or []
    return found


def markdown_table() -> str:
    """docs/configuration.md's table: every setting, its flag, default and meaning (a test holds the file to it)."""
    lines = ["| setting (`serve_app` name) | flag | default | what it does |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        default = (
            "—"
            if setting.default in (None, [], ())
            else (
                ("on" if setting.default else "off")
                if isinstance(setting.default, bool)
                else f"{setting.default:,}"
                if isinstance(setting.default, int)
                else f"{setting.default:g}"
                if isinstance(setting.default, float)
                else str(setting.default)
            )
        )
        env = f" (`${setting.env}`)" if setting.env else ""
        lines.append(f"| `{setting.name}` | `{setting.option}`{env} | {default} | {setting.help.replace('|', '/')} |")
    return "\n".join(lines)


__all__ = [
    "SETTINGS",
    "Setting",
    "BY_NAME",
    "default_of",
    "env_default_of",
    "parse_value",
    "parse_options",
    "add_flags",
    "values_of",
    "markdown_table",
]
