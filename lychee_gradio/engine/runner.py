"""The model runner: the engine's passes through the model, apart from the library front (`scorer.py`).

It owns what a pass needs and nothing else: the model and its device, the lock held for each pass, the batch
bounds, the shared prefixes of a request's pairs (`encode_prefixes`), the pass itself (`forward`: the (no, yes)
logits at each pair's last position, from the two output rows kept in float32), what an out-of-memory error looks
like and how memory is given back, and the score formula (`p_yes`). The scheduler (`scheduler.py`) drives it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from . import kv_cache
from .encoding import EncodedPair, shared_prefix_length


def p_yes(yes_logit: float, no_logit: float) -> float:
    """The score: softmax([no, yes])[1] = sigmoid(yes - no), in double precision."""
    difference = yes_logit - no_logit
    if difference >= 0:
        return 1.0 / (1.0 + math.exp(-difference))
    small = math.exp(difference)
    return small / (1.0 + small)


@dataclass
class SharedPrefix:
    """Keys and values of the tokens every pair of a request starts with, computed once."""

    length: int
    key_values: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each (1, kv_heads, length, head_dim)
    image_count: int = 0  # the pairs' first images, whose tokens all lie in the prefix


class ModelRunner:
    """One model's passes (engine/scheduler.py's `Runner`). `batch_size` rows and `max_batch_tokens` padded tokens
    per pass at most (defaults: 32 / 32,768 on CUDA, 8 / 8,192 elsewhere); `reuse_prefix`: a request's shared
    prompt prefix is computed once."""

    def __init__(
        self,
        model,
        device: torch.device,
        *,
        yes_token_id: int | None = None,
        no_token_id: int | None = None,
        pad_token_id: int,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        reuse_prefix: bool = True,
    ):
        self.model = model
        self.device = device
        on_cuda = device.type == "cuda"
        self.batch_size = batch_size or (32 if on_cuda else 8)
        self.max_batch_tokens = max_batch_tokens or (32768 if on_cuda else 8192)
        if self.batch_size < 1 or self.max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be positive")
        self.pad_token_id = pad_token_id
        # Every pair of a request shares system prompt, instruction and query: with reuse on, their
        # keys/values (and the query image's vision encoding) are computed once per request.
        self.reuse_prefix = reuse_prefix
        self.lock = threading.Lock()  # the model: held for each forward pass
        # The two rows of the output layer that make the score, kept in float32: the (no, yes)
        # logits are computed from the last hidden state in full precision, whatever the model's
        # dtype, so bf16 adds no rounding of its own at the step that decides the score.
        # (An embedding model has no yes/no rows: its passes hand back the last hidden state, `forward(hidden=True)`.)
        self._score_weight = self._score_bias = None
        if yes_token_id is not None and no_token_id is not None:
            head = model.get_output_embeddings()
            rows = [no_token_id, yes_token_id]
            self._score_weight = head.weight.detach()[rows].float()
            self._score_bias = head.bias.detach()[rows].float() if getattr(head, "bias", None) is not None else None

    @staticmethod
    def is_out_of_memory(error: BaseException) -> bool:
        """CUDA allocation failures: torch's OutOfMemoryError, and cuBLAS/CUDA ones that arrive as RuntimeError."""
        if isinstance(error, torch.OutOfMemoryError):
            return True
        text = str(error)
        return isinstance(error, RuntimeError) and any(
            sign in text
            for sign in (
                "CUBLAS_STATUS_ALLOC_FAILED",
                "CUDA out of memory",
                "CUDA error: out of memory",
                "CUDNN_STATUS_ALLOC_FAILED",
                "MPS backend out of memory",
            )
        )

    def release_memory(self) -> None:
        """Give cached blocks back after an out-of-memory error (called outside the except block)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    @torch.inference_mode()
    def encode_prefixes(self, groups: list[list[EncodedPair]]) -> list[SharedPrefix | None]:
        """The shared prefix of each group of pairs (one request's pairs), all in one pass: the prefixes
        are right-padded to one length (the padding masked; causal attention keeps it out of the real
        positions), and each one's keys/values are cut back to its own length. None: nothing shared."""
        spans = [shared_prefix_length(pairs) for pairs in groups]
        live = [(group, length, count) for group, (length, count) in zip(groups, spans) if length >= 1]
        if not live:
            return [None] * len(groups)
        width = max(length for _, length, _ in live)
        size = len(live)
        input_ids = torch.full((size, width), self.pad_token_id, dtype=torch.long)
        mm_token_type_ids = torch.zeros((size, width), dtype=torch.long)
        attention_mask = torch.zeros((size, width), dtype=torch.long)
        position_ids = torch.zeros((3, size, width), dtype=torch.long)
        images = []
        for row, (pairs, length, count) in enumerate(live):
            first = pairs[0]
            input_ids[row, :length] = first.input_ids[:length]
            mm_token_type_ids[row, :length] = first.mm_token_type_ids[:length]
            attention_mask[row, :length] = 1
            position_ids[:, row, :length] = first.position_ids[:, :length]
            images.extend(first.images[:count])
        device = self.device
        outputs = self.model.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            mm_token_type_ids=mm_token_type_ids.to(device),
            pixel_values=torch.cat([image.pixel_values for image in images]).to(device) if images else None,
            image_grid_thw=torch.stack([image.grid_thw for image in images]).to(device) if images else None,
            use_cache=True,
        )
        layers = kv_cache.returned(outputs).layers
        prefixes, row = [], 0
        for length, count in spans:
            if length < 1:
                prefixes.append(None)
                continue
            if size == 1:
                key_values = [(layer.keys, layer.values) for layer in layers]
            else:
                key_values = [
                    (layer.keys[row : row + 1, :, :length].clone(), layer.values[row : row + 1, :, :length].clone())
                    for layer in layers
                ]
            prefixes.append(SharedPrefix(length, key_values, count))
            row += 1
        return prefixes

    @torch.inference_mode()
    def forward(
        self, batch: list[EncodedPair], prefix: SharedPrefix | list[SharedPrefix | None] | None = None, hidden: bool = False
    ) -> torch.Tensor:
        """(no, yes) logits at the last position of each pair, as a float32 (B, 2) tensor on the CPU; with `hidden`,
        the final layer's hidden state there instead (B, hidden size): an embedding (engine/embedder.py).

        With a prefix, only each pair's tail (the tokens after the prefix) runs, attending to the
        prefix's cached keys/values; positions stay those of the whole sequence. `prefix` is one
        prefix for every row, or one per row (pairs of several requests in one pass, each behind its
        own request's prefix: the prefixes are padded to one length and the padding is masked).
        """
        rows = prefix if isinstance(prefix, list) else [prefix] * len(batch)
        skips = [row.length if row is not None else 0 for row in rows]
        padded = max(skips)  # prefix columns: each row's own prefix, then masked padding
        size = len(batch)
        width = max(pair.length - skip for pair, skip in zip(batch, skips))
        input_ids = torch.full((size, width), self.pad_token_id, dtype=torch.long)
        mm_token_type_ids = torch.zeros((size, width), dtype=torch.long)
        attention_mask = torch.zeros((size, padded + width), dtype=torch.long)
        position_ids = torch.zeros((3, size, width), dtype=torch.long)
        # Left padding: every pair's last real token sits in the last column, where the score is read.
        for row, (pair, skip) in enumerate(zip(batch, skips)):
            start = width - (pair.length - skip)
            input_ids[row, start:] = pair.input_ids[skip:]
            mm_token_type_ids[row, start:] = pair.mm_token_type_ids[skip:]
            attention_mask[row, :skip] = 1
            attention_mask[row, padded + start :] = 1
            position_ids[:, row, start:] = pair.position_ids[:, skip:]
        images = [image for pair, row in zip(batch, rows) for image in pair.images[row.image_count if row else 0 :]]
        videos = [video for pair in batch for video in pair.videos]  # a document's: never in a shared prefix
        device = self.device
        cache = None
        if padded:
            cache = kv_cache.new_cache(self.model)
            for layer, (keys, values) in enumerate(_prefix_rows(rows, padded, size)):
                cache.update(keys, values, layer)
        outputs = self.model.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            mm_token_type_ids=mm_token_type_ids.to(device),
            pixel_values=torch.cat([image.pixel_values for image in images]).to(device) if images else None,
            image_grid_thw=torch.stack([image.grid_thw for image in images]).to(device) if images else None,
            pixel_values_videos=torch.cat([video.pixel_values for video in videos]).to(device) if videos else None,
            video_grid_thw=torch.stack([video.grid_thw for video in videos]).to(device) if videos else None,
            **kv_cache.passing(self.model.model, cache),
            use_cache=False,
        )
        last = outputs.last_hidden_state[:, -1, :].float()
        if hidden:
            return last.cpu()
        logits = last @ self._score_weight.T
        if self._score_bias is not None:
            logits = logits + self._score_bias
        return logits.cpu()


def _prefix_rows(rows: list[SharedPrefix | None], padded: int, size: int):
    """Per layer, the (keys, values) each row attends to before its tail: one shared prefix is expanded
    (a view); several are padded to `padded` positions (masked) and gathered by row."""
    first = rows[0]
    if all(row is first for row in rows):
        for keys, values in first.key_values:
            yield keys.expand(size, -1, -1, -1), values.expand(size, -1, -1, -1)
        return
    distinct = list({id(row): row for row in rows if row is not None}.values())
    place = {id(row): position for position, row in enumerate(distinct, start=1)}
    index = torch.tensor([place[id(row)] if row is not None else 0 for row in rows])
    template = distinct[0].key_values
    for layer in range(len(template)):
        stacked = []
        for part in (0, 1):  # keys, values
            sample = template[layer][part]
            pad = sample.new_zeros((len(distinct) + 1, sample.shape[1], padded, sample.shape[3]))
            for position, row in enumerate(distinct, start=1):
                pad[position, :, : row.length] = row.key_values[layer][part][0]
            stacked.append(pad.index_select(0, index.to(pad.device)))
        yield stacked[0], stacked[1]
