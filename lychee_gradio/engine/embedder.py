"""The embedding model (Qwen3-VL-Embedding 2B / 8B): one normalised vector per item, a search's first stage.

The embedding as Qwen defines it (the model card; QwenLM/Qwen3-VL-Embedding's reference embedder, read, not copied):
the item as a chat (system: the instruction, "Represent the user's input." by default, ending in punctuation; user:
its clip, its images, its text, in that order), rendered by the checkpoint's chat template with the generation
prompt; the final layer's hidden state at the prompt's last token, L2-normalised. Matryoshka: the first
`dimensions` values, normalised again.

It runs on the reranker's machinery: the pair encoder (user text stays text, images and clips prepared as for
scoring) with this chat in place of the reranker's, and the model runner's passes (left-padded, the shared
system prompt computed once), which hand back the hidden state in float32 instead of the yes/no logits. A test
holds batched embeddings to one item per pass of the model's own forward (tests/test_embedder.py).
"""

from __future__ import annotations

import logging
import os
import time
import unicodedata
from typing import Any, Sequence

import torch

from ..contract import InputError, Item, RequestContext
from ..families import DEMO_EMBEDDING, QWEN3_VL_EMBEDDING, ModelFamily
from ..inputs import to_item
from .encoding import PairEncoder
from .runner import ModelRunner
from .weights import choose_runtime, fit_cpu_threads, load_model_and_processor, resolve_model_dir

logger = logging.getLogger(__name__)

DEMO = "demo"  # LycheeEmbedder.load("demo"): the tiny random embedding model, built offline once


def embedding_messages(_query: Item, item: Item, instruction: str) -> list[dict]:
    """The chat of one item to embed (the pair encoder's `messages`; there is no query)."""
    parts: list[dict] = []
    if item.video is not None:
        parts.append({"type": "video", "video": list(item.video.frames)})
    parts += [{"type": "image", "image": image} for image in item.images]
    if item.text is not None:
        parts.append({"type": "text", "text": item.text})
    return [{"role": "system", "content": [{"type": "text", "text": instruction}]}, {"role": "user", "content": parts}]


def with_stop(instruction: str) -> str:
    """The instruction as the model was trained on it: stripped, ending in punctuation."""
    instruction = instruction.strip()
    if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


