"""Documents as they come: a PDF scores as its pages, a long text as its chunks, each part exactly as if it were sent
alone; the document's score is its best part's, and the answer names that part (parts.py, inputs/pdf.py)."""

from __future__ import annotations

import base64
import json
import math
import zlib

import httpx
import pypdfium2
import pytest
from PIL import Image

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config, Limits
from lychee_gradio.contract import InputError
from lychee_gradio.engine.naive import NaiveScorer
from lychee_gradio.parts import segments_of
from lychee_gradio.video import load_video

from .helpers import make_clip, make_pdf, pages_pdf, pdf_of_objects

BUDGET = 64  # the text budget these tests give the tiny model, so that a long text is a few hundred tokens
LONG_TEXT = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} tells of {word} things." for s in range(6))
    for p, word in enumerate(["white cups", "mountain trails", "steel tumblers", "blue mugs", "red kettles"])
)
COLOURS = [(220, 30, 30), (30, 160, 60), (40, 60, 210)]


@pytest.fixture(scope="module")
def short_budget(scorer):
    """The session's tiny model with a text budget of 64 tokens."""
    return LycheeScorer(
        scorer.model, scorer.processor, model_name=scorer.model_name, device="cpu", family=scorer.family, max_text_tokens=BUDGET
    )


@pytest.fixture(scope="module")
def naive(tiny_model_dir):
    return NaiveScorer.load(tiny_model_dir)


@pytest.fixture(scope="module")
def three_pages():
    return make_pdf([Image.new("RGB", (300, 400), colour) for colour in COLOURS])


def rendered_pages(pdf: bytes, max_pixels: int) -> list[Image.Image]:
    """The pages as the rule says (docs/design.md): PDFium's rendering at the model's pixel bound, at most 300 dpi."""
    document = pypdfium2.PdfDocument(pdf)
    pages = []
    for page in document:
        width, height = page.get_size()
        scale = min(300 / 72, math.sqrt(max_pixels / (width * height)))
        pages.append(page.render(scale=scale, fill_color=(255, 255, 255, 255)).to_pil().convert("RGB"))
    return pages


# -- long texts ----------------------------------------------------------------------------------------------------


def test_a_long_texts_chunks_cover_it_and_each_scores_as_its_span_alone(short_budget, naive):
    (result_rows) = short_budget.rerank("mountain trails", [LONG_TEXT], long_documents="split")
    spans = sorted(row.part.chars for row in result_rows)
    assert len(spans) >= 3 and all(row.index == 0 and row.part.kind == "chunk" for row in result_rows)
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG_TEXT)
    assert all(later[0] <= earlier[1] for earlier, later in zip(spans, spans[1:]))  # no gap between chunks
    for row in result_rows:
        start, end = row.part.chars
        assert len(short_budget.token_offsets(LONG_TEXT[start:end])) <= BUDGET
        assert row.score == pytest.approx(naive.score(("mountain trails", None), (LONG_TEXT[start:end], None)), abs=1e-5)


def test_max_scores_a_long_text_by_its_best_chunk_and_names_its_span(short_budget):
    parts = short_budget.rerank("steel tumblers", [LONG_TEXT], long_documents="split")
    best = next(row for row in short_budget.rerank("steel tumblers", [LONG_TEXT, "a short text"]) if row.index == 0)
    assert best.score == max(row.score for row in parts)
    assert best.part == max(parts, key=lambda row: row.score).part
    (pair,) = short_budget.score_with_logits("steel tumblers", [LONG_TEXT])
    assert len(pair.parts) == len(parts) and pair.tokens == sum(part.tokens for part in pair.parts)


def test_chunks_end_between_words_and_at_a_sentence_where_the_chunks_end_holds_one(short_budget):
    rows = short_budget.rerank("cups", [LONG_TEXT], long_documents="split")
    ends = [row.part.chars[1] for row in rows if row.part.chars[1] < len(LONG_TEXT)]
    assert all(LONG_TEXT[end - 1].isspace() or LONG_TEXT[end].isspace() for end in ends)
    assert any(LONG_TEXT[:end].rstrip().endswith(".") for end in ends)


