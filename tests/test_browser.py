"""The page in a real browser: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil

import pytest

from .conftest import CUPS, CUPS_TEXT

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install playwright)"
    if missing is None and not shutil.which(CHROMIUM):
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if missing:
        if os.environ.get("LYCHEE_REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


def test_the_batch_tab_ranks_pasted_documents_best_first(browser, live_app, scorer):
    page = browser.new_page(locale="en-US")
    page.goto(live_app)
    page.get_by_role("tab", name="Batch rerank").click()
    page.locator("#batch-query textarea").fill("保温杯 500ml")
    page.locator("#batch-documents textarea").fill(CUPS_TEXT)
    page.locator("#rerank-button").click()
    rows = page.locator("#batch-table table tbody tr")
    rows.nth(len(CUPS) - 1).wait_for(timeout=60_000)
    shown = [int(rows.nth(i).locator("td").nth(3).inner_text()) for i in range(rows.count())]
    expected = scorer.rerank("保温杯 500ml", CUPS)
    assert shown == [r.index + 1 for r in expected]
    assert page.get_by_text("Demo mode: the model has random weights").is_visible()
    page.close()


def test_a_chinese_browser_gets_chinese_labels(browser, live_app):
    page = browser.new_page(locale="zh-CN")
    page.goto(live_app)
    page.get_by_role("tab", name="批量重排").wait_for(timeout=30_000)
    assert page.get_by_role("tab", name="单对评分").is_visible()
    assert page.get_by_text("演示模式").first.is_visible()
    page.close()
