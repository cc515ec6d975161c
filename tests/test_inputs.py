"""Inputs: every accepted form of a query or document, and a clear error for each bad one."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from lychee_gradio.inputs import Item, load_image, to_item, to_items


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_image_form_decodes_to_the_same_pixels(tmp_path, red_image):
    data = _png_bytes(red_image)
    path = tmp_path / "red.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [
        red_image,
        data,
        path,
        f"data:image/png;base64,{b64}",
        {"image": path},
        {"image": str(path)},
        {"image": b64},
        {"image": data},
    ]
    decoded = [to_item(form, "query").image for form in forms]
    assert all(image.mode == "RGB" and image.tobytes() == red_image.tobytes() for image in decoded)


def test_a_string_is_text_and_a_dict_may_hold_both(red_image, tmp_path):
    assert to_item("hello", "query") == Item(text="hello")
    assert to_item(str(tmp_path), "query") == Item(text=str(tmp_path))
    both = to_item({"text": "cup", "image": red_image}, "query")
    assert both.text == "cup" and both.image is not None


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue(), "query").size == (20, 40)


def test_grayscale_and_transparent_images_become_rgb():
    assert load_image(Image.new("L", (10, 10)), "q").mode == "RGB"
    assert load_image(_png_bytes(Image.new("RGBA", (10, 10))), "q").mode == "RGB"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("", r"documents\[1\]: empty"),
        ("   \n", r"documents\[1\]: empty"),
        ({"text": ""}, r"documents\[1\]: empty"),
        ({}, r"documents\[1\]: empty"),
        (b"not an image at all", r"documents\[1\]: cannot decode image"),
        ({"image": b"\x89PNG broken"}, r"documents\[1\]\.image: cannot decode image"),
        ({"image": "/no/such/file.png"}, r"documents\[1\]\.image: image file not found"),
        ({"image": "data:image/png;base64,@@@"}, r"documents\[1\]\.image: invalid base64"),
        ({"image": "https://example.com/cat.png"}, r"documents\[1\]\.image: image URLs are not fetched"),
        ({"text": 42}, r"documents\[1\]\.text: expected a string"),
        ({"txt": "typo"}, r"documents\[1\]: unknown keys \['txt'\]"),
        ({"image": 3.5}, r"documents\[1\]\.image: unsupported image type float"),
        (None, r"documents\[1\]: missing"),
        (12, r"documents\[1\]: unsupported type int"),
    ],
)
def test_a_bad_document_raises_a_value_error_naming_its_index(document, message):
    with pytest.raises(ValueError, match=message):
        to_items(["fine", document, "also fine"])


def test_a_decompression_bomb_is_refused_not_decoded(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"documents\[0\]: image is too large"):
        to_items([_png_bytes(Image.new("RGB", (100, 100)))])


@pytest.mark.parametrize("documents", ["just one string", {"text": "x"}, 5, None])
def test_documents_must_be_a_list(documents):
    with pytest.raises(ValueError, match="documents: expected a list"):
        to_items(documents)


def test_the_scorer_reports_bad_input_with_the_document_index(scorer):
    with pytest.raises(ValueError, match=r"documents\[2\]: empty"):
        scorer.score("q", ["a", "b", ""])
    with pytest.raises(ValueError, match=r"^query: empty"):
        scorer.score("", ["a"])
    with pytest.raises(ValueError, match="instruction: expected a string"):
        scorer.score("q", ["a"], instruction=["not", "text"])
    assert len(scorer.score("q", ["a"])) == 1  # still serving after the errors
