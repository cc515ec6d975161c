"""lychee-gradio: rerank search candidates (text, images, or both) with lychee-rerank-mm.

from lychee_gradio import LycheeScorer
scorer = LycheeScorer.load()                      # or LycheeScorer.load("/models/lychee-rerank-mm")
scorer.rerank("white mountain coffee cup", ["...", "..."], top_n=3)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("lychee-gradio")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0.0.0"

# Imported on first use: torch and transformers take seconds to import, and the CLI's --help
# should not wait for them (nor should the page or the HTTP layer, which never need them).
_EXPORTS = {
    "LycheeScorer": "engine.scorer",
    "LycheeEmbedder": "engine.embedder",
    "RerankResult": "contract",
    "PairScore": "contract",
    "Item": "contract",
    "RequestContext": "contract",
    "LycheeError": "contract",
    "InputError": "contract",
    "ScoringOutOfMemoryError": "contract",
    "ScoringTimeoutError": "contract",
    "ScoringCancelledError": "contract",
    "ModelLoadError": "engine.weights",
    "WontFitError": "engine.memory",
    "DEFAULT_MODEL_ID": "engine.weights",
    "DEFAULT_INSTRUCTION": "presets",
    "INSTRUCTION_PRESETS": "presets",
    "SYSTEM_PROMPT": "engine.prompt",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .contract import (
        InputError,
        Item,
        LycheeError,
        PairScore,
        RequestContext,
        RerankResult,
        ScoringCancelledError,
        ScoringOutOfMemoryError,
        ScoringTimeoutError,
    )
    from .engine.embedder import LycheeEmbedder
    from .engine.memory import WontFitError
    from .engine.prompt import SYSTEM_PROMPT
    from .engine.scorer import LycheeScorer
    from .engine.weights import DEFAULT_MODEL_ID, ModelLoadError
    from .presets import DEFAULT_INSTRUCTION, INSTRUCTION_PRESETS


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'lychee_gradio' has no attribute {name!r}")
