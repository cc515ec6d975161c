"""What the doors share, from the settings table: `Limits` (the same on every door) and `Config` (limits, timeout,
key, caches, URLs, hosts), the loader's options, the page's concurrency, and whose score cache a request reads.
Every default comes from the table (`settings.SETTINGS`); torch-free, no I/O but the API key's file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from .errors import InputError
from .settings import MB, SETTINGS, default_of, parse_options

# Page (and gradio_client) requests one model replica works on at once when passes are shared.
CALLS_PER_REPLICA = 8


# -- what the doors share ------------------------------------------------------------------------------------


def _setting(name: str) -> Any:
    """A field that holds the table's setting `name`: its default, in bytes where the table says MB. `from_values`
    reads the field's setting by this name: each is written once, here."""
    return field(default=_converted(name, default_of(name)), metadata={"setting": name})


def _converted(name: str, value: Any) -> Any:
    """A setting's value as the doors hold it: bytes for MB, a tuple for a list."""
    if name.endswith("_mb") and value is not None:
        return int(value * MB)
    return tuple(value) if isinstance(value, list) else value


def _from_table(cls, value: Mapping[str, Any], **given: Any):
    """`cls` (Limits, Config) with each field that names a setting read from `value`, and `given` for the rest."""
    read = {
        f.name: _converted(f.metadata["setting"], value[f.metadata["setting"]]) for f in fields(cls) if "setting" in f.metadata
    }
    return cls(**read, **given)


@dataclass(frozen=True)
class Limits:
    """Input limits that every door enforces alike (the page, the Gradio API, MCP, /v1/*, Evaluate), in bytes
    where the table says MB. Defaults: `SETTINGS`."""

    max_documents: int = _setting("max_documents")
    max_image_pixels: int = _setting("max_image_pixels")
    max_images_per_item: int = _setting("max_images_per_item")
    max_video_seconds: float = _setting("max_video_seconds")
    max_video_bytes: int = _setting("max_video_mb")
    max_pdf_pages: int = _setting("max_pdf_pages")
    max_pdf_bytes: int = _setting("max_pdf_mb")
    max_parts: int = _setting("max_parts")
    pdf_text: bool = _setting("pdf_text")  # how every door reads a PDF: a page's text layer with its image
    max_request_pixels: int = _setting("max_request_pixels")
    image_memory_in_flight: int = _setting("image_memory_mb")
    image_memory_wait: float = _setting("image_memory_wait")
    max_body_bytes: int = _setting("max_body_mb")
    max_upload_bytes: int = _setting("max_upload_mb")
    max_upload_request_bytes: int = _setting("max_upload_request_mb")
    upload_space_bytes: int = _setting("upload_space_mb")
    upload_client_bytes: int = _setting("upload_client_mb")
    max_image_url_bytes: int = _setting("max_image_url_mb")
    max_explain_variants: int = _setting("max_explain_variants")
    max_explain_text_chars: int = _setting("max_explain_text_chars")
    max_echo_chars: int = _setting("max_echo_chars")
    max_zip_bytes: int = _setting("max_zip_mb")
    max_zip_members: int = _setting("max_zip_members")

    def check_documents(self, count: int, field: str = "documents") -> None:
        if count > self.max_documents:
            raise InputError(field, "too_many", count=count, limit=self.max_documents)


@dataclass(frozen=True)
class Config:
    """What every door shares (`doors` and `limits` of the table). Defaults: `SETTINGS`."""

    limits: Limits = Limits()
    request_timeout: float | None = _setting("request_timeout")  # None: no limit
    api_key: str | None = None
    cache_size: int = _setting("cache_size")
    cache_scope: str = _setting("cache_scope")
    allow_image_urls: bool = _setting("allow_image_urls")
    allowed_image_hosts: tuple[str, ...] = _setting("allowed_image_hosts")
    image_url_timeout: float = _setting("image_url_timeout")
    allowed_hosts: tuple[str, ...] = _setting("allowed_hosts")
    allowed_origins: tuple[str, ...] = _setting("allowed_origins")
    temp_file_minutes: float = _setting("temp_file_minutes")
    header_timeout: float = _setting("header_timeout")
    long_documents: str = _setting("long_documents")
    chunk_tokens: int | None = _setting("chunk_tokens")
    calibration: tuple[str, ...] = _setting("calibration")  # the files: the request service reads them

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "Config":
        """A config from the table's values by name (missing ones: their defaults)."""
        value = {setting.name: values.get(setting.name, default_of(setting.name)) for setting in SETTINGS}
        config = _from_table(cls, value, limits=_from_table(Limits, value), api_key=api_key_of(value))
        return replace(config, request_timeout=config.request_timeout or None)  # 0: no limit

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
    """`LycheeScorer.load`'s keyword arguments from the table's values: every setting of the `model` section by its
    name (`image_cache_mb` as `image_cache_bytes`), and the score cache when the engine keeps it (`cache=False` for
    Ray replicas, whose cache sits in front of them)."""
    value = {setting.name: values.get(setting.name, default_of(setting.name)) for setting in SETTINGS}
    options = {
        setting.name.removesuffix("_mb") + ("_bytes" if setting.name.endswith("_mb") else ""): _converted(
            setting.name, value[setting.name]
        )
        for setting in SETTINGS
        if setting.section == "model" and setting.name != "model"
    }
    return {**options, "cache_size": value["cache_size"] if cache else 0}


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
