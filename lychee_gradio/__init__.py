"""lychee-gradio: rerank search candidates (text, images, or both) with lychee-rerank-mm.

    from lychee_gradio import LycheeScorer
    scorer = LycheeScorer.load()                      # or LycheeScorer.load("/models/lychee-rerank-mm")
    scorer.rerank("white mountain coffee cup", ["...", "..."], top_n=3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Imported on first use: torch and transformers take seconds to import, and the CLI's --help
# should not wait for them.
_EXPORTS = {
    "LycheeScorer": "scorer",
    "RerankResult": "scorer",
    "PairScore": "scorer",
    "ScoringOutOfMemoryError": "scorer",
    "ModelLoadError": "weights",
    "DEFAULT_MODEL_ID": "weights",
    "DEFAULT_INSTRUCTION": "prompt",
    "INSTRUCTION_PRESETS": "prompt",
    "SYSTEM_PROMPT": "prompt",
    "Item": "inputs",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .inputs import Item
    from .prompt import DEFAULT_INSTRUCTION, INSTRUCTION_PRESETS, SYSTEM_PROMPT
    from .scorer import LycheeScorer, PairScore, RerankResult, ScoringOutOfMemoryError
    from .weights import DEFAULT_MODEL_ID, ModelLoadError


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'lychee_gradio' has no attribute {name!r}")
