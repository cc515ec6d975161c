"""Long and many-part documents, one rule for every door (docs/design.md, "Long documents").

A document becomes parts, each part is scored as a document of its own (pointwise, exactly as if it were sent
alone), and the document's score is its best part's; the answer names that part (`contract.Part`):

- a PDF (`Item.pages`): one part per page, the page's rendered image (with the document's text, and with the
  page's text layer where the server takes it);
- a clip of more than 64 sampled frames (read at one frame a second all the way, unless "truncate"): consecutive
  segments of 64 frames, each a clip of its own (its times and frame numbers counted from its first frame);
- a text longer than the chunk size (the model's text budget, or `--chunk-tokens` when smaller): chunks of at
  most that many tokens, cut at a paragraph, line, sentence or word boundary where there is one in the chunk's
  last quarter, each starting `overlap` tokens before the previous one ended (at a word's start); a chunk is the
  text `text[start:end]`, scored as that text alone would be, with the document's images and clip;
- anything else is one part, the whole document (it carries no `Part`).

What a caller chooses (`long_documents`): "max" (one row per document, its best part's score), "split" (one row
per part), "truncate" (no parts: a text is cut at the model's budget as before, a PDF is its first page) or
"refuse" (a document of several parts is refused, 413, naming it). Torch-free: the tokenizer's offsets come from
the scorer (`offsets(text)`: each token's [start, end) in `text`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from .contract import InputError, Item, PairScore, Part, Video
from .settings import LONG_DOCUMENTS
from .video import MAX_FRAMES

# Tokens each chunk repeats of the one before it, so that a sentence cut by a chunk's end is seen whole in the next.
DEFAULT_OVERLAP = 32
# How much of a chunk its end may move back to find a boundary (a quarter of the chunk).
_BOUNDARY_SHARE = 0.25
# Boundaries, best first: a paragraph, a line, a sentence's end (Latin and CJK), a word.
_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?;:][\"')\]]*\s|[。！？；]"), re.compile(r"\s"))

Offsets = Callable[[str], Sequence[tuple[int, int]]]


def check_mode(value: Any, field: str = "long_documents") -> str:
    """A caller's `long_documents` (None: "max")."""
    if value is None or value == "":
        return "max"
    if value not in LONG_DOCUMENTS:
        raise InputError(field, "long_documents", value=str(value)[:40], choices=", ".join(LONG_DOCUMENTS))
    return value


def check_query(query: Item, field: str = "query") -> None:
    """A query is one part: a PDF is a document only."""
    if query.pages is not None:
        raise InputError(field, "pdf_query")


@dataclass(frozen=True)
class Chunking:
    """How long texts are cut: `max_tokens` a chunk (at most the model's text budget), `overlap` tokens repeated,
    the tokenizer's `offsets`, and at most `max_parts` parts in one request (None: no limit)."""

    max_tokens: int
    offsets: Offsets
    overlap: int = DEFAULT_OVERLAP
    max_parts: int | None = None
    budget: int | None = None  # the model's text budget (where `max_tokens` is smaller, "truncate" cuts there)


def _boundary(text: str, low: int, high: int) -> int:
    """The end of the best boundary in text[low:high] (the last of the best kind), or `high` when there is none."""
    window = text[low:high]
    for pattern in _BOUNDARIES:
        ends = [match.end() for match in pattern.finditer(window)]
        if ends:
            return low + ends[-1]
    return high


