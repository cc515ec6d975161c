"""The lychee-rerank-mm prompt: system text, instruction presets, and the chat messages of one pair.

The wording and the order of the content parts are the model's training format; a change here
changes every score.
"""

from __future__ import annotations

from .families import LYCHEE
from .inputs import Item, check_text

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)

DEFAULT_INSTRUCTION = LYCHEE.default_instruction

# Ready-made instructions for the common tasks; users may also type their own.
INSTRUCTION_PRESETS: dict[str, str] = {
    "Web search": DEFAULT_INSTRUCTION,
    "E-commerce": (
        "Given a product image and description, determine if the description accurately reflects "
        "the visual features and key attributes of the product."
    ),
    "Product search": (
        "Given a product search query, rank images by how well the visual content and textual "
        "description match the user's requirements for color, pattern, fit, and style."
    ),
    "Academic figures": (
        "Given a scientific question, retrieve the figure or table that contains the exact quantitative result."
    ),
    "Education": (
        "Given a student's question image and a textbook paragraph, assess whether the paragraph "
        "provides a complete solution to the question."
    ),
    "Design assets": (
        "Given a design reference image and an asset description, evaluate if the asset matches the "
        "style, composition, and core elements of the reference."
    ),
}

DOCUMENT_MARKER = "\n<Document>:"


def resolve_instruction(instruction: str | None, default: str = DEFAULT_INSTRUCTION) -> str:
    """`None` or blank means the model's default instruction; anything else must be a string."""
    if instruction is None:
        return default
    if not isinstance(instruction, str):
        raise ValueError(f"instruction: expected a string, got {type(instruction).__name__}")
    return check_text(instruction, "instruction").strip() or default


def _parts(item: Item) -> list[dict]:
    # Image before text, for the query and the document alike: the order the model was trained on.
    parts: list[dict] = []
    if item.image is not None:
        parts.append({"type": "image", "image": item.image})
    if item.text is not None:
        parts.append({"type": "text", "text": item.text})
    return parts


def query_parts(query: Item, instruction: str) -> list[dict]:
    """The user-turn content that every document of a request shares, up to `<Query>:` and the query."""
    return [
        {"type": "text", "text": f"<Instruct>: {instruction}"},
        {"type": "text", "text": "<Query>:"},
        *_parts(query),
    ]


def document_parts(document: Item) -> list[dict]:
    return [{"type": "text", "text": DOCUMENT_MARKER}, *_parts(document)]


def build_messages(query: Item, document: Item, instruction: str) -> list[dict]:
    """Chat messages for one (query, document) pair, to render with the processor's chat template."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": query_parts(query, instruction) + document_parts(document)},
    ]
