"""The page in a real browser: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import pytest

from .conftest import CUPS, CUPS_TEXT


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
    assert page.get_by_text("Demo mode: the models named random-… have random weights").is_visible()
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
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from .conftest import ASSETS, CUP, MUG, TUMBLER  # noqa: E402
from .helpers import open_page, upload_files, upload_images, within  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
SAMPLE = ASSETS / "eval" / "sample.jsonl"


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
    assert "Document image (notanimage.png): not an image this app can read" in message
    assert "/tmp" not in message and "gradio" not in message.lower()
    page.close()


def test_stop_ends_a_long_image_ranking_shows_what_was_scored_and_the_next_run_works(browser, page_app):
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
        toast = page.locator(".toast-body", has_text="Stopped after")
        toast.wait_for(timeout=30_000)  # the engine stops at the next batch boundary and says so
        stopped_at = slowdown.forwards
        time.sleep(1.5)
        assert slowdown.forwards == stopped_at < before + 13  # no work goes on for the stopped run
        done, total = map(int, re.search(r"Stopped after (\d+) of (\d+)", toast.inner_text()).groups())
        assert total == 12 and 1 <= done < 12
        # What was scored before Stop stays on the page, ranked among itself, with its downloads.
        page.locator("#images-gallery img").nth(done - 1).wait_for(timeout=30_000)
        assert page.locator("#images-gallery img").count() == done
        page.locator("#images-downloads a").nth(1).wait_for(timeout=30_000)
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
    fetch = {
        Path(href.split("?")[0]).suffix: page.request.get(href if href.startswith("http") else base + href) for href in hrefs
    }
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
    from gradio_client import Client

    # Scored once first: Gradio's own figures timed a streaming run to its first update ("p50: 0 ms").
    Client(url, verbose=False).predict("a cup", None, "a white cup", None, "", None, api_name="/score")
    page = open_page(browser, url)
    page.get_by_text("Use via API").click()
    page.get_by_text('api_name="/rerank"').first.wait_for(timeout=30_000)
    text = page.locator("body").inner_text()
    assert "[object Object]" not in text and "value_" not in text
    assert " ms" not in text and "successful" not in text  # no misleading latency figures
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


# -- the second pass: every model in view, Stop, live filter, examples, uploads, phone, Chinese --------------


# Latin-script words a Chinese page may show: names, formats, keys, the [image: ...] and [video: ...] tags one types,
# and what the user typed or uploaded.
ALLOWED_LATIN = {
    "API",
    "PDF",
    "CSV",
    "JSON",
    "jsonl",
    "zip",
    "jpg",
    "png",
    "Ctrl",
    "Enter",
    "Gradio",
    "image",
    "video",
    "relevant",
    "random-",
    "lychee-rerank-mm",
    "Qwen3-VL-Reranker",
    "yes",
    "logit",
    "mountain_cup",
    "bad",
    "sample",
    "images",
}  # the last: the sample data's file names (sample.jsonl, images.zip)

VISIBLE_WORDS = """() => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const element = node.parentElement;
    if (!element || !element.getClientRects().length || element.closest("textarea, code, pre")) continue;
    const style = getComputedStyle(element);
    if (style.display === "none" || style.visibility === "hidden") continue;
    found.push(node.textContent);
  }
  for (const element of document.querySelectorAll("[aria-label], [title]")) {
    for (const name of ["aria-label", "title"]) if (element.getAttribute(name)) found.push(element.getAttribute(name));
  }
  return found;
}"""


def test_a_chinese_page_shows_no_english_word_outside_names_and_code(browser, two_model_app, scorer, qwen3_scorer, tmp_path):
    page = browser.new_page(
        locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}, viewport={"width": 1280, "height": 900}
    )
    page.goto(two_model_app)
    tabs = page.get_by_role("tab")
    tabs.nth(4).wait_for(timeout=30_000)
    texts = []
    for i in range(tabs.count()):
        tabs.nth(i).click()
        page.wait_for_timeout(500)
        texts += page.evaluate(VISIBLE_WORDS)
    page.locator("button[role=tab][data-tab-id=batch]").first.click()
    page.locator("#rerank-button").click()  # nothing given: an error toast
    page.locator(".toast-body").first.wait_for(timeout=30_000)
    texts += page.evaluate(VISIBLE_WORDS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "documents": ["a", "b"], "relevant": [5]}) + "\n")
    page.locator("button[role=tab][data-tab-id=evaluate]").first.click()
    page.locator("#eval-data input[type=file]").set_input_files(str(bad))
    page.locator("#eval-button").click()
    page.locator(".toast-body", has_text="标注数据第 1 行").wait_for(timeout=30_000)
    texts += page.evaluate(VISIBLE_WORDS)
    page.close()
    names = {Path(scorer.model_name).name, Path(qwen3_scorer.model_name).name}
    instructions = {scorer.family.default_instruction, qwen3_scorer.family.default_instruction}  # the model's own
    words = {word for text in texts if text.strip() not in instructions for word in re.findall(r"[A-Za-z][A-Za-z'’-]{2,}", text)}
    english = {word for word in words if word not in ALLOWED_LATIN and not any(word in name for name in names)}
    assert not english, english


def test_the_subtitle_names_the_model_picked(browser, two_model_app, qwen3_scorer):
    page = open_page(browser, two_model_app)
    served = page.locator("#served-model")
    served.get_by_text("Scoring with").wait_for(timeout=30_000)
    assert "tiny-lychee" in served.inner_text()
    page.locator("#model-picker input").click()
    page.get_by_role("option", name=Path(qwen3_scorer.model_name).name).click()
    served.get_by_text("Qwen3-VL-Reranker").wait_for(timeout=30_000)
    page.close()


def test_hide_scores_below_filters_the_shown_ranking_without_running_again(browser, page_app):
    url, _, slowdown = page_app
    page = open_page(browser, url, "Batch rerank")
    page.locator("#batch-query textarea").fill("保温杯 500ml")
    page.locator("#batch-documents textarea").fill(CUPS_TEXT)
    page.locator("#rerank-button").click()
    rows = page.locator("#batch-table table tbody tr")
    rows.nth(len(CUPS) - 1).wait_for(timeout=60_000)
    scores = sorted(float(rows.nth(i).locator("td").nth(1).inner_text().split()[-1]) for i in range(rows.count()))
    before = slowdown.forwards
    slider = page.locator("#batch-query-min-score input[type=number]")
    slider.fill(f"{scores[len(scores) // 2]:.2f}")
    slider.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#batch-table table tbody tr').length < n", arg=len(CUPS), timeout=30_000
    )
    assert slowdown.forwards == before  # no model work: the kept ranking was filtered
    assert "hidden" in page.locator("#batch-table").inner_text()
    page.close()


def test_an_example_clears_the_image_it_does_not_set(browser, page_app):
    url, _, _ = page_app
    page = open_page(browser, url)
    page.locator("input[type=file]").first.set_input_files(MUG)  # the query image box
    page.locator("#single-query img, .image-container img").first.wait_for(timeout=30_000)
    page.get_by_text("Mountain-pattern cup").first.click()
    page.wait_for_function("() => document.querySelector('#single-query textarea').value.includes('mountain')", timeout=30_000)
    page.wait_for_timeout(500)
    images = [src for src in page.locator("img").evaluate_all("els => els.map(e => e.src)") if "blue_mug" in src]
    assert not images  # the mug uploaded before is gone; the example's own cup image is in the document box
    page.close()


def test_a_file_that_is_not_an_image_is_named_as_soon_as_it_is_uploaded(browser, page_app, tmp_path):
    url, _, _ = page_app
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"")
    page = open_page(browser, url, "Image ranking")
    page.locator("#images-files input[type=file]").set_input_files([CUP, str(fake)])
    toast = page.locator(".toast-body", has_text="holiday.png")
    toast.wait_for(timeout=30_000)  # before any run
    assert "Images to rank, image 2 (holiday.png): not an image this app can read" in toast.inner_text()
    page.close()


def test_a_phone_reads_the_evaluate_chart_and_is_told_to_swipe_wide_tables(browser, page_app):
    url, _, _ = page_app
    page = browser.new_page(viewport=PHONE, locale="en-US")
    page.goto(url)
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-data input[type=file]").set_input_files(str(SAMPLE))
    page.locator("#eval-images input[type=file]").set_input_files(str(SAMPLE.parent / "images.zip"))
    page.locator("#eval-button").click()
    page.locator("#eval-table th").nth(3).wait_for(timeout=120_000)
    assert page.get_by_text("Swipe the table sideways").first.is_visible()
    chart = page.locator("#eval-chart")
    chart.locator("svg").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    box = chart.bounding_box()
    texts = [label for label in chart.locator("svg text").all() if label.text_content().strip()]
    labels = [label.bounding_box() for label in texts]
    assert labels and all(within(label, PHONE["width"]) for label in labels)
    # Every label, axis titles included, is drawn where it is: not cut off by the chart's box.
    for label in texts:
        label.scroll_into_view_if_needed()
        assert label.evaluate("""element => {
            const box = element.getBoundingClientRect();
            const found = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
            return found === element || element.contains(found) || (found && found.closest('svg') === element.closest('svg'));
        }"""), label.text_content()
    bars = sorted(
        (label for label in labels if label["x"] < box["x"] + box["width"] / 2 and label["height"] < 30), key=lambda b: b["y"]
    )  # the bars' labels (the rotated axis title spans them all)
    assert all(a["y"] + a["height"] <= b["y"] + 1 for a, b in zip(bars, bars[1:]))  # no label over another
    page.close()
    desktop = open_page(browser, url, "Evaluate")
    desktop.locator("#eval-button").wait_for(timeout=30_000)
    assert not desktop.get_by_text("Swipe the table sideways").first.is_visible()
    desktop.close()


def test_image_ranking_shows_a_clip_by_its_first_frame_beside_the_photos(browser, page_app, tmp_path):
    pytest.importorskip("av")
    from .helpers import make_clip

    url, _, _ = page_app
    clip = make_clip(tmp_path / "clip.mp4")
    page = open_page(browser, url, "Image ranking", viewport={"width": 1280, "height": 1000})
    page.locator("#images-query textarea").fill("a red square")
    page.locator("#images-files input[type=file]").set_input_files([CUP, clip])
    page.locator("#images-preview .thumbnail-item").nth(1).wait_for(timeout=30_000)
    assert not page.locator(".toast-body").count()  # a clip is no unreadable image
    page.locator("#rank-button").click()
    page.locator("#images-gallery .thumbnail-item").nth(1).wait_for(timeout=60_000)
    assert page.locator("#images-gallery .thumbnail-item img").count() == 2  # the clip as its first frame
    assert page.locator("#images-gallery video").count() == 0
    page.close()


def test_a_batch_block_with_two_images_and_a_clip_ranks_as_the_library_does(browser, page_app, tmp_path):
    pytest.importorskip("av")
    from .helpers import make_clip

    url, own, _ = page_app
    clip = make_clip(tmp_path / "clip.mp4")
    page = open_page(browser, url, "Batch rerank")
    page.locator("#batch-query textarea").fill("a white cup")
    page.locator("#batch-documents textarea").fill(
        "two photos and a clip [image: mountain_cup.png, blue_mug.png] [video: clip.mp4]\n---\na steel tumbler"
    )
    upload_files(page, "#batch-files", [CUP, MUG, clip])  # uploaded before the run
    page.locator("#rerank-button").click()
    rows = page.locator("#batch-table table tbody tr")
    rows.nth(1).wait_for(timeout=60_000)
    expected = own.rerank(
        "a white cup", [{"text": "two photos and a clip", "images": [CUP, MUG], "video": clip}, "a steel tumbler"]
    )
    assert [int(rows.nth(i).locator("td").nth(3).inner_text()) for i in range(2)] == [r.index + 1 for r in expected]
    assert "mountain_cup.png, blue_mug.png, clip.mp4" in page.locator("#batch-table").inner_text()
    page.close()
