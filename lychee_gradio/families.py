"""The model families the engine serves, and what differs between them: one small table.

Every family is a yes/no reranker on a Qwen vision-language backbone with the same prompt and
score (docs/design.md, "The model contract"); they differ only in the defaults below. Nothing
else in the package branches on the family: it reads these fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    name: str  # what users and logs call it
    model_type: str  # config.json "model_type" of its checkpoints
    model_class: str  # the transformers class that loads it
    default_instruction: str
    pixel_factor: int  # images are resized to multiples of this (patch size x merge size)
    min_pixels: int
    max_pixels: int  # the default bound on an image's pixels
    max_text_tokens: int  # the default cut for one query or document text


LYCHEE = ModelFamily(
    name="lychee-rerank-mm",
    model_type="qwen2_5_vl",
    model_class="Qwen2_5_VLForConditionalGeneration",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
    pixel_factor=28,
    min_pixels=4 * 28 * 28,
    max_pixels=1280 * 28 * 28,
    max_text_tokens=4096,
)

# Qwen3-VL-Reranker 2B / 8B (Qwen team): the same prompt and score on the Qwen3-VL backbone. Its
# official text limit is 10,240 tokens per prompt; this engine cuts each text to that budget.
QWEN3_VL = ModelFamily(
    name="Qwen3-VL-Reranker",
    model_type="qwen3_vl",
    model_class="Qwen3VLForConditionalGeneration",
    default_instruction="Given a search query, retrieve relevant candidates that answer the query.",
    pixel_factor=32,
    min_pixels=4 * 32 * 32,
    max_pixels=1800 * 32 * 32,
    max_text_tokens=10240,
)

FAMILIES: dict[str, ModelFamily] = {family.model_type: family for family in (LYCHEE, QWEN3_VL)}


def family_for(model_type: str | None) -> ModelFamily:
    """The family of a checkpoint's `model_type`; a clear error for any other."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    served = ", ".join(f"{f.model_type} ({f.name})" for f in FAMILIES.values())
    raise ValueError(f"unsupported checkpoint: config.json has model_type {model_type!r}; this app serves {served}")
