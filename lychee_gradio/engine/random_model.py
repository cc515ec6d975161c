"""Random checkpoints of both families (Qwen2.5-VL: lychee-rerank-mm; Qwen3-VL: Qwen3-VL-Reranker),
built offline, laid out like the real ones.

The real weights (4 to 17 GB) cannot be downloaded everywhere, so tests and the `--demo` mode
build a tiny one instead and load it through the very same path as real weights; the benchmark
builds larger ones. Their scores are real model outputs, but of random weights: they mean
nothing about relevance. A real tokenizer can be passed in (the tests use the real Qwen3 one);
otherwise a small BPE is trained on the spot.
"""

from __future__ import annotations

import json
from pathlib import Path

# Qwen2-VL's own chat template (the one shipped in chat_template.json of Qwen2.5-VL checkpoints).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL's chat template renders these messages the same way, without a default system turn.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Enough English, Chinese and prompt text that the trained BPE merges the words the prompt uses,
# and makes "yes" and "no" single tokens as they are in the real Qwen vocabulary.
_CORPUS = [
    "yes",
    "no",
    "Yes",
    "No",
    "system",
    "user",
    "assistant",
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
    'Note that the answer can only be "yes" or "no".',
    "<Instruct>: <Query>: <Document>:",
    "Given a web search query, retrieve relevant passages that answer the query",
    "Given a product image and description, determine if the description accurately reflects",
    "a white ceramic coffee cup with a minimalist mountain line pattern",
    "stainless steel vacuum travel mug, double wall, 500ml, leak-proof silicone ring",
    "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml",
    "不锈钢真空保温旅行杯,双层设计,500ml,防漏硅胶圈",
    "白色陶瓷咖啡杯 山 线条 简约 蓝色 红色 图片 问题 答案 文档 查询",
    "The quick brown fox jumps over the lazy dog. 0123456789",
]


def _train_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_CORPUS * 20, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


# Model sizes for the random checkpoints. "7b" has the published Qwen2.5-VL-7B-Instruct sizes (the
# architecture of lychee-rerank-mm): random weights of that shape cost the same compute as the real ones.
MODEL_SIZES: dict[str, dict] = {
    "tiny": {
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "mrope_section": [2, 3, 3],
        },
        "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [1]},
    },
    "small": {
        "text": {
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 6,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "mrope_section": [8, 12, 12],
        },
        "vision": {"depth": 6, "hidden_size": 256, "intermediate_size": 512, "num_heads": 4, "fullatt_block_indexes": [2, 5]},
    },
    "7b": {
        "text": {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "mrope_section": [16, 24, 24],
            "vocab_size": 152064,
        },
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
    },
}

# Qwen3-VL sizes: "2b" and "8b" are those of the published Qwen3-VL-2B / -8B (the backbones of
# Qwen3-VL-Reranker-2B / -8B).
QWEN3_VL_SIZES: dict[str, dict] = {
    "tiny": {
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "mrope_section": [2, 3, 3],
        },
        "vision": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "deepstack_visual_indexes": [0],
            "num_position_embeddings": 256,
        },
    },
    "small": {
        "text": {
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 6,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "mrope_section": [12, 10, 10],
        },
        "vision": {
            "depth": 6,
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_heads": 4,
            "deepstack_visual_indexes": [1, 3, 5],
            "num_position_embeddings": 2304,
        },
    },
    "2b": {
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "mrope_section": [24, 20, 20],
            "vocab_size": 151936,
        },
        "vision": {
            "depth": 24,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "deepstack_visual_indexes": [5, 11, 17],
            "num_position_embeddings": 2304,
        },
    },
    "8b": {
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "mrope_section": [24, 20, 20],
            "vocab_size": 151936,
        },
        "vision": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "deepstack_visual_indexes": [8, 16, 24],
            "num_position_embeddings": 2304,
        },
    },
}

SIZES = {"qwen2_5_vl": MODEL_SIZES, "qwen3_vl": QWEN3_VL_SIZES}


def _trained_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_tokenizer()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    for word in ("yes", "no"):
        ids = tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"the random tokenizer must encode {word!r} as one token, got {ids}")
    return tokenizer


