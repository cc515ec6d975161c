"""Will it fit? The memory a model needs in a precision, against what the device has free, before loading.

An estimate, in three parts:
- **weights**: the checkpoint's parameters (counted from its config.json on the meta device, or from the
  published architecture before a download), each in the compute dtype, except the language model's
  linear layers under `--quantize`: 1 byte each (int8, plus a scale per row: under 1 %) or 0.5 byte plus a
  4-byte scale per block of 64 (nf4);
- **working memory** of one forward pass at the token budget (`max_batch_tokens`): per token, the layer's
  hidden states and attention (6 x hidden size) and its MLP (3 x intermediate size), in the compute dtype
  (on the CPU in bf16, two of the hidden states in float32: the residual stream, engine/precision.py).
  Layers run one after another, so one layer's working set is what is held at once;
- **overhead**: the CUDA context and cuBLAS workspaces (0.6 GB), or the process itself on a CPU (0.5 GB).

It is compared with CUDA's free memory on the device (`torch.cuda.mem_get_info`) or the system's available
RAM for the CPU. The README's table comes from the same arithmetic; measured peaks need a GPU.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..families import FAMILIES, PUBLISHED, Architecture
from .weights import ModelLoadError, Runtime, split_precision

logger = logging.getLogger(__name__)

GB = 1024**3
CUDA_OVERHEAD = int(0.6 * GB)
CPU_OVERHEAD = int(0.5 * GB)
DEFAULT_BUDGET = {"cuda": 32768, "cpu": 8192, "mps": 8192}  # the scorer's max_batch_tokens defaults


class WontFitError(ModelLoadError):
    """The model would not fit in the device's free memory: stopped before loading; the message says what would."""

    code = "wont_fit"


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    precision: str  # "int8", "nf4", or the compute dtype ("bfloat16", "float32", ...)
    device: str
    weights_bytes: int
    working_bytes: int
    overhead_bytes: int
    budget_tokens: int
    free_bytes: int | None  # None: not known (Apple's GPUs)
    source: str  # where the parameter count comes from

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.working_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.free_bytes is None else self.total_bytes <= self.free_bytes

    def describe(self) -> str:
        free = "not known" if self.free_bytes is None else f"{self.free_bytes / GB:.1f} GB free"
        verdict = {True: "fits", False: "does NOT fit", None: "cannot tell"}[self.fits]
        return (
            f"{self.model} ({self.precision}) on {self.device}: about {self.total_bytes / GB:.1f} GB = weights "
            f"{self.weights_bytes / GB:.1f} GB + working memory {self.working_bytes / GB:.1f} GB (at "
            f"{self.budget_tokens:,} tokens per pass) + overhead {self.overhead_bytes / GB:.1f} GB; {free}: "
            f"{verdict} (parameters from {self.source})"
        )


def architecture(model: str) -> tuple[Architecture, str] | None:
    """The architecture of a local folder (its config.json), of a downloaded ModelScope id, or of a published
    model before its download; None when it cannot be known without downloading."""
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        counted = _count(path)
        return (counted, f"{path / 'config.json'}") if counted else None
    cached = _cached_folder(model)
    if cached is not None:
        counted = _count(cached)
        return (counted, f"the downloaded {model}") if counted else None
    if model in PUBLISHED:
        return PUBLISHED[model], "the published architecture"
    return None


def _cached_folder(model: str) -> Path | None:
    if "/" not in model or model.startswith(("/", ".", "~")):
        return None
    from .weights import _cached_snapshot

    folder = _cached_snapshot(model)
    return folder if folder is not None and (folder / "config.json").is_file() else None


def _count(folder: Path) -> Architecture | None:
    """Parameters by kind, from config.json alone: the model is built on the meta device (no memory). None
    for a checkpoint that is not of a served family or whose config cannot be read: the loader then says
    what is wrong with it, in its own words."""
    try:
        return _count_parameters(folder)
    except Exception as error:  # noqa: BLE001 - an estimate must never be the reason a load fails
        logger.info("no memory estimate for %s: %s", folder, error)
        return None


def _count_parameters(folder: Path) -> Architecture | None:
    import torch
    import transformers

    config_json = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    family = FAMILIES.get(config_json.get("model_type"))
    if family is None:
        return None
    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = getattr(transformers, family.model_class)._from_config(config)
    total = sum(parameter.numel() for parameter in model.parameters())
    quantizable = sum(
        module.weight.numel()
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith("model.language_model.")
    )
    text = config.text_config
    return Architecture(family.model_type, total, quantizable, text.hidden_size, text.intermediate_size)


