"""The lychee-rerank-mm prompt: system text and the chat messages of one pair (presets: `presets.py`).

The wording and the order of the content parts are the model's training format; a change here
changes every score.
"""

from __future__ import annotations

from ..contract import Item
from ..families import LYCHEE

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)

DEFAULT_INSTRUCTION = LYCHEE.default_instruction

DOCUMENT_MARKER = "\n<Document>:"


def _parts(item: Item) -> list[dict]:
    # Images before text, for the query and the document alike: the order the model was trained on (one
    # image); several go in the caller's order, each with its own vision tokens (docs/design.md).
    parts: list[dict] = [{"type": "image", "image": image} for image in item.images]
    if item.video is not None:  # after the images, before the text
        parts.append({"type": "video", "video": list(item.video.frames)})
    if item.text is not None:
        parts.append({"type": "text", "text": item.text})
    return parts


def query_parts(query: Item, instruction: str) -> list[dict]:
    """The user-turn content that every document of a request shares, up to `<Query>:` and the query."""
    return [{"type": "text", "text": f"<Instruct>: {instruction}"}, {"type": "text", "text": "<Query>:"}, *_parts(query)]


def document_parts(document: Item) -> list[dict]:
    return [{"type": "text", "text": DOCUMENT_MARKER}, *_parts(document)]


def build_messages(query: Item, document: Item, instruction: str) -> list[dict]:
    """Chat messages for one (query, document) pair, to render with the processor's chat template."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": query_parts(query, instruction) + document_parts(document)},
    ]
