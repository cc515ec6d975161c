"""Several models in one server: the page's picker, /v1/rerank's model field, Compare, and eval side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from scipy.stats import kendalltau

from lychee_gradio import app
from lychee_gradio.cli import main as lychee
from lychee_gradio.evaluation.metrics import kendall_tau, top_k_overlap
from lychee_gradio.ranking import best_first
from lychee_gradio.registry import ModelSet

from .conftest import ASSETS, CUPS, CUPS_TEXT, free_port, served_command

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["a white cup with mountains", "北欧风手绘山形白瓷咖啡杯", "stainless steel tumbler", "a blue mug"]


@pytest.fixture(scope="module")
def two_models(scorer, qwen3_scorer):
    running = app.start([scorer, qwen3_scorer], app.ServerSettings(port=0))
    yield running.url
    running.close()


def rerank(url, **body):
    return httpx.post(f"{url}v1/rerank", json=body, timeout=60)


def test_models_answer_to_their_folder_name_and_their_family_but_not_their_server_path(scorer, qwen3_scorer, tiny_qwen3_dir):
    models = ModelSet([scorer, qwen3_scorer])
    assert models.get(None) is scorer and models.get("") is scorer
    assert models.get(tiny_qwen3_dir.name) is qwen3_scorer
    with pytest.raises(ValueError, match="unknown model"):  # a guessed path confirms nothing
        models.get(str(tiny_qwen3_dir))
    assert models.get("Qwen3-VL-Reranker") is qwen3_scorer and models.get("lychee-rerank-mm") is scorer
    with pytest.raises(ValueError, match=r"model: unknown model 'gpt-4'; this server serves 'tiny-lychee\d*', 'tiny-qwen3\d*'"):
        models.get("gpt-4")


def test_a_modelscope_id_is_named_by_the_whole_id_and_a_folder_by_its_last_part():
    from lychee_gradio.registry import display_name

    assert display_name("Qwen/Qwen3-VL-Reranker-2B") == "Qwen/Qwen3-VL-Reranker-2B"
    assert display_name("/models/lychee-rerank-mm") == "lychee-rerank-mm"


def test_v1_rerank_picks_the_model_by_its_standard_field(two_models, scorer, qwen3_scorer, tiny_qwen3_dir):
    for name, engine in ((tiny_qwen3_dir.name, qwen3_scorer), ("Qwen3-VL-Reranker", qwen3_scorer), (None, scorer)):
        body = {"query": "white cup", "documents": DOCS, **({"model": name} if name else {})}
        answer = rerank(two_models, **body).json()
        expected = engine.score("white cup", DOCS)
        assert {r["index"]: r["relevance_score"] for r in answer["results"]} == pytest.approx(dict(enumerate(expected)), abs=1e-6)
        assert answer["model"] == ModelSet([scorer, qwen3_scorer]).name_of(engine)


def test_an_unknown_model_is_a_400_listing_the_served_ones(two_models, tiny_qwen3_dir):
    answer = rerank(two_models, model="rerank-english-v3.0", query="q", documents=["d"])
    assert answer.status_code == 400 and answer.json()["field"] == "model"
    assert tiny_qwen3_dir.name in answer.json()["message"] and "tiny-lychee" in answer.json()["message"]


def test_gradio_client_endpoints_take_an_optional_model(two_models, qwen3_scorer, scorer, tiny_qwen3_dir):
    client = Client(two_models, verbose=False)
    _, rows = client.predict(query_text="保温杯", documents=CUPS_TEXT, model=tiny_qwen3_dir.name, api_name="/rerank")
    assert [(r["index"], r["score"]) for r in rows] == [
        (r.index, pytest.approx(r.score, abs=1e-9)) for r in qwen3_scorer.rerank("保温杯", CUPS)
    ]
    _, details = client.predict(query_text="q", document_text="d", api_name="/score")
    assert details["score"] == pytest.approx(scorer.score("q", ["d"])[0], abs=1e-9)


def test_the_compare_view_figures_follow_from_the_two_rankings(two_models, scorer, qwen3_scorer):
    client = Client(two_models, verbose=False)
    table, details = client.predict(query_text="保温杯 500ml", documents=CUPS_TEXT, api_name="/compare")
    scores_a, scores_b = scorer.score("保温杯 500ml", CUPS), qwen3_scorer.score("保温杯 500ml", CUPS)
    assert details["kendall_tau"] == pytest.approx(kendalltau(scores_a, scores_b).statistic, abs=1e-9)
    assert details["top_k_overlap"] == top_k_overlap(best_first(scores_a), best_first(scores_b), 5)
    assert [row["index"] for row in details["rows"]] == best_first(scores_a)
    for row in details["rows"]:
        assert row["score_a"] == pytest.approx(scores_a[row["index"]], abs=1e-9)
        assert row["rank_b"] == best_first(scores_b).index(row["index"]) + 1
    gaps = [abs(row["rank_a"] - row["rank_b"]) for row in details["disagreements"]]
    assert gaps == sorted(gaps, reverse=True) and all(gap > 0 for gap in gaps)
    assert f"{details['kendall_tau']:+.3f}" in table


def test_kendall_tau_matches_scipy_with_and_without_ties():
    import random

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 9)
        a = [rng.choice([0.1, 0.2, rng.random()]) for _ in range(n)]
        b = [rng.choice([0.5, rng.random()]) for _ in range(n)]
        expected = kendalltau(a, b).statistic
        got = kendall_tau(a, b)
        assert (got is None and expected != expected) or got == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
def test_eval_with_two_models_equals_two_single_model_runs(tmp_path, tiny_model_dir, tiny_qwen3_dir, capsys):
    sample = ASSETS / "eval" / "sample.jsonl"

    def run(*models):
        output = tmp_path / f"report-{len(models)}-{Path(models[0]).name}.json"
        flags = [flag for model in models for flag in ("--model", str(model))]
        assert lychee(["eval", str(sample), *flags, "--device", "cpu", "--output", str(output)]) == 0
        return json.loads(output.read_text())

    both = run(tiny_model_dir, tiny_qwen3_dir)
    alone = {tiny_model_dir.name: run(tiny_model_dir), tiny_qwen3_dir.name: run(tiny_qwen3_dir)}
    assert list(both["models"]) == list(alone)
    for name, single in alone.items():
        assert both["models"][name] == single["models"][name]
        assert both["first_stage"] == single["first_stage"]
    printed = capsys.readouterr().out
    assert f"| metric | first stage | {tiny_model_dir.name} | {tiny_qwen3_dir.name} |" in printed


@pytest.mark.slow
def test_lychee_load_serves_two_model_folders_by_name(tiny_model_dir, tiny_qwen3_dir, scorer, qwen3_scorer):
    port = free_port()
    with served_command(
        [
            sys.executable,
            "-m",
            "lychee_gradio.cli",
            "load",
            "--model",
            str(tiny_model_dir),
            "--model",
            str(tiny_qwen3_dir),
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
    ):
        url = f"http://127.0.0.1:{port}/"
        for folder, engine in ((tiny_model_dir, scorer), (tiny_qwen3_dir, qwen3_scorer)):
            answer = rerank(url, model=folder.name, query="white cup", documents=DOCS).json()
            assert {r["index"]: r["relevance_score"] for r in answer["results"]} == pytest.approx(
                dict(enumerate(engine.score("white cup", DOCS))), abs=1e-6
            )


@pytest.mark.slow
def test_demo_serves_a_random_model_of_each_family_beside_a_real_one(tmp_path, tiny_model_dir):
    port = free_port()
    with served_command(
        [
            sys.executable,
            "-m",
            "lychee_gradio.cli",
            "load",
            "--model",
            str(tiny_model_dir),
            "--demo",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env={"XDG_CACHE_HOME": str(tmp_path)},
    ):
        url = f"http://127.0.0.1:{port}/"
        served = {
            name: rerank(url, model=name, query="white cup", documents=DOCS).json()["model"]
            for name in (tiny_model_dir.name, "random-lychee-rerank-mm", "random-Qwen3-VL-Reranker")
        }
        assert served == {name: name for name in served}  # three models, each by its folder's name
        assert rerank(url, query="white cup", documents=DOCS).json()["model"] == tiny_model_dir.name  # --model first
        config = httpx.get(f"{url}config", timeout=30).text
        assert "Compare" in config and str(tmp_path) not in config  # the Compare tab; no server path on the page


def test_demo_takes_the_families_it_serves():
    from lychee_gradio.cli import DEMO_MODELS, build_parser

    parse = build_parser().parse_args
    assert parse(["load", "--demo"]).demo == list(DEMO_MODELS)
    assert parse(["load", "--demo", "qwen3_vl"]).demo == ["qwen3_vl"]
    assert parse(["load", "--model", "x", "--demo", "qwen2_5_vl"]).model == ["x"]
    with pytest.raises(SystemExit):
        parse(["load", "--demo", "llava"])
