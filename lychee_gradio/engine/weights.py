"""Finding the weights (a local folder or a ModelScope id) and loading them with transformers."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import WordedError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "vec-ai/lychee-rerank-mm"
MODEL_ENV_VAR = "LYCHEE_MODEL"

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(WordedError, RuntimeError):
    """The weights could not be found, downloaded or loaded; the message says what to do."""

    code = "model_load"


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


def modelscope_endpoint() -> str:
    """The endpoint ModelScope itself uses: $MODELSCOPE_DOMAIN, else its default site."""
    from modelscope.hub.utils.utils import get_endpoint

    return get_endpoint()


def endpoint_problem(timeout: float = 5.0) -> str | None:
    """None when ModelScope's endpoint answers; otherwise what stands in the way, in words.

    Asks the way ModelScope asks (requests, so HTTPS_PROXY, HTTP_PROXY, NO_PROXY and
    MODELSCOPE_DOMAIN count), with a short timeout, and tells a proxy or endpoint that is set
    wrong from a machine with no network at all.
    """
    import requests

    endpoint = modelscope_endpoint()
    from_env = "MODELSCOPE_DOMAIN" in os.environ and os.environ["MODELSCOPE_DOMAIN"]
    proxy = requests.utils.get_environ_proxies(endpoint).get(endpoint.split(":", 1)[0])
    try:
        requests.head(endpoint, timeout=timeout, allow_redirects=False)
        return None  # any HTTP answer means the endpoint is there
    except requests.exceptions.ProxyError:
        return f"the proxy {proxy} did not get through to {endpoint}: check HTTPS_PROXY / HTTP_PROXY (and NO_PROXY)"
    except requests.exceptions.SSLError:
        return f"the TLS connection to {endpoint} failed: a proxy that inspects TLS needs its certificate in REQUESTS_CA_BUNDLE"
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        via = f" through the proxy {proxy}" if proxy else ""
        if from_env:
            return (
                f"{endpoint} (from MODELSCOPE_DOMAIN) is not reachable{via}: check that variable, "
                "or unset it to use ModelScope's own site"
            )
        if "resolve" in str(error).lower() or "name or service" in str(error).lower():
            return f"{endpoint} cannot be resolved: this machine has no network (or no DNS)"
        return f"{endpoint} is not reachable{via} (no network, or a firewall?)"


def missing_weight_files(folder: Path) -> list[str]:
    """The files a checkpoint folder lacks: config.json, and each weight file its index names."""
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        missing += [shard for shard in shards if not (folder / shard).is_file()]
    elif not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        missing.append("model.safetensors")
    return missing


def _cached_snapshot(model_id: str) -> Path | None:
    try:
        return Path(_modelscope_snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here only means "not in the cache"
        return None


def download_model(model_id: str) -> Path:
    """Return the local folder of a ModelScope model, downloading (or resuming) it as needed.

    With the endpoint reachable, ModelScope's own download runs every time: it checks the files
    already in its cache and fetches only what is missing, so an interrupted download resumes.
    Offline, a complete cached copy is used as it is; an incomplete one is an error that says so.
    """
    problem = endpoint_problem()
    if problem is None:
        logger.info("fetching %s from ModelScope (about 17 GB the first time; a partial download resumes) ...", model_id)
        try:
            return Path(_modelscope_snapshot_download(model_id))
        except Exception as error:
            raise ModelLoadError(
                f"{model_id!r} is not a local folder and cannot be downloaded from ModelScope: {error}. "
                f"Check the id. {_local_folder_hint(model_id)}"
            ) from error
    cached = _cached_snapshot(model_id)
    if cached is not None:
        missing = missing_weight_files(cached)
        if not missing:
            logger.warning("ModelScope is not reachable (%s); using the cached copy in %s", problem, cached)
            return cached
        raise ModelLoadError(
            f"the cached copy of {model_id!r} in {cached} is incomplete ({len(missing)} files missing, e.g. "
            f"{missing[0]}): an earlier download was interrupted, and it cannot resume now because {problem}. "
            "Run again with network access: the download continues where it stopped."
        )
    raise ModelLoadError(
        f"{model_id!r} is not a local folder and cannot be downloaded from ModelScope: {problem}. {_local_folder_hint(model_id)}"
    )


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs."""

    device: str
    dtype: Any  # torch.dtype
    attn_implementation: str
    why: str = ""  # why this dtype: "bfloat16: the CPU has AVX512-BF16", "float32: asked for", ...

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")


