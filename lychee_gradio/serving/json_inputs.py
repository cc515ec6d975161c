"""Reading a JSON request's query and documents into the values the request service takes: the one JSON
shape reader `/v1/rerank`, `/v1/explain` and the MCP tools share.

A query or document may be a string, a Jina-style `{"text", "image"}` object, or a vLLM-style
`{"content": [{"type": "text", ...}, {"type": "image_url", "image_url": {"url": ...}}]}`. Images
arrive as data URLs, plain base64 or (when the operator allows it) http(s) URLs. The URLs are
fetched first, asynchronously on the event loop (`image_urls.py`); then the request is read on a
worker thread and handed to the request service (`service.py`), which checks and decodes every image
under the request's limits. A file path is never read. Errors are `InputError`s naming the field, `documents[3].image`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ..config import Config
from ..contract import InputError, RequestContext
from ..inputs import base64_image, decode_image_data
from ..inputs.pdf import pdf_data
from .image_urls import FETCHES_PER_REQUEST, ImageFetcher, UrlPolicy


def url_policy(config: Config) -> UrlPolicy:
    return UrlPolicy(
        allow=config.allow_image_urls,
        allowed_hosts=tuple(config.allowed_image_hosts),
        timeout=config.image_url_timeout,
        max_bytes=config.limits.max_image_url_bytes,
    )


def image_fields(value: Any, field: str) -> list[tuple[str, Any]]:
    """The (field, image value) pairs of one query or document, in the request's shapes."""
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("content"), list):
        found = []
        for position, part in enumerate(value["content"]):
            where = f"{field}.content[{position}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("image_url", "video_url") and isinstance(part.get(kind), dict):
                found.append((f"{where}.{kind}.url", part[kind].get("url")))
            elif kind in ("image", "video"):
                found.append((f"{where}.{kind}", part.get(kind)))
        return found
    if isinstance(value.get("images"), list):
        found = [(f"{field}.images[{k}]", image) for k, image in enumerate(value["images"])]
    else:
        found = [(f"{field}.image", value["image"])] if value.get("image") is not None else []
    return found + ([(f"{field}.video", value["video"])] if value.get("video") is not None else [])


def request_images(
    query: Any, documents: list[Any], *, query_field: str = "query", field: str = "documents"
) -> list[tuple[str, Any]]:
    """Every (field, image value) of a request, the query's first."""
    return image_fields(query, query_field) + [pair for i, d in enumerate(documents) for pair in image_fields(d, f"{field}[{i}]")]


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def url_fetcher(config: Config, fetcher: ImageFetcher | None = None):
    """The request service's `fetch` for the JSON doors: `fetch_urls` under the server's policy, within each
    request's deadline."""
    fetcher = fetcher or ImageFetcher(url_policy(config))

    async def fetch(values: list[tuple[str, Any]], context: RequestContext, client: str = "-") -> dict[str, bytes]:
        loop = asyncio.get_running_loop()
        deadline = None if context.remaining() is None else loop.time() + context.remaining()
        return await fetch_urls(values, config, fetcher, deadline, client)

    return fetch


async def fetch_urls(
    values: list[tuple[str, Any]], config: Config, fetcher: ImageFetcher, deadline: float | None, client: str = "-"
) -> dict[str, bytes]:
    """The bytes of every image URL among the request's (field, value) pairs, by field.

    Without `--allow-image-urls` a URL is refused by name; with it, each is fetched under the
    policy (`image_urls.py`), all within the request's deadline (a loop time), at most
    `FETCHES_PER_REQUEST` at once. The first that fails ends the others (and so does the request's end:
    its fetches are its tasks), so a request holds no fetch slot after its answer.
    """
    urls = [(field, value.strip()) for field, value in values if _is_url(value)]
    if not urls:
        return {}
    if not config.allow_image_urls:
        raise InputError(urls[0][0], "image_urls_off")
    mine = asyncio.Semaphore(FETCHES_PER_REQUEST)

    async def one(field: str, url: str) -> bytes:
        async with mine:
            return await fetcher.fetch(url, field, deadline, client)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(field, url)) for field, url in urls]
    except* InputError as failed:
        raise failed.exceptions[0] from None
    return {field: task.result() for (field, _), task in zip(urls, tasks)}


