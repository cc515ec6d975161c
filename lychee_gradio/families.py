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
    # Kept in the compute dtype when the weights are quantized (full module names, as transformers 5.x
    # matches them: a bare "visual" would not match "model.visual.blocks.0..."): the vision tower and the
    # output head (its yes/no rows make the score). The embeddings are not linear layers: never quantized.
    unquantized_modules: tuple[str, ...] = ("model.visual", "lm_head")
    # The processor wraps each frame of a clip in its own <|vision_start|>...<|vision_end|> (Qwen3-VL, after each
    # frame's timestamp), in place of the chat template's one wrapper around the clip: Qwen's processor replaces
    # the template's whole `<|vision_start|><|video_pad|><|vision_end|>` (as at the model's release, in vLLM and
    # in transformers >= 5.25; transformers 5.0-5.24 left the outer pair in, around the frames' own).
    clip_frames_wrapped: bool = False


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
    clip_frames_wrapped=True,
)

FAMILIES: dict[str, ModelFamily] = {family.model_type: family for family in (LYCHEE, QWEN3_VL)}

# Qwen3-VL-Embedding 2B / 8B (Qwen team): the reranker's backbone without a head; an item's embedding is the final
# layer's hidden state at its prompt's last token (engine/embedder.py). Its text limit: 8,192 tokens per item.
QWEN3_VL_EMBEDDING = ModelFamily(
    name="Qwen3-VL-Embedding",
    model_type="qwen3_vl",
    model_class="Qwen3VLModel",
    default_instruction="Represent the user's input.",
    pixel_factor=32,
    min_pixels=4 * 32 * 32,
    max_pixels=1800 * 32 * 32,
    max_text_tokens=8192,
    unquantized_modules=("visual",),
    clip_frames_wrapped=True,
)


@dataclass(frozen=True)
class Architecture:
    """What the memory estimate needs to know of a checkpoint (engine/memory.py)."""

    model_type: str
    parameters: int
    quantizable: int  # of them, in the language model's linear layers: what 8-/4-bit quantization shrinks
    hidden_size: int  # the language model's
    intermediate_size: int


# The published checkpoints, for the memory estimate before they are downloaded. Counted from the
# published architectures (engine/random_model.py's "7b", "2b", "8b" configs, on the meta device, output
# head untied); a downloaded checkpoint is counted from its own config.json instead.
PUBLISHED: dict[str, Architecture] = {
    "vec-ai/lychee-rerank-mm": Architecture("qwen2_5_vl", 8_292_166_656, 6_525_288_448, 3584, 18944),
    "Qwen/Qwen3-VL-Reranker-2B": Architecture("qwen3_vl", 2_438_696_960, 1_409_286_144, 2048, 6144),
    "Qwen/Qwen3-VL-Reranker-8B": Architecture("qwen3_vl", 8_767_123_696, 6_945_767_424, 4096, 12288),
}


def family_for(model_type: str | None) -> ModelFamily:
    """The family of a checkpoint's `model_type`; a clear error for any other."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    served = ", ".join(f"{f.model_type} ({f.name})" for f in FAMILIES.values())
    raise ValueError(f"unsupported checkpoint: config.json has model_type {model_type!r}; this app serves {served}")


# The tiny random checkpoints `lychee load --demo` and `LycheeScorer.load("demo")` build offline, one per family, by
# the folder name they are served under (it says they are random), and the names the library takes for them.
DEMO_MODELS = {"qwen2_5_vl": "random-lychee-rerank-mm", "qwen3_vl": "random-Qwen3-VL-Reranker"}
DEMO_EMBEDDING = "random-Qwen3-VL-Embedding"  # the tiny random embedding model (`LycheeEmbedder.load("demo")`)
DEMO_NAMES = {"demo": "qwen2_5_vl", "demo-qwen2_5_vl": "qwen2_5_vl", "demo-qwen3_vl": "qwen3_vl"}
