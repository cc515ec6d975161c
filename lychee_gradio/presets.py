"""Ready-made instructions for the common tasks (the page's preset menu); users may also type their own.

Torch-free: the page shows them, the engine's prompt puts whichever instruction it is given.
"""

from __future__ import annotations

from .families import LYCHEE

DEFAULT_INSTRUCTION = LYCHEE.default_instruction

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
