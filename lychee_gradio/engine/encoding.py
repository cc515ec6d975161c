"""Turning (query, documents, instruction) into Qwen-VL model inputs, one pair at a time.

Each pair is encoded exactly as the processor would encode it alone (a test holds this to the
processor's own output), with its 3-D rope positions computed on its own unpadded sequence.
Batching later only pads and concatenates, so a pair's inputs never depend on its neighbours:
that is what makes scores pointwise.
"""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from PIL import Image

from ..contract import InputError, Item
from ..families import LYCHEE
from .literal import LiteralTokenizer, _Slots
from .prompt import build_messages

MIN_PIXELS = LYCHEE.min_pixels
DEFAULT_MAX_PIXELS = LYCHEE.max_pixels
DEFAULT_MAX_TEXT_TOKENS = LYCHEE.max_text_tokens


@dataclass
class EncodedImage:
    pixel_values: torch.Tensor  # (patches, channels * temporal * patch * patch)
    grid_thw: torch.Tensor  # (3,)

    @property
    def nbytes(self) -> int:
        return self.pixel_values.numel() * self.pixel_values.element_size()


@dataclass
class EncodedVideo:
    """A clip as the processor's own video path makes it: pixel patches, (t, h, w) grid, the seconds each
    temporal patch spans (Qwen2.5-VL's rope), and the token ids its `<|video_pad|>` expands to (Qwen3-VL's
    include a timestamp before each frame)."""

    pixel_values: torch.Tensor
    grid_thw: torch.Tensor  # (3,)
    second_per_grid_t: float | None
    token_ids: list[int]

    @property
    def nbytes(self) -> int:
        return self.pixel_values.numel() * self.pixel_values.element_size()


@dataclass
class EncodedPair:
    input_ids: torch.Tensor  # (L,)
    mm_token_type_ids: torch.Tensor  # (L,): 0 text, 1 image
    position_ids: torch.Tensor  # (3, L): Qwen-VL's temporal/height/width rope positions
    images: list[EncodedImage] = field(default_factory=list)  # in sequence order: query's, then document's
    query_image_count: int = 0
    document_start: int = 0  # first token after the query's images; no document image token comes earlier
    videos: list[EncodedVideo] = field(default_factory=list)  # in sequence order; a pair with a query clip runs whole

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


def image_spans(pair: EncodedPair) -> list[tuple[int, int]]:
    """(start, end) of each image's run of image tokens in the pair, in order."""
    flags = pair.mm_token_type_ids.tolist()
    spans, start = [], None
    for position, flag in enumerate(flags + [0]):
        if flag and start is None:
            start = position
        elif not flag and start is not None:
            spans.append((start, position))
            start = None
    return spans


def shared_prefix_length(pairs: list[EncodedPair]) -> tuple[int, int]:
    """How many leading tokens every pair has in common, so that their keys/values can be computed once,
    and how many images lie in them.

    The prefix holds the system prompt, the instruction and the query (text and image), never a
    document's image, and leaves at least one token of each pair to run per document. An image's
    tokens are only shared when every pair has that very image (the tokens of two different images
    of one size are the same ids); the prefix never ends inside an image.
    """
    first = pairs[0].input_ids
    limit = min(min(pair.length - 1, pair.document_start) for pair in pairs)
    length = limit
    for pair in pairs[1:]:
        differs = torch.nonzero(pair.input_ids[:length] != first[:length]).flatten()
        if differs.numel():
            length = int(differs[0])
    images = 0
    for index, (start, end) in enumerate(image_spans(pairs[0])):
        if start >= length:
            break
        same = all(
            index < len(pair.images)
            and (
                pair.images[index] is pairs[0].images[index]
                or torch.equal(pair.images[index].pixel_values, pairs[0].images[index].pixel_values)
            )
            for pair in pairs[1:]
        )
        if end > length or not same:
            length = start
            break
        images += 1
    return length, images


