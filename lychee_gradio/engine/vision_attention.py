"""One attention call per vision layer, instead of one per window or image (issue #24).

Why: without flash-attention (`attn_implementation="sdpa"` or `"eager"`: every CPU, Apple's GPUs, GPUs
without the flash-attn package), transformers' `Qwen2_5_VLVisionAttention` and `Qwen3VLVisionAttention`
split the packed sequence of all images at `cu_seqlens` and run one small attention call per chunk:
per 8x8-patch window on Qwen2.5-VL's windowed layers, per image on its full-attention layers and on
every Qwen3-VL layer. A batch of 60 photos makes thousands of calls per forward pass (about 135,000
on lychee-rerank-mm's 32 layers), each too small to keep the cores busy.

What: the same attention, with the chunks laid side by side in the batch dimension of ONE call.
Chunks of equal length (all full windows, all images of one size: the common case) are a plain
reshape, no copy of padding; chunks of unequal length (the partial windows at an image's right and
bottom edges, images of different sizes) are padded to the longest of their group, the keys past a
chunk's length masked out (a boolean mask for SDPA, -inf-like additive for eager), and the padded
query rows dropped. Masked keys get exactly zero weight, so the result is the per-chunk result up
to the order of floating-point sums (measured: < 1e-6 in fp32).

Groups: padding a chunk to a much longer one wastes work (quadratic in length), so chunks are
grouped by length, longest first: a chunk joins the current group when padding it at most doubles
its attention work (length >= longest / sqrt(2)), or when the group's longest is at most
`PAD_ALWAYS` (128) tokens, where a call's overhead outweighs the padding. Hence:
  - Qwen2.5-VL windowed layers (windows of at most 64 patches): always 1 call;
  - full-attention layers with images of one size (or of similar sizes): 1 call;
  - images of very different sizes: at most 2 + 2*log2(longest / 128) calls (`call_bound`: 12 for
    lychee-rerank-mm's largest images, 13 for Qwen3-VL's), whatever the number of images or windows.
  - eager attention (and SDPA on devices other than the CPU and CUDA, which may fall back to its math
    kernel) materializes the scores, chunks * heads * length**2 of them: there a group is split into
    calls of at most MAX_SCORES scores, so memory stays bounded as in transformers' per-chunk loop.

How (the hook): the chunk loop is inside the attention module's `forward`; the attention function
(`ALL_ATTENTION_FUNCTIONS[...]`) is called once per chunk and never sees the others, so wrapping or
registering an attention function cannot batch them. `install(model)` therefore sets, on each vision
attention module of the loaded model (only those: the language model's attention is untouched), an
instance `forward` that does the same q/k/v projection and rotary embedding as transformers' code and
then calls transformers' own attention function (`sdpa_attention_forward` / `eager_attention_forward`)
once per group. The module's class, weights, hooks and `_can_record_outputs` stay as they are.
flash-attention (any `flash_attention_*` / kernels flavour: varlen `cu_seqlens` kernels, one call
already) and any other implementation (flex, paged, custom) go to transformers' own forward
unchanged, checked at every call, so `model.set_attn_implementation(...)` after install is honoured.

Version check: written against transformers 5.23.0 and 5.24.0, whose two vision attention forwards are
identical (compared line by line); 5.25.0's are too, as are its rotary helper and eager attention (its SDPA
function differs only where a position bias is passed, which the vision tower never does). Another version may
change that forward (the projection layout, the rotary helper, the dispatch), so outside
`SUPPORTED_TRANSFORMERS` `install` patches nothing, logs once, and transformers' own per-chunk code runs. Bump
the range after comparing the new forward.

Counting: `count_attention_calls(model)` counts the SDPA calls each vision layer makes (tests, bench).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import types
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# [low, high): the transformers versions whose vision attention forward this replaces (see above).
SUPPORTED_TRANSFORMERS = ("5.23.0", "5.26.0")
# Chunks up to this many tokens are always padded into one call (a call costs more than the padding).
PAD_ALWAYS = 128
# A longer chunk joins a group if padding it to the group's longest at most doubles its attention work.
MAX_PAD_WORK = 2.0
# Where the attention scores are materialized (eager; SDPA's math fallback on devices other than the CPU and
# CUDA, whose fused kernels never hold them), one call's scores stay under this many elements (1 GiB in fp32):
# chunks * heads * length**2 grows with the images, where transformers' per-chunk loop holds one chunk's.
MAX_SCORES = 2**28
_BATCHED_IMPLEMENTATIONS = ("sdpa", "eager")
_MARK = "_lychee_packed_vision_attention"

_warned = False
_warn_lock = threading.Lock()


def _warn_once(message: str, *args) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    logger.warning(message, *args)


def supported_version(version: str | None = None) -> bool:
    """Whether `version` (default: the installed transformers) is one this patch was written against."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    low, high = SUPPORTED_TRANSFORMERS
    return Version(low) <= Version(Version(version).base_version) < Version(high)


