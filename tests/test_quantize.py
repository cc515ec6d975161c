"""8-bit and 4-bit weights (bitsandbytes), and the memory estimate that answers "will it fit?" before loading."""

from __future__ import annotations

import re
import sys

import httpx
import pytest
import torch

from lychee_gradio import LycheeScorer, app
from lychee_gradio.cli import main as cli_main
from lychee_gradio.config import Config
from lychee_gradio.engine import memory, weights
from lychee_gradio.engine.random_model import build_checkpoint
from lychee_gradio.engine.weights import ModelLoadError, Runtime, check_quantization, quantized_modules

from .conftest import CUPS, free_port, served_command

pytest.importorskip("bitsandbytes", reason="quantization needs bitsandbytes: pip install -e '.[quantize]'")

QUERY = "insulated steel mug for camping"
# Measured on the small random checkpoint (CPU): int8 moves scores by at most 0.010 and nf4 by 0.044 from
# fp32; batch shapes move quantized scores by up to 0.0017 (LLM.int8's outlier columns are chosen per pass).
INT8_TOLERANCE, NF4_TOLERANCE, QUANTIZED_BATCH_TOLERANCE = 0.02, 0.1, 5e-3


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("small-quantize") / "smallq", "small")


@pytest.fixture(scope="module")
def documents(red_image, blue_image):
    return CUPS + [{"image": red_image}, {"text": "a blue mug", "image": blue_image}]


@pytest.fixture(scope="module")
def precisions(small_dir):
    return {
        "float32": LycheeScorer.load(small_dir, device="cpu", dtype="float32"),
        "int8": LycheeScorer.load(small_dir, device="cpu", dtype="float32", quantize="int8"),
        "nf4": LycheeScorer.load(f"{small_dir}@nf4", device="cpu", dtype="float32"),
    }


def test_int8_and_nf4_scores_stay_close_to_full_precision(precisions, documents):
    reference = precisions["float32"].score(QUERY, documents)
    assert precisions["int8"].score(QUERY, documents) == pytest.approx(reference, abs=INT8_TOLERANCE)
    assert precisions["nf4"].score(QUERY, documents) == pytest.approx(reference, abs=NF4_TOLERANCE)


def test_quantized_weights_take_half_and_under_two_fifths_of_the_memory(precisions):
    full = precisions["float32"].weights_bytes
    assert precisions["int8"].weights_bytes <= 0.5 * full
    assert precisions["nf4"].weights_bytes <= 0.4 * full


def test_the_precision_is_part_of_the_models_name(precisions, small_dir):
    assert precisions["float32"].model_name == str(small_dir) and precisions["float32"].precision == "float32"
    assert precisions["int8"].model_name == f"{small_dir}@int8" and precisions["int8"].precision == "int8"
    assert precisions["nf4"].model_name == f"{small_dir}@nf4" and precisions["nf4"].precision == "nf4"


def test_only_the_language_models_linear_layers_are_quantized(precisions):
    for name in ("int8", "nf4"):
        quantized = quantized_modules(precisions[name].model)
        assert quantized and all(module.startswith("model.language_model.") for module in quantized)
    assert not quantized_modules(precisions["float32"].model)


def test_batched_prefix_reused_and_one_at_a_time_scores_agree_when_quantized(precisions, documents):
    for name in ("int8", "nf4"):
        scorer = precisions[name]
        batched = scorer.score(QUERY, documents)
        alone = [scorer.score(QUERY, [document])[0] for document in documents]
        plain = LycheeScorer(
            scorer.model,
            scorer.processor,
            model_name="plain",
            device="cpu",
            family=scorer.family,
            reuse_prefix=False,
            batch_size=1,
        ).score(QUERY, documents)
        assert batched == pytest.approx(alone, abs=QUANTIZED_BATCH_TOLERANCE)
        assert batched == pytest.approx(plain, abs=QUANTIZED_BATCH_TOLERANCE)


