"""The settings every door shares, in one object: `Config` (limits, request timeout, caches, API key,
image URLs), built by the CLI (`lychee load`) and by the Ray-native entry point (`serve_app`) from
the defaults written here, and handed to the page, `/v1/rerank` and MCP alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .contract import InputError


@dataclass(frozen=True)
class Limits:
    """Input limits that every door enforces alike: the page, the Gradio API, MCP, /v1/rerank and Evaluate."""

    max_documents: int = 200  # documents (or images) per request
    max_image_pixels: int = 50_000_000  # width x height of one image, checked before it is decoded
    # Decoded pixels of all the images of one request together (each image decoded straight down to
    # the model's pixel bound first): 400 M is 200 photos of 2 megapixels, about 1.2 GB as RGB.
    max_request_pixels: int = 400_000_000
    # Memory held by the images of every request in flight together, their decoded pixels and the model's
    # patches of them (inputs.image_memory): past it, a request waits for others to finish, up to its own
    # deadline. 2 GB: about two requests of 32 large photos at the model's full pixel bound.
    image_memory_in_flight: int = 2 * 2**30
    max_body_bytes: int = 64 * 2**20  # one /v1/rerank or MCP request body
    max_upload_bytes: int = 64 * 2**20  # one file uploaded through the page or the Gradio API
    max_upload_request_bytes: int = 1024 * 2**20  # all the files of one upload request together
    # What uploads may hold on disk while they are kept (temp_file_minutes): from everyone, from one address.
    upload_space_bytes: int = 8 * 2**30
    upload_client_bytes: int = 2 * 2**30
    # One explanation: changed pairs scored (image cells and text segments together), and each text's length.
    max_explain_variants: int = 256
    max_explain_text_chars: int = 32_768
    # return_documents: each document's text is echoed up to this many characters.
    max_echo_chars: int = 32_768
    max_zip_bytes: int = 2 * 2**30  # what an uploaded evaluation zip unpacks to
    max_zip_members: int = 20_000  # files (and folders) in an uploaded evaluation zip

    def check_documents(self, count: int, field: str = "documents") -> None:
        if count > self.max_documents:
            raise InputError(field, "too_many", count=count, limit=self.max_documents)


@dataclass(frozen=True)
class Config:
    """What every door shares. `lychee load` builds it from its flags, `serve_app` from its `args`,
    both from these defaults (`Config.from_options`)."""

    limits: Limits = Limits()
    request_timeout: float | None = 300.0  # seconds a request may wait and run; then 504 (None: no limit)
    api_key: str | None = None  # every door but /health, /ready, /metrics needs it when set
    cache_size: int = 200_000  # pair scores kept to answer repeats (0: off)
    # Whose repeats the score cache answers: "user" (each API key, each page session, each address without a
    # key: no caller learns from answer times what another asked), "global" (everyone's), "request" (none).
    cache_scope: str = "user"
    image_cache_mb: int = 1024  # processed images kept for images ranked again (0: off)
    allow_image_urls: bool = False  # /v1/rerank and MCP fetch http(s) images (public addresses only)
    allowed_image_hosts: tuple[str, ...] = ()  # fetched even if private (an internal CDN)
    image_url_timeout: float = 10.0  # seconds for one URL, all of it: lookup, redirects, body
    max_image_url_bytes: int = 20 * 2**20
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides localhost, the bound address, the machine's
    allowed_origins: tuple[str, ...] = ()  # browser origins of other sites that may call the API (CORS)
    temp_file_minutes: float = 60.0  # uploads, results to download and their copies are deleted after this
    header_timeout: float = 10.0  # seconds a connection has to send its request's headers (then 408)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Config":
        """A config from flat options (`serve run ... key=value` or a Serve config's `args`): any field of
        `Config` or `Limits` by name, strings converted to the field's type; other keys are ignored."""
        limits = {f.name: _parse(options[f.name], f.type) for f in dataclasses.fields(Limits) if f.name in options}
        values: dict[str, Any] = {"limits": Limits(**limits)}
        for f in dataclasses.fields(cls):
            if f.name != "limits" and f.name in options:
                values[f.name] = _parse(options[f.name], f.type)
        if values.get("request_timeout") == 0:
            values["request_timeout"] = None
        return cls(**values)


CACHE_SCOPES = ("user", "global", "request")


def cache_scope(config: Config, identity: str) -> str | None:
    """The `RequestContext.cache_scope` of a request from `identity` (e.g. "key:...", "session:...")."""
    if config.cache_scope == "global":
        return ""
    if config.cache_scope == "request":
        return None
    return identity


def caller_identity(headers: Any, client: str) -> str:
    """Who a request to the JSON API (or MCP) is, for the score cache: its API key (hashed), or its address."""
    import hashlib

    authorization = headers.get("authorization") or ""
    if authorization:
        return "key:" + hashlib.blake2b(authorization.encode("utf-8", "replace"), digest_size=12).hexdigest()
    return f"address:{client}"


def _parse(value: Any, kind: str) -> Any:
    """`value` (perhaps a string from a command line) as a field of type `kind` (its annotation, as text)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none") and "None" in kind):
        return None
    if kind.startswith("bool"):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    if kind.startswith("tuple"):
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("float"):
        return float(value)
    return str(value)
