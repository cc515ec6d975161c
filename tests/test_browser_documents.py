"""The page in a real browser with documents as they come: Image ranking takes a PDF beside photos and ranks its pages,
each captioned with the file and its page number; choosing a page explains that page."""

from __future__ import annotations

import pytest
from PIL import Image

from .conftest import CUP
from .helpers import make_pdf, open_page, upload_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_image_ranking_ranks_a_pdfs_pages_beside_photos_with_their_captions(browser, page_app, tmp_path):
    url, _, _ = page_app
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(make_pdf([Image.new("RGB", (300, 400), colour) for colour in ("red", "green", "blue")]))
    page = open_page(browser, url, "Image ranking", viewport={"width": 1400, "height": 1000})
    page.locator("#images-query textarea").fill("a green page")
    upload_files(page, "#images-files", [CUP, str(pdf)])
    page.locator("#rank-button").click()
    items = page.locator("#images-gallery .thumbnail-item, #images-gallery button.thumbnail-item")
    items.nth(3).wait_for(timeout=60_000)
    assert items.count() == 4
    captions = page.locator("#images-gallery").inner_text()
    for number in (1, 2, 3):
        assert f"paper.pdf, p. {number}" in captions
    assert "mountain_cup.png" in captions
    # A page chosen: its Why? panel (the map over that page).
    items.filter(has_text="paper.pdf").first.click()
    page.locator("#images-why-maps img").first.wait_for(timeout=60_000)
    assert not page.locator("#rank-button-message").is_visible()
    page.close()
