"""Finding the weights: local folders, ModelScope ids, and clear errors when neither works."""

from __future__ import annotations

import pytest

from lychee_gradio import LycheeScorer, ModelLoadError
from lychee_gradio import weights


def test_a_local_folder_is_used_as_it_is(tiny_model_dir):
    assert weights.resolve_model_dir(str(tiny_model_dir)) == tiny_model_dir


def test_a_modelscope_id_is_downloaded_with_that_id(tiny_model_dir, monkeypatch):
    calls = []

    def fake_snapshot_download(model_id, **kwargs):
        calls.append((model_id, kwargs))
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not in the cache")
        return str(tiny_model_dir)

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(weights, "_host_reachable", lambda host, port=443, timeout=5.0: True)
    scorer = LycheeScorer.load("vec-ai/lychee-rerank-mm", device="cpu")
    assert [call[0] for call in calls] == ["vec-ai/lychee-rerank-mm", "vec-ai/lychee-rerank-mm"]
    assert calls[0][1] == {"local_files_only": True}
    assert scorer.model_name == "vec-ai/lychee-rerank-mm"
    assert len(scorer.score("q", ["d"])) == 1


def test_a_cached_model_is_used_without_the_network(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(weights, "_modelscope_snapshot_download", lambda model_id, **kw: str(tiny_model_dir))
    monkeypatch.setattr(weights, "_host_reachable", lambda *a, **k: pytest.fail("network was probed"))
    assert weights.resolve_model_dir("vec-ai/lychee-rerank-mm") == tiny_model_dir


def test_the_default_model_comes_from_the_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LYCHEE_MODEL", str(tiny_model_dir))
    assert weights.resolve_model_dir(None) == tiny_model_dir
    monkeypatch.delenv("LYCHEE_MODEL")
    assert weights.default_model() == "vec-ai/lychee-rerank-mm"


def test_a_failed_download_says_what_failed_and_how_to_use_a_local_folder(monkeypatch):
    def failing_download(model_id, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", failing_download)
    monkeypatch.setattr(weights, "_host_reachable", lambda *a, **k: True)
    with pytest.raises(ModelLoadError, match="Name or service not known") as caught:
        weights.resolve_model_dir("someone/no-such-model")
    assert "someone/no-such-model" in str(caught.value) and "--model /models/" in str(caught.value)


def test_no_network_fails_fast_with_a_clear_error(monkeypatch):
    def not_cached(model_id, **kwargs):
        assert kwargs.get("local_files_only"), "a download was attempted without network"
        raise FileNotFoundError("not cached")

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", not_cached)
    monkeypatch.setattr(weights, "MODELSCOPE_HOST", "host.invalid")
    with pytest.raises(ModelLoadError, match="not reachable") as caught:
        weights.resolve_model_dir("vec-ai/lychee-rerank-mm")
    assert "local folder" in str(caught.value)


@pytest.mark.parametrize("model", ["/no/such/folder", "./missing", "not a model id"])
def test_a_missing_folder_is_reported_as_such(model):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        weights.resolve_model_dir(model)


def test_a_folder_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        weights.resolve_model_dir(tmp_path)


def test_auto_runtime_on_a_cpu_machine_is_fp32_sdpa():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test describes the CPU-only machine (CI); a GPU is present here")
    runtime = weights.choose_runtime()
    assert (runtime.device, runtime.dtype, runtime.attn_implementation) == ("cpu", torch.float32, "sdpa")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        weights.choose_runtime(device="cuda")
