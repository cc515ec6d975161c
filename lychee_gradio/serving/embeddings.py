"""`POST /v1/embeddings` (OpenAI's shape) and TEI's `POST /embed`: the served embedding model (`--embedding-model`).

OpenAI's `input` is a string or a list of them; here a list item may also be one of our item objects (`{"text",
"image", "images", "video"}`, images as base64 or data URLs, as /v1/rerank's documents) or vLLM's multimodal
`{"content": [{"type": "text", ...}, {"type": "image_url", ...}]}`. `dimensions` (Matryoshka) keeps the first that
many values, normalised again; `encoding_format` "float" or "base64" (little-endian float32, as OpenAI's). TEI's
`inputs` is a string or a list of strings; its answer is the bare list of vectors. Every value goes through the
request service: the same key, limits, metrics and error shapes as every door.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Callable

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ..contract import InputError
from ..service import Service
from .json_inputs import read_json, request_images

EMBEDDINGS_PATH = "/v1/embeddings"
TEI_EMBED_PATH = "/embed"


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request; `instruction` is Qwen3-VL-Embedding's (default "Represent the user's input.")."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="which served embedding model (default: the first)")
    input: str | list[Any] = Field(..., description="a text, or a list of texts, {text, image, video} or {content} items")
    dimensions: int | None = Field(None, description="keep the first n values, normalised again (Matryoshka)")
    encoding_format: str = Field("float", description='"float" or "base64" (little-endian float32)')
    instruction: str | None = Field(None, description="what the vectors are for, e.g. 'Retrieve images of products.'")


class TeiEmbedRequest(BaseModel):
    """text-embeddings-inference's `/embed`: texts only."""

    model_config = ConfigDict(extra="ignore")

    inputs: str | list[str] = Field(..., description="a text or a list of texts")
    normalize: bool = Field(True, description="unit vectors (the model's own; false is refused)")
    dimensions: int | None = Field(None, description="keep the first n values, normalised again")
    prompt_name: str | None = Field(None, description="not used: the instruction is Qwen3-VL-Embedding's own")


def _encoded(vector: list[float], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def create_embeddings_router(service: Service, opened: Callable, client_of: Callable) -> APIRouter:
    """The embedding routes; `opened(request)` opens the request-service request of an HTTP request."""
    router = APIRouter(tags=["embeddings"])

    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        """One unit vector per input (OpenAI / vLLM compatible; our item objects too)."""
        with opened(request) as req:
            embedder = req.embedder(body.model)
            if body.encoding_format not in ("float", "base64"):
                raise InputError("encoding_format", "encoding_format", value=str(body.encoding_format)[:40])
            values = [body.input] if isinstance(body.input, str) else list(body.input)
            req.check_count(len(values), "input")
            fetched = await req.fetch(request_images("", values, field="input"), client_of(request))

            def work() -> bytes:
                _, documents = read_json("", values, fetched, field="input")
                vectors = req.embed(embedder, documents, body.instruction, body.dimensions)
                answer = {
                    "object": "list",
                    "model": service.embedders.name_of(embedder),
                    "data": [
                        {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
                        for i, vector in enumerate(vectors)
                    ],
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
                return json.dumps(answer).encode("utf-8")

            return Response(await run_in_threadpool(work), media_type="application/json")

    async def tei_embed(body: TeiEmbedRequest, request: Request) -> Response:
        """text-embeddings-inference's /embed: a list of vectors, one per text."""
        request.state.dialect = "tei"
        with opened(request) as req:
            embedder = req.embedder(None)
            if not body.normalize:
                raise InputError("normalize", "normalize_off")
            texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
            req.check_count(len(texts), "inputs")

            def work() -> bytes:  # TEI's inputs are text, whatever they spell
                vectors = req.embed(embedder, [{"text": text} for text in texts], None, body.dimensions, field="inputs")
                return json.dumps(vectors).encode("utf-8")

            return Response(await run_in_threadpool(work), media_type="application/json")

    router.add_api_route(EMBEDDINGS_PATH, embeddings, methods=["POST"], summary="Embeddings (OpenAI format)")
    router.add_api_route(TEI_EMBED_PATH, tei_embed, methods=["POST"], summary="Embeddings (TEI format)")
    return router
