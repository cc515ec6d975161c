"""Shared fixtures: the tiny random Qwen2.5-VL checkpoint is built once per test session."""

from __future__ import annotations

import pytest
from PIL import Image

from lychee_gradio import LycheeScorer
from lychee_gradio.random_model import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-lychee"))


@pytest.fixture(scope="session")
def scorer(tiny_model_dir):
    return LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def red_image():
    return Image.new("RGB", (120, 80), (220, 30, 30))


@pytest.fixture(scope="session")
def blue_image():
    # Large enough to become several merged patches, small enough to keep tests quick.
    image = Image.new("RGB", (300, 200), (20, 40, 200))
    for x in range(0, 300, 10):
        for y in range(0, 200, 10):
            image.putpixel((x, y), (255, 255, 255))
    return image
