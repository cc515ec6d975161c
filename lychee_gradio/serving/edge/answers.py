"""The edge's answers: one error shape for every refusal, and whether a request carries the key."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.responses import JSONResponse

from ...contract import LycheeError


def has_api_key(headers, api_key: str) -> bool:
    """Whether ASGI `headers` carry `Authorization: Bearer <api_key>` (compared in constant time)."""
    header = dict(headers).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())


def error_response(
    error: LycheeError, *, headers: dict | None = None, request_id: str | None = None, extra: dict | None = None
) -> JSONResponse:
    """The JSON error body of every door: `{"message", "field", "code", "id"}` with the error's own status (and a
    dialect's own keys beside them, `extra`)."""
    content: dict[str, Any] = {**error.as_dict(), **({"id": request_id} if request_id else {}), **(extra or {})}
    return JSONResponse(status_code=error.status, content=content, headers=headers)