def build_processor(family: str = "qwen2_5_vl", tokenizer=None):
    """The processor of a family: the tokenizer (given, or a small BPE trained here), the family's
    image processor (pixel factor and bounds from families.py) and chat template."""
    from transformers import Qwen2VLImageProcessor

    from ..families import FAMILIES

    spec = FAMILIES[family]
    tokenizer = tokenizer if tokenizer is not None else _trained_tokenizer()
    patch = spec.pixel_factor // 2
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        image_processor = Qwen2VLImageProcessor(
            min_pixels=spec.min_pixels,
            max_pixels=spec.max_pixels,
            patch_size=patch,
            merge_size=2,
            temporal_patch_size=2,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(),
            chat_template=QWEN3_VL_CHAT_TEMPLATE,
        )
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, patch_size=patch, merge_size=2, temporal_patch_size=2
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def _config(family: str, dims: dict, tokenizer):
    token_id = tokenizer.convert_tokens_to_ids
    special = {
        "bos_token_id": token_id("<|endoftext|>"),
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": token_id("<|endoftext|>"),
    }
    vision_tokens = {
        "image_token_id": token_id("<|image_pad|>"),
        "video_token_id": token_id("<|video_pad|>"),
        "vision_start_token_id": token_id("<|vision_start|>"),
        "vision_end_token_id": token_id("<|vision_end|>"),
    }
    text = {key: value for key, value in dims["text"].items() if key != "mrope_section"}
    text.setdefault("vocab_size", len(tokenizer))
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(
            text_config={
                **text,
                "max_position_embeddings": 32768,
                "tie_word_embeddings": False,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 5000000.0,
                    "mrope_section": dims["text"]["mrope_section"],
                    "mrope_interleaved": True,
                },
                **special,
            },
            vision_config={
                **dims["vision"],
                "out_hidden_size": dims["text"]["hidden_size"],
                "patch_size": 16,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
            tie_word_embeddings=False,
            **vision_tokens,
            **special,
        )
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            **text,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": dims["text"]["mrope_section"]},
            "tie_word_embeddings": False,
            **special,
        },
        vision_config={
            **dims["vision"],
            "out_hidden_size": dims["text"]["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "tokens_per_second": 2,
        },
        tie_word_embeddings=False,
        **vision_tokens,
        **special,
    )


def build_random_model(
    processor, size: str = "tiny", *, dtype=None, device: str = "cpu", seed: int = 0, family: str = "qwen2_5_vl"
):
    """A model of the family and size with random weights, matching `processor`'s special tokens."""
    import torch
    import transformers

    from ..families import FAMILIES
    from . import vision_attention

    sizes = SIZES[family]
    if size not in sizes:
        raise ValueError(f"model size for {family} must be one of {sorted(sizes)}, got {size!r}")
    config = _config(family, sizes[size], processor.tokenizer)
    model_class = getattr(transformers, FAMILIES[family].model_class)
    torch.manual_seed(seed)
    dtype = dtype or torch.float32
    with torch.device(device):
        model = model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    if size == "tiny":
        # A wider spread than the default init keeps the tiny model's yes/no logits apart, so
        # scores differ visibly from document to document (still random, still meaningless).
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0.0, 0.2)
    vision_attention.install(model)  # as weights.py's loader does: the same vision attention as served models
    return model


def build_checkpoint(
    folder: str | Path, size: str = "tiny", seed: int = 0, *, family: str = "qwen2_5_vl", tokenizer=None
) -> Path:
    """Write a random checkpoint of the family and size (model, tokenizer, processor, chat template) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = build_processor(family, tokenizer)
    build_random_model(processor, size, seed=seed, family=family).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_checkpoint(folder: str | Path, seed: int = 0, *, family: str = "qwen2_5_vl", tokenizer=None) -> Path:
    """Write a 2-layer random checkpoint of the family (model, tokenizer, processor, chat template) to `folder`."""
    return build_checkpoint(folder, "tiny", seed, family=family, tokenizer=tokenizer)


def build_embedding_checkpoint(folder: str | Path, seed: int = 1, tokenizer=None) -> Path:
    """Write a tiny random Qwen3-VL-Embedding checkpoint: the Qwen3-VL backbone alone, saved as Qwen's embedding
    model saves it (weights under `model.`, no output head), with the processor and chat template."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = build_processor("qwen3_vl", tokenizer)
    backbone = build_random_model(processor, "tiny", seed=seed, family="qwen3_vl").model
    backbone.config.architectures = ["Qwen3VLForEmbedding"]
    backbone.config.save_pretrained(folder)
    save_file({f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}, folder / "model.safetensors")
    processor.save_pretrained(folder)
    return folder


def demo_model_dir(family: str = "qwen2_5_vl") -> Path:
    """The tiny random checkpoint of a family, or "embedding" (`lychee load --demo`, `LycheeScorer.load("demo")`,
    `LycheeEmbedder.load("demo")`), built once into
    the user's cache (`$XDG_CACHE_HOME/lychee-gradio/`, else `~/.cache/lychee-gradio/`). Its folder's name (what
    the page and the API call it) says it is random: its scores mean nothing."""
    import os

    from ..families import DEMO_EMBEDDING, DEMO_MODELS

    name = DEMO_EMBEDDING if family == "embedding" else DEMO_MODELS[family]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lychee-gradio" / name
    if not (cache / "config.json").is_file():
        build_embedding_checkpoint(cache) if family == "embedding" else build_tiny_checkpoint(cache, family=family)
    return cache
