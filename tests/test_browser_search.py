"""The Search tab in a real browser: files indexed from the tab's form, a search with words, the reranked gallery
with both scores, the first stage's own order at a click, and Why? on a result."""

from __future__ import annotations

import pytest

from lychee_gradio import app

from .conftest import CUP
from .helpers import open_page, upload_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def search_app(scorer, embedder, tmp_path_factory):
    data = tmp_path_factory.mktemp("search-data")
    running = app.start(scorer, app.ServerSettings(port=0, demo_mode=True, data_dir=str(data)), [embedder])
    yield running.url
    running.close()


def test_a_new_user_indexes_files_from_the_search_tab_then_searches_them(browser, search_app, tmp_path):
    notes = []
    for number, words in enumerate(["a white porcelain cup", "a blue enamel mug", "a steel tumbler"]):
        note = tmp_path / f"note{number}.txt"
        note.write_text(words, encoding="utf-8")
        notes.append(str(note))
    page = open_page(browser, search_app, "Search", viewport={"width": 1400, "height": 1000})
    page.locator("#index-form").get_by_text("Add files to a collection").click()
    page.locator("#search-collection input").fill("kitchen")
    upload_files(page, "#index-files", [CUP, *notes])
    page.locator("#index-button").click()
    page.locator("#index-message").get_by_text("4 embedded").wait_for(timeout=60_000)

    page.locator("#search-query textarea").fill("a white cup")
    page.locator("#search-button").click()
    items = page.locator("#search-gallery .thumbnail-item, #search-gallery button.thumbnail-item")
    items.nth(3).wait_for(timeout=60_000)
    reranked = page.locator("#search-gallery").inner_text()
    assert reranked.count("first stage #") == 4 and "mountain_cup.png" in reranked and "note0.txt" in reranked

    page.locator("#search-first-order input").check()
    page.locator("#search-gallery").get_by_text("#1 · first stage").wait_for(timeout=30_000)
    ordered = page.locator("#search-gallery").inner_text()
    assert ordered.count("reranked #") == 4  # every one of the four was reranked (10 by default)

    items.filter(has_text="mountain_cup.png").first.click()
    page.locator("#search-why-maps img").first.wait_for(timeout=60_000)
    assert not page.locator("#search-button-message").is_visible()
    page.close()