_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU multiplies bfloat16 natively, as torch's own CPU checks say (cpuinfo: AMX-BF16 or
    AVX512-BF16 on x86, the BF16 extension on Arm), and the words for it. On a CPU without them bfloat16
    is emulated and slower than float32."""
    import platform

    import torch

    try:
        capabilities = torch.cpu.get_capabilities()
    except Exception:  # noqa: BLE001 - an older torch or an unknown CPU: no claim of native bf16
        capabilities = {}
    if capabilities.get("amx_bf16"):
        return True, "the CPU has AMX-BF16"
    if capabilities.get("avx512_bf16"):
        return True, "the CPU has AVX512-BF16"
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # cpuinfo's Arm BF16 check on aarch64
                return True, "the CPU has Arm BF16"
        except Exception:  # noqa: BLE001 - torch built without oneDNN
            pass
    return False, "the CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16), where bfloat16 would be slower"


def choose_runtime(device: str = "auto", dtype: Any = "auto", attn_implementation: str = "auto") -> Runtime:
    """`auto` means CUDA when available, else Apple's MPS (untested here), else the CPU; bf16 on GPUs
    that support it (else fp16), fp16 on MPS; on the CPU bf16 where it computes bf16 natively
    (`cpu_bf16`), else fp32; flash-attention 2 when transformers says it is usable. `Runtime.why` says
    why the dtype was chosen."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device={device!r} was asked for, but CUDA is not available; use device='cpu'")
    if dtype == "auto":
        if device.startswith("cuda"):
            native = torch.cuda.is_bf16_supported()
            dtype = torch.bfloat16 if native else torch.float16
            why = "the GPU supports bfloat16" if native else "the GPU has no bfloat16"
        elif device == "mps":
            dtype, why = torch.float16, "Apple's MPS"
        else:
            native, why = cpu_bf16()
            dtype = torch.bfloat16 if native else torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
        dtype, why = getattr(torch, _DTYPES[dtype]), "asked for"
    else:
        why = "asked for"
    if attn_implementation == "auto":
        from transformers.utils import is_flash_attn_2_available

        flash_ok = device.startswith("cuda") and dtype in (torch.bfloat16, torch.float16) and is_flash_attn_2_available()
        attn_implementation = "flash_attention_2" if flash_ok else "sdpa"
    name = str(dtype).replace("torch.", "")
    return Runtime(device=device, dtype=dtype, attn_implementation=attn_implementation, why=f"{name}: {why}")


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity, bounded by a cgroup CPU quota (a container's
    `--cpus`) where one is set."""
    import math

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # cgroup v2
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if quota > 0 and period > 0:
                cores = min(cores, max(1, math.ceil(quota / period)))
        except (OSError, ValueError):
            pass
    return max(1, cores)


def fit_cpu_threads(threads: int | None = None) -> int:
    """Torch's CPU threads: `threads` where given (a Ray replica's share), else no more than the cores
    this process may use (`usable_cpus`; torch's own default counts every core of the machine, also
    those a container or `taskset` keeps from it). The number set."""
    import torch

    wanted = threads or min(torch.get_num_threads(), usable_cpus())
    if wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)
    return wanted


def checkpoint_family(folder: Path):
    """The model family of a checkpoint folder, from its config.json's model_type."""
    from ..families import family_for

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {error}") from None
    try:
        return family_for(config.get("model_type"))
    except ValueError as error:
        raise ModelLoadError(f"{folder}: {error}") from None


# Weight precisions besides the compute dtype: bitsandbytes through transformers' BitsAndBytesConfig.
QUANTIZATIONS = ("int8", "nf4")


def split_precision(model: str | os.PathLike) -> tuple[str, str | None]:
    """`"X@nf4"` -> `("X", "nf4")`; a name without a known precision suffix is returned as it is."""
    text = os.fspath(model)
    name, at, suffix = text.rpartition("@")
    if at and name and suffix in QUANTIZATIONS:
        return name, suffix
    return text, None


