"""What goes wrong, with no torch in it: the one error type, its codes, and the one rule for every door.

Errors carry a code and parameters, not prose to be parsed: `InputError("documents[3].image", "image_pixels",
width=..., ...)`. `ERRORS` holds each code's HTTP status and English wording; the page words the same code in the
browser's language (`ui/translations.py`). `status_of(error)` is the one place an error becomes an HTTP status,
and `is_callers(error)` the one rule for whose it is (the caller's: under 500), for every door, the metrics and
the log.
"""

from __future__ import annotations

from typing import Any

# code: (HTTP status, English wording with {params}). The page words the same codes in Chinese too.
# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
ERRORS: dict[str, tuple[int, str]] = {
    # a query or document, in any form
    "missing": (400, "missing (got None); give text, an image, or a dict of both"),
    "empty": (400, "empty (no text and no image)"),
    "unsupported_type": (400, "unsupported type {type}; give a string, a PIL image, a path, bytes, or a dict with "
                              "'text' and/or 'image'"),
    "unknown_keys": (400, "unknown keys {keys}; use 'text' and/or 'image' (and optionally 'id', 'metadata')"),
    "expected_string": (400, "expected a string, got {type}"),
    "expected_list": (400, "expected a list of documents, got {type}"),
    "not_unicode": (400, "not valid Unicode text (a lone surrogate at character {position})"),
    # images
    "image_type": (400, "unsupported image type {type}; give a PIL image, a file path, bytes, a base64 string or a "
                        "data URL"),
    "image_empty_string": (400, "image is an empty string"),
    "image_url_library": (400, "image URLs are not fetched ({url}); download the image and pass it"),
    "base64_invalid": (400, "invalid base64 image data ({reason})"),
    "image_not_found": (400, "image file not found: {path}"),
    "image_not_a_file": (400, "not a file: {path}"),
    "image_unreadable": (400, "cannot read image file {path}: {reason}"),
    "image_empty": (400, "image data is empty"),
    "image_decode": (400, "cannot decode image ({reason})"),
    "image_unidentified": (400, "cannot decode image (not JPEG, PNG, WebP, GIF, BMP or TIFF)"),
    "image_bomb": (400, "image is too large to decode safely ({reason})"),
    "image_no_pixels": (400, "image has no pixels"),
    "image_aspect": (400, "image is {width}x{height}: its longer side is more than {limit} times its shorter one, "
                          "which the model cannot take; crop or pad it"),
    "image_pixels": (413, "image is {width}x{height} = {pixels:,} pixels, over this server's limit of {limit:,}"),
    "request_memory": (413, "the request's images and clips need about {need_mb:,} MB while decoded, over this "
                            "server's image memory of {limit_mb:,} MB; send at most {fits} of them at this size, "
                            "or smaller ones (or the operator raises --image-memory-mb)"),
    "request_pixels": (413, "the request's images add up to more than this server's limit of {limit:,} decoded "
                            "pixels; send fewer or smaller images"),
    # request options
    "too_many": (400, "{count} given, at most {limit} per request on this server"),
    "min_score": (400, "expected a score from 0 to 1, \"relevant\" or \"partly\", got {value}"),
    "top_n": (400, "expected 0 (all) or a positive whole number, got {value}"),
    "max_pixels_low": (400, "must be at least {minimum}, got {value}"),
    "dimensions": (400, "expected a whole number from 32 to {maximum} (the model's size), got {value}"),
    "embed_pdf": (400, "a PDF is not embedded whole; send each page as an image"),
    "no_embedding_model": (400, "this server serves no embedding model (start it with --embedding-model)"),
    "encoding_format": (400, "expected \"float\" or \"base64\", got {value}"),
    "collection_name": (400, "a collection's name is 1 to 64 letters, digits, '-' or '_', got {value}"),
    "no_collection": (404, "no collection {name}; this server has {have} (lychee index --collection NAME)"),
    "search_count": (400, "expected a whole number from {low} to {limit}, got {value}"),
    "search_file_gone": (404, "the collection's file {path} is no longer there; index the folder again (lychee index)"),
    "search_outside": (403, "the collection holds files outside the folders this server reads (--collections-dir)"),
    "index_kind": (400, "{name}: not a kind a collection takes (files ending in {kinds})"),
    "index_one_kind": (400, "expected one of \"text\", \"image\", \"pdf\", \"video\" per document, got {got}"),
    "index_nothing": (400, "no documents to index"),
    "search_relevant": (400, "\"relevant\" must be a non-empty list of the collection's paths (or \"labels\" an "
                             "object of path: grade)"),
    "no_collections": (400, "this server searches no collections (start it with --data-dir, after lychee index)"),
    "normalize_off": (400, "this model's embeddings are unit vectors; normalize: false is not offered"),
    "max_pixels_high": (400, "at most {limit} on this server"),
    "unknown_model": (400, "unknown model {name}; this server serves {served}"),
    # over HTTP and MCP
    "image_value": (422, "an image must be a non-empty string (data URL or base64)"),
    "image_urls_off": (400, "image URLs are not fetched by this server (start it with --allow-image-urls, or send "
                            "the image as base64)"),
    "file_path_http": (400, "file paths are not read over HTTP; send the file itself, as base64 or a data URL"),
    "not_image_data": (400, "not a data URL or base64 image (file paths are not read over HTTP)"),
    "url_not_fetched": (400, "the image URL could not be fetched (this server fetches public http(s) addresses "
                             "only, within {timeout:g} s; send the image as base64 instead)"),
    "url_too_large": (413, "the image at the URL is over this server's limit of {limit:,} bytes"),
    "expected_string_or_object": (422, "expected a string or an object, got {type}"),
    "object_keys": (422, "an object needs 'text', 'image', 'video' or 'pdf' (or 'content')"),
    "content_list": (422, "expected a list of parts"),
    "content_part": (422, "expected {{type: text, text}}, {{type: image_url, image_url: {{url}}}}, "
                          "{{type: video_url, video_url: {{url}}}} or {{type: file, file: {{file_data}}}}"),
    "video_empty": (400, "video data is empty"),
    "video_bytes": (413, "video is over this server's limit of {limit:,} bytes"),
    "video_not_found": (400, "video file not found: {path}"),
    "video_type": (400, "unsupported video type {type}; give a path, bytes, base64 or a data URL"),
    "video_unavailable": (400, "videos need PyAV on the server (pip install av)"),
    "video_container": (400, "not a video this server reads: send an MP4/MOV, WebM/Matroska or AVI file"),
    "video_no_size": (400, "the video's header states no frame size"),
    "video_frame_size": (400, "a frame of the video is {width}x{height}, larger than the {stated} its header states"),
    "video_value": (422, "a video must be a non-empty string: a data URL or base64 of an MP4, WebM or AVI file"),
    "no_video_slot": (400, "the model {model} takes no video (its chat template has no video slot); send images"),
    "video_decode": (400, "cannot decode video (not a video FFmpeg can read, or cut short)"),
    "video_pixels": (413, "video frames are {width}x{height} = {pixels:,} pixels, over this server's limit of "
                          "{limit:,}"),
    # PDFs and long documents (parts.py, inputs/pdf.py)
    "pdf_value": (422, "a PDF must be a non-empty string: a data URL or base64 of a PDF file"),
    "pdf_not_found": (400, "PDF file not found: {path}"),
    "pdf_not_pdf": (400, "not a PDF (it does not start with %PDF-)"),
    "pdf_broken": (400, "cannot read the PDF (damaged, cut short, or with no pages)"),
    "pdf_encrypted": (400, "the PDF is encrypted (password-protected); send a copy without a password"),
    "pdf_bytes": (413, "PDF is over this server's limit of {limit:,} bytes"),
    "pdf_page_shape": (400, "page {page} is {width}x{height} points: its longer side is more than 200 times its shorter "
                            "one (or it is empty), which the model cannot take"),
    "pdf_page_size": (400, "page {page} is {width}x{height} points, larger than PDF allows ({limit:,} a side)"),
    "pdf_active": (400, "the PDF holds JavaScript or actions that open other files or programs, which this server "
                        "does not take; send a copy without them (print it to PDF)"),
    "pdf_page_number": (400, "expected a page number of the PDF (1 to its pages), got {value}"),
    "pdf_bomb": (413, "a stream of the PDF inflates past {limit:,} bytes (a decompression bomb?)"),
    "pdf_query": (400, "a PDF can be a document, not a query; send a page as an image"),
    "too_many_pages": (413, "{count} PDF pages in the request, at most {limit} on this server"),
    "too_many_parts": (413, "the request's long documents make more than {limit} parts (pages and chunks) on this "
                            "server; send fewer or shorter documents"),
    "long_document": (413, "the document is {parts} {kind} long and long_documents is \"refuse\"; send "
                           "long_documents: \"max\" to score it by its best part"),
    "long_documents": (400, "expected one of {choices}, got {value}"),
    "too_many_urls": (400, "{count} media URLs in one request, at most {limit} on this server"),
    "score_empty": (400, "give at least one text_1"),
    "video_seconds": (413, "video is {seconds:g} s long, over this server's limit of {limit:g} s"),
    "video_truncated": (400, "video ends at {seconds:g} s but says it lasts {stated:g} s (cut short?)"),
    "one_video": (400, "at most one video per document"),
    "one_pdf": (400, "at most one PDF per document"),
    "too_many_images": (400, "{count} images, at most {limit} per query or document on this server"),
    "image_and_images": (422, "give 'image' or 'images', not both"),
    "images_list": (422, "expected a list of images, got {type}"),
    "invalid": (422, "{reason}"),
    # the other dialects: TEI's /rerank, vLLM's /score
    "dialect": (422, "POST /rerank takes a Cohere / Jina request {{query, documents}} or a TEI request "
                     "{{query, texts}}; {reason}"),
    "text_too_long": (413, "longer than the model's text budget of {limit} tokens; send truncate: true to cut it"),
    "truncation_direction": (400, "only Right (cut the end of a text) is supported, got {value}"),
    "score_lengths": (400, "text_1 has {first} items and text_2 {second}: give one text_1, or as many as text_2"),
    "api_key": (401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'"),
    "unknown_host": (400, "this server does not answer to the host {host}; its operator can add it with "
                          "--allowed-hosts"),
    "not_found": (404, "not found"),
    "cross_origin": (403, "requests from pages of another site ({origin}) are refused; the server's operator can "
                          "allow that site with --allowed-origins"),
    "login_throttled": (429, "too many failed logins from this address; try again in {seconds} s"),
    "upload_space": (503, "the server's space for uploads is full for now; try again in a few minutes"),
    "body_too_large": (413, "request body is over this server's limit of {limit:,} bytes"),
    "unknown_tool": (400, "unknown tool {name}"),
    "grid": (400, "expected a whole number of cells per side, 1 to {limit}, got {value}"),
    "segments": (400, "expected a whole number of segments per text, 1 to {limit}, got {value}"),
    "explain_variants": (413, "this explanation would score {variants} changed pairs, over this server's limit of "
                              "{limit}; use a smaller grid or fewer segments"),
    "explain_text": (413, "explanations take texts of at most {limit:,} characters; this one has {length:,}"),
    # labelled sets (Evaluate)
    "not_utf8": (400, "not UTF-8 text"),
    "bad_json": (400, "not valid JSON ({reason} at column {column})"),
    "json_object": (400, "expected a JSON object"),
    "missing_keys": (400, "missing {keys}"),
    "documents_list": (400, "'documents' must be a non-empty list"),
    "relevant_or_labels": (400, "give either 'relevant' (indices) or 'labels' (one grade per document)"),
    "labels_count": (400, "'labels' must have one grade per document ({count})"),
    "labels_whole": (400, "'labels' must be whole numbers, 0 or more"),
    "relevant_list": (400, "'relevant' must be a list of document indices"),
    "relevant_range": (400, "'relevant' has indices outside 0..{last}: {outside}"),
    "instruction_string": (400, "'instruction' must be a string"),
    "eval_item": (400, "expected a string or an object with 'text' and/or 'image'"),
    "eval_image_value": (400, "expected a path (relative to the data file) or a data URL"),
    "path_outside": (400, "image paths must be relative and stay inside the data's folder (or the zip's root); "
                          "refused {path}"),
    "eval_image_missing": (400, "image file not found: {path} (paths are relative to the data file, or to the "
                                "images zip's root)"),
    "cutoffs": (400, "expected whole numbers separated by commas, got {text}"),
    "cutoffs_low": (400, "cutoffs must be 1 or more"),
    "bad_line": (400, "line {line}: {reason}"),
    # scoring
    "timeout": (504, "the request took longer than its timeout of {seconds:g} s ({stage}) and was stopped"),
    "stopped": (499, "stopped"),
    "busy": (503, "every model replica is busy and the queue is full; try again in a few seconds"),
    "images_busy": (503, "the server's memory for images is taken by other requests and did not come free within "
                         "{seconds:g} s; try again in a few seconds"),
    "out_of_memory": (503, "out of GPU memory scoring a single pair of {tokens} tokens; lower max_pixels or "
                           "max_text_tokens, or use a GPU with more memory"),
    # worded where they are raised
    "page": (400, "{message}"),
    "model_load": (500, "{message}"),
    "calibration_file": (500, "{message}"),
    "store_unreachable": (503, "the collections' Qdrant server (--collections-url) does not answer; try again later"),
    "store_busy": (503, "the collections in {folder} are open in another process (lychee index, or another server); "
                        "try again when it is done"),
    "collection": (500, "{message}"),
    "wont_fit": (500, "{message}"),
    "url_refused": (400, "{message}"),
    "replica_failed": (500, "a model replica failed while scoring; the server's log has the details"),
    "internal": (500, "internal error; the server's log has the details"),
}
# fmt: on


class LycheeError(Exception):
    """Every error the package raises on purpose: a `code` of `ERRORS` (which gives its HTTP status and its
    English words), its parameters, and the field at fault when there is one (`documents[3].image`).
    `str()` is the English message, `field: wording`; every door answers `as_dict()` with `status`, and the
    page words the same code in the browser's language (`ui/translations.py`). Picklable with its code and
    parameters, so an error raised on a Ray replica arrives as itself."""

    code = "internal"

    def __init__(self, field: str | None = None, code: str | None = None, **params: Any):
        code = code or type(self).code
        if code not in ERRORS:
            raise KeyError(f"unknown error code {code!r}")
        self.field, self.code, self.params = field, code, params
        self.status = ERRORS[code][0]
        super().__init__(f"{field}: {self.reason}" if field else self.reason)

    @property
    def reason(self) -> str:
        """The message without its field, in English."""
        return ERRORS[self.code][1].format(**self.params)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self), "field": self.field}

    def __reduce__(self):
        return _rebuild, (type(self), self.field, self.code, self.params, dict(self.__dict__))


