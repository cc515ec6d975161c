"""Turning what callers pass (text, images in many forms, clips, dicts of them) into one `Item` type.

Everything past this package works on `Item` only. Errors are `contract.InputError`s that name the field they
come from (`query`, `documents[3]`, `documents[3].image`) so a caller with 50 documents knows which one to fix.
Torch-free: every door normalises here, once, at its edge. One job a module:

- `images`: decoding one image (formats, forms, decoded straight down, modes) and `ImageRules`;
- `memory`: the image memory pool, a request's share of it and its pixel budget, `request_rules`;
- `items`: `to_item` / `to_items`, text checks, the instruction;
- `reading`: a request's query and documents read under its limits (`read_items`).
"""

from ..contract import Item
from .images import (
    IMAGE_FORMATS,
    MAX_ASPECT_RATIO,
    NO_RULES,
    ImageRules,
    base64_image,
    decode_image_data,
    is_data_url,
    load_image,
    open_image,
    reduction_factor,
)
from .items import PASSTHROUGH_KEYS, check_text, read_video, resolve_instruction, to_item, to_items
from .memory import (
    DECODED_BYTES_PER_PIXEL,
    PATCH_BYTES_PER_PIXEL,
    RETURN_MEMORY_AFTER_BYTES,
    RETURN_MEMORY_AFTER_PIXELS,
    ImageMemoryPool,
    PixelBudget,
    admit_images,
    image_memory,
    image_memory_pool,
    image_pixels,
    request_rules,
    return_memory,
)
from .reading import read_items

__all__ = [
    "Item",
    "ImageRules",
    "PixelBudget",
    "ImageMemoryPool",
    "load_image",
    "to_item",
    "to_items",
    "check_text",
    "resolve_instruction",
    "base64_image",
    "decode_image_data",
    "open_image",
    "is_data_url",
    "IMAGE_FORMATS",
    "MAX_ASPECT_RATIO",
    "NO_RULES",
    "PASSTHROUGH_KEYS",
    "read_video",
    "reduction_factor",
    "DECODED_BYTES_PER_PIXEL",
    "PATCH_BYTES_PER_PIXEL",
    "RETURN_MEMORY_AFTER_BYTES",
    "RETURN_MEMORY_AFTER_PIXELS",
    "admit_images",
    "image_memory",
    "image_memory_pool",
    "image_pixels",
    "request_rules",
    "return_memory",
    "read_items",
]
