"""Images are decoded only in the formats a photo comes in, by Pillow alone (no external program), in every
mode those formats hold; a shape the model cannot take gets a clear error naming the document."""

from __future__ import annotations

import base64
import io
import shutil
import time

import httpx
import numpy as np
import psutil
import pytest
from PIL import EpsImagePlugin, Image

from lychee_gradio.contract import InputError
from lychee_gradio.inputs import IMAGE_FORMATS, ImageRules, load_image

from .helpers import file_data, gradio_call

# An EPS whose PostScript never ends: Ghostscript would run it at 100 % CPU until killed.
ENDLESS_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n{ 1 pop } loop\nshowpage\n%%EOF\n"
PLAIN_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def ghostscripts() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True) if child.name().startswith("gs")]


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript is installed by .ci/run (apt: ghostscript)")
def test_pillow_alone_would_hand_an_eps_to_ghostscript():
    # What the doors must not do: the same bytes through plain Pillow start `gs` and decode.
    with Image.open(io.BytesIO(PLAIN_EPS)) as image:
        assert image.format == "EPS"
        image.load()
        assert image.size[0] > 0


def test_an_eps_on_rerank_is_refused_at_once_without_running_ghostscript(live_app, monkeypatch):
    started = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: started.append(args))
    data = base64.b64encode(ENDLESS_EPS).decode()
    began = time.monotonic()
    answer = httpx.post(f"{live_app}v1/rerank", json={"query": "q", "documents": ["a", {"image": data}]}, timeout=30)
    assert time.monotonic() - began < 10
    assert answer.status_code == 400
    assert answer.json()["field"] == "documents[1].image"
    assert "JPEG, PNG, WebP, GIF, BMP or TIFF" in answer.json()["message"]
    assert "Ghostscript" not in answer.text
    assert started == [] and ghostscripts() == []


def test_an_eps_upload_on_the_page_api_is_named_as_unreadable(live_app, tmp_path):
    path = tmp_path / "drawing.eps"
    path.write_bytes(ENDLESS_EPS)
    uploaded = httpx.post(f"{live_app}gradio_api/upload", files={"files": ("drawing.eps", ENDLESS_EPS)}, timeout=30).json()[0]
    kind, message = gradio_call(live_app, "score", ["q", None, "doc", file_data(uploaded), None, None, None], with_event=True)
    assert kind == "error" and "drawing.eps" in message and "Ghostscript" not in message
    assert ghostscripts() == []


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_allowed_format_decodes(fmt):
    image = Image.new("RGB", (64, 48), (200, 40, 40))
    data = encoded(image, fmt)
    assert load_image(data, "documents[0].image").size == (64, 48)


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "PPM", "TGA", "SGI", "DDS", "IM", "EPS"])
def test_formats_outside_the_list_are_refused_by_name(fmt):
    image = Image.new("RGB", (32, 32), (10, 10, 10))
    data = ENDLESS_EPS if fmt == "EPS" else encoded(image, fmt)
    with pytest.raises(InputError) as refused:
        load_image(data, "documents[2].image")
    assert refused.value.code == "image_unidentified" and refused.value.field == "documents[2].image"


# Large enough that the decoder shrinks them (over four times the model's bound), and small ones.
BOUND = 100_000


@pytest.mark.parametrize("size", [(120, 90), (1200, 900)])
def test_palette_one_bit_sixteen_bit_float_and_cmyk_images_decode_as_they_look(size):
    width, height = size
    rules = ImageRules(keep_pixels=BOUND)
    gradient = np.tile(np.linspace(0, 1, width), (height, 1))
    palette = Image.fromarray((gradient * 255).astype(np.uint8), "L").convert("P")
    one_bit = Image.fromarray(gradient > 0.5).convert("1")
    sixteen = Image.fromarray((gradient * 65535).astype(np.uint16))
    floats = Image.fromarray(gradient.astype(np.float32), "F")
    cmyk = Image.new("CMYK", size, (0, 255, 255, 0))  # red
    cases = [
        (palette, "PNG"),
        (one_bit, "PNG"),
        (sixteen, "PNG"),
        (floats, "TIFF"),
        (cmyk, "JPEG"),
        (Image.new("RGBA", size, (0, 128, 0, 255)), "PNG"),
        (palette, "GIF"),
        (sixteen, "TIFF"),
    ]
    for source, fmt in cases:
        image = load_image(encoded(source, fmt), "documents[0].image", rules=rules)
        assert image.mode == "RGB", (source.mode, fmt)
        if size[0] * size[1] >= 4 * BOUND:
            assert image.width < width  # decoded straight down
        left, right = np.asarray(image)[:, :3].mean(), np.asarray(image)[:, -3:].mean()
        if source is cmyk:
            assert tuple(np.asarray(image)[5, 5]) == pytest.approx((255, 0, 0), abs=20)
        elif source.mode != "RGBA":
            assert left < 40 and right > 215, (source.mode, fmt, left, right)  # dark to light, not clipped to white


@pytest.mark.parametrize("size", [(20000, 1), (1, 40_000_000), (3000, 10)])
def test_extreme_aspect_ratios_get_a_clear_error_before_decoding(size):
    # PNG headers with the size, and no pixel data to decode: the refusal comes from the header.
    data = encoded(Image.new("1", size))
    with pytest.raises(InputError) as refused:
        load_image(data, "documents[4].image")
    assert refused.value.code == "image_aspect" and refused.value.status == 400
    assert "200 times" in str(refused.value) and str(refused.value).startswith("documents[4].image")


def test_an_extreme_aspect_ratio_is_a_400_on_rerank_and_a_message_on_the_page(live_app, tmp_path):
    data = encoded(Image.new("RGB", (20000, 1), (1, 2, 3)))
    answer = httpx.post(
        f"{live_app}v1/rerank", timeout=30, json={"query": "q", "documents": [{"image": base64.b64encode(data).decode()}]}
    )
    assert answer.status_code == 400 and answer.json()["field"] == "documents[0].image"
    uploaded = httpx.post(f"{live_app}gradio_api/upload", files={"files": ("strip.png", data)}, timeout=30).json()[0]
    kind, message = gradio_call(live_app, "score", ["q", None, "doc", file_data(uploaded), None, None, None], with_event=True)
    assert kind == "error" and "200" in message and "null" not in message