def test_truncate_gives_the_scores_of_before_and_refuse_names_the_document(short_budget, naive):
    (pair,) = short_budget.score_with_logits("blue mugs", [LONG_TEXT], long_documents="truncate")
    cut = LONG_TEXT[: short_budget.token_offsets(LONG_TEXT)[BUDGET - 1][1]]
    assert pair.part is None and pair.truncated == "document"
    assert pair.score == pytest.approx(naive.score(("blue mugs", None), (cut, None)), abs=1e-5)
    with pytest.raises(InputError) as refused:
        short_budget.rerank("blue mugs", ["short", LONG_TEXT], long_documents="refuse")
    assert (refused.value.field, refused.value.code, refused.value.status) == ("documents[1]", "long_document", 413)
    assert "chunks" in str(refused.value)


def test_an_unknown_mode_is_refused_by_name(short_budget):
    with pytest.raises(InputError) as refused:
        short_budget.rerank("q", ["d"], long_documents="longest")
    assert refused.value.field == "long_documents" and "max, split, truncate, refuse" in str(refused.value)


def test_an_explanation_of_a_long_text_explains_its_best_chunk(short_budget):
    best = short_budget.rerank("red kettles", [LONG_TEXT])[0]
    explained = short_budget.explain("red kettles", LONG_TEXT, grid=1)
    assert explained.part == best.part and explained.score == pytest.approx(best.score, abs=1e-6)
    start, end = best.part.chars
    assert "".join(segment.text for segment in explained.text[-1].segments).strip() in LONG_TEXT[start:end]


# -- PDFs ----------------------------------------------------------------------------------------------------------


def test_a_pdf_is_its_pages_in_order_each_scored_as_its_rendered_image(scorer, three_pages):
    rows = scorer.rerank("a red page", [three_pages], long_documents="split")
    assert sorted(row.part.page for row in rows) == [1, 2, 3] and {row.part.count for row in rows} == {3}
    images = rendered_pages(three_pages, scorer.max_pixels)
    alone = scorer.score("a red page", images)
    for row in rows:
        assert row.score == pytest.approx(alone[row.part.page - 1], abs=1e-5)
    (best,) = scorer.rerank("a red page", [three_pages])
    assert best.score == max(alone) and best.part.page == 1 + alone.index(max(alone))


def test_a_pdf_comes_as_bytes_a_path_or_a_dict_with_text(scorer, three_pages, tmp_path):
    path = tmp_path / "paper.pdf"
    path.write_bytes(three_pages)
    as_bytes, as_path = scorer.score("green", [three_pages, path])
    assert as_bytes == pytest.approx(as_path, abs=1e-6)
    (with_text,) = scorer.rerank("green", [{"pdf": three_pages, "text": "a caption", "id": 7}])
    assert with_text.id == 7 and with_text.part.kind == "page"


def test_a_pdf_cannot_be_a_query(scorer, three_pages):
    with pytest.raises(InputError) as refused:
        scorer.score(three_pages, ["a document"])
    assert (refused.value.field, refused.value.code) == ("query", "pdf_query")


def encrypted_pdf() -> bytes:
    return pdf_of_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
            b"<< /Filter /Standard /V 1 /R 2 /O <" + b"ab" * 32 + b"> /U <" + b"cd" * 32 + b"> /P -4 >>",
        ],
        trailer_extra=b"/Encrypt 4 0 R /ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>] ",
    )


def hidden_in_object_stream(action: bytes) -> bytes:
    """A PDF whose catalog's /OpenAction is packed in an object stream encoded as ASCIIHex (no Flate to inflate)."""
    packed = b"5 0 " + action
    stream = packed.hex().encode() + b">"
    return pdf_of_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
            b"<< /Type /ObjStm /N 1 /First 4 /Filter /ASCIIHexDecode /Length %d >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
        ]
    )


def flate_bomb() -> bytes:
    """One page whose content stream inflates to 70 MB of zeros (a few tens of KB in the file)."""
    content = zlib.compress(bytes(70 * 2**20), 9)
    return pdf_of_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        ]
    )


