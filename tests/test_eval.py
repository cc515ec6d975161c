"""`lychee eval`: metrics against hand-computed values, the command end to end, bad lines, the tab."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from lychee_gradio.cli import main as lychee
from lychee_gradio.evaluation import load_queries, metrics
from lychee_gradio.ranking import best_first
from lychee_gradio.ui.evaluate import evaluate_view

from .conftest import ASSETS, page

SAMPLE = ASSETS / "eval" / "sample.jsonl"
SAMPLE_ZIP = ASSETS / "eval" / "images.zip"


# -- metrics, by hand ---------------------------------------------------------------------------------


def test_binary_metrics_match_hand_computed_values():
    labels = [0, 1, 0, 1]  # documents 1 and 3 are relevant
    reranked = [1, 0, 3, 2]  # relevant at ranks 1 and 3
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert metrics.ndcg_at_k(reranked, labels, 4) == pytest.approx((1 / math.log2(2) + 1 / math.log2(4)) / ideal)
    assert metrics.ndcg_at_k(reranked, labels, 1) == pytest.approx(1.0)
    assert metrics.mrr_at_k(reranked, labels, 4) == 1.0
    assert metrics.recall_at_k(reranked, labels, 1) == 0.5 and metrics.recall_at_k(reranked, labels, 3) == 1.0
    first_stage = [0, 1, 2, 3]  # relevant at ranks 2 and 4
    assert metrics.hit_at_k(first_stage, labels, 1) == 0.0 and metrics.hit_at_k(first_stage, labels, 2) == 1.0
    assert metrics.mrr_at_k(first_stage, labels, 4) == 0.5 and metrics.mrr_at_k(first_stage, labels, 1) == 0.0
    assert metrics.ndcg_at_k(first_stage, labels, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_graded_ndcg_uses_linear_gain_and_the_ideal_order():
    ranking, labels = [0, 1, 2], [0, 2, 1]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert metrics.ndcg_at_k(ranking, labels, 3) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k([1, 2, 0], labels, 10) == pytest.approx(1.0)  # k beyond the list


def test_a_query_with_no_relevant_document_scores_zero_everywhere():
    assert metrics.query_metrics([1, 0], [0, 0], [1, 10]) == {
        "ndcg@1": 0.0,
        "ndcg@10": 0.0,
        "mrr@1": 0.0,
        "mrr@10": 0.0,
        "recall@1": 0.0,
        "recall@10": 0.0,
        "hit@1": 0.0,
        "hit@10": 0.0,
    }


def test_equal_scores_keep_the_first_stage_order():
    assert best_first([0.5, 0.9, 0.5, 0.9]) == [1, 3, 0, 2]


def test_means_average_each_metric_over_queries():
    assert metrics.mean_metrics([{"hit@1": 1.0}, {"hit@1": 0.0}, {"hit@1": 0.5}]) == {"hit@1": 0.5}


# -- the command --------------------------------------------------------------------------------------


def _run(tmp_path, tiny_model_dir, *extra) -> tuple[int, dict | None]:
    output = tmp_path / "report.json"
    code = lychee(["eval", str(SAMPLE), "--model", str(tiny_model_dir), "--device", "cpu", "--output", str(output), *extra])
    return code, json.loads(output.read_text()) if output.exists() else None


def only_model(report: dict) -> dict:
    """The one model's entry of a report (a report has the same shape for one model or several)."""
    (entry,) = report["models"].values()
    return entry


def test_eval_reports_first_stage_and_reranked_metrics_from_the_engine_scores(tmp_path, tiny_model_dir, scorer, capsys):
    code, report = _run(tmp_path, tiny_model_dir, "--k", "1,5,10")
    assert code == 0
    queries, _ = load_queries(SAMPLE)
    assert report["queries"] == len(queries) == 8 and report["queries_without_relevant"] == 1
    per_query_first, per_query_reranked = [], []
    for item, row in zip(queries, only_model(report)["per_query"]):
        scores = scorer.score(item.query, item.documents, item.instruction)
        assert row["scores"] == pytest.approx(scores, abs=1e-6)
        ranking = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        per_query_first.append(metrics.query_metrics(list(range(len(scores))), item.labels, [1, 5, 10]))
        per_query_reranked.append(metrics.query_metrics(ranking, item.labels, [1, 5, 10]))
    assert report["first_stage"] == pytest.approx(metrics.mean_metrics(per_query_first), abs=1e-9)
    reranked = only_model(report)["reranked"]
    assert reranked == pytest.approx(metrics.mean_metrics(per_query_reranked), abs=1e-9)
    assert set(reranked) == {f"{m}@{k}" for m in ("ndcg", "mrr", "recall", "hit") for k in (1, 5, 10)}
    printed = capsys.readouterr().out
    assert "| ndcg@10 |" in printed and f"{reranked['ndcg@10']:.4f}" in printed


