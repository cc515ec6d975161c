"""What the doors share, from the settings table: `Limits` (the same on every door) and `Config` (limits, timeout,
key, caches, URLs, hosts), the loader's options, the page's concurrency, and whose score cache a request reads.
Every default comes from the table (`settings.SETTINGS`); torch-free, no I/O but the API key's file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import InputError
from .settings import MB, SETTINGS, default_of, parse_options

# Page (and gradio_client) requests one model replica works on at once when passes are shared.
CALLS_PER_REPLICA = 8


# -- what the doors share ------------------------------------------------------------------------------------


def _mb(name: str) -> int:
    return int(default_of(name) * MB)


@dataclass(frozen=True)
class Limits:
    """Input limits that every door enforces alike (the page, the Gradio API, MCP, /v1/*, Evaluate), in bytes
    where the table says MB. Defaults: `SETTINGS`."""

    max_documents: int = default_of("max_documents")
    max_image_pixels: int = default_of("max_image_pixels")
    max_images_per_item: int = default_of("max_images_per_item")
    max_video_seconds: float = default_of("max_video_seconds")
    max_video_bytes: int = _mb("max_video_mb")
    max_pdf_pages: int = default_of("max_pdf_pages")
    max_pdf_bytes: int = _mb("max_pdf_mb")
    max_parts: int = default_of("max_parts")
    pdf_text: bool = default_of("pdf_text")  # how every door reads a PDF: a page's text layer with its image
    max_request_pixels: int = default_of("max_request_pixels")
    image_memory_in_flight: int = _mb("image_memory_mb")
    image_memory_wait: float = default_of("image_memory_wait")
    max_body_bytes: int = _mb("max_body_mb")
    max_upload_bytes: int = _mb("max_upload_mb")
    max_upload_request_bytes: int = _mb("max_upload_request_mb")
    upload_space_bytes: int = _mb("upload_space_mb")
    upload_client_bytes: int = _mb("upload_client_mb")
    max_image_url_bytes: int = _mb("max_image_url_mb")
    max_explain_variants: int = default_of("max_explain_variants")
    max_explain_text_chars: int = default_of("max_explain_text_chars")
    max_echo_chars: int = default_of("max_echo_chars")
    max_zip_bytes: int = _mb("max_zip_mb")
    max_zip_members: int = default_of("max_zip_members")

    def check_documents(self, count: int, field: str = "documents") -> None:
        if count > self.max_documents:
            raise InputError(field, "too_many", count=count, limit=self.max_documents)


@dataclass(frozen=True)
class Config:
    """What every door shares (`doors` and `limits` of the table). Defaults: `SETTINGS`."""

    limits: Limits = Limits()
    request_timeout: float | None = default_of("request_timeout")  # None: no limit
    api_key: str | None = None
    cache_size: int = default_of("cache_size")
    cache_scope: str = default_of("cache_scope")
    allow_image_urls: bool = default_of("allow_image_urls")
    allowed_image_hosts: tuple[str, ...] = ()
    image_url_timeout: float = default_of("image_url_timeout")
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    temp_file_minutes: float = default_of("temp_file_minutes")
    header_timeout: float = default_of("header_timeout")
    long_documents: str = default_of("long_documents")
    chunk_tokens: int | None = default_of("chunk_tokens")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "Config":
        """A config from the table's values by name (missing ones: their defaults)."""
        value = {setting.name: values.get(setting.name, default_of(setting.name)) for setting in SETTINGS}
        limits = Limits(
            max_documents=value["max_documents"],
            max_image_pixels=value["max_image_pixels"],
            max_images_per_item=value["max_images_per_item"],
            max_video_seconds=value["max_video_seconds"],
            max_video_bytes=int(value["max_video_mb"] * MB),
            max_pdf_pages=value["max_pdf_pages"],
            max_pdf_bytes=int(value["max_pdf_mb"] * MB),
            max_parts=value["max_parts"],
            pdf_text=value["pdf_text"],
            max_request_pixels=value["max_request_pixels"],
            image_memory_in_flight=int(value["image_memory_mb"] * MB),
            image_memory_wait=value["image_memory_wait"],
            max_body_bytes=int(value["max_body_mb"] * MB),
            max_upload_bytes=int(value["max_upload_mb"] * MB),
            max_upload_request_bytes=int(value["max_upload_request_mb"] * MB),
            upload_space_bytes=int(value["upload_space_mb"] * MB),
            upload_client_bytes=int(value["upload_client_mb"] * MB),
            max_image_url_bytes=int(value["max_image_url_mb"] * MB),
            max_explain_variants=value["max_explain_variants"],
            max_explain_text_chars=value["max_explain_text_chars"],
            max_echo_chars=value["max_echo_chars"],
            max_zip_bytes=int(value["max_zip_mb"] * MB),
            max_zip_members=value["max_zip_members"],
        )
        return cls(
            limits=limits,
            request_timeout=value["request_timeout"] or None,
            api_key=api_key_of(value),
            cache_size=value["cache_size"],
            cache_scope=value["cache_scope"],
            allow_image_urls=value["allow_image_urls"],
            allowed_image_hosts=tuple(value["allowed_image_hosts"]),
            image_url_timeout=value["image_url_timeout"],
            allowed_hosts=tuple(value["allowed_hosts"]),
            allowed_origins=tuple(value["allowed_origins"]),
            temp_file_minutes=value["temp_file_minutes"],
            header_timeout=value["header_timeout"],
            long_documents=value["long_documents"],
            chunk_tokens=value["chunk_tokens"],
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Config":
        """A config from flat options as strings or values (`serve run ... key=value`, a Serve config's args)."""
        return cls.from_values(parse_options(options))


def api_key_of(values: Mapping[str, Any]) -> str | None:
    """The API key: --api-key-file's first line, else --api-key (or $LYCHEE_API_KEY)."""
    path = values.get("api_key_file")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() or None
    return values.get("api_key") or None


def load_options(values: Mapping[str, Any], *, cache: bool = True) -> dict[str, Any]:
    """`LycheeScorer.load`'s keyword arguments from the table's values (`model` section, and the score cache
    when the engine keeps it: `cache=False` for Ray replicas, whose cache sits in front of them)."""
    value = {setting.name: values.get(setting.name, default_of(setting.name)) for setting in SETTINGS}
    return {
        "device": value["device"],
        "dtype": value["dtype"],
        "max_pixels": value["max_pixels"],
        "batch_size": value["batch_size"],
        "max_batch_tokens": value["max_batch_tokens"],
        "cache_size": value["cache_size"] if cache else 0,
        "image_cache_bytes": int(value["image_cache_mb"] * MB),
        "batch_across_requests": value["batch_across_requests"],
        "max_batch_wait_ms": value["max_batch_wait_ms"],
        "quantize": value["quantize"],
        "check_memory": value["check_memory"],
    }


def page_concurrency(values: Mapping[str, Any], replicas: int = 1) -> int:
    """Page requests the models work on at once: one per replica, or CALLS_PER_REPLICA when passes are shared."""
    per_replica = CALLS_PER_REPLICA if values.get("batch_across_requests", True) else 1
    return replicas * per_replica


# -- the score cache's scope ----------------------------------------------------------------------------------------


def cache_scope(config: Config, identity: str) -> str | None:
    """The `RequestContext.cache_scope` of a request from `identity` (e.g. "key:...", "session:...")."""
    if config.cache_scope == "global":
        return ""
    if config.cache_scope == "request":
        return None
    return identity


def caller_identity(headers: Any, client: str) -> str:
    """Who a request to the JSON API (or MCP) is, for the score cache: its API key (hashed), or its address."""
    authorization = headers.get("authorization") or ""
    if authorization:
        return "key:" + hashlib.blake2b(authorization.encode("utf-8", "replace"), digest_size=12).hexdigest()
    return f"address:{client}"


__all__ = ["Limits", "Config", "api_key_of", "load_options", "page_concurrency", "cache_scope", "caller_identity"]
