"""Finding the weights (a local folder or a ModelScope id) and loading them with transformers."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "vec-ai/lychee-rerank-mm"
MODEL_ENV_VAR = "LYCHEE_MODEL"
MODELSCOPE_HOST = "www.modelscope.cn"

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """The weights could not be found, downloaded or loaded; the message says what to do."""


def default_model() -> str:
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL_ID


def _local_folder_hint(model_id: str) -> str:
    return (
        f"Download it on a machine with network access (`modelscope download --model {model_id} "
        f"--local_dir /models/lychee-rerank-mm`), copy the folder here, and pass it as "
        f"model='/models/lychee-rerank-mm' (or `--model /models/lychee-rerank-mm`, or set {MODEL_ENV_VAR})."
    )


def resolve_model_dir(model: str | os.PathLike | None = None) -> Path:
    """A local folder is used as it is; a ModelScope id is downloaded once into ModelScope's cache."""
    model = default_model() if model is None else model
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but has no config.json; it is not a transformers checkpoint")
        return path
    if path.exists():
        raise ModelLoadError(f"model must be a folder or a ModelScope id; {path} is a file")
    if not _MODEL_ID_RE.match(text):
        raise ModelLoadError(
            f"model folder not found: {text!r}. Give an existing folder with the weights, "
            f"or a ModelScope id such as {DEFAULT_MODEL_ID!r}."
        )
    return download_model(text)


def _modelscope_snapshot_download(model_id: str, **kwargs: Any) -> str:
    from modelscope import snapshot_download

    return snapshot_download(model_id, **kwargs)


def _host_reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_model(model_id: str) -> Path:
    """Return the local folder of a ModelScope model, downloading it on first use.

    A cached copy is used without touching the network. Otherwise the host is probed with a short
    timeout first, so that a machine without network gets a clear error at once instead of a
    minute of retries.
    """
    try:
        return Path(_modelscope_snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here only means "not cached yet"
        pass
    if not _host_reachable(MODELSCOPE_HOST):
        raise ModelLoadError(
            f"{model_id!r} is not a local folder and cannot be downloaded from ModelScope: "
            f"{MODELSCOPE_HOST} is not reachable (no network?). "
            f"{_local_folder_hint(model_id)}"
        )
    logger.info("downloading %s from ModelScope (about 17 GB for lychee-rerank-mm) ...", model_id)
    try:
        return Path(_modelscope_snapshot_download(model_id))
    except Exception as error:  # noqa: BLE001 - modelscope raises many types; all mean the same here
        raise ModelLoadError(
            f"{model_id!r} is not a local folder and cannot be downloaded from ModelScope: {error}. "
            f"Check the id. {_local_folder_hint(model_id)}"
        ) from error


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs."""

    device: str
    dtype: Any  # torch.dtype
    attn_implementation: str


_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}


def choose_runtime(device: str = "auto", dtype: Any = "auto", attn_implementation: str = "auto") -> Runtime:
    """`auto` means CUDA when available; bf16 on CUDA, fp32 on CPU; flash-attention 2 when usable."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device={device!r} was asked for, but CUDA is not available; use device='cpu'")
    if dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
        dtype = getattr(torch, _DTYPES[dtype])
    if attn_implementation == "auto":
        flash_ok = (
            device.startswith("cuda")
            and dtype in (torch.bfloat16, torch.float16)
            and importlib.util.find_spec("flash_attn") is not None
        )
        attn_implementation = "flash_attention_2" if flash_ok else "sdpa"
    return Runtime(device=device, dtype=dtype, attn_implementation=attn_implementation)


def load_model_and_processor(folder: Path, runtime: Runtime):
    """Load the Qwen2.5-VL model and its processor from a checkpoint folder."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    try:
        processor = AutoProcessor.from_pretrained(folder)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            folder,
            dtype=runtime.dtype,
            attn_implementation=runtime.attn_implementation,
            device_map=runtime.device if runtime.device.startswith("cuda") else None,
        )
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a bad checkpoint
        raise ModelLoadError(f"cannot load a Qwen2.5-VL checkpoint from {folder}: {error}") from error
    if not runtime.device.startswith("cuda"):
        model.to(runtime.device)
    model.eval()
    return model, processor
