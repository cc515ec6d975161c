"""A float32 residual stream for a half-precision language model on the CPU.

In bfloat16 every layer's output is added to the residual stream (the hidden state that runs through all
the layers) and the sum is rounded to bf16's 8 bits of mantissa, 28 to 36 times in a row; keeping it float32
took the largest distance to float32 scores on 2B shapes from 0.017 to 0.010 (docs/performance.md). Here
the stream stays in float32 while the matrix multiplies still run in the weights' dtype, as mixed-precision
training keeps its master activations: the language model's input embeddings are made float32, each of its `nn.Linear` layers (and
the output head) casts its input to its weight's dtype, and the rotary cos/sin come back in the weights'
dtype, so attention runs exactly as in plain bf16. The norms, the residual additions and the last hidden
state are float32. The cost is elementwise work on the hidden states (a few casts per layer), small beside
the multiplies; the keys and values (and the shared prefix's cache) stay in the weights' dtype.

`keep_residual_float32(model)` installs it (once; it does nothing while the weights are float32, so a model
moved between dtypes, as the roofline bench does, stays right; `on=False` gives plain bf16 back). Quantized
(bitsandbytes) layers are left alone: they cast their inputs to their own compute dtype.
"""

from __future__ import annotations

import torch

_HALF = (torch.bfloat16, torch.float16)


class _Switch:
    """Whether the installed hooks act (`keep_residual_float32(model, on=False)` turns them off: plain bf16,
    for comparison)."""

    def __init__(self) -> None:
        self.on = True


def keep_residual_float32(model, on: bool = True) -> None:
    """Keep the residual stream of `model`'s language model in float32 whenever its weights are bf16/fp16
    (the hooks are installed once; `on=False` makes them do nothing)."""
    switch = getattr(model, "_lychee_residual_float32", None)
    if switch is None:
        reference = next((module for module in model.model.language_model.modules() if type(module) is torch.nn.Linear), None)
        if reference is None:
            return  # quantized throughout (bitsandbytes): left as it is
        switch = model._lychee_residual_float32 = _Switch()
        _install(model, switch, reference)
    switch.on = on


def residual_float32(model) -> bool:
    """Whether `model`'s residual stream runs in float32 beside half-precision weights now."""
    switch = getattr(model, "_lychee_residual_float32", None)
    return switch is not None and switch.on and model.dtype in _HALF


def _install(model, switch: _Switch, reference: torch.nn.Linear) -> None:
    language = model.model.language_model

    def embeds_to_float32(_module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if switch.on and embeds is not None and embeds.dtype in _HALF:
            kwargs["inputs_embeds"] = embeds.float()
            return args, kwargs
        return None

    def input_to_weight_dtype(module, args):
        x, wanted = args[0], module.weight.dtype
        if switch.on and x.dtype != wanted and wanted in _HALF:
            return (x.to(wanted),) + tuple(args[1:])
        return None

    def rotary_to_attention_dtype(_module, _args, output):
        """The rotary (cos, sin), computed from the float32 stream, in the attention's dtype (as in plain bf16)."""
        wanted = reference.weight.dtype
        if switch.on and wanted in _HALF:
            return tuple(part.to(wanted) for part in output)
        return None

    language.register_forward_pre_hook(embeds_to_float32, with_kwargs=True)
    for module in language.modules():
        if type(module) is torch.nn.Linear:  # not bitsandbytes' subclasses: they cast to their compute dtype
            module.register_forward_pre_hook(input_to_weight_dtype)
    head = model.get_output_embeddings()
    if head is not None and type(head) is torch.nn.Linear:
        head.register_forward_pre_hook(input_to_weight_dtype)
    language.rotary_emb.register_forward_hook(rotary_to_attention_dtype)
