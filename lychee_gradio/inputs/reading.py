"""A request's query and documents read as items under its limits (the request service's reader: `Request.read`, and
`lychee eval` through `Request.evaluate`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..config import Limits
from ..contract import Item, RequestContext
from .items import to_item
from .memory import admit_images, request_rules


def read_items(
    limits: Limits,
    context: RequestContext,
    query: Any,
    documents: Sequence[Any],
    keep_pixels: int,
    field: str = "documents",
    on_read: Callable[[int, int], None] | None = None,
    query_field: str = "query",
    fields: Sequence[str] | None = None,
    documents_in_flight: int | None = None,
    clip_segments: bool = False,
) -> tuple[Item, list[Item]]:
    """A request's query and documents (plain values: text, `{"text", "image"}`, image bytes or an upload's
    path, an `Item`) as scorer items, under `limits`: the number of documents, then every image's pixels
    from its header, its share of the image memory pool (all at once), decoding down to `keep_pixels`.
    What it admitted goes back when `context` closes; `on_read(done, total)` after each document. CPU work:
    never on an event loop."""
    if fields is None:
        limits.check_documents(len(documents), field)  # `fields` (each document's own name): counted by the door
    rules = request_rules(limits, keep_pixels, context, clip_segments)
    names = [query_field, *(fields if fields is not None else [f"{field}[{i}]" for i in range(len(documents))])]
    admit_images([query, *documents], rules, field, documents_in_flight, names)
    query_item = to_item(query, query_field, rules=rules)
    items = []
    for i, document in enumerate(documents):
        items.append(to_item(document, fields[i] if fields is not None else f"{field}[{i}]", rules=rules))
        if on_read is not None:
            on_read(i + 1, len(documents))
    return query_item, items