def _rebuild(kind: type, field: str | None, code: str, params: dict, state: dict) -> LycheeError:
    error = LycheeError.__new__(kind)
    LycheeError.__init__(error, field, code, **params)
    error.__dict__.update(state)
    return error


class InputError(LycheeError, ValueError):
    """Bad input, raised once at the edge: the field at fault, a code from `ERRORS` and its parameters. It is
    a `ValueError`, so code that catches bad input as `ValueError` still does."""

    def at(self, field: str) -> "InputError":
        """The same error, named after another field (e.g. a page's 'Document 4' for 'input')."""
        return InputError(field, self.code, **self.params)


class ScoringTimeoutError(LycheeError, RuntimeError):
    """The request waited for the model, or ran, longer than its timeout; its remaining work was dropped.
    `partial`: the scores computed before it stopped, in input order (None for a document not scored)."""

    code = "timeout"
    partial: list | None = None

    def __init__(self, seconds: float = 0.0, stage: str = "scoring"):
        super().__init__(None, "timeout", seconds=seconds, stage=stage)


class ScoringCancelledError(LycheeError, RuntimeError):
    """The caller stopped the request (the page's Stop button); its remaining work was dropped.
    `partial`: the scores computed before it stopped, in input order (None for a document not scored)."""

    code = "stopped"
    partial: list | None = None

    def __init__(self):
        super().__init__(None, "stopped")


