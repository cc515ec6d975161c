"""Screenshots of each tab for the README, from a running app (headless Debian chromium via Playwright).

lychee load --demo --port 7860 &
python docs/take_screenshots.py [--url http://127.0.0.1:7860/]
"""

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "lychee_gradio" / "assets"
IMAGES = ASSETS / "images"
OUT = Path(__file__).resolve().parent / "screenshots"


def rank_images(page) -> None:
    """Upload the sample images in Image ranking and rank them against one description."""
    page.get_by_role("tab", name="Image ranking").click()
    page.locator("#images-query textarea").fill("a white cup with a mountain line pattern")
    page.locator("#images-files input[type=file]").set_input_files(sorted(str(p) for p in IMAGES.glob("*.png")))
    page.locator("#images-preview img").nth(5).wait_for()
    page.locator("#rank-button").click()
    page.locator("#images-gallery img").nth(5).wait_for()
    page.wait_for_timeout(1500)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
        page.goto(args.url)

        page.locator("#single-query textarea").fill("white ceramic coffee cup with a minimalist mountain line pattern")
        page.locator("#single-document textarea").fill("北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml")
        page.locator("input[type=file]").nth(1).set_input_files(str(IMAGES / "mountain_cup.png"))
        page.locator("#score-button").click()
        page.locator("#single-result h2").wait_for()
        page.screenshot(path=OUT / "single.png", full_page=True)

        # The Why? panel of the same pair: heatmap, weighted texts, raw output.
        page.locator("#why-button").click()
        page.locator("#single-why-maps img").first.wait_for(timeout=120_000)
        page.locator("#single-why-texts .why-segment").first.wait_for()
        page.wait_for_timeout(1500)
        page.locator("#single-why").screenshot(path=OUT / "why.png")

        page.get_by_role("tab", name="Batch rerank").click()
        page.locator("#batch-query textarea").fill("white ceramic coffee cup with a mountain line pattern")
        page.locator("#batch-documents textarea").fill((ASSETS / "data" / "cups.txt").read_text())
        page.locator("#rerank-button").click()
        page.locator("#batch-table table tbody tr").nth(9).wait_for()
        page.screenshot(path=OUT / "batch.png", full_page=True)

        rank_images(page)
        page.screenshot(path=OUT / "images.png", full_page=True)

        page.get_by_role("tab", name="Evaluate").click()
        page.get_by_text("Shapes, colours and cups (sample set)").first.click()
        page.wait_for_timeout(1500)
        page.locator("#eval-button").click()
        page.locator("#eval-table table tbody tr").nth(11).wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=OUT / "evaluate.png", full_page=True)

        # Compare (the demo serves a random model of each family): the same documents ranked by both.
        page.get_by_role("tab", name="Compare").click()
        page.locator("#compare-query textarea").fill("保温杯 500ml")
        page.locator("#compare-documents textarea").fill((ASSETS / "data" / "cups.txt").read_text())
        page.locator("#compare-button").click()
        page.locator("#compare-table table tbody tr").nth(9).wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=OUT / "compare.png", full_page=True)

        # A Chinese browser: the Batch rerank tab, all in Chinese.
        chinese = browser.new_page(
            viewport={"width": 1280, "height": 1000}, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}
        )
        chinese.goto(args.url)
        chinese.locator("button[role=tab][data-tab-id=batch]").first.click()
        chinese.locator("#batch-query textarea").fill("保温杯 500ml")
        chinese.locator("#batch-documents textarea").fill((ASSETS / "data" / "cups.txt").read_text())
        chinese.locator("#rerank-button").click()
        chinese.locator("#batch-table table tbody tr").nth(9).wait_for()
        chinese.wait_for_timeout(1500)
        chinese.screenshot(path=OUT / "batch-zh.png", full_page=True)

        # A phone: the ranking of the Image ranking tab, two columns, whole captions.
        phone = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-US")
        phone.goto(args.url)
        rank_images(phone)
        phone.locator("#images-gallery").scroll_into_view_if_needed()
        phone.screenshot(path=OUT / "phone-images.png")
        browser.close()


if __name__ == "__main__":
    main()
