"""The benchmark runs on CPU and reports the three paths side by side (figures are not asserted)."""

from __future__ import annotations

import json

import pytest

from lychee_gradio.bench.__main__ import main as bench_main
from lychee_gradio.bench.common import text_documents

pytestmark = [pytest.mark.slow]

PATHS = ["per-pair loop", "engine, no prefix reuse", "engine, prefix reuse"]


def test_the_benchmark_prints_and_writes_three_paths_per_scenario(tmp_path, capsys):
    output = tmp_path / "bench.json"
    bench_main(
        ["--model-size", "tiny", "--device", "cpu", "--dtype", "float32", "--docs", "4", "--runs", "1", "--output", str(output)]
    )
    printed = capsys.readouterr().out
    report = json.loads(output.read_text())
    assert len(report["scenarios"]) == 3
    for name, scenario in report["scenarios"].items():
        assert list(scenario["paths"]) == PATHS
        for path, result in scenario["paths"].items():
            assert f"| {name} | {path} |" in printed
            assert result["max_score_diff"] < 1e-4  # every path scores what the per-pair loop scores
            assert result["pairs_per_second"] > 0 and len(result["scores"]) == scenario["documents"]


def test_text_documents_have_the_requested_token_lengths():
    from lychee_gradio.engine.random_model import build_processor

    tokenizer = build_processor().tokenizer
    for text in text_documents(tokenizer, 5, min_tokens=60, max_tokens=200):
        assert 60 <= len(tokenizer.encode(text, add_special_tokens=False)) <= 205


def test_the_stability_report_compares_batch_1_batch_8_and_prefix_reuse(capsys):
    bench_main(["--stability", "--model-size", "tiny", "--device", "cpu", "--dtype", "float32", "--docs", "4"])
    printed = capsys.readouterr().out
    assert "| batch 1 vs batch 8 | batch 1 vs batch 8 + prefix reuse | batch 8 vs batch 8 + prefix reuse |" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| text query") or line.startswith("| 512")]
    assert len(rows) == 3
    # In fp32 the three configurations agree to float noise.
    assert all(float(cell) < 1e-5 for row in rows for cell in row.strip("|").split("|")[1:])


def test_the_roofline_compares_float32_and_auto_against_the_machines_matmul_rate(tmp_path, capsys):
    import json

    from lychee_gradio.engine.weights import choose_runtime

    bench_main(
        [
            "--roofline",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--docs",
            "3",
            "--image-docs",
            "2",
            "--roofline-tokens",
            "64",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "roofline-qwen2_5_vl-tiny.json").read_text())
    assert set(report["dtypes"]) == {"float32", "auto"}
    assert report["dtypes"]["auto"]["why"] == choose_runtime("cpu", "auto").why  # the rule load() follows
    for row in report["dtypes"].values():
        for figures in row["scenarios"].values():
            assert figures["language_tokens"] > 0 and 0 < figures["fraction_of_limit"] and figures["pairs_per_second"] > 0
    assert "auto / float32 =" in printed and "largest score difference" in printed