def check_quantization(quantize: str | None, runtime: Runtime) -> None:
    """Refuse what cannot work before anything is loaded: an unknown precision, Apple's GPUs, no bitsandbytes."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantize={quantize!r}; use one of {', '.join(QUANTIZATIONS)} (or none)")
    if runtime.device == "mps":
        raise ModelLoadError(
            f"--quantize {quantize} needs bitsandbytes, which does not run on Apple's GPUs (MPS); "
            "use --device cpu with it, or load the model unquantized"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            f"--quantize {quantize} needs the bitsandbytes package: pip install -e '.[quantize]' (or pip install bitsandbytes)"
        ) from None


def quantization_config(quantize: str, runtime: Runtime, family):
    """transformers' BitsAndBytesConfig for `quantize`: the language model's linear layers in 8 or 4 bits
    (nf4), computing in the runtime's dtype; the family's `unquantized_modules` stay as they are."""
    from transformers import BitsAndBytesConfig

    skip = list(family.unquantized_modules)
    if quantize == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=runtime.dtype, llm_int8_skip_modules=skip
    )


def quantized_modules(model) -> list[str]:
    """Names of the modules bitsandbytes replaced (8-bit or 4-bit linear layers)."""
    return [name for name, module in model.named_modules() if type(module).__module__.startswith("bitsandbytes")]


def load_model_and_processor(folder: Path, runtime: Runtime, quantize: str | None = None, family=None):
    """Load a checkpoint's model and processor with the class its family names; `(model, processor, family)`.

    Every weight of the checkpoint must match the model: transformers would otherwise initialise
    missing weights at random and only print a report, and the scores would be noise. With
    `quantize` ("int8", "nf4"), the language model's linear layers are loaded by bitsandbytes, and
    the load is refused if any module that must stay unquantized (the vision tower, the head) was not.
    """
    import transformers

    found = checkpoint_family(folder)
    if family is None:
        family = found
    elif family.model_type != found.model_type:  # an embedding model: its backbone's family, not another's
        raise ModelLoadError(f"{folder} holds a {found.model_type} checkpoint, not a {family.name} ({family.model_type}) one")
    model_class = getattr(transformers, family.model_class)
    check_quantization(quantize, runtime)
    extra = {"quantization_config": quantization_config(quantize, runtime, family)} if quantize else {}
    try:
        processor = transformers.AutoProcessor.from_pretrained(folder)
        model, info = model_class.from_pretrained(
            folder,
            dtype=runtime.dtype,
            attn_implementation=runtime.attn_implementation,
            device_map=runtime.device if runtime.device.startswith("cuda") else None,
            output_loading_info=True,
            use_kernels=False,  # transformers 5.25 turns Hub kernels on by default: they replace layers from the Hub
            **extra,
        )
    except Exception as error:
        raise ModelLoadError(f"cannot load a {family.name} checkpoint ({family.model_class}) from {folder}: {error}") from error
    if quantize:
        quantized = quantized_modules(model)
        wrong = [
            name for name in quantized if any(name == kept or name.startswith(kept + ".") for kept in family.unquantized_modules)
        ]
        if wrong or not quantized:
            raise ModelLoadError(
                f"--quantize {quantize}: transformers quantized {len(wrong)} modules that must stay "
                f"in {runtime.dtype} (e.g. {wrong[0]})"
                if wrong
                else f"--quantize {quantize}: no layer was quantized; this transformers version does not "
                "apply the quantization as expected"
            )
    problems = {kind: list(info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if family.model_class.endswith("Model"):  # a backbone alone (an embedding model): an output head is not used
        problems["unexpected_keys"] = [key for key in problems["unexpected_keys"] if not key.startswith("lm_head.")]
    if any(problems.values()):
        found = "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]})" for kind, keys in problems.items() if keys)
        raise ModelLoadError(
            f"{folder} does not hold the weights of a {family.name} model ({family.model_class}): "
            f"{found}. Loading it would serve random weights; check that the folder is complete "
            "and of the family its config.json names."
        )
    if quantize and runtime.device == "cpu":
        _avoid_cpu_packing_bug(model)
    if not runtime.device.startswith("cuda") and not quantize:  # bitsandbytes models stay where they were loaded
        model.to(runtime.device)
    model.eval()
    # Without flash-attention, one attention call per vision layer instead of one per window or image.
    from . import vision_attention

    vision_attention.install(model)
    return model, processor, family


def _avoid_cpu_packing_bug(model) -> None:
    """bitsandbytes 0.50 repacks 4-bit weights for CPUs with AVX512-BF16 on their first use, and fails
    ("shape ... is invalid") on layers whose input width is not a multiple of the quantization block
    (64): such layers take bitsandbytes' generic CPU path instead. The published models' layers are all
    multiples of 64; small test checkpoints' may not be."""
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None and hasattr(module, "support_avx512bf16_for_cpu"):
            if module.in_features % state.blocksize:
                module.support_avx512bf16_for_cpu = False


def weights_bytes(model) -> int:
    """Bytes held by a model's parameters and buffers, with bitsandbytes' scales (int8 row scales, nf4 block
    absmax and code) counted too. An int8 layer's row scales move from its weight to its matmul state on its
    first forward; they are counted once wherever they are."""
    total = 0
    extras: dict[int, object] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        total += tensor.numel() * tensor.element_size()
        scales = getattr(tensor, "SCB", None)
        if scales is not None:
            extras[id(scales)] = scales
        state = getattr(tensor, "quant_state", None)
        while state is not None:
            for part in (getattr(state, "absmax", None), getattr(state, "code", None)):
                if part is not None:
                    extras[id(part)] = part
            state = getattr(state, "state2", None)
    for module in model.modules():
        scales = getattr(getattr(module, "state", None), "SCB", None)
        if scales is not None and hasattr(scales, "element_size"):
            extras[id(scales)] = scales
    total += sum(part.numel() * part.element_size() for part in extras.values())
    return total
