"""The app's views and its live API: what the page shows and what gradio_client gets equal the engine's."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from lychee_gradio.config import Limits
from lychee_gradio.contract import RequestContext
from lychee_gradio.ui.batch import filter_ranking, rerank_view
from lychee_gradio.ui.forms import parse_documents, verdict
from lychee_gradio.ui.images import rank_images_view
from lychee_gradio.ui.single import score_view

from .conftest import CUP, CUPS, CUPS_TEXT, MUG, TUMBLER, page

# -- views ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "colour"), [(0.95, "green"), (0.7, "green"), (0.69, "yellow"), (0.4, "yellow"), (0.39, "red"), (0.0, "red")]
)
def test_a_score_reads_green_yellow_or_red_at_the_product_thresholds(score, colour):
    assert verdict(score)["colour"] == colour


def test_documents_are_text_blocks_between_dashes_plus_unattached_images():
    parsed = parse_documents("first\n---\nsecond [image: blue_mug.png]\n  ---  \nthird [image: 1]\n---\n", [CUP, MUG, TUMBLER])
    assert [(d["text"], d["name"]) for d in parsed] == [
        ("first", None),
        ("second", "blue_mug.png"),
        ("third", "mountain_cup.png"),
        (None, "steel_tumbler.png"),
    ]


def test_a_block_attaches_several_uploads_in_the_order_it_names_them():
    parsed = parse_documents("two [image: blue_mug.png, 1]\n---\nthree [image: 3] [image: 2]", [CUP, MUG, TUMBLER])
    assert [d["images"] for d in parsed] == [[MUG, CUP], [TUMBLER, MUG]]
    assert [d["name"] for d in parsed] == ["blue_mug.png, mountain_cup.png", "steel_tumbler.png, blue_mug.png"]


def test_an_image_reference_that_matches_no_upload_names_the_document_counted_from_one():
    with pytest.raises(ValueError, match=r"Document 2: \[image: nope.png\] matches no uploaded file"):
        parse_documents("a\n---\nb [image: nope.png]", [CUP])
    with pytest.raises(ValueError, match="Documents: give at least one"):
        parse_documents("\n---\n", [])


def test_the_single_view_shows_the_engine_score_and_logits(scorer):
    markdown, details = page(score_view, scorer, "white cup", None, "北欧风白瓷咖啡杯", CUP, "")
    (pair,) = scorer.score_with_logits("white cup", [{"text": "北欧风白瓷咖啡杯", "image": CUP}])
    assert details["score"] == pair.score and details["yes_logit"] == pair.yes_logit
    assert details["no_logit"] == pair.no_logit and details["colour"] == verdict(pair.score)["colour"]
    assert f"{pair.score:.3f}" in markdown and verdict(pair.score)["mark"] in markdown


def test_the_batch_view_table_is_best_first_with_input_positions(scorer):
    table, rows = page(rerank_view, scorer, "", CUP, CUPS_TEXT, [MUG], "", 0)
    documents = CUPS + [{"image": MUG}]
    expected = scorer.rerank({"image": CUP}, documents)
    assert [(r["index"], r["score"]) for r in rows] == [(r.index, r.score) for r in expected]
    body = [line for line in table.splitlines()[2:] if line.startswith("|")]  # the legend below
    assert len(body) == 11
    assert [int(line.split("|")[4]) for line in body] == [r.index + 1 for r in expected]
    assert "🖼 blue\\_mug.png" in table  # Markdown shown as typed: the underscore is escaped


def test_the_batch_view_honours_top_n_and_the_document_limit(scorer):
    _, rows = page(rerank_view, scorer, "cup", None, CUPS_TEXT, None, "", 3)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    with pytest.raises(ValueError, match="Documents: 10 given, at most 5"):
        page(rerank_view, scorer, "cup", None, CUPS_TEXT, None, "", 0, limits=Limits(max_documents=5))
    with pytest.raises(ValueError, match="Show the best N: give a whole number"):
        page(rerank_view, scorer, "cup", None, CUPS_TEXT, None, "", 2.5)


def test_the_image_ranking_view_marks_the_best_and_reports_progress(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "batch_size", 2)
    progress = []
    gallery, rows = page(
        rank_images_view,
        scorer,
        "white cup",
        None,
        [CUP, MUG, TUMBLER],
        "",
        0,
        on_progress=lambda done, total, words: progress.append((done, total, words)),
    )
    expected = scorer.rerank("white cup", [{"image": p} for p in (CUP, MUG, TUMBLER)])
    assert [(r["index"], r["score"]) for r in rows] == [(r.index, r.score) for r in expected]
    best_is_red = verdict(expected[0].score)["colour"] == "red"
    assert gallery[0][1].startswith("#1" if best_is_red else "★ #1") and not gallery[1][1].startswith("★")
    # Reading each image counts, then preparing each for the model, then each batch scored: one bar that moves
    # from the first image on.
    assert progress == [
        (1, 9, "reading image 1/3"),
        (2, 9, "reading image 2/3"),
        (3, 9, "reading image 3/3"),
        (4, 9, "preparing image 1/3"),
        (5, 9, "preparing image 2/3"),
        (6, 9, "preparing image 3/3"),
        (8, 9, "scoring 2/3"),
        (9, 9, "scoring 3/3"),
    ]


def test_a_stopped_ranking_shows_what_was_scored_ranked_among_itself(own_scorer):
    own_scorer.batch_size = 2
    stop, forwards = threading.Event(), []

    def stop_after_the_first_pass(*_):  # the first forward computes the shared prefix, the second scores 2 pairs
        forwards.append(1)
        if len(forwards) == 2:
            stop.set()

    handle = own_scorer.model.model.register_forward_hook(stop_after_the_first_pass)
    try:
        kept: list = []
        table, rows = page(
            rerank_view, own_scorer, "cup", None, CUPS_TEXT, None, "", 0, context=RequestContext(cancel=stop), kept=kept
        )
    finally:
        handle.remove()
    full = {r.index: r.score for r in own_scorer.rerank("cup", CUPS)}
    assert 1 <= len(rows) < len(CUPS) and f"Stopped after {len(rows)} of {len(CUPS)}" in table
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(r["score"] == pytest.approx(full[r["index"]], abs=1e-6) for r in rows)
    assert kept[0]["stopped"] and len(kept[0]["rows"]) == len(rows)


def test_hide_scores_below_filters_the_kept_ranking_without_scoring_again(own_scorer):
    kept: list = []
    _, every = page(rerank_view, own_scorer, "cup", None, CUPS_TEXT, None, "", 0, kept=kept)
    threshold = sorted(r["score"] for r in every)[len(every) // 2]
    table, rows = filter_ranking(kept[0], threshold)
    assert rows == [r for r in every if r["score"] >= threshold] and "hidden" in table


# -- the live server, called the way scripts call it -------------------------------------------------


@pytest.fixture(scope="module")
def client(live_app):
    return Client(live_app, verbose=False)


def test_the_score_endpoint_answers_what_the_engine_scores(client, scorer):
    markdown, details = client.predict(
        query_text="white cup", document_text="白瓷咖啡杯", document_image=handle_file(CUP), api_name="/score"
    )
    (pair,) = scorer.score_with_logits("white cup", [{"text": "白瓷咖啡杯", "image": CUP}])
    assert details["score"] == pytest.approx(pair.score, abs=1e-9)
    assert details["yes_logit"] == pytest.approx(pair.yes_logit, abs=1e-9)
    assert f"{pair.score:.3f}" in markdown


def test_the_rerank_endpoint_answers_what_the_engine_ranks(client, scorer):
    _, rows = client.predict(
        query_text="保温杯",
        documents=CUPS_TEXT,
        document_images=[handle_file(MUG)],
        instruction="Given a product search query, rank products.",
        top_n=4,
        api_name="/rerank",
    )
    documents = CUPS + [{"image": MUG}]
    expected = scorer.rerank("保温杯", documents, "Given a product search query, rank products.", top_n=4)
    assert [(r["index"], r["score"]) for r in rows] == [(r.index, pytest.approx(r.score, abs=1e-9)) for r in expected]


def test_the_rank_images_endpoint_answers_what_the_engine_ranks(client, scorer):
    gallery, rows = client.predict(
        query_text="a blue mug", images=[handle_file(p) for p in (CUP, MUG, TUMBLER)], api_name="/rank_images"
    )
    expected = scorer.rerank("a blue mug", [{"image": p} for p in (CUP, MUG, TUMBLER)])
    assert [(r["index"], r["score"]) for r in rows] == [(r.index, pytest.approx(r.score, abs=1e-9)) for r in expected]
    assert len(gallery) == 3 and "#1 · " in gallery[0]["caption"]


def test_bad_input_raises_in_the_client_and_the_next_call_still_works(client):
    with pytest.raises(AppError, match=r"Document 2: \[image: missing.png\] matches no uploaded file"):
        client.predict(query_text="cup", documents="a\n---\nb [image: missing.png]", api_name="/rerank")
    with pytest.raises(AppError, match="Query: give a query text"):
        client.predict(document_text="doc", api_name="/score")
    with pytest.raises(AppError, match="Documents: 51 given, at most 50"):
        client.predict(query_text="cup", documents="\n---\n".join(f"d{i}" for i in range(51)), api_name="/rerank")
    _, details = client.predict(query_text="cup", document_text="doc", api_name="/score")
    assert 0.0 <= details["score"] <= 1.0


def test_twenty_concurrent_calls_are_all_answered_correctly(live_app, scorer):
    documents = [f"document number {i} about cups" for i in range(20)]
    expected = scorer.score("cup", documents)

    def call(i: int) -> float:
        _, details = Client(live_app, verbose=False).predict(query_text="cup", document_text=documents[i], api_name="/score")
        return details["score"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    assert answers == pytest.approx(expected, abs=1e-6)


def test_the_batch_view_hides_scores_below_the_filter_and_says_how_many(scorer):
    _, every = page(rerank_view, scorer, "cup", None, CUPS_TEXT, None, "", 0)
    threshold = sorted(r["score"] for r in every)[len(every) // 2]
    table, rows = page(rerank_view, scorer, "cup", None, CUPS_TEXT, None, "", 0, threshold)
    assert rows == [r for r in every if r["score"] >= threshold]
    assert f"{len(every) - len(rows)} more below {threshold:.2f} hidden" in table


def test_the_batch_table_shows_how_far_each_document_moved_and_markdown_as_typed(scorer):
    table, rows = page(rerank_view, scorer, "cup", None, "**bold** cup\n---\n[link](x) mug\n---\nplain plate", None, "", 0)
    body = [line for line in table.splitlines()[2:] if line.startswith("|")]  # the legend below
    for line, row in zip(body, rows):
        change = row["index"] + 1 - row["rank"]
        assert line.split("|")[5].strip() == (f"▲{change}" if change > 0 else f"▼{-change}" if change < 0 else "=")
    assert "\\*\\*bold\\*\\* cup" in table and "\\[link\\](x) mug" in table


def test_a_chinese_request_gets_chinese_headers_verdicts_and_errors(scorer):
    table, _ = page(rerank_view, scorer, "杯子", None, CUPS_TEXT, None, "", 0, context=RequestContext(language="zh"))
    assert table.splitlines()[0] == "| 排名 | 分数 | 文档 | 输入序号 | 变化 |"
    markdown, details = page(score_view, scorer, "杯子", None, "白瓷杯", None, "", context=RequestContext(language="zh"))
    assert verdict(details["score"], "zh")["verdict"] in markdown
    assert details["verdict"] == verdict(details["score"])["verdict"]  # the JSON stays English for scripts
    with pytest.raises(ValueError, match="^文档 2:"):
        parse_documents("a\n---\nb [image: 9]", [CUP], lang="zh")


def test_downloads_hold_the_same_rows_as_csv_and_json(scorer):
    import csv
    import json

    from lychee_gradio.ui.downloads import write_downloads

    _, rows = page(rerank_view, scorer, "cup", None, CUPS_TEXT, [MUG], "", 0)
    csv_path, json_path = write_downloads(rows, "ranking")
    with open(csv_path, encoding="utf-8-sig") as file:
        table = list(csv.DictReader(file))
    assert json.loads(open(json_path, encoding="utf-8").read()) == rows
    assert [(int(r["index"]), float(r["score"]), r["image"] or None) for r in table] == [
        (r["index"], r["score"], r["image"]) for r in rows
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, 1.5, True, "abc"])
def test_hide_scores_below_takes_only_a_number_from_0_to_1(value):
    from lychee_gradio.ui.forms import PageError, check_min_score

    with pytest.raises(PageError, match="0"):
        check_min_score(value, "en")
    assert check_min_score(None, "en") == 0.0 and check_min_score(0.5, "en") == 0.5