def text_chunks(text: str, chunking: Chunking, field: str = "documents") -> list[tuple[int, int]] | None:
    """The [start, end) spans of `text`'s chunks (see the module's docstring), or None when it fits in one.
    Megabytes of text are tokenized a window at a time, never whole; past `max_parts` chunks it is refused."""
    limit, overlap = chunking.max_tokens, min(chunking.overlap, chunking.max_tokens // 4)
    if len(text) <= limit // 4 or len(text.encode("utf-8")) <= limit:  # byte-level BPE: a token is a byte or more
        return None
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        offsets = _window(text, start, limit, chunking.offsets)
        if len(offsets) <= limit:  # the rest fits
            if not spans:
                return None
            spans.append((start, len(text)))
            return spans
        hard = start + offsets[limit - 1][1]
        end = _boundary(text, start + offsets[int(limit * (1 - _BOUNDARY_SHARE))][1], hard)
        # A chunk alone may tokenize to a token more than its offsets in the longer window said: cut it back.
        while len(chunking.offsets(text[start:end])) > limit:
            end = _boundary(text, start, end - 1) if end - 1 > start else start + offsets[limit // 2][1]
        spans.append((start, end))
        if chunking.max_parts is not None and len(spans) >= chunking.max_parts:
            raise InputError(field, "too_many_parts", limit=chunking.max_parts)
        inside = sum(1 for _, token_end in offsets if start + token_end <= end)  # the tokens of the chunk
        following = max(inside - overlap, max(1, inside // 2))
        next_start = start + offsets[following][0] if following < len(offsets) else end
        # Start the overlap at a word: past the whitespace the token begins with.
        while next_start < end and text[next_start].isspace():
            next_start += 1
        start = max(next_start, spans[-1][0] + 1)


def _window(text: str, start: int, limit: int, offsets: Offsets) -> Sequence[tuple[int, int]]:
    """The token offsets of a window of `text` from `start` that holds more than `limit` tokens, or of the rest of
    it: a few characters a token are read, doubled until enough (megabytes are never tokenized whole)."""
    chars = limit * 8
    while True:
        window = text[start : start + chars]
        found = offsets(window)
        if len(found) > limit or start + len(window) >= len(text):
            return found
        chars *= 2


def cut_text(text: str, chunking: Chunking) -> str:
    """`text` cut at the end of its `chunking.max_tokens`-th token (the engine's rule, at another length)."""
    offsets = _window(text, 0, chunking.max_tokens, chunking.offsets)
    return text[: offsets[chunking.max_tokens - 1][1]] if len(offsets) > chunking.max_tokens else text


@dataclass(frozen=True)
class Parted:
    """A request's documents as parts: `items` (every part of every document, in order), and for each document
    the range of its parts in `items` with each part's `Part` (None for a whole document)."""

    items: list[Item]
    ranges: list[range]
    parts: list[Part | None]

    def _split(self) -> list[range]:
        return [span for span in self.ranges if len(span) > 1 or self.parts[span.start] is not None]

    @property
    def split(self) -> int:
        """Documents that became parts."""
        return len(self._split())

    @property
    def split_parts(self) -> int:
        """The parts of the documents that became parts."""
        return sum(len(span) for span in self._split())


def parts_of(documents: Sequence[Item], mode: str, chunking: Chunking | None, field: str = "documents", fields=None) -> Parted:
    """The documents as parts under `mode` (see the module's docstring). `chunking`: None where the scorer cannot
    count tokens (then texts are cut at the budget, as with "truncate")."""
    items: list[Item] = []
    ranges: list[range] = []
    parts: list[Part | None] = []
    for index, document in enumerate(documents):
        where = fields[index] if fields is not None else f"{field}[{index}]"
        found = _parts(document, mode, chunking, where)
        if mode == "refuse" and len(found) > 1:
            raise InputError(where, "long_document", parts=len(found), kind=found[0][1].kind + "s")
        ranges.append(range(len(items), len(items) + len(found)))
        for item, part in found:
            items.append(item)
            parts.append(part)
        if chunking is not None and chunking.max_parts is not None and len(items) > chunking.max_parts:
            raise InputError(where, "too_many_parts", limit=chunking.max_parts)
    return Parted(items, ranges, parts)


def _parts(document: Item, mode: str, chunking: Chunking | None, field: str) -> list[tuple[Item, Part | None]]:
    if document.pages is not None:
        pages = document.pages
        chosen = range(1) if mode == "truncate" else range(len(pages.images))
        found = []
        for k in chosen:
            texts = [text for text in (document.text, pages.texts[k] if pages.texts else None) if text]
            page_item = Item(text="\n\n".join(texts) or None, images=(*document.images, pages.images[k]))
            found.append((page_item, Part("page", k, len(pages.images), page=pages.numbers[k])))
        return found
    if document.video is not None and len(document.video.frames) > MAX_FRAMES:
        return [(replace(document, video=clip), part) for clip, part in segments_of(document.video)]
    if document.text is None or chunking is None:
        return [(document, None)]
    if mode == "truncate":
        if chunking.budget is not None and chunking.max_tokens < chunking.budget:  # a caller's own length
            return [(Item(text=cut_text(document.text, chunking), images=document.images, video=document.video), None)]
        return [(document, None)]  # the engine cuts at the model's budget (and says so: `PairScore.truncated`)
    spans = text_chunks(document.text, chunking, field)
    if spans is None:
        return [(document, None)]
    return [
        (
            Item(text=document.text[start:end], images=document.images, video=document.video),
            Part("chunk", k, len(spans), chars=(start, end)),
        )
        for k, (start, end) in enumerate(spans)
    ]


def segments_of(video: Video) -> list[tuple[Video, Part]]:
    """A long clip's consecutive segments of `MAX_FRAMES` frames, each a clip of its own, with its [start, end)
    seconds in the whole clip."""
    count = math.ceil(len(video.frames) / MAX_FRAMES)
    found = []
    for k in range(count):
        a, b = k * MAX_FRAMES, min(len(video.frames), (k + 1) * MAX_FRAMES)
        frames, times, indices = list(video.frames[a:b]), list(video.timestamps[a:b]), list(video.indices[a:b])
        if len(frames) % 2:  # the model's temporal patch is 2 frames (video.py, rule 4)
            frames, times, indices = frames + frames[-1:], times + times[-1:], indices + indices[-1:]
        start = times[0]
        end = video.timestamps[b] if b < len(video.frames) else max(video.duration, times[-1])
        clip = Video(
            tuple(frames), tuple(t - start for t in times), tuple(i - indices[0] for i in indices), video.fps, end - start
        )
        found.append((clip, Part("segment", k, count, seconds=(start, end))))
    return found


def best_of(parted: Parted, scores: Sequence[PairScore | None]) -> list[PairScore | None]:
    """Each document's score: its best part's (the first of equals), naming the part, with every part's score.
    A document with a part not scored (None: a stopped call's) has none."""
    answers: list[PairScore | None] = []
    for span in parted.ranges:
        if any(i >= len(scores) or scores[i] is None for i in span):
            answers.append(None)
            continue
        own = [replace(scores[i], part=parted.parts[i]) for i in span]
        if len(own) == 1 and own[0].part is None:
            answers.append(own[0])
            continue
        answers.append(replace(own[best_index(own)], tokens=sum(p.tokens for p in own), parts=tuple(own)))
    return answers


def best_index(scores: Sequence[PairScore]) -> int:
    """Which of a document's parts is its best: the highest score, the first of equals."""
    return max(range(len(scores)), key=lambda k: (scores[k].score, -k))


def rows(pairs: Sequence[PairScore], mode: str) -> list[tuple[int, PairScore]]:
    """(document index, score) rows of a rerank: one a document, or with "split" one a part."""
    if mode != "split":
        return list(enumerate(pairs))
    return [(index, part) for index, pair in enumerate(pairs) for part in (pair.parts or (pair,))]