class PairEncoder:
    """Renders the prompt of each pair, processes its images and tokenises it."""

    def __init__(
        self,
        processor,
        rope_index,
        *,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
        image_cache=None,
        pixel_dtype: torch.dtype | None = None,
        clip_frames_wrapped: bool = False,
        messages: Callable[[Item, Item, str], list[dict]] = build_messages,
    ):
        # The image processor resizes to multiples of its patch x merge size (28 for Qwen2.5-VL,
        # 32 for Qwen3-VL); the bounds come from the model family (families.py).
        if max_pixels < min_pixels:
            raise ValueError(f"max_pixels ({max_pixels}) must be at least min_pixels ({min_pixels})")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self._rope_index = rope_index
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.max_text_tokens = max_text_tokens
        self.image_token = processor.image_token
        self.image_token_id = processor.image_token_id
        self.video_token = getattr(processor, "video_token", None)
        self.video_token_id = getattr(processor, "video_token_id", None)
        self.merge_length = self.image_processor.merge_size**2
        self.literal = LiteralTokenizer(self.tokenizer, self.image_token)
        # A clip whose frames come each in <|vision_start|>...<|vision_end|> takes the place of the template's
        # wrapper around it (families.ModelFamily.clip_frames_wrapped).
        self.clip_frames_wrapped = clip_frames_wrapped
        # The chat of one pair (prompt.build_messages: the reranker's; engine/embedder.py: one item's, to embed).
        self.messages = messages
        # Processed images (resized, normalised pixel patches) by (content hash, bounds), across
        # requests: cache.ImageCache, or None.
        self.image_cache = image_cache
        # The vision tower casts pixel patches to its own dtype first thing; casting here gives the
        # same numbers and halves what a bf16 model's image cache holds.
        self.pixel_dtype = pixel_dtype

    def takes_video(self) -> bool:
        """Whether the checkpoint's chat template has a slot for a clip (a video part renders its video token);
        read once. A checkpoint without one answers a clip with a clear refusal, not the processor's mismatch."""
        if getattr(self, "_takes_video", None) is None:
            try:
                text = self.processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "video"}]}], tokenize=False, add_generation_prompt=True
                )
                self._takes_video = self.video_token is not None and self.video_token in text
            except Exception:  # noqa: BLE001 - a template that cannot render a video part has no slot for one
                self._takes_video = False
        return self._takes_video

    def truncate(self, item: Item) -> Item:
        """Cut text to `max_text_tokens` tokens, at a token boundary of the original string.

        Megabytes of text are never tokenized whole: a prefix of a few characters per token of the
        budget is tokenized (doubled until it holds more tokens than the budget, or the whole text),
        and the cut falls at the end of the budget's last token.
        """
        budget = self.max_text_tokens
        # Byte-level BPE: every token covers at least one UTF-8 byte, so short text needs no tokenizing.
        if item.text is None or len(item.text) <= budget // 4 or len(item.text.encode("utf-8")) <= budget:
            return item
        text, chars = item.text, budget * 8
        while True:
            head = text[:chars]
            offsets = self.literal.plain.encode(head, add_special_tokens=False).offsets
            if len(offsets) > budget:
                return Item(text=text[: offsets[budget - 1][1]], images=item.images, video=item.video)
            if len(head) == len(text):
                return item
            chars *= 2

    def encode_image(
        self, image: Image.Image, max_pixels: int | None = None, digest: Callable[[Image.Image], bytes] | None = None
    ) -> EncodedImage:
        """The image as the model's pixel patches; from the image cache when `digest` names it and it is there."""
        key = None
        if self.image_cache is not None and digest is not None:
            key = (digest(image), self.min_pixels, max_pixels or self.max_pixels)
            cached = self.image_cache.get(key)
            if cached is not None:
                return cached
        out = self.image_processor(
            images=[image],
            size={"shortest_edge": self.min_pixels, "longest_edge": max_pixels or self.max_pixels},
            return_tensors="pt",
        )
        pixel_values = out["pixel_values"]
        if self.pixel_dtype is not None:
            pixel_values = pixel_values.to(self.pixel_dtype)
        encoded = EncodedImage(pixel_values=pixel_values, grid_thw=out["image_grid_thw"][0])
        if key is not None:
            self.image_cache.put(key, encoded)
        return encoded

    def encode_video(self, video, max_pixels: int | None = None) -> EncodedVideo:
        """A sampled clip (`contract.Video`) through the processor's own video path: the frames as given (no
        further sampling), their indices and the clip's frame rate as its metadata, each frame resized within
        the video processor's bounds (and the caller's `max_pixels`)."""
        out = self.processor(
            text=[self.video_token],
            videos=[list(video.frames)],
            videos_kwargs=video_kwargs(self.processor, video, max_pixels),
            return_tensors="pt",
        )
        pixel_values = out["pixel_values_videos"]
        if self.pixel_dtype is not None:
            pixel_values = pixel_values.to(self.pixel_dtype)
        seconds = out.get("second_per_grid_ts")
        return EncodedVideo(
            pixel_values,
            out["video_grid_thw"][0],
            float(seconds[0]) if seconds is not None else None,
            out["input_ids"][0].tolist(),
        )

    def encode_images(
        self, images: list, max_pixels: int | None = None, digest: Callable[[Image.Image], bytes] | None = None
    ) -> Iterator[EncodedImage]:
        """`encode_image` of each image (None: skipped), in order, several at once in a small pool of threads
        (Pillow's resizing and the processor's array work release the GIL), a few ahead of the one asked
        for: memory stays bounded, and a caller that stops asking (Stop, an error) leaves at most those."""
        wanted = [image for image in images if image is not None]
        if len(wanted) < 2 or _workers() < 2:
            return (self.encode_image(image, max_pixels, digest) for image in wanted)

        def ordered() -> Iterator[EncodedImage]:
            pending: collections.deque = collections.deque()
            upcoming = iter(wanted)
            try:
                for image in itertools.islice(upcoming, AHEAD):
                    pending.append(_pool().submit(self.encode_image, image, max_pixels, digest))
                while pending:
                    found = pending.popleft().result()
                    for image in itertools.islice(upcoming, 1):
                        pending.append(_pool().submit(self.encode_image, image, max_pixels, digest))
                    yield found
            finally:
                for future in pending:
                    future.cancel()

        return ordered()

    def render(self, query: Item, document: Item, instruction: str, followup: tuple[str, str] | None = None) -> str:
        """The prompt text of one pair, with one `<|image_pad|>` per image (before expansion); with
        `followup` (answer, question), the model's answer and a further question as two more turns."""
        messages = self.messages(query, document, instruction)
        if followup is not None:
            answer, question = followup
            messages += [
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                {"role": "user", "content": [{"type": "text", "text": question}]},
            ]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if self.clip_frames_wrapped and self.video_token is not None:  # user text is in slots: only the template's
            text = text.replace(f"<|vision_start|>{self.video_token}<|vision_end|>", self.video_token)
        return text

    def encode(
        self,
        query: Item,
        documents: list[Item],
        instruction: str,
        max_pixels: int | None = None,
        digest: Callable[[Image.Image], bytes] | None = None,
        on_document: Callable[[], None] | None = None,
        followup: tuple[str, str] | None = None,
    ) -> list[EncodedPair]:
        """Encode every (query, document) pair; `max_pixels` overrides the image bound for this call.

        `digest` hashes an image's content: images are then looked up in the image cache.
        `on_document` is called before each document (a check that may stop the call).
        `followup` (answer, question) adds two turns after the pair's (for the model's own explanation).
        """
        if max_pixels is not None and not self.min_pixels <= max_pixels:
            raise InputError("max_pixels", "max_pixels_low", minimum=self.min_pixels, value=max_pixels)
        # Every user text, the instruction included, is cut to the text budget.
        query = self.truncate(query)
        documents = [self.truncate(document) for document in documents]
        instruction = self.truncate(Item(text=instruction)).text
        query_images = [self.encode_image(image, max_pixels, digest) for image in query.images]
        # A query's clip is prepared once for the call; its pairs then run whole (no shared prefix: a video's
        # tokens are not split between a prefix and the tails).
        query_videos = [self.encode_video(query.video, max_pixels)] if query.video is not None else []

        # The template renders with slots in place of user text; the text goes back in as literal
        # text when tokenizing. Documents of the same shape share one rendering.
        slots = _Slots()
        query_slot = Item(text=slots(query.text), images=query.images, video=query.video)
        instruction_slot = slots(instruction)
        document_slot = slots("")
        followup_slots = (slots(followup[0]), slots(followup[1])) if followup is not None else None
        skeletons: dict[tuple[bool, int, bool], str] = {}
        prompts, pair_images, image_tokens, pair_videos = [], [], [], []
        encoded_images = self.encode_images([image for document in documents for image in document.images], max_pixels, digest)
        for document in documents:
            if on_document is not None:
                on_document()
            document_images = [next(encoded_images) for _ in document.images]
            images = query_images + document_images
            videos = query_videos + ([self.encode_video(document.video, max_pixels)] if document.video is not None else [])
            shape = (document.text is not None, len(document.images), document.video is not None)
            if shape not in skeletons:
                skeletons[shape] = self.render(
                    query_slot,
                    Item(text=document_slot if shape[0] else None, images=document.images, video=document.video),
                    instruction_slot,
                    followup_slots,
                )
            pair_videos.append(videos)
            prompts.append((skeletons[shape], {**slots.values, document_slot: document.text}))
            pair_images.append(images)
            image_tokens.append([self._token_count(image) for image in images])

        token_ids = self.literal.encode(
            prompts, image_tokens, [[v.token_ids for v in videos] for videos in pair_videos], self.video_token
        )
        query_image_tokens = sum(self._token_count(image) for image in query_images)
        pairs = []
        for ids, images, videos in zip(token_ids, pair_images, pair_videos):
            input_ids = torch.tensor(ids, dtype=torch.long)
            mm_token_type_ids = (input_ids == self.image_token_id).long()
            extra = {}
            if videos:
                mm_token_type_ids[input_ids == self.video_token_id] = 2  # the processor's mark for video tokens
                extra["video_grid_thw"] = torch.stack([video.grid_thw for video in videos])
                if videos[0].second_per_grid_t is not None:
                    extra["second_per_grid_ts"] = torch.tensor([video.second_per_grid_t for video in videos])
            grid = torch.stack([image.grid_thw for image in images]) if images else None
            position_ids, _ = self._rope_index(
                input_ids[None], mm_token_type_ids=mm_token_type_ids[None], image_grid_thw=grid, **extra
            )
            image_positions = torch.nonzero(mm_token_type_ids).flatten()
            document_start = (
                (int(image_positions[query_image_tokens]) if len(image_positions) > query_image_tokens else len(ids))
                if not query_videos
                else 0
            )
            pairs.append(
                EncodedPair(input_ids, mm_token_type_ids, position_ids[:, 0], images, len(query_images), document_start, videos)
            )
        return pairs

    def _token_count(self, image: EncodedImage) -> int:
        return int(image.grid_thw.prod()) // self.merge_length