def _target_classes() -> tuple[type, ...]:
    """The vision attention classes whose forward `_packed_forward` replaces (exact classes, no subclasses)."""
    import importlib

    classes = []
    for module_name, class_name in (
        ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLVisionAttention"),
        ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLVisionAttention"),
    ):
        try:
            classes.append(getattr(importlib.import_module(f"transformers.models.{module_name}"), class_name))
        except (ImportError, AttributeError):  # another transformers: install() will not patch it
            pass
    return tuple(classes)


def vision_attention_modules(model) -> list[torch.nn.Module]:
    """The vision attention modules of a Qwen2.5-VL / Qwen3-VL model (or of its vision tower), in layer order."""
    classes = _target_classes()
    return [module for module in model.modules() if type(module) in classes]


def install(model) -> int:
    """Make the vision tower's sdpa/eager attention run one call per layer; idempotent. Returns the number of
    vision attention modules that use the batched forward (0 if the transformers version is not supported)."""
    modules = vision_attention_modules(model)
    if not modules:
        return 0
    if not supported_version():
        import transformers

        low, high = SUPPORTED_TRANSFORMERS
        _warn_once(
            "transformers %s is outside %s..%s, which lychee_gradio's batched vision attention was written "
            "against: the vision tower runs transformers' own per-window attention (slower without "
            "flash-attention)",
            transformers.__version__,
            low,
            high,
        )
        return 0
    for module in modules:
        if not getattr(module, _MARK, False):
            module.forward = types.MethodType(_packed_forward, module)
            setattr(module, _MARK, True)
    return len(modules)


def uninstall(model) -> int:
    """Give the vision attention modules back transformers' own forward; returns how many had the patch."""
    count = 0
    for module in vision_attention_modules(model):
        if getattr(module, _MARK, False):
            del module.forward
            delattr(module, _MARK)
            count += 1
    return count


def installed(model) -> bool:
    modules = vision_attention_modules(model)
    return bool(modules) and all(getattr(module, _MARK, False) for module in modules)


# --- the plan: how the chunks of one cu_seqlens are grouped -------------------------------------------------


@dataclass(frozen=True)
class _Group:
    length: int  # every chunk of the group is padded to this many tokens
    count: int  # chunks in the group
    gather: torch.Tensor  # (count, length): packed position of each (padded) slot
    keep: torch.Tensor  # (count, 1, 1, length) bool: the slot is a real token (its key is attended)
    source: torch.Tensor  # flat slot indices (into count*length) of the real tokens...
    target: torch.Tensor  # ...and their packed positions


@dataclass(frozen=True)
class _Plan:
    total: int
    equal: tuple[int, int] | None  # (chunks, length) when all chunks have one length: a reshape
    groups: tuple[_Group, ...] = ()


