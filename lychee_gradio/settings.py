"""Input limits that every door enforces alike: the page, the Gradio API, MCP and /v1/rerank."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_documents: int = 200  # documents (or images) per request
    max_image_pixels: int = 50_000_000  # width x height of one image, checked before it is decoded
    # Decoded pixels of all the images of one request together (each image decoded straight down to
    # the model's pixel bound first): 400 M is 200 photos of 2 megapixels, about 1.2 GB as RGB.
    max_request_pixels: int = 400_000_000
    max_body_bytes: int = 64 * 2**20  # one /v1/rerank request body
    max_upload_bytes: int = 64 * 2**20  # one file uploaded through the page or the Gradio API
    max_zip_bytes: int = 2 * 2**30  # what an uploaded evaluation zip unpacks to

    def check_documents(self, count: int, field: str = "documents") -> None:
        if count > self.max_documents:
            raise ValueError(f"{field}: {count} given, at most {self.max_documents} per request on this server")