HOSTILE_PDFS = {
    "truncated": (lambda pdf: pdf[: len(pdf) // 2], 400, "pdf_broken"),
    "encrypted": (lambda pdf: encrypted_pdf(), 400, "pdf_encrypted"),
    "10,000 pages": (lambda pdf: pages_pdf(10_000), 413, "too_many_pages"),
    "a page of 100,000 x 100,000 points": (lambda pdf: pages_pdf(1, 100_000, 100_000), 400, "pdf_page_size"),
    "JavaScript on opening": (
        lambda pdf: pages_pdf(1, catalog_extra=b"/OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >> "),
        400,
        "pdf_active",
    ),
    "JavaScript spelled with an escape": (
        lambda pdf: pages_pdf(1, catalog_extra=b"/OpenAction << /S /Java#53cript /JS (x) >> "),
        400,
        "pdf_active",
    ),
    "a link to another file": (
        lambda pdf: pages_pdf(1, catalog_extra=b"/OpenAction << /S /GoToR /F (/etc/passwd) /D [0 /Fit] >> "),
        400,
        "pdf_active",
    ),
    "a program to launch": (lambda pdf: pages_pdf(1, catalog_extra=b"/OpenAction << /S /Launch /F (sh) >> "), 400, "pdf_active"),
    "JavaScript in an ASCIIHex object stream": (
        lambda pdf: hidden_in_object_stream(b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"),
        400,
        "pdf_active",
    ),
    "a page tree that loops": (
        lambda pdf: pdf_of_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]),
        400,
        "pdf_broken",
    ),
    "more pages counted than held": (lambda pdf: pages_pdf(1).replace(b"/Count 1", b"/Count 2"), 400, "pdf_broken"),
    "a content stream that inflates to 70 MB": (lambda pdf: flate_bomb(), 413, "pdf_bomb"),
}


def test_a_page_that_merely_shows_the_words_of_an_action_is_no_action(pdf_app):
    content = b"BT /F1 12 Tf 20 100 Td (see /JS and /Launch in the manual) Tj ET"
    pdf = pdf_of_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        ]
    )
    answer = httpx.post(f"{pdf_app}v1/rerank", json={"query": "q", "documents": [pdf_document(pdf)]}, timeout=60)
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def pdf_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=Limits(max_pdf_pages=5))))
    yield running.url
    running.close()


def pdf_document(pdf: bytes) -> dict:
    return {"pdf": base64.b64encode(pdf).decode()}


@pytest.mark.parametrize("kind", HOSTILE_PDFS)
def test_a_hostile_pdf_gets_a_clear_4xx_naming_the_document_and_the_server_keeps_serving(pdf_app, three_pages, kind):
    make, status, code = HOSTILE_PDFS[kind]
    body = {"query": "q", "documents": ["a text", pdf_document(make(three_pages))]}
    answer = httpx.post(f"{pdf_app}v1/rerank", json=body, timeout=60)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.json()["field"] == "documents[1].pdf" and "/" not in answer.json()["message"].replace("/v1", "")
    assert httpx.post(f"{pdf_app}v1/rerank", json={"query": "q", "documents": ["d"]}, timeout=60).status_code == 200


def test_v1_rerank_splits_a_pdf_into_its_pages_and_max_is_the_best_page(pdf_app, scorer, three_pages):
    split = httpx.post(
        f"{pdf_app}v1/rerank",
        json={"query": "a blue page", "documents": ["a text", pdf_document(three_pages)], "long_documents": "split"},
        timeout=60,
    ).json()
    pages = {row["part"]["page"]: row["relevance_score"] for row in split["results"] if row["index"] == 1}
    assert sorted(pages) == [1, 2, 3] and all(row["part"]["kind"] == "page" for row in split["results"] if row["index"])
    assert split["meta"]["long_documents"] == {"mode": "split", "documents_split": 1, "parts_scored": 3}
    best = httpx.post(
        f"{pdf_app}v1/rerank", json={"query": "a blue page", "documents": ["a text", pdf_document(three_pages)]}, timeout=60
    ).json()
    row = next(row for row in best["results"] if row["index"] == 1)
    assert row["relevance_score"] == pytest.approx(max(pages.values()), abs=1e-6)
    assert row["part"] == {"kind": "page", "index": max(pages, key=pages.get) - 1, "count": 3, "page": max(pages, key=pages.get)}
    assert "part" not in next(row for row in best["results"] if row["index"] == 0)


