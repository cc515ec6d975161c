"""The key/value cache as transformers' forward takes and returns it.

transformers 5.24 renamed the forward's `past_key_values` to `cache` (and the output's field with it);
the old name warns there and goes in 5.40. The range this project accepts (`transformers>=5.23,<6`)
spans both, so the name is read from the model's own forward signature, once per model class.
"""

from __future__ import annotations

import functools
import inspect

from transformers import DynamicCache


@functools.cache
def _argument(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def new_cache(model) -> DynamicCache:
    """An empty cache for the language model of `model` (the conditional-generation model)."""
    return DynamicCache(config=model.config.text_config)


def passing(module, cache) -> dict:
    """The keyword argument that hands `cache` to `module`'s forward, in this transformers' name."""
    return {_argument(type(module)): cache}


def returned(outputs):
    """The cache a forward with `use_cache=True` returned."""
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values
