"""Helpers shared by the test modules (no test module imports another): calling each door as a client would,
making clips, reading metrics. Fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import httpx
import numpy as np

DOCS = ["a white cup with mountains", "北欧风手绘山形白瓷咖啡杯", "stainless steel tumbler", "a blue mug"]


def b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def data_url(path: str) -> str:
    return f"data:image/png;base64,{b64(path)}"


def gradio_call(url: str, api: str, data: list, headers: dict | None = None, with_event: bool = False):
    """A raw call of the Gradio HTTP API, as `curl` would make it: the event's final message (and its kind)."""
    event = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, headers=headers, timeout=60).json()
    stream = httpx.get(f"{url}gradio_api/call/{api}/{event['event_id']}", headers=headers, timeout=120).text
    lines = stream.strip().splitlines()
    return (lines[-2].removeprefix("event: "), lines[-1]) if with_event else lines[-1]


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def mcp_call(url: str, tool: str, arguments: dict, headers: dict | None = None):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def call():
        async with streamablehttp_client(f"{url}gradio_api/mcp/", headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool(tool, arguments)

    return asyncio.run(call())


def metric(url: str, name: str, **labels) -> float:
    text = httpx.get(url + "metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if match and all(part in (match.group(1) or "").split(",") for part in wanted.split(",") if part):
            total += float(match.group(2))
    return total


def make_clip(path, seconds: float = 3.0, fps: int = 10, size=(96, 64), codec: str = "libx264") -> str:
    """A clip of a red square crossing a background that changes colour: `seconds` long at `fps`."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        count = int(seconds * fps)
        for i in range(count):
            pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            x = int(i * (size[0] - 16) / max(1, count - 1))
            pixels[20:36, x : x + 16] = (255, 40, 40)
            pixels[:, :, 2] += np.uint8(i * 3 % 200)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


# -- the page in a real browser ------------------------------------------------------------------------------


def open_page(browser, url: str, tab: str | None = None, **options):
    """A new browser page on the app, on `tab` when given (locale en-US unless said)."""
    page = browser.new_page(**{"locale": "en-US", **options})
    page.goto(url)
    if tab:
        page.get_by_role("tab", name=tab).click()
    return page


def upload_files(page, box: str, files: list[str]) -> None:
    """Put `files` in the file box `box` and wait until all of them are uploaded: the box lists them as its value.
    (While they upload, Gradio shows each file's name beside a progress bar: a name alone proves nothing.)"""
    page.locator(f"{box} input[type=file]").set_input_files(files)
    page.locator(f"{box} table.file-preview tr.file").nth(len(files) - 1).wait_for(timeout=30_000)


def upload_images(page, files: list[str]) -> None:
    """Image ranking: upload `files` and wait for their thumbnails."""
    page.locator("#images-files input[type=file]").set_input_files(files)
    page.locator("#images-preview img").nth(len(files) - 1).wait_for(timeout=30_000)


def within(box: dict, width: int) -> bool:
    return box is not None and box["x"] >= -1 and box["x"] + box["width"] <= width + 1


def make_pdf(images, resolution: float = 72.0) -> bytes:
    """A PDF of one page per image (Pillow writes it: each page the image at `resolution` dpi)."""
    import io

    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=list(images[1:]), resolution=resolution)
    return buffer.getvalue()


def pdf_of_objects(objects: list[bytes], root: int = 1, trailer_extra: bytes = b"") -> bytes:
    """A PDF written by hand from its objects (object k+1 is objects[k]), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    table = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, trailer_extra, table)
    return bytes(out)


def pages_pdf(count: int, width: float = 200, height: float = 200, catalog_extra: bytes = b"", page_extra: bytes = b"") -> bytes:
    """A PDF of `count` empty pages of `width` x `height` points (written by hand: 10,000 pages in a few hundred KB)."""
    kids = b" ".join(b"%d 0 R" % (3 + k) for k in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b">>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] " % (width, height) + page_extra + b">>"] * count
    return pdf_of_objects(objects)