def test_openais_file_part_carries_a_pdf_too(pdf_app, three_pages):
    part = {
        "type": "file",
        "file": {"filename": "paper.pdf", "file_data": "data:application/pdf;base64," + base64.b64encode(three_pages).decode()},
    }
    answer = httpx.post(f"{pdf_app}v1/rerank", json={"query": "q", "documents": [{"content": [part]}]}, timeout=60)
    assert answer.status_code == 200 and answer.json()["results"][0]["part"]["kind"] == "page"


def test_a_request_over_the_page_limit_is_413_before_rendering(pdf_app, three_pages):
    body = {"query": "q", "documents": [pdf_document(three_pages), pdf_document(three_pages)]}
    answer = httpx.post(f"{pdf_app}v1/rerank", json=body, timeout=60)
    assert (answer.status_code, answer.json()["code"], answer.json()["field"]) == (413, "too_many_pages", "documents[1].pdf")


def test_long_documents_truncate_and_refuse_on_v1_rerank(pdf_app, scorer):
    long_text = "word " * (scorer.max_text_tokens + 500)
    truncated = httpx.post(
        f"{pdf_app}v1/rerank", json={"query": "q", "documents": [long_text], "long_documents": "truncate"}, timeout=60
    ).json()
    assert truncated["results"][0]["relevance_score"] == pytest.approx(
        scorer.score("q", [long_text], long_documents="truncate")[0], abs=1e-6
    )
    refused = httpx.post(
        f"{pdf_app}v1/rerank", json={"query": "q", "documents": ["d", long_text], "long_documents": "refuse"}, timeout=60
    )
    assert (refused.status_code, refused.json()["field"]) == (413, "documents[1]")


# -- long clips ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory):
    pytest.importorskip("av")
    return make_clip(tmp_path_factory.mktemp("clips") / "three-minutes.mp4", seconds=180, fps=1, size=(32, 32))


def test_a_three_minute_clip_is_three_segments_each_scored_as_a_clip_of_its_own(scorer, naive, three_minutes):
    rows = sorted(scorer.rerank("a red square", [{"video": three_minutes}], long_documents="split"), key=lambda r: r.part.index)
    assert [row.part.seconds for row in rows] == [(0.0, 64.0), (64.0, 128.0), (128.0, 180.0)]
    assert {row.part.kind for row in rows} == {"segment"} and {row.part.count for row in rows} == {3}
    whole = load_video(three_minutes, "clip", keep_pixels=scorer.max_pixels, segments=True)
    for row, (segment, part) in zip(rows, segments_of(whole)):
        assert part == row.part and len(segment.frames) <= 64 and segment.timestamps[0] == 0.0
        assert row.score == pytest.approx(
            scorer.score("a red square", [{"video": segment}], long_documents="truncate")[0], abs=1e-6
        )
    first, _ = segments_of(whole)[0]
    assert rows[0].score == pytest.approx(naive.score(("a red square", None), (None, None, first)), abs=1e-5)
    (best,) = scorer.rerank("a red square", [{"video": three_minutes}])
    assert best.score == max(row.score for row in rows) and best.part == max(rows, key=lambda r: r.score).part


def test_truncate_thins_a_long_clip_to_64_frames_as_before(scorer, three_minutes):
    (pair,) = scorer.score_with_logits("a red square", [{"video": three_minutes}], long_documents="truncate")
    thinned = load_video(three_minutes, "clip", keep_pixels=scorer.max_pixels)
    assert pair.part is None and len(thinned.frames) == 64
    assert pair.score == pytest.approx(scorer.score("a red square", [{"video": thinned}])[0], abs=1e-6)


def test_v1_rerank_answers_a_long_clips_segments_with_their_seconds(pdf_app, three_minutes):
    clip = {"video": "data:video/mp4;base64," + base64.b64encode(open(three_minutes, "rb").read()).decode()}
    split = httpx.post(f"{pdf_app}v1/rerank", json={"query": "q", "documents": [clip], "long_documents": "split"}, timeout=120)
    seconds = sorted(row["part"]["seconds"] for row in split.json()["results"])
    assert seconds == [[0.0, 64.0], [64.0, 128.0], [128.0, 180.0]]
    refused = httpx.post(f"{pdf_app}v1/rerank", json={"query": "q", "documents": [clip], "long_documents": "refuse"}, timeout=120)
    assert (refused.status_code, refused.json()["code"], refused.json()["field"]) == (413, "long_document", "documents[0]")