def estimate_for(
    shape: Architecture,
    model: str,
    quantize: str | None,
    runtime: Runtime,
    budget_tokens: int | None = None,
    free_bytes: int | None = None,
    source: str = "",
) -> MemoryEstimate:
    import torch

    width = torch.empty((), dtype=runtime.dtype).element_size()
    rest = shape.parameters - shape.quantizable
    if quantize == "int8":
        weights = shape.quantizable + rest * width
    elif quantize == "nf4":
        weights = int(shape.quantizable * (0.5 + 4 / 64)) + rest * width
    else:
        weights = shape.parameters * width
    kind = runtime.device.split(":")[0]
    budget = budget_tokens or DEFAULT_BUDGET.get(kind, 8192)
    working = budget * (6 * shape.hidden_size + 3 * shape.intermediate_size) * width
    if kind == "cpu" and width == 2 and not quantize:  # the residual stream and its normed copy in float32
        working += budget * 2 * shape.hidden_size * (4 - width)  # (engine/precision.py)
    overhead = CUDA_OVERHEAD if kind == "cuda" else CPU_OVERHEAD
    precision = quantize or str(runtime.dtype).replace("torch.", "")
    return MemoryEstimate(model, precision, runtime.device, weights, working, overhead, budget, free_bytes, source)


def free_memory(device: str) -> int | None:
    """Bytes free on the device now: CUDA's free memory, the system's available RAM for the CPU; None for MPS."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0]
    if device == "cpu":
        import psutil

        return psutil.virtual_memory().available
    return None


def estimate(
    model: str | os.PathLike, runtime: Runtime, quantize: str | None = None, budget_tokens: int | None = None
) -> MemoryEstimate | None:
    """The estimate for `model` (a `X@nf4` suffix sets the precision), or None when its size is not known yet."""
    name, suffix = split_precision(model)
    quantize = quantize or suffix
    found = architecture(name)
    if found is None:
        return None
    shape, source = found
    return estimate_for(shape, os.fspath(model), quantize, runtime, budget_tokens, free_memory(runtime.device), source)


def check(
    model: str | os.PathLike, runtime: Runtime, quantize: str | None = None, budget_tokens: int | None = None
) -> MemoryEstimate | None:
    """Raise `WontFitError` before loading when the model would not fit; the estimate (None: not known)."""
    found = estimate(model, runtime, quantize, budget_tokens)
    if found is None:
        logger.info("no memory estimate for %s before its download", model)
        return None
    logger.info("memory: %s", found.describe())
    if found.fits is False:
        raise WontFitError(wont_fit_message(found, runtime))
    return found


def wont_fit_message(found: MemoryEstimate, runtime: Runtime) -> str:
    """What it needs, what is free, and what would fit instead."""
    name, _ = split_precision(found.model)
    shape, source = architecture(name) or (None, "")
    free = found.free_bytes or 0
    options = []
    if shape is not None:
        import dataclasses

        import torch

        if runtime.dtype == torch.float32 and not found.precision.endswith(("int8", "nf4")):
            half = estimate_for(shape, name, None, dataclasses.replace(runtime, dtype=torch.bfloat16), found.budget_tokens, free)
            if half.fits:
                slower = ""
                if runtime.device == "cpu":
                    from .weights import cpu_bf16

                    slower = "" if cpu_bf16()[0] else "; slower than float32 on this CPU, which has no native bfloat16"
                options.append(f"--dtype bfloat16 (about {half.total_bytes / GB:.1f} GB{slower})")
        for quantize in ("int8", "nf4"):
            other = estimate_for(shape, name, quantize, runtime, found.budget_tokens, free)
            if other.fits and quantize != found.precision:
                options.append(f"--quantize {quantize} (about {other.total_bytes / GB:.1f} GB)")
        per_token = found.working_bytes // max(1, found.budget_tokens)
        room = free - found.weights_bytes - found.overhead_bytes
        budget = (room // max(1, per_token)) // 1024 * 1024
        if 2048 <= budget < found.budget_tokens:
            options.append(
                f"--max-batch-tokens {budget} (smaller forward passes; a smaller --max-pixels makes "
                f"each image fewer tokens; about "
                f"{(found.weights_bytes + found.overhead_bytes + budget * per_token) / GB:.1f} GB)"
            )
    small = PUBLISHED["Qwen/Qwen3-VL-Reranker-2B"]
    if name != "Qwen/Qwen3-VL-Reranker-2B":
        for quantize in (None, "int8", "nf4"):
            other = estimate_for(small, "Qwen/Qwen3-VL-Reranker-2B", quantize, runtime, found.budget_tokens, free)
            if other.fits:
                flag = f" --quantize {quantize}" if quantize else ""
                options.append(f"--model Qwen/Qwen3-VL-Reranker-2B{flag} (about {other.total_bytes / GB:.1f} GB)")
                break
    where = "this GPU" if runtime.device.startswith("cuda") else "this machine's RAM"
    advice = ("; would fit: " + ", or ".join(options)) if options else "; nothing smaller would fit either"
    return (
        f"{found.model} in {found.precision} needs about {found.total_bytes / GB:.1f} GB (weights "
        f"{found.weights_bytes / GB:.1f} GB + working memory {found.working_bytes / GB:.1f} GB + overhead "
        f"{found.overhead_bytes / GB:.1f} GB) and {where} has {free / GB:.1f} GB free{advice}. Not loaded. "
        "`lychee load --check` prints this estimate without loading; --skip-memory-check loads anyway."
    )
