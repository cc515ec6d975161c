"""The one-pair-per-forward scorer of the blog tutorials, written straight from the model contract.

The processor's own batch-of-one encoding, a full forward per pair, no padding, no sorting, no
prefix reuse: slow and obviously right. The benchmark times it as the baseline and the tests use
it as the oracle, so it deliberately shares no code with the engine (not even the prompt text).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from transformers import AutoProcessor

from ..families import FAMILIES, LYCHEE  # the contract's numbers (class, bounds, default), not engine code

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)


def _images(image) -> list:
    """One image, a list of them (several, in order), or None."""
    return list(image) if isinstance(image, (list, tuple)) else [] if image is None else [image]


def _parts(text, image, video=None):
    parts = [{"type": "image", "image": one} for one in _images(image)]
    if video is not None:
        parts.append({"type": "video", "video": list(video.frames)})
    if text is not None:
        parts.append({"type": "text", "text": text})
    return parts


class NaiveScorer:
    def __init__(self, model, processor, family=LYCHEE):
        self.model = model
        self.processor = processor
        self.family = family
        tok = self.processor.tokenizer
        self.yes = tok.convert_tokens_to_ids("yes")
        self.no = tok.convert_tokens_to_ids("no")

    @classmethod
    def load(cls, folder):
        family = FAMILIES[json.loads((Path(folder) / "config.json").read_text())["model_type"]]
        processor = AutoProcessor.from_pretrained(folder)
        model = (
            getattr(transformers, family.model_class)
            .from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa", use_kernels=False)
            .eval()
        )
        return cls(model, processor, family)

    def prompt(self, query, document, instruction=None):
        """query/document: (text or None, a PIL image, a list of them, or None[, a sampled `contract.Video`])."""
        messages = [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"<Instruct>: {instruction or self.family.default_instruction}"},
                    {"type": "text", "text": "<Query>:"},
                    *_parts(*query),
                    {"type": "text", "text": "\n<Document>:"},
                    *_parts(*document),
                ],
            },
        ]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def inputs(self, query, document, instruction=None):
        images = _images(query[1]) + _images(document[1])
        clips = [side[2] for side in (query, document) if len(side) > 2 and side[2] is not None]
        video = clips[0] if clips else None
        extra = {}
        if clips:
            # Each clip's frames as sampled, told as such: their indices in the clip and its frame rate.
            from transformers.video_utils import VideoMetadata

            def metadata(clip):
                width, height = clip.frames[0].size
                total = max(len(clip.indices), round(clip.duration * clip.fps))
                return VideoMetadata(
                    total_num_frames=total,
                    fps=clip.fps,
                    frames_indices=list(clip.indices),
                    duration=clip.duration,
                    width=width,
                    height=height,
                )

            extra = {
                "videos": [list(clip.frames) for clip in clips],
                "videos_kwargs": {
                    "video_metadata": [metadata(clip) for clip in clips],
                    "do_sample_frames": False,
                    "cap_pixels_per_frame": True,
                    "size": dict(self.processor.video_processor.size),
                },
            }
        bounds = {"shortest_edge": self.family.min_pixels, "longest_edge": self.family.max_pixels}
        sizes = {"images_kwargs": {"size": bounds}} if video is not None else {"size": bounds}
        text = self.prompt(query, document, instruction)
        if clips and self.family.clip_frames_wrapped:  # as Qwen's processor does (families.py)
            wrapped = f"<|vision_start|>{self.processor.video_token}<|vision_end|>"
            text = text.replace(wrapped, self.processor.video_token)
        return self.processor(text=[text], images=images or None, return_tensors="pt", **sizes, **extra).to(self.model.device)

    @torch.inference_mode()
    def score(self, query, document, instruction=None) -> float:
        logits = self.model(**self.inputs(query, document, instruction)).logits[0, -1]
        return float(torch.softmax(logits[[self.no, self.yes]].float(), dim=0)[1])