def _group_lengths(lengths: list[int]) -> list[list[int]]:
    """Chunk indices grouped by length, longest first (see the module's docstring)."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    longest = 0
    for i in order:
        n = lengths[i]
        if groups and (longest <= PAD_ALWAYS or longest * longest <= MAX_PAD_WORK * n * n):
            groups[-1].append(i)
        else:
            groups.append([i])
            longest = n
    for group in groups:
        group.sort()  # packed order inside a group: one group's output needs no scatter
    return groups


def _make_plan(lengths: list[int], device: torch.device) -> _Plan:
    total = sum(lengths)
    nonzero = [n for n in lengths if n > 0]
    if nonzero and all(n == nonzero[0] for n in nonzero):
        return _Plan(total=total, equal=(len(nonzero), nonzero[0]))
    starts = [0] * len(lengths)
    for i in range(1, len(lengths)):
        starts[i] = starts[i - 1] + lengths[i - 1]
    groups = []
    for members in _group_lengths(lengths):
        length = max(lengths[i] for i in members)
        slots = torch.arange(length)
        chunk_start = torch.tensor([starts[i] for i in members])[:, None]
        chunk_length = torch.tensor([lengths[i] for i in members])[:, None]
        keep = slots[None, :] < chunk_length  # (count, length)
        # Padded slots read the chunk's last token: any real value does, as their keys are masked
        # out and their query rows dropped.
        gather = chunk_start + torch.minimum(slots[None, :], chunk_length - 1)
        source = keep.flatten().nonzero().flatten()
        target = gather.flatten()[source]
        groups.append(
            _Group(
                length=length,
                count=len(members),
                gather=gather.to(device),
                keep=keep[:, None, None, :].to(device),
                source=source.to(device),
                target=target.to(device),
            )
        )
    return _Plan(total=total, equal=None, groups=tuple(groups))


# The vision tower passes the same cu_seqlens tensor to every layer (two on Qwen2.5-VL: windows and
# images): its plan is made once per forward pass, with one host sync, instead of one per layer.
_plans: OrderedDict = OrderedDict()
_plans_lock = threading.Lock()
_PLANS_KEPT = 4


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return tensor._version  # bumped by in-place changes
    except RuntimeError:  # inference tensors have none (and transformers never changes cu_seqlens in place)
        return None


def _plan_for(cu_seqlens: torch.Tensor, device: torch.device) -> _Plan:
    key = (id(cu_seqlens), _version(cu_seqlens), device)
    with _plans_lock:
        entry = _plans.get(key)
        if entry is not None and entry[0] is cu_seqlens:
            _plans.move_to_end(key)
            return entry[1]
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    plan = _make_plan(lengths, device)
    with _plans_lock:
        _plans[key] = (cu_seqlens, plan)  # holding the tensor keeps its id from being reused
        while len(_plans) > _PLANS_KEPT:
            _plans.popitem(last=False)
    return plan


# --- the forward --------------------------------------------------------------------------------------------


def _packed_forward(
    self,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_seqlen: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """transformers 5.23-5.25's Qwen2_5_VLVisionAttention.forward (= Qwen3VLVisionAttention.forward) with its
    non-flash per-chunk loop replaced by one attention call per group of chunks."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.utils.generic import is_flash_attention_requested

    implementation = self.config._attn_implementation or "eager"
    if is_flash_attention_requested(self.config) or implementation not in _BATCHED_IMPLEMENTATIONS:
        # flash-attention (its varlen kernel is one call already) and anything else: transformers' own code
        return type(self).forward(
            self, hidden_states, cu_seqlens=cu_seqlens, position_embeddings=position_embeddings, max_seqlen=max_seqlen, **kwargs
        )

    modeling = sys.modules[type(self).__module__]  # the model's own rotary helper and eager attention
    seq_length = hidden_states.shape[0]
    query, key, value = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    query, key = modeling.apply_rotary_pos_emb_vision(query, key, cos, sin)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, modeling.eager_attention_forward)
    dropout = 0.0 if not self.training else self.attention_dropout
    heads = query.shape[1]
    width = heads * query.shape[2]  # heads * head_dim
    materializes = implementation == "eager" or query.device.type not in ("cpu", "cuda")

    def call(q, k, v, mask):
        """(chunks, length, heads, dim) in, (chunks * length, heads * dim) out: one attention call, or a few
        where the scores are materialized (see MAX_SCORES)."""
        chunks, length = q.shape[:2]
        step = max(1, MAX_SCORES // (heads * length * length)) if materializes else chunks
        outputs = []
        for start in range(0, chunks, step):
            part = slice(start, start + step)
            # (chunks, heads, length, dim), as transformers' (1, heads, length, dim) per chunk
            q_part, k_part, v_part = (tensor[part].transpose(1, 2) for tensor in (q, k, v))
            out = attention(
                self,
                q_part,
                k_part,
                v_part,
                attention_mask=None if mask is None else mask[part],
                scaling=self.scaling,
                dropout=dropout,
                is_causal=False,
                **kwargs,
            )[0]
            outputs.append(out.reshape(-1, width))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    plan = _plan_for(cu_seqlens, query.device)
    if plan.total != seq_length:
        raise ValueError(f"cu_seqlens covers {plan.total} tokens, the hidden states hold {seq_length}")
    if plan.equal is not None:  # (seq, heads, dim) -> (chunks, length, heads, dim): a view
        chunks, length = plan.equal
        attn_output = call(*(tensor.reshape(chunks, length, *tensor.shape[1:]) for tensor in (query, key, value)), None)
    else:
        outputs = []
        for group in plan.groups:
            if implementation == "eager":  # eager adds the mask to the scores
                mask = torch.zeros(group.keep.shape, dtype=query.dtype, device=query.device)
                mask.masked_fill_(~group.keep, torch.finfo(query.dtype).min)
            else:
                mask = group.keep
            out = call(query[group.gather], key[group.gather], value[group.gather], mask)
            outputs.append(out.index_select(0, group.source))  # the real tokens' rows
        if len(outputs) == 1:  # one group: its real tokens are the packed sequence, in order
            attn_output = outputs[0]
        else:
            attn_output = query.new_empty(seq_length, width)
            for group, out in zip(plan.groups, outputs):
                attn_output.index_copy_(0, group.target, out)
    return self.proj(attn_output.contiguous())


# --- counting, for tests and the benchmark ------------------------------------------------------------------


@contextlib.contextmanager
def count_attention_calls(model):
    """Count `torch.nn.functional.scaled_dot_product_attention` calls made inside each vision attention module
    of `model` while the block runs; yields a dict {layer index: calls}, filled as the model runs. Patches the
    torch function process-wide for the block's duration: for tests and benchmarks, not for serving."""
    counts: dict[int, int] = defaultdict(int)
    current = threading.local()
    handles = []
    for index, module in enumerate(vision_attention_modules(model)):

        def enter(_module, _args, index=index):
            current.layer = index

        def leave(_module, _args, _output):
            current.layer = None

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        layer = getattr(current, "layer", None)
        if layer is not None:
            counts[layer] += 1
        return real(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counting
    try:
        yield counts
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
        for handle in handles:
            handle.remove()


def calls_for(lengths: list[int]) -> int:
    """The number of attention calls one layer makes for chunks of these lengths (1 when they are equal)."""
    nonzero = [n for n in lengths if n > 0]
    if not nonzero or all(n == nonzero[0] for n in nonzero):
        return 1
    return len(_group_lengths(lengths))


def call_bound(longest: int) -> int:
    """The most calls per layer for chunks of at most `longest` tokens, whatever their number."""
    if longest <= PAD_ALWAYS:
        return 1
    # Each group's longest chunk is over sqrt(2) times shorter than the previous group's, down to PAD_ALWAYS;
    # the chunks left then make one group more.
    return 2 + math.floor(2 * math.log2(longest / PAD_ALWAYS))