def metric(text: str, name: str, model: str) -> float:
    found = re.search(rf'^{name}{{model="{re.escape(model)}"}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} for {model} is not in /metrics"
    return float(found.group(1))


def test_one_server_serves_both_precisions_and_its_cache_never_mixes_them(precisions, small_dir):
    served = [
        LycheeScorer(
            scorer.model,
            scorer.processor,
            model_name=scorer.model_name,
            device="cpu",
            family=scorer.family,
            quantize=scorer.quantize,
            cache_size=1000,
        )
        for scorer in (precisions["float32"], precisions["nf4"])
    ]
    running = app.start(served, app.ServerSettings(port=0, config=Config(cache_size=1000)))
    try:
        answers = {}
        for model in ("smallq", "smallq@nf4", "smallq"):  # the first again: from the cache
            body = {"model": model, "query": QUERY, "documents": CUPS}
            results = httpx.post(f"{running.url}v1/rerank", json=body, timeout=120).json()["results"]
            answers.setdefault(model, []).append({r["index"]: r["relevance_score"] for r in results})
        full = dict(enumerate(precisions["float32"].score(QUERY, CUPS)))
        nf4 = dict(enumerate(precisions["nf4"].score(QUERY, CUPS)))
        assert answers["smallq"][0] == pytest.approx(full, abs=1e-5) == answers["smallq"][1]
        assert answers["smallq@nf4"][0] == pytest.approx(nf4, abs=1e-5)
        assert answers["smallq@nf4"][0] != pytest.approx(full, abs=1e-6)
        metrics = httpx.get(f"{running.url}metrics").text
        assert metric(metrics, "lychee_score_cache_hits_total", "smallq") >= len(CUPS)  # the repeat: from the cache
        for model, scorer in (("smallq", precisions["float32"]), ("smallq@nf4", precisions["nf4"])):
            assert metric(metrics, "lychee_model_weights_bytes", model) == scorer.weights_bytes
    finally:
        running.close()


def test_the_weights_estimate_matches_the_loaded_models(precisions, small_dir):
    runtime = Runtime("cpu", torch.float32, "sdpa")
    for name, scorer in precisions.items():
        found = memory.estimate(small_dir, runtime, None if name == "float32" else name)
        assert found is not None and found.precision == name
        # Exact for fp32 and int8; for nf4 bitsandbytes' CPU kernels (AVX512-BF16) keep some layers' block
        # scales in bf16, so the estimate (fp32 scales, as on CUDA) is about 1% high here.
        assert found.weights_bytes == pytest.approx(scorer.weights_bytes, rel=0.02)


def test_a_model_that_will_not_fit_stops_before_loading_and_says_what_would(small_dir, monkeypatch):
    runtime = Runtime("cpu", torch.float32, "sdpa")
    needed = memory.estimate(small_dir, runtime).total_bytes
    nf4 = memory.estimate(small_dir, runtime, "nf4").total_bytes
    monkeypatch.setattr(memory, "free_memory", lambda device: (needed + nf4) // 2)  # nf4 fits, fp32 does not
    monkeypatch.setattr(weights, "load_model_and_processor", lambda *a, **k: pytest.fail("loaded anyway"))
    with pytest.raises(memory.WontFitError) as caught:
        LycheeScorer.load(small_dir, device="cpu", dtype="float32")
    message = str(caught.value)
    assert re.search(r"needs about [\d.]+ GB \(weights", message) and "GB free" in message and "Not loaded" in message
    assert "--quantize nf4" in message and str(small_dir) in message


def test_check_prints_the_estimate_without_loading(small_dir, monkeypatch, capsys):
    monkeypatch.setattr(weights, "load_model_and_processor", lambda *a, **k: pytest.fail("--check loaded a model"))
    assert cli_main(["load", "--model", str(small_dir), "--model", f"{small_dir}@nf4", "--device", "cpu", "--check"]) == 0
    printed = capsys.readouterr().out
    assert f"{small_dir} (float32) on cpu: about" in printed and f"{small_dir}@nf4 (nf4) on cpu" in printed
    assert printed.count(": fits") == 2
    # The published model, before any download: from its published architecture.
    assert cli_main(["load", "--model", "Qwen/Qwen3-VL-Reranker-8B", "--quantize", "nf4", "--device", "cpu", "--check"]) in (0, 1)
    assert "Qwen/Qwen3-VL-Reranker-8B (nf4) on cpu" in capsys.readouterr().out
    monkeypatch.setattr(memory, "free_memory", lambda device: 1024)
    assert cli_main(["load", "--model", str(small_dir), "--device", "cpu", "--check"]) == 1
    assert "does NOT fit" in capsys.readouterr().out


def test_quantizing_on_apple_gpus_is_refused_clearly():
    with pytest.raises(ModelLoadError, match="does not run on Apple's GPUs"):
        check_quantization("nf4", Runtime("mps", torch.float16, "sdpa"))
    with pytest.raises(ModelLoadError, match="unknown quantize='int4'"):
        check_quantization("int4", Runtime("cpu", torch.float32, "sdpa"))


def test_a_missing_bitsandbytes_is_named_with_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ModelLoadError, match=r"pip install -e '\.\[quantize\]'"):
        check_quantization("int8", Runtime("cpu", torch.float32, "sdpa"))


@pytest.mark.slow
def test_lychee_load_quantize_int8_serves_the_librarys_int8_scores(precisions, small_dir):
    port = free_port()
    with served_command(
        [
            sys.executable,
            "-m",
            "lychee_gradio.cli",
            "load",
            "--model",
            str(small_dir),
            "--quantize",
            "int8",
            "--device",
            "cpu",
            "--port",
            str(port),
        ]
    ):
        url = f"http://127.0.0.1:{port}/"
        results = httpx.post(f"{url}v1/rerank", json={"query": QUERY, "documents": CUPS}, timeout=120).json()["results"]
        expected = precisions["int8"].score(QUERY, CUPS)
        assert {r["index"]: r["relevance_score"] for r in results} == pytest.approx(dict(enumerate(expected)), abs=1e-4)
        metrics = httpx.get(f"{url}metrics", timeout=30).text
        assert metric(metrics, "lychee_model_weights_bytes", "smallq@int8") == precisions["int8"].weights_bytes