class ScorerBusyError(LycheeError, RuntimeError):
    """Every model replica is busy and the waiting queue is full (served on Ray replicas): retry shortly."""

    code = "busy"
    retry_after_seconds = 2

    def __init__(self):
        super().__init__(None, "busy")


class ImagesBusyError(ScorerBusyError):
    """The image memory pool stayed full (other requests' images) for the request's short wait: retry shortly."""

    code = "images_busy"

    def __init__(self, seconds: float = 0.0):
        LycheeError.__init__(self, None, "images_busy", seconds=seconds)


class ScoringOutOfMemoryError(LycheeError, RuntimeError):
    """Even a batch of one pair did not fit in GPU memory."""

    code = "out_of_memory"

    def __init__(self, tokens: int = 0):
        super().__init__(None, "out_of_memory", tokens=tokens)


class WordedError(LycheeError):
    """An error whose words were written where it was raised (a model that cannot be loaded, a page's
    message already in the browser's language): `code` says what kind it is, `message` the words."""

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(None, code or type(self).code, message=message)


def is_callers(error: BaseException) -> bool:
    """The one rule for every door, the metrics and the log: an error of ours with a status under 500 is the
    caller's (a mistake, a limit, a stop, a busy server): answered as itself, counted and logged with its status,
    no traceback. Anything else is ours: a 500, its details in the log only."""
    return isinstance(error, LycheeError) and error.status < 500


def is_expected(error: BaseException) -> bool:
    """An error a door answers as itself: the caller's (`is_callers`) and the server's stated conditions (503 busy or
    out of memory, 504 timeout), whose words name no server path. The rest (500) is answered "internal error"."""
    return isinstance(error, LycheeError) and error.status != 500


def status_of(error: BaseException) -> int:
    """The HTTP status of an error, the same on every door (500 for anything unexpected)."""
    return error.status if isinstance(error, LycheeError) else 500
