"""The page in a real browser, third pass: every tab takes what the API takes (Compare takes clips), the Why? panel
shows every image's map and a clip's timeline with one explanation a choice, and a mistake stays written where the
result would be."""

from __future__ import annotations

import logging

import pytest

from .conftest import CUP, MUG
from .helpers import make_clip, open_page, upload_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class ExplainLog(logging.Handler):
    """Counts the server's access-log lines of the page's explanation endpoint."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "endpoint=/explain " in record.getMessage():
            self.count += 1


def test_the_batch_why_maps_every_image_and_a_clips_seconds_with_one_request_a_choice(browser, page_app, tmp_path):
    pytest.importorskip("av")

    url, _, _ = page_app
    clip = make_clip(tmp_path / "clip.mp4")
    page = open_page(browser, url, "Batch rerank", viewport={"width": 1400, "height": 1000})
    page.locator("#batch-query textarea").fill("a white cup")
    page.locator("#batch-documents textarea").fill(
        "two photos [image: mountain_cup.png, blue_mug.png]\n---\na clip [video: clip.mp4]"
    )
    upload_files(page, "#batch-files", [CUP, MUG, clip])
    page.locator("#rerank-button").click()
    page.locator("#batch-table table tbody tr").nth(1).wait_for(timeout=60_000)
    log = ExplainLog()
    access = logging.getLogger("lychee_gradio.access")
    level = access.level
    access.setLevel(logging.INFO)  # access lines are INFO
    access.addHandler(log)
    try:
        choose = page.locator("#batch-why-choose input")
        choose.click()
        page.get_by_role("option", name="mountain_cup.png, blue_mug.png").click()
        maps = page.locator("#batch-why-maps img")
        maps.nth(1).wait_for(timeout=60_000)
        assert maps.count() == 2  # one heatmap a document image
        page.wait_for_function("() => document.querySelector('#batch-why-raw').innerText.includes('p(yes)')")
        choose.click()
        page.get_by_role("option", name="clip.mp4").click()
        page.wait_for_function(
            "() => document.querySelector('#batch-why-raw').innerText.includes('second by second')", timeout=60_000
        )
        raw = page.locator("#batch-why-raw").inner_text()
        assert " s" in raw and "0.0–1.0 s" in raw.replace("0.0-1.0", "0.0–1.0")
        page.wait_for_timeout(1000)  # a second request, if any, would have been logged by now
        assert log.count == 2  # one explanation a choice
    finally:
        access.removeHandler(log)
        access.setLevel(level)
    page.close()


def test_compare_takes_a_clip_upload_and_ranks_its_document(browser, two_model_app, tmp_path):
    pytest.importorskip("av")

    clip = make_clip(tmp_path / "clip.mp4")
    page = open_page(browser, two_model_app, "Compare", viewport={"width": 1400, "height": 1000})
    page.locator("#compare-query textarea").fill("a red square")
    page.locator("#compare-documents textarea").fill("the clip [video: clip.mp4]\n---\na steel tumbler")
    upload_files(page, "#compare-files", [clip])
    page.locator("#compare-button").click()
    page.locator("#compare-table table tbody tr").nth(1).wait_for(timeout=60_000)
    assert "clip.mp4" in page.locator("#compare-table").inner_text()
    assert not page.locator("#compare-button-message").is_visible()
    page.close()


def test_a_mistake_stays_written_where_the_result_would_be(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url, "Batch rerank")
    page.locator("#batch-documents textarea").fill("one\n---\ntwo")
    page.locator("#rerank-button").click()
    message = page.locator("#rerank-button-message")
    message.get_by_text("query").wait_for(timeout=30_000)
    page.wait_for_timeout(12_000)  # a toast is gone by now; the message is not
    assert message.is_visible() and "query" in message.inner_text().lower()
    page.locator("#batch-query textarea").fill("a cup")
    page.locator("#rerank-button").click()
    page.locator("#batch-table table tbody tr").nth(1).wait_for(timeout=60_000)
    assert not message.is_visible()  # the next run clears it
    page.close()
