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


# -- the first ten minutes: phone, bad uploads, Stop, downloads, Chinese, shortcuts, offline docs ----------

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from lychee_gradio import LycheeScorer, app  # noqa: E402

from .conftest import ASSETS, CUP, MUG, TUMBLER  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
SAMPLE = ASSETS / "eval" / "sample.jsonl"


class Slowdown:
    """Makes the served model sleep before each forward pass while `seconds` is set (for Stop)."""

    def __init__(self, scorer):
        self.seconds = 0.0
        self.forwards = 0

        def hook(module, args, kwargs):
            self.forwards += 1
            if self.seconds:
                time.sleep(self.seconds)

        scorer.model.model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(scope="module")
def page_app(tiny_model_dir):
    """A server of this module's own (its own copy of the tiny model, so slowing it touches no other test)."""
    own = LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=1)
    slowdown = Slowdown(own)
    running = app.start(own, app.ServerSettings(port=0, demo_mode=True))
    yield running.url, own, slowdown
    running.close()


def open_page(browser, url: str, tab: str | None = None, **options):
    """A new browser page on the app, on `tab` when given (locale en-US unless said)."""
    page = browser.new_page(**{"locale": "en-US", **options})
    page.goto(url)
    if tab:
        page.get_by_role("tab", name=tab).click()
    return page


def upload_images(page, files: list[str]) -> None:
    """Image ranking: upload `files` and wait for their thumbnails."""
    page.locator("#images-files input[type=file]").set_input_files(files)
    page.locator("#images-preview img").nth(len(files) - 1).wait_for(timeout=30_000)


def within(box: dict, width: int) -> bool:
    return box is not None and box["x"] >= -1 and box["x"] + box["width"] <= width + 1


def test_a_phone_shows_every_tab_the_whole_gallery_and_a_readable_evaluate_table(browser, page_app):
    url, _, _ = page_app
    page = browser.new_page(viewport=PHONE, locale="en-US")
    page.goto(url)
    page.get_by_role("tab", name="Single").wait_for(timeout=30_000)
    assert page.get_by_role("tab").all_inner_texts() == ["Single", "Batch rerank", "Image ranking", "Evaluate"]
    page.get_by_role("tab", name="Image ranking").click()
    page.locator("#images-query textarea").fill("a blue mug")
    upload_images(page, [CUP, MUG, TUMBLER, CUP, MUG])  # thumbnails before ranking
    page.locator("#rank-button").click()
    items = page.locator("#images-gallery .thumbnail-item, #images-gallery button.thumbnail-item")
    items.nth(4).wait_for(timeout=60_000)
    assert all(within(items.nth(i).bounding_box(), PHONE["width"]) for i in range(5))
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-data input[type=file]").set_input_files(str(SAMPLE))
    page.locator("#eval-images input[type=file]").set_input_files(str(SAMPLE.parent / "images.zip"))
    page.locator("#eval-button").click()
    headers = page.locator("#eval-table th")
    headers.nth(3).wait_for(timeout=120_000)
    table = page.locator("#eval-table table").bounding_box()
    assert within(table, PHONE["width"])
    # Each heading on one line: not squeezed to a letter per line.
    assert all(headers.nth(i).bounding_box()["height"] < 60 for i in range(headers.count()))
    assert page.locator("#eval-table td").first.bounding_box()["width"] > 40
    page.close()


def test_a_file_that_is_not_an_image_is_named_without_a_server_path(browser, page_app, tmp_path):
    url, _, _ = page_app
    fake = tmp_path / "notanimage.png"
    fake.write_text("this is text, not a picture")
    page = open_page(browser, url)
    page.locator("#single-query textarea").wait_for(timeout=30_000)
    page.locator("#single-query textarea").fill("a cup")
    page.locator("#single-document textarea").fill("a mug")
    page.locator("input[type=file]").nth(1).set_input_files(str(fake))  # the document image box
    page.locator("#score-button").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    message = toast.inner_text()
    assert "notanimage.png is not an image this app can read" in message
    assert "/tmp" not in message and "gradio" not in message.lower()
    page.close()


def test_stop_ends_a_long_image_ranking_and_the_next_run_works(browser, page_app):
    url, _, slowdown = page_app
    page = open_page(browser, url, "Image ranking")
    page.locator("#images-query textarea").fill("a blue mug")
    upload_images(page, [CUP, MUG, TUMBLER] * 4)
    slowdown.seconds = 0.5
    try:
        before = slowdown.forwards
        page.locator("#rank-button").click()
        deadline = time.monotonic() + 30
        while slowdown.forwards < before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        page.locator("#rank-button-stop").click()
        time.sleep(1.5)  # the engine stops at the next batch boundary
        stopped_at = slowdown.forwards
        time.sleep(1.5)
        assert slowdown.forwards == stopped_at < before + 13  # no work goes on for the stopped run
        assert page.locator("#images-gallery img").count() == 0
    finally:
        slowdown.seconds = 0
    page.locator("#rank-button").click()
    page.locator("#images-gallery img").nth(11).wait_for(timeout=60_000)
    page.close()


def test_the_csv_download_holds_the_json_results(browser, page_app):
    url, scorer, _ = page_app
    page = open_page(browser, url, "Batch rerank")
    page.locator("#batch-query textarea").fill("保温杯 500ml")
    page.locator("#batch-documents textarea").fill(CUPS_TEXT)
    page.locator("#rerank-button").click()
    links = page.locator("#batch-downloads a")
    links.nth(1).wait_for(timeout=60_000)
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    base = url.rstrip("/")
    fetch = {Path(href.split("?")[0]).suffix: page.request.get(href if href.startswith("http") else base + href)
             for href in hrefs}
    rows = json.loads(fetch[".json"].text())
    table = list(csv.DictReader(io.StringIO(fetch[".csv"].body().decode("utf-8-sig"))))
    assert [int(r["index"]) for r in table] == [r["index"] for r in rows]
    assert [float(r["score"]) for r in table] == [r["score"] for r in rows]
    assert [r["index"] for r in rows] == [r.index for r in scorer.rerank("保温杯 500ml", CUPS)]
    page.close()


