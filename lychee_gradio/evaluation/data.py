"""Reading a labelled set: one query per line of a JSONL file (`lychee eval`, the Evaluate tab).

One query per line:
    {"query": "text" | {"text", "image"}, "documents": ["text" | {"text", "image"}, ...],
     "relevant": [0, 3]}                 # or graded: "labels": [2, 0, 0, 1, ...], one per document
     "instruction": "..."                # optional, this query's task
Image paths are relative to the data file; a document may be a PDF, `{"pdf": "paper.pdf"}` (scored by its best
page), or one page of it, `{"pdf": "paper.pdf#page=3"}`. The documents' order is the first-stage order (the
baseline). A bad line is a `BadLine` that carries the `InputError` naming the field at fault.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import InputError, LycheeError
from ..inputs import base64_image, is_data_url

DEFAULT_KS = (1, 5, 10)


@dataclass
class EvalQuery:
    line: int
    query: Any
    documents: list[Any]
    labels: list[int]
    instruction: str | None = None


class BadLine(LycheeError, ValueError):
    """A line of the set that cannot be evaluated: its number and the `InputError` saying why."""

    code = "bad_line"

    def __init__(self, line: int, error: InputError):
        super().__init__(None, "bad_line", line=line, reason=str(error))
        self.line, self.error = line, error

    def as_dict(self) -> dict:
        return {"line": self.line, "error": str(self)}


def _bad(line: int, code: str, **params: Any) -> BadLine:
    return BadLine(line, InputError(None, code, **params))


def _resolve(value: Any, base_dir: Path, field: str) -> Any:
    """A query or document of the data file, with its image path resolved inside `base_dir`.

    Image paths are relative to the data file's folder (or the uploaded zip's root) and must stay
    inside it, symlinks followed: an absolute, `~` or climbing path is refused before anything
    is looked up, so the answer never tells whether a file exists elsewhere on the server. An
    image given as data (a data URL, or base64 that decodes to an image) is data; every other
    string is a path and is checked, however long or odd.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise InputError(field, "eval_item")

    def resolved(image: Any, where: str) -> Any:
        if isinstance(image, str) and not is_data_url(image) and base64_image(image) is None:
            return str(_image_path(image, base_dir, where))
        if image is not None and not isinstance(image, str):
            raise InputError(where, "eval_image_value")
        return image

    if value.get("image") is not None:
        value = {**value, "image": resolved(value["image"], f"{field}.image")}
    if value.get("video") is not None:  # a clip: a path (or data), checked as an image's
        value = {**value, "video": resolved(value["video"], f"{field}.video")}
    if isinstance(value.get("pdf"), str) and not is_data_url(value["pdf"]):  # a PDF: a path, "paper.pdf#page=3" a page
        written, _, page = value["pdf"].partition("#page=")
        value = {**value, "pdf": _image_path(written, base_dir, f"{field}.pdf")}
        if page:
            if not page.isdigit() or int(page) < 1:
                raise InputError(f"{field}.pdf", "pdf_page_number", value=page[:20])
            value["page"] = int(page)
    if isinstance(value.get("images"), list):  # several images: each a path (or data), checked alike
        value = {**value, "images": [resolved(image, f"{field}.images[{k}]") for k, image in enumerate(value["images"])]}
    return value


def _image_path(written: str, base_dir: Path, field: str) -> Path:
    outside = InputError(field, "path_outside", path=repr(written[:80]))
    written = written.strip()
    if written.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", written) or "\0" in written:
        raise outside
    try:
        root = base_dir.resolve()
        path = (root / written).resolve()
        inside = path.is_relative_to(root)
        found = inside and path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, and the like: not a file here
        inside, found = True, False
    if not inside:
        raise outside
    if not found:
        raise InputError(field, "eval_image_missing", path=written[:200])
    return path


def parse_line(text: str, line: int, base_dir: Path) -> EvalQuery:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad(line, "bad_json", reason=error.msg, column=error.colno) from None
    if not isinstance(record, dict):
        raise _bad(line, "json_object")
    missing = [key for key in ("query", "documents") if key not in record]
    if missing:
        raise _bad(line, "missing_keys", keys=" and ".join(repr(k) for k in missing))
    documents = record["documents"]
    if not isinstance(documents, list) or not documents:
        raise _bad(line, "documents_list")
    if ("relevant" in record) == ("labels" in record):
        raise _bad(line, "relevant_or_labels")
    if "labels" in record:
        labels = record["labels"]
        if not isinstance(labels, list) or len(labels) != len(documents):
            raise _bad(line, "labels_count", count=len(documents))
        if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in labels):
            raise _bad(line, "labels_whole")
    else:
        relevant = record["relevant"]
        if not isinstance(relevant, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in relevant):
            raise _bad(line, "relevant_list")
        outside = [i for i in relevant if not 0 <= i < len(documents)]
        if outside:
            raise _bad(line, "relevant_range", last=len(documents) - 1, outside=outside)
        wanted = set(relevant)
        labels = [1 if i in wanted else 0 for i in range(len(documents))]
    instruction = record.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise _bad(line, "instruction_string")
    try:
        query = _resolve(record["query"], base_dir, "query")
        resolved = [_resolve(d, base_dir, f"documents[{i}]") for i, d in enumerate(documents)]
    except InputError as error:
        raise BadLine(line, error) from None
    return EvalQuery(line, query, resolved, labels, instruction)


def load_queries(path: Path, *, skip_bad: bool = False, base_dir: Path | None = None) -> tuple[list[EvalQuery], list[BadLine]]:
    """The file's queries, and the lines skipped (with `skip_bad`; otherwise the first bad line raises)."""
    base_dir = base_dir or path.parent
    queries, skipped = [], []
    for number, text in lines_of(path):
        try:
            queries.append(parse_line(text, number, base_dir))
        except BadLine as error:
            if not skip_bad:
                raise
            skipped.append(error)
    return queries, skipped


def lines_of(path: Path):
    """(number, text) of each line of the file that is not blank; a line that is not UTF-8 is a `BadLine`."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(number, "not_utf8") from None
            if text.strip():
                yield number, text


def parse_ks(text: str) -> list[int]:
    """Cutoffs from text like "1,5,10"; an `InputError` for anything else."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError("k", "cutoffs", text=repr(text)) from None
    if not ks or ks[0] < 1:
        raise InputError("k", "cutoffs_low")
    return ks
