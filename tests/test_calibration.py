"""Thresholds calibrated on the user's own labels (calibration.py, `lychee eval --calibrate`): each meets its target
on the labelled pairs exactly as stated, falls back with "too few labels", and differs by modality when the data does."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from lychee_gradio.calibration import MIN_PAIRS, calibrate, filter_below, fit, show_first
from lychee_gradio.cli import main as lychee


def labelled(seed: int, count: int, shift: float) -> tuple[list[float], list[bool]]:
    """Scores whose relevant pairs sit `shift` higher on average (a stub scorer's known scores)."""
    rng = random.Random(seed)
    relevant = [rng.random() < 0.4 for _ in range(count)]
    scores = [min(1.0, max(0.0, rng.gauss(0.35 + shift * good, 0.15))) for good in relevant]
    return scores, relevant


def precision_at(scores, relevant, t) -> float:
    kept = [good for score, good in zip(scores, relevant) if score >= t]
    return sum(kept) / len(kept)


@pytest.mark.parametrize("seed", range(5))
def test_show_first_is_the_smallest_score_whose_pairs_above_meet_the_precision(seed):
    scores, relevant = labelled(seed, 200, 0.4)
    t = show_first(scores, relevant, 0.9)
    assert precision_at(scores, relevant, t) >= 0.9
    assert all(precision_at(scores, relevant, lower) < 0.9 for lower in scores if lower < t)


@pytest.mark.parametrize("seed", range(5))
def test_filter_below_is_the_highest_score_that_drops_at_most_the_share_of_relevant_pairs(seed):
    scores, relevant = labelled(seed, 200, 0.4)
    t = filter_below(scores, relevant, 0.05)
    good = [score for score, flag in zip(scores, relevant) if flag]
    assert sum(score < t for score in good) <= 0.05 * len(good)
    assert all(sum(score < higher for score in good) > 0.05 * len(good) for higher in scores if higher > t)


def test_too_few_labels_gives_no_threshold_and_says_how_many():
    scores, relevant = labelled(0, MIN_PAIRS - 1, 0.4)
    entry = fit(scores, relevant)
    assert entry["show_first"] is None and entry["filter_below"] is None
    assert entry["pairs"] == MIN_PAIRS - 1 and f"{MIN_PAIRS - 1} pairs" in entry["note"]


def test_thresholds_differ_by_modality_when_the_scores_do():
    text_scores, text_relevant = labelled(1, 300, 0.45)
    image_scores, image_relevant = labelled(2, 300, 0.15)
    image_scores = [score * 0.5 for score in image_scores]  # image documents score lower for this model
    rows = [("m", "text->text", s, int(r)) for s, r in zip(text_scores, text_relevant)]
    rows += [("m", "text->image", s, int(r)) for s, r in zip(image_scores, image_relevant)]
    found = calibrate(rows)["models"]["m"]
    assert found["text->image"]["filter_below"] < found["text->text"]["filter_below"]
    assert found["text->text"]["pairs"] == 300 and found["text->image"]["relevant"] == sum(image_relevant)


def two_modality_set(folder):
    """A labelled set of 6 queries, each with 5 texts and 6 images, 4 of them relevant (drawn at random)."""
    rng = random.Random(3)
    for k in range(6):
        Image.new("RGB", (64, 48), (40 * k, 200 - 30 * k, 90)).save(folder / f"{k}.png")
    lines = []
    for q in range(6):
        documents = [f"a note about cups number {q}-{d}" for d in range(5)] + [{"image": f"{d}.png"} for d in range(6)]
        lines.append({"query": f"cup {q}", "documents": documents, "relevant": sorted(rng.sample(range(11), 4))})
    data = folder / "set.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return data


def test_lychee_eval_calibrate_writes_each_models_thresholds_on_the_sets_own_scores(tmp_path, tiny_model_dir):
    data = two_modality_set(tmp_path)
    out, report_file = tmp_path / "calibration.json", tmp_path / "report.json"
    command = ["eval", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32"]
    assert lychee([*command, "--calibrate", str(out), "--output", str(report_file)]) == 0
    calibration, report = json.loads(out.read_text()), json.loads(report_file.read_text())
    (name,) = calibration["models"]
    assert calibration["model_details"][name]["precision"] == "float32"
    assert set(calibration["models"][name]) == {"text->text", "text->image"}
    for kind, entry in calibration["models"][name].items():
        pairs = [
            (score, grade > 0)
            for query in report["models"][name]["per_query"]
            for k, score, grade in zip(query["kinds"], query["scores"], query["labels"])
            if k == kind
        ]
        scores, relevant = [s for s, _ in pairs], [r for _, r in pairs]
        assert (entry["pairs"], entry["relevant"]) == (len(pairs), sum(relevant))
        assert entry["show_first"] == show_first(scores, relevant, 0.9)
        assert entry["filter_below"] == filter_below(scores, relevant, 0.05)


def test_the_evaluate_tab_gives_the_same_thresholds_draws_them_and_offers_the_file(tmp_path, tiny_model_dir, scorer):
    from lychee_gradio.ui.evaluate import evaluate_view, results_of

    from .conftest import page

    data = two_modality_set(tmp_path)
    assert lychee(["eval", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32",
                   "--calibrate", str(tmp_path / "cli.json")]) == 0  # fmt: skip
    _, _, report = page(evaluate_view, scorer, str(data), None, "1,5", None)
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    (name,) = from_cli["models"]
    assert report["calibration"]["models"][name] == from_cli["models"][name]
    files, plot, table = results_of(report)
    (written,) = [path for path in files if path.endswith("calibration.json")]
    assert json.loads(open(written).read())["models"] == from_cli["models"]
    for kind, entry in from_cli["models"][name].items():
        for key, words in (("show_first", "show first at"), ("filter_below", "filter below")):
            marks = plot[plot["curve"].str.startswith(f"{kind} · {words} ")]  # a vertical line where there is one
            assert list(marks["threshold"]) == ([entry[key]] * 2 if entry[key] is not None else [])
        recall = plot[plot["curve"] == f"{kind} · recall"]
        assert recall["value"].max() == 1.0  # the lowest threshold keeps every pair
        shown = [f"{entry[key]:.4f}" if entry[key] is not None else "—" for key in ("show_first", "filter_below")]
        assert f"| {kind} | {entry['pairs']} | {entry['relevant']} | {shown[0]} | {shown[1]} |" in table
    # The random tiny model ranks no better than chance: no threshold reaches 90 % precision, and the page says so.
    assert "no score" in json.dumps(from_cli["models"][name]) and "no threshold keeps the pairs above it relevant 90%" in table


# -- a server started with a calibration file ----------------------------------------------------------------------


def calibration_file(path, model: str, show_first: float, filter_below: float):
    entry = {"show_first": show_first, "filter_below": filter_below, "pairs": 312, "relevant": 97}
    path.write_text(json.dumps({"format": "lychee-calibration/1", "models": {model: {"text->text": entry}}}))
    return path


@pytest.fixture(scope="module")
def calibrated(scorer, tmp_path_factory):
    from lychee_gradio import app
    from lychee_gradio.config import Config
    from lychee_gradio.registry import ModelSet

    (name,) = ModelSet.of(scorer).names
    scores = scorer.score("white cup", DOCUMENTS)
    middle = sorted(scores)[len(scores) // 2]  # a threshold that keeps about half
    path = calibration_file(tmp_path_factory.mktemp("calibration") / "calibration.json", name, middle, min(scores) + 1e-9)
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=Config(calibration=(str(path),))))
    yield running.url, scores, middle
    running.close()


DOCUMENTS = ["a white cup", "a plate", "a blue mug", "a steel tumbler", "a white mountain cup", "a teapot", "a bowl"]


def test_min_score_relevant_keeps_exactly_the_documents_at_or_above_the_calibrated_threshold(calibrated):
    import httpx

    url, scores, middle = calibrated
    body = {"query": "white cup", "documents": DOCUMENTS, "min_score": "relevant"}
    answer = httpx.post(f"{url}v1/rerank", json=body, timeout=60).json()
    expected = sorted((i for i, score in enumerate(scores) if score >= middle), key=lambda i: -scores[i])
    assert [row["index"] for row in answer["results"]] == expected
    assert answer["meta"]["min_score"]["filtered_out"] == len(DOCUMENTS) - len(expected)
    assert answer["meta"]["min_score"]["thresholds"] == {"text->text": {"min_score": middle, "calibrated_pairs": 312}}
    top = httpx.post(f"{url}v1/rerank", json={**body, "top_n": 1}, timeout=60).json()  # top_n after the filter
    assert [row["index"] for row in top["results"]] == expected[:1]
    assert top["meta"]["min_score"]["filtered_out"] == len(DOCUMENTS) - len(expected)


def test_min_score_takes_a_number_on_tei_and_mcp_and_a_bad_one_is_refused_by_name(calibrated):
    import httpx

    from .helpers import mcp_call

    url, scores, _ = calibrated
    tei = httpx.post(f"{url}rerank", json={"query": "white cup", "texts": DOCUMENTS, "min_score": 0.5}, timeout=60).json()
    assert sorted(row["index"] for row in tei) == [i for i, score in enumerate(scores) if score >= 0.5]
    result = mcp_call(url, "rerank", {"query": "white cup", "documents": DOCUMENTS, "min_score": 0.5})
    found = json.loads(result.content[0].text)
    assert sorted(row["index"] for row in found["results"]) == [i for i, score in enumerate(scores) if score >= 0.5]
    assert found["filtered_out"] + len(found["results"]) == len(DOCUMENTS)
    bad = httpx.post(f"{url}v1/rerank", json={"query": "q", "documents": ["d"], "min_score": "high"}, timeout=60)
    assert (bad.status_code, bad.json()["field"]) == (400, "min_score")


def test_another_models_calibration_is_refused_with_a_clear_message(scorer, tmp_path):
    from lychee_gradio import app
    from lychee_gradio.calibration import CalibrationError
    from lychee_gradio.config import Config

    path = calibration_file(tmp_path / "other.json", "Qwen3-VL-Reranker-8B", 0.8, 0.2)
    with pytest.raises(CalibrationError) as refused:
        app.start(scorer, app.ServerSettings(port=0, config=Config(calibration=(str(path),))))
    assert "is for Qwen3-VL-Reranker-8B" in str(refused.value) and "this server serves" in str(refused.value)


def test_a_calibrated_server_reads_every_answer_by_the_calibrated_bands_and_says_so(calibrated):
    import httpx
    from gradio_client import Client

    from .helpers import mcp_call

    url, scores, middle = calibrated
    colour = {i: "green" if s >= middle else "yellow" if s >= min(scores) + 1e-9 else "red" for i, s in enumerate(scores)}
    found = json.loads(mcp_call(url, "rerank", {"query": "white cup", "documents": DOCUMENTS}).content[0].text)
    assert {row["index"]: row["colour"] for row in found["results"]} == colour
    assert {row["calibrated_pairs"] for row in found["results"]} == {312}
    answer = httpx.post(f"{url}v1/rerank", json={"query": "white cup", "documents": DOCUMENTS}, timeout=60).json()
    assert answer["meta"]["calibration"] == {
        "text->text": {"show_first": middle, "filter_below": min(scores) + 1e-9, "calibrated_pairs": 312}
    }
    client = Client(url, verbose=False)
    table, rows = client.predict(
        query_text="white cup", documents="\n---\n".join(DOCUMENTS), min_score="relevant", api_name="/rerank"
    )
    assert [row["index"] for row in rows] == [i for i in sorted(colour, key=lambda i: -scores[i]) if colour[i] == "green"]
    assert {row["colour"] for row in rows} == {"green"}
    hidden = sum(c != "green" for c in colour.values())
    assert f'{hidden} more below "highly relevant" hidden' in table and "text->text: calibrated on 312 labelled pairs" in table
    markdown, details = client.predict(query_text="white cup", document_text=DOCUMENTS[0], api_name="/score")
    assert (details["colour"], details["calibrated_pairs"]) == (colour[0], 312)