# -- lychee eval ---------------------------------------------------------------------------------------------------


def test_lychee_eval_takes_a_pdf_and_one_of_its_pages_as_labelled_documents(tmp_path, tiny_model_dir, three_pages, capsys):
    from lychee_gradio.cli import main as lychee

    (tmp_path / "paper.pdf").write_bytes(three_pages)
    line = {"query": "a green page", "documents": [{"pdf": "paper.pdf"}, {"pdf": "paper.pdf#page=2"}, "a text"], "relevant": [1]}
    (tmp_path / "set.jsonl").write_text(json.dumps(line) + "\n")
    assert lychee(["eval", str(tmp_path / "set.jsonl"), "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert "ndcg@1" in capsys.readouterr().out
    (tmp_path / "bad.jsonl").write_text(json.dumps({**line, "documents": [{"pdf": "paper.pdf#page=9"}, "a text"]}) + "\n")
    assert lychee(["eval", str(tmp_path / "bad.jsonl"), "--model", str(tiny_model_dir), "--device", "cpu"]) == 2
    assert "documents[0].page" in capsys.readouterr().err


def test_v1_rerank_splits_a_long_text_into_chunks_each_scored_as_its_span_alone(pdf_app, scorer):
    text = "\n\n".join(f"Section {k}. " + "A white cup with a mountain line, glazed and fired. " * 30 for k in range(12))
    answer = httpx.post(f"{pdf_app}v1/rerank", json={"query": "cup", "documents": [text], "long_documents": "split"}, timeout=120)
    rows = answer.json()["results"]
    assert len(rows) >= 2 and {row["part"]["kind"] for row in rows} == {"chunk"}
    spans = [tuple(row["part"]["chars"]) for row in rows]
    alone = scorer.score("cup", [text[start:end] for start, end in spans], long_documents="truncate")
    assert [row["relevance_score"] for row in rows] == pytest.approx(alone, abs=1e-5)


def test_v1_explain_explains_a_pdfs_best_page_and_names_its_own_field(pdf_app, three_pages):
    explained = httpx.post(
        f"{pdf_app}v1/explain", json={"query": "a red page", "document": pdf_document(three_pages), "grid": 1}, timeout=120
    )
    assert explained.status_code == 200 and explained.json()["part"]["kind"] == "page"
    broken = httpx.post(
        f"{pdf_app}v1/explain", json={"query": "q", "document": pdf_document(three_pages[:200]), "grid": 1}, timeout=60
    )
    assert (broken.status_code, broken.json()["field"]) == (400, "document.pdf")


def test_the_single_tab_shows_the_best_page_of_a_pdf_beside_its_score(scorer, tmp_path):
    from gradio_client import Client, handle_file

    from lychee_gradio.ui.single import score_view

    from .conftest import page

    colours = {1: (255, 0, 0), 2: (0, 128, 0), 3: (0, 0, 255)}
    paper = tmp_path / "paper.pdf"
    paper.write_bytes(make_pdf([Image.new("RGB", (120, 90), colour) for colour in colours.values()]))
    kept: list = []
    _, details = page(score_view, scorer, "a green page", None, None, None, "", [str(paper)], kept=kept)
    picture, caption = kept[0]
    best = details["part"]["page"]
    assert str(best) in caption
    assert max(abs(a - b) for a, b in zip(picture.convert("RGB").getpixel((60, 45)), colours[best])) <= 8  # that page
    kept = []
    page(score_view, scorer, "a green page", None, "a text document", None, "", kept=kept)
    assert kept == [None]  # no PDF: nothing to show
    running = app.start(scorer, app.ServerSettings(port=0))
    try:  # gradio_client's /score still answers two values: the page's picture is the page's alone
        markdown, found = Client(running.url, verbose=False).predict(
            query_text="a green page", document_files=[handle_file(str(paper))], api_name="/score"
        )
        assert found["part"]["page"] == best and found["score"] == pytest.approx(details["score"], abs=1e-6)
    finally:
        running.close()