class _Backbone(torch.nn.Module):
    """What the model runner drives (`.model`, the Qwen3-VL backbone, and its config)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config


class LycheeEmbedder:
    """A loaded Qwen3-VL-Embedding model. Build it with `LycheeEmbedder.load(...)`; thread-safe (one pass at a
    time). `embed(inputs)` gives one vector per input; `dimensions` is the full size of a vector."""

    def __init__(
        self,
        model,
        processor,
        *,
        model_name: str,
        device: str = "cpu",
        family: ModelFamily = QWEN3_VL_EMBEDDING,
        max_pixels: int | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_text_tokens: int | None = None,
        reuse_prefix: bool = True,
    ):
        self.model = model
        self.processor = processor
        self.model_name = model_name
        self.family = family
        self.device = torch.device(device)
        self.encoder = PairEncoder(
            processor,
            model.get_rope_index,
            min_pixels=family.min_pixels,
            max_pixels=max_pixels or family.max_pixels,
            max_text_tokens=max_text_tokens or family.max_text_tokens,
            pixel_dtype=model.dtype,
            clip_frames_wrapped=family.clip_frames_wrapped,
            messages=embedding_messages,
        )
        tokenizer = processor.tokenizer
        self.runner = ModelRunner(
            _Backbone(model),
            self.device,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            reuse_prefix=reuse_prefix,
        )
        self.dimensions = int(model.config.text_config.hidden_size)
        self.load_seconds: float | None = None

    @classmethod
    def load(
        cls,
        model: str | os.PathLike = DEMO,
        device: str = "auto",
        dtype: Any = "auto",
        *,
        max_pixels: int | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> "LycheeEmbedder":
        """Load from a local folder or a ModelScope id (Qwen/Qwen3-VL-Embedding-2B, -8B) by the reranker's path and
        device and dtype rules (`LycheeScorer.load`); "demo" is a tiny random one, built offline once into the
        user's cache: it loads anywhere, and its vectors mean nothing."""
        started = time.monotonic()
        name = os.fspath(model)
        if name == DEMO and not os.path.isdir(name):
            from .random_model import demo_model_dir

            name = str(demo_model_dir("embedding"))
        runtime = choose_runtime(device, dtype)
        folder = resolve_model_dir(name)
        if runtime.device == "cpu":
            fit_cpu_threads()
        hf_model, processor, family = load_model_and_processor(folder, runtime, family=QWEN3_VL_EMBEDDING)
        embedder = cls(
            hf_model,
            processor,
            model_name=name,
            device=runtime.device,
            family=family,
            max_pixels=max_pixels,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )
        embedder.load_seconds = time.monotonic() - started
        logger.info("embedding model %s loaded in %.1f s (%s)", name, embedder.load_seconds, runtime.why)
        return embedder

    documents_in_flight = None  # the request service's admission: every input's pixels are held at once

    @property
    def max_pixels(self) -> int:
        return self.encoder.max_pixels

    @property
    def precision(self) -> str:
        return str(self.model.dtype).replace("torch.", "")

    def check_dimensions(self, dimensions: Any) -> int:
        """A caller's `dimensions` (Matryoshka: the first that many values, normalised again): 32 to the model's
        size (None: all of them)."""
        if dimensions is None:
            return self.dimensions
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 32 <= dimensions <= self.dimensions:
            raise InputError("dimensions", "dimensions", value=str(dimensions)[:40], maximum=self.dimensions)
        return dimensions

    def embed(
        self, inputs: Any, instruction: str | None = None, dimensions: int | None = None, *, context: RequestContext | None = None
    ) -> list[list[float]]:
        """One unit vector per input (a text, an image's path, a PIL image, or a dict {"text", "image", "images",
        "video"} as `LycheeScorer.rerank` takes them; a single one: a list of one vector)."""
        values = [inputs] if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence) else list(inputs)
        items = [to_item(value, f"input[{i}]") for i, value in enumerate(values)]
        return self.embed_items(items, instruction, dimensions, context=context).tolist()

    def embed_items(
        self,
        items: Sequence[Item],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        context: RequestContext | None = None,
    ) -> torch.Tensor:
        """The items' unit vectors as a float32 (n, dimensions) tensor, in the items' order; long texts cut to the
        model's text budget. The request's Stop and deadline (`context`) are checked before each pass."""
        size = self.check_dimensions(dimensions)
        context = context or RequestContext()
        for i, item in enumerate(items):
            if item.pages is not None:
                raise InputError(f"input[{i}]", "embed_pdf")
        if not items:
            return torch.zeros((0, size))
        if any(item.video is not None for item in items) and not self.encoder.takes_video():
            raise InputError("input", "no_video_slot", model=self.model_name)
        stated = with_stop(instruction or self.family.default_instruction)
        pairs = self.encoder.encode(Item(text=""), list(items), stated, on_document=context.check)
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
        vectors = torch.zeros((len(pairs), self.dimensions))
        runner = self.runner
        with runner.lock:
            prefix = runner.encode_prefixes([pairs])[0] if runner.reuse_prefix and len(pairs) > 1 else None
            start = 0
            while start < len(order):
                context.check()
                # Rows of similar length together, within the runner's rows and padded-token budgets.
                width = pairs[order[start]].length
                rows = max(1, min(runner.batch_size, runner.max_batch_tokens // max(1, width)))
                batch = order[start : start + rows]
                vectors[batch] = runner.forward([pairs[i] for i in batch], prefix, hidden=True)
                start += len(batch)
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
        if size < self.dimensions:
            vectors = torch.nn.functional.normalize(vectors[:, :size], dim=-1)
        return vectors


__all__ = ["LycheeEmbedder", "DEMO_EMBEDDING", "embedding_messages", "with_stop"]