def video_kwargs(processor, video, max_pixels: int | None = None) -> dict:
    """What the processor's video path is told of a sampled clip: its frames are the samples (no further
    sampling), their indices in the clip and its frame rate (Qwen3-VL's timestamps, Qwen2.5-VL's seconds per
    temporal patch come from them), each frame within the video processor's own pixel bounds (and `max_pixels`)."""
    from transformers.video_utils import VideoMetadata

    bounds = dict(processor.video_processor.size)
    if max_pixels is not None:
        bounds["longest_edge"] = max(bounds["shortest_edge"], min(bounds["longest_edge"], max_pixels))
    total = max(len(video.indices), round(video.duration * video.fps)) if video.fps else len(video.indices)
    width, height = video.frames[0].size
    kwargs = {
        "video_metadata": [
            VideoMetadata(
                total_num_frames=total,
                fps=video.fps,
                frames_indices=list(video.indices),
                duration=video.duration,
                width=width,
                height=height,
            )
        ],
        "do_sample_frames": False,
        "size": bounds,
    }
    if "cap_pixels_per_frame" in inspect.signature(processor.video_processor.resize).parameters:
        kwargs["cap_pixels_per_frame"] = True  # qwen-vl-utils' per-frame cap, transformers' coming default
    return kwargs


# Images prepared at once for one call (resized and cut into patches): enough to keep the pool busy, few
# enough that a Stop leaves little behind. The pool is shared by every call of the process.
AHEAD = 8
_POOL = None
_POOL_LOCK = threading.Lock()


PREPARE_WORKERS = min(4, os.cpu_count() or 1)  # 1: one image after another (the benchmark's "before")


def _workers() -> int:
    return PREPARE_WORKERS


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != PREPARE_WORKERS:
            _POOL = concurrent.futures.ThreadPoolExecutor(PREPARE_WORKERS, thread_name_prefix="lychee-images")
        return _POOL