def test_eval_gives_identical_results_from_run_to_run(tmp_path, tiny_model_dir):
    _, first = _run(tmp_path / "a", tiny_model_dir)
    _, second = _run(tmp_path / "b", tiny_model_dir)
    assert only_model(first) == only_model(second)


BAD_LINES = [
    ('{"query": "q", "documents": ["a"], "relevant": [0]}\n{not json}\n', 2, "line 2: not valid JSON"),
    ('{"query": "q", "relevant": [0]}\n', 1, "line 1: missing 'documents'"),
    ('{"query": "q", "documents": ["a", "b"], "labels": [1]}\n', 1, "one grade per document"),
    ('{"query": "q", "documents": ["a", "b"], "relevant": [2]}\n', 1, "indices outside 0..1: [2]"),
    ('{"query": "q", "documents": ["a"]}\n', 1, "give either 'relevant'"),
    (
        '{"query": "q", "documents": [{"image": "missing.png"}], "relevant": [0]}\n',
        1,
        "line 1: documents[0].image: image file not found",
    ),
    ('{"query": "q", "documents": ["a", ""], "relevant": [0]}\n', 1, "line 1: documents[1]: empty"),
]


@pytest.mark.parametrize(("content", "line", "message"), BAD_LINES)
def test_a_bad_line_stops_with_its_line_number(tmp_path, tiny_model_dir, capsys, content, line, message):
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    code = lychee(["eval", str(data), "--model", str(tiny_model_dir), "--device", "cpu"])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and f"line {line}" in error and "Traceback" not in error


def test_skip_bad_goes_on_and_counts_the_skipped_lines(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(content for content, _, _ in BAD_LINES[1:])
        + '{"query": "cup", "documents": ["a cup", "a plate"], "relevant": [0]}\n'
    )
    output = tmp_path / "report.json"
    assert lychee(["eval", str(data), "--demo", "--skip-bad", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["queries"] == 1 and len(report["skipped"]) == len(BAD_LINES) - 1
    assert "6 lines skipped" in capsys.readouterr().out


def test_eval_help_describes_the_data_format():
    result = subprocess.run(
        [sys.executable, "-m", "lychee_gradio.cli", "eval", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "relevant" in result.stdout and "--skip-bad" in result.stdout


# -- the Evaluate tab ---------------------------------------------------------------------------------


def test_the_evaluate_tab_shows_the_same_metrics_and_a_chart(scorer, tiny_model_dir, tmp_path):
    table, chart, report = page(evaluate_view, scorer, str(SAMPLE), str(SAMPLE_ZIP), "1,10", None)
    _, cli_report = _run(tmp_path, tiny_model_dir, "--k", "1,10")
    reranked = only_model(report)["reranked"]
    assert reranked == pytest.approx(only_model(cli_report)["reranked"], abs=1e-9)
    assert f"| ndcg@10 | {report['first_stage']['ndcg@10']:.4f} | {reranked['ndcg@10']:.4f} |" in table
    assert len(chart) == 2 * 8 and set(chart["stage"]) == {"first stage", "reranked"}


def test_the_evaluate_tab_reports_a_bad_line_and_refuses_an_unsafe_zip(scorer, tmp_path):
    import zipfile

    data = tmp_path / "data.jsonl"
    data.write_text('{"query": "q", "documents": ["a"], "relevant": [3]}\n')
    with pytest.raises(ValueError, match=r"^Labelled set, line 1: 'relevant' has indices outside"):
        page(evaluate_view, scorer, str(data), None, "10", None)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../outside.png", b"x")
    with pytest.raises(ValueError, match="unsafe path"):
        page(evaluate_view, scorer, str(SAMPLE), str(evil), "10", None)


def test_the_evaluate_tab_says_when_every_line_was_skipped_and_hints_at_the_zip(scorer, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"query": "q", "documents": [{"image": "images/x.png"}], "relevant": [0]}\nnot json\n')
    with pytest.raises(
        ValueError,
        match=r"Every one of the 2 lines was skipped.*line 1: .*image file not found.*"
        r"upload its images \.zip too",
    ):
        page(evaluate_view, scorer, str(data), None, "1", None, skip_bad=True)
    with pytest.raises(ValueError, match=r"^Cutoffs k: give whole numbers"):
        page(evaluate_view, scorer, str(data), None, "1,x", None)