def test_the_roofline_can_set_bf16_with_its_float32_stream_beside_plain_bf16(tmp_path, capsys):
    import json

    bench_main(
        [
            "--roofline",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--docs",
            "2",
            "--image-docs",
            "1",
            "--roofline-tokens",
            "64",
            "--dtype",
            "bfloat16",
            "--plain-stream",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    report = json.loads((tmp_path / "roofline-qwen2_5_vl-tiny.json").read_text())
    rows = report["dtypes"]
    assert list(rows) == ["float32", "bfloat16", "bfloat16, plain stream"]
    assert [row["residual_float32"] for row in rows.values()] == [False, True, False]
    assert set(report["largest_difference"]) == {"bfloat16", "bfloat16, plain stream"}
    assert "bfloat16, plain stream / float32 =" in capsys.readouterr().out


def test_the_video_benchmark_times_each_stage_of_clips_made_on_the_spot(tmp_path, capsys):
    import json

    pytest.importorskip("av")
    bench_main(
        [
            "--video",
            "2",
            "--video-seconds",
            "2",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    report = json.loads((tmp_path / "video.json").read_text())
    assert report["frames_per_clip"] == 4 and set(report["stages"]) >= {"decode and sample", "vision tower"}
    assert report["pairs_per_second"] > 0 and "pairs/s" in capsys.readouterr().out


@pytest.mark.ray
def test_the_serving_benchmark_compares_one_process_with_one_and_two_replicas(tmp_path, capsys):
    pytest.importorskip("ray", reason="the serving benchmark runs Ray Serve replicas: pip install -e '.[cluster]'")
    bench_main(
        [
            "--serving",
            "--model-size",
            "tiny",
            "--clients",
            "2",
            "--seconds",
            "2",
            "--runs",
            "1",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    printed = capsys.readouterr().out
    for row in (
        "| single process",
        "| 1 replica (1 core each) |",
        "| 2 replicas (1 core each) |",
        "| 16 clients x 4 documents | batching across requests |",
    ):
        assert row in printed
    report = json.loads((tmp_path / "serving.json").read_text())
    assert all(c["requests"] > 0 and c["errors"] == 0 for c in report["configurations"].values())
    assert set(report["large_request_seconds"]) == {"1 replica (1 core each)", "2 replicas (1 core each)"}


def test_the_batching_benchmark_compares_shared_passes_with_one_request_at_a_time(tmp_path, capsys):
    bench_main(
        [
            "--batching",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--seconds",
            "1",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    printed = capsys.readouterr().out
    for row in (
        "| 16 clients x 4 documents | one request at a time |",
        "| 16 clients x 4 documents | batching across requests |",
        "| 4 clients x 64 documents | batching across requests |",
        "a lone request of 4 documents",
    ):
        assert row in printed
    report = json.loads((tmp_path / "batching.json").read_text())
    assert all(r["requests"] > 0 and r["errors"] == 0 for row in report["rows"].values() for r in row.values())
    assert report["compared_alone"] > 0 and report["largest_difference_alone"] < 1e-4  # scores under load = alone


def test_the_cache_benchmark_prints_the_repeated_half_repeated_and_image_figures(tmp_path, capsys):
    bench_main(
        [
            "--caches",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--docs",
            "4",
            "--runs",
            "1",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    printed = capsys.readouterr().out
    for row in (
        "| request sent again (engine) |",
        "| request sent again (/v1/rerank) |",
        "| half the documents seen before |",
        "image cache off vs on |",
    ):
        assert row in printed
    report = json.loads((tmp_path / "caches.json").read_text())
    assert report["image_cache_bytes"] > 0 and report["repeated_seconds"] > 0


def test_the_quantize_benchmark_loads_full_and_int8_weights_through_the_loader(tmp_path, capsys):
    pytest.importorskip("bitsandbytes", reason="quantization needs bitsandbytes: pip install -e '.[quantize]'")
    bench_main(
        [
            "--quantize",
            "int8",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--docs",
            "4",
            "--runs",
            "1",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    printed = capsys.readouterr().out
    assert "| float32 |" in printed and "| int8 |" in printed
    report = json.loads((tmp_path / "quantize.json").read_text())
    full, int8 = report["precisions"]["float32"], report["precisions"]["int8"]
    assert int8["weights_bytes"] < full["weights_bytes"] and int8["pairs_per_second"] > 0
    assert full["largest_difference"] == 0 and int8["largest_difference"] < 0.05


def test_the_image_benchmark_prints_each_stage_before_and_after_with_the_same_scores(tmp_path, capsys):
    from lychee_gradio.bench.images import format_images, run_images

    report = run_images(12, 160, 120, size="tiny", device="cpu", dtype="float32", runs=1)
    printed = format_images(report)
    for row in (
        "| decode the files (at the edge) |",
        "| prepare: resize and patches |",
        "| vision tower |",
        "| language model |",
        "| library call, end to end |",
        "vision attention calls per layer",
        "as the page sends it",
        "through gradio_client",
    ):
        assert row in printed
    assert report["page"]["same_ranking"] is True
    assert report["largest_difference"] < 1e-5
    assert report["paths"]["after"]["calls_per_vision_layer"] <= report["paths"]["after"]["images_per_pass"]


def test_the_compile_probe_times_eager_and_compiled_on_the_same_pairs(tmp_path, capsys):
    # The eager backend (dynamo's capture, no code generation) keeps the test short; the figures use inductor.
    bench_main(
        [
            "--compile",
            "--model-size",
            "tiny",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--docs",
            "3",
            "--image-docs",
            "1",
            "--compile-backend",
            "eager",
            "--output",
            str(tmp_path / "bench.json"),
        ]
    )
    report = json.loads((tmp_path / "compile-qwen2_5_vl-tiny.json").read_text())
    assert list(report["scenarios"]) == ["text query × 3 text docs", "text query × 1 512² image docs"]
    for row in report["scenarios"].values():
        assert row["eager_pairs_per_second"] > 0 and row["compiled_pairs_per_second"] > 0
        assert row["largest_difference"] < 1e-5
    assert "torch.compile(backend=eager" in capsys.readouterr().out


def test_the_documents_benchmark_scores_a_pdf_a_long_text_and_a_long_clip_by_their_parts(capsys):
    pytest.importorskip("av")
    from lychee_gradio.bench.documents import format_documents, run_documents

    report = run_documents("tiny", "cpu", "float32", runs=1, pages=3, text_tokens=9000, clip_seconds=70)
    rows = report["documents"]
    assert rows["a PDF of 3 pages"]["parts"] == 3 and rows["a PDF of 3 pages"]["kind"] == "page"
    assert rows["a text of 9,000 tokens"]["kind"] == "chunk" and rows["a text of 9,000 tokens"]["parts"] >= 3
    assert rows["a clip of 70 s"]["parts"] == 2
    assert all(row["max_difference"] < 1e-5 for row in rows.values())
    assert "| a PDF of 3 pages | 3 pages |" in format_documents(report)


def test_the_collection_benchmark_measures_the_store_exactly_and_a_whole_search(monkeypatch):
    from lychee_gradio.bench import collection
    from lychee_gradio.bench.collection import format_collection, run_collection

    monkeypatch.setattr(collection, "INDEX_FROM", 1500)  # the graph measured at the second size (100,000 in the docs)
    report = run_collection("tiny", "cpu", "float32", runs=1, sizes=(500, 1500), items=4, indexed=8, queries=5, top_k=5, rerank=4)
    small, big = report["sizes"][0], report["sizes"][1]
    assert small["search"]["as written"]["recall_at_k"] == 1.0 and not small["indexed"]
    assert big["indexed"] and "after Store.index" in big["search"]
    assert report["embedding"]["texts"]["items_per_second"] > 0
    assert "whole search" in format_collection(report)