def test_a_chinese_browser_reads_chinese_table_headers_verdicts_and_errors(browser, page_app):
    url, _, _ = page_app
    page = browser.new_page(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    page.goto(url)
    page.get_by_role("tab", name="单对评分").wait_for(timeout=30_000)
    page.locator("#single-query textarea").fill("白瓷杯")
    page.locator("#single-document textarea").fill("不锈钢保温杯")
    page.locator("#score-button").click()
    result = page.locator("#single-result")
    result.locator("h2").wait_for(timeout=30_000)
    assert any(words in result.inner_text() for words in ("高度相关", "部分相关", "不相关"))
    page.get_by_role("tab", name="批量重排").click()
    page.locator("#batch-query textarea").fill("保温杯")
    page.locator("#batch-documents textarea").fill(CUPS_TEXT)
    page.locator("#rerank-button").click()
    page.locator("#batch-table th").first.wait_for(timeout=60_000)
    assert page.locator("#batch-table th").all_inner_texts() == ["排名", "分数", "文档", "输入序号", "变化"]
    page.locator("#batch-documents textarea").fill("")
    page.locator("#rerank-button").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    assert "文档:请至少给出一个文本块或一张图片" in toast.inner_text()
    page.close()


def test_ctrl_enter_runs_the_batch_tab(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url, "Batch rerank")
    page.locator("#batch-query textarea").fill("cup")
    page.locator("#batch-documents textarea").fill("a mug\n---\na plate\n---\na cup")
    page.locator("#batch-documents textarea").press("Control+Enter")
    page.locator("#batch-table tbody tr").nth(2).wait_for(timeout=60_000)
    page.close()


def test_the_preset_turns_custom_when_edited_and_comes_back_when_chosen(browser, page_app):
    from lychee_gradio.presets import INSTRUCTION_PRESETS

    url, _, _ = page_app
    page = open_page(browser, url)
    preset = page.locator("#preset input")
    instruction = page.locator("#instruction textarea")
    preset.wait_for(timeout=30_000)
    preset.click()
    page.get_by_role("option", name="E-commerce").click()
    page.wait_for_function("() => document.querySelector('#instruction textarea').value.startsWith('Given a product')")
    assert instruction.input_value() == INSTRUCTION_PRESETS["E-commerce"]
    instruction.fill("")
    instruction.press_sequentially("My own task.")  # typed, as a user does
    page.wait_for_function("() => document.querySelector('#preset input').value.startsWith('Custom')")
    preset.click()
    page.get_by_role("option", name="Web search").click()
    page.wait_for_function("() => !document.querySelector('#instruction textarea').value.startsWith('My own')")
    preset.click()
    page.get_by_role("option", name="Custom (edited)").click()
    page.wait_for_function("() => document.querySelector('#instruction textarea').value === 'My own task.'")
    page.close()


def test_the_api_docs_render_without_internet(browser, page_app):
    url, _, _ = page_app
    page = browser.new_page()
    outside = []

    def only_local(route):
        host = route.request.url.split("/")[2]
        if host.startswith(("127.0.0.1", "localhost")):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", only_local)
    page.goto(url + "docs")
    page.get_by_text("/v1/rerank").first.wait_for(timeout=30_000)
    assert page.locator(".swagger-ui").count() == 1
    page.close()


def test_use_via_api_names_every_parameter_in_english(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url)
    page.get_by_text("Use via API").click()
    page.get_by_text('api_name="/rerank"').first.wait_for(timeout=30_000)
    text = page.locator("body").inner_text()
    assert "[object Object]" not in text and "value_" not in text
    assert 'provided in the "Query text" Textbox component' in text and "/v1/rerank" in text
    page.close()


# -- why this score ---------------------------------------------------------------------------------------


def test_the_single_tabs_why_panel_shows_the_heatmap_and_the_weighted_text(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url, viewport={"width": 1280, "height": 1000})
    page.locator("#single-query textarea").fill("a white cup with mountains")
    page.locator("#single-document textarea").fill("白瓷 cup, 350 ml")
    page.locator("input[type=file]").nth(1).set_input_files(CUP)  # the document image box
    page.locator("#single-why").wait_for()
    page.locator("#why-button").click()
    page.locator("#single-why-maps img").first.wait_for(timeout=60_000)
    segments = page.locator("#single-why-texts .why-segment")
    segments.first.wait_for()
    assert segments.count() >= 6  # the query's words and the document's characters and words
    assert page.locator("#single-why-texts .why-legend img").count() == 1
    assert "p(yes)" in page.locator("#single-why-raw").inner_text()
    page.close()


def test_clicking_a_ranked_image_opens_its_why_panel(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url, "Image ranking", viewport={"width": 1280, "height": 1000})
    page.locator("#images-query textarea").fill("a blue mug")
    upload_images(page, [CUP, MUG, TUMBLER])
    page.locator("#rank-button").click()
    page.locator("#images-gallery .thumbnail-item").nth(2).wait_for(timeout=60_000)
    page.locator("#images-gallery .thumbnail-item").first.click()
    page.locator("#images-why-maps img").first.wait_for(timeout=60_000)
    assert "p(yes)" in page.locator("#images-why-raw").inner_text()
    page.close()