def image_bytes(value: Any, field: str, fetched: dict[str, bytes] | None = None) -> bytes:
    """An image sent as JSON, as bytes: a data URL, base64, or an http(s) URL fetched beforehand.

    Base64 is tried before anything else is concluded: a JPEG's base64 starts with "/9j/", which
    looks like a path. What is neither image data nor a fetched URL is refused; file paths are
    never read.
    """
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, "image_value")
    value = value.strip()
    if _is_url(value):
        if fetched is None or field not in fetched:
            raise InputError(field, "image_urls_off")
        return fetched[field]
    if value.startswith("data:"):
        return decode_image_data(value, field)
    data = base64_image(value)
    if data is not None:
        return data
    if value.startswith(("/", "./", "../", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        raise InputError(field, "file_path_http")
    try:
        return decode_image_data(value, field)  # base64 of something else: decoding says what it is not
    except InputError:
        raise InputError(field, "not_image_data") from None


def request_item(value: Any, field: str, fetched: dict[str, bytes] | None = None) -> str | bytes | dict:
    """One query or document of a request, as the scorer takes it (images as bytes, not yet decoded)."""
    if isinstance(value, str) and value.lstrip().startswith("data:image/"):
        return image_bytes(value, field, fetched)  # a bare data URL can only be an image
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise InputError(field, "expected_string_or_object", type=type(value).__name__)
    if "content" in value:
        return _content_parts(value["content"], field, fetched)
    if not {"text", "image", "images", "video", "pdf"} & set(value):
        raise InputError(field, "object_keys")
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError(f"{field}.text", "expected_string", type=type(text).__name__)
    item: dict[str, Any] = {"text": text}
    if value.get("images") is not None:
        if value.get("image") is not None:
            raise InputError(field, "image_and_images")
        if not isinstance(value["images"], list):
            raise InputError(f"{field}.images", "images_list", type=type(value["images"]).__name__)
        item["images"] = [image_bytes(image, f"{field}.images[{k}]", fetched) for k, image in enumerate(value["images"])]
    elif value.get("image") is not None:
        item["image"] = image_bytes(value["image"], f"{field}.image", fetched)
    if value.get("video") is not None:
        item["video"] = video_bytes(value["video"], f"{field}.video", fetched)
    if value.get("pdf") is not None:
        item["pdf"] = pdf_bytes(value["pdf"], f"{field}.pdf")
    return item


def pdf_bytes(value: Any, field: str) -> bytes:
    """A PDF sent as JSON, as bytes: a data URL or base64 (read under the request's PDF limits by the service).
    File paths and URLs are never read."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, "pdf_value")
    value = value.strip()
    if _is_url(value) or value.startswith(("/", "./", "../", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        raise InputError(field, "pdf_value")
    return pdf_data(value, field)


def video_bytes(value: Any, field: str, fetched: dict[str, bytes] | None = None) -> bytes:
    """A video sent as JSON, as bytes: a data URL, base64, or an http(s) URL fetched beforehand (under the image
    URLs' rules). File paths are never read."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, "video_value")
    value = value.strip()
    if _is_url(value):
        if fetched is None or field not in fetched:
            raise InputError(field, "image_urls_off")
        return fetched[field]
    if value.startswith(("/", "./", "../", "~", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        raise InputError(field, "file_path_http")
    return decode_image_data(value, field)  # a data URL or base64: the bytes, whatever they hold


def _content_parts(parts: Any, field: str, fetched: dict[str, bytes] | None) -> dict:
    if not isinstance(parts, list):
        raise InputError(f"{field}.content", "content_list")
    texts, images, videos, pdfs = [], [], [], []
    for position, part in enumerate(parts):
        where = f"{field}.content[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "video_url" and isinstance(part.get("video_url"), dict):
            videos.append(video_bytes(part["video_url"].get("url"), f"{where}.video_url.url", fetched))
        elif kind == "video" and part.get("video") is not None:
            videos.append(video_bytes(part["video"], f"{where}.video", fetched))
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            images.append(image_bytes(part["image_url"].get("url"), f"{where}.image_url.url", fetched))
        elif kind == "image" and part.get("image") is not None:
            images.append(image_bytes(part["image"], f"{where}.image", fetched))
        elif kind == "file" and isinstance(part.get("file"), dict):  # OpenAI's file part: a PDF as a data URL
            pdfs.append(pdf_bytes(part["file"].get("file_data"), f"{where}.file.file_data"))
        else:
            raise InputError(where, "content_part")
    if len(videos) > 1:
        raise InputError(field, "one_video")
    if len(pdfs) > 1:
        raise InputError(field, "one_pdf")
    # Several image parts are the document's images in their order, then its video (the text parts joined,
    # after them).
    return {
        "text": "\n".join(texts) or None,
        **({"images": images} if images else {}),
        **({"video": videos[0]} if videos else {}),
        **({"pdf": pdfs[0]} if pdfs else {}),
    }


def text_of(item: str | bytes | dict) -> str:
    """The text part of a read query or document ("" for an image alone)."""
    if isinstance(item, str):
        return item
    return (item.get("text") or "") if isinstance(item, dict) else ""


def read_json(
    query: Any,
    documents: list[Any],
    fetched: dict[str, bytes] | None = None,
    *,
    query_field: str = "query",
    field: str = "documents",
) -> tuple[Any, list]:
    """The request's query and documents in the shapes the scorer takes (images as bytes, not yet decoded:
    the request service decodes them under its limits), errors naming `query_field` and `field[i]`. CPU work
    (base64): on a worker thread."""
    return request_item(query, query_field, fetched), [request_item(d, f"{field}[{i}]", fetched) for i, d in enumerate(documents)]
