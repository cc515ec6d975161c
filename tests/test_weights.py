"""Finding the weights: local folders, ModelScope ids, and clear errors when neither works."""

from __future__ import annotations

import pytest

from lychee_gradio import LycheeScorer, ModelLoadError
from lychee_gradio.engine import weights


def test_a_local_folder_is_used_as_it_is(tiny_model_dir):
    assert weights.resolve_model_dir(str(tiny_model_dir)) == tiny_model_dir


@pytest.fixture
def reachable_endpoint(monkeypatch):
    """A local HTTP server stands in for ModelScope's site: the endpoint answers."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(weights, "modelscope_endpoint", lambda: f"http://127.0.0.1:{server.server_port}")
    yield
    server.shutdown()
    server.server_close()


@pytest.fixture
def unreachable_endpoint(monkeypatch):
    """ModelScope's endpoint set (as users do) to a port where nothing listens."""
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "127.0.0.1:9")


def partial_snapshot(folder, tiny_model_dir):
    """What an interrupted download leaves: config and index present, one shard missing."""
    import json
    import shutil

    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"half")
    return folder


def test_a_modelscope_id_is_fetched_by_modelscopes_own_download_when_online(tiny_model_dir, monkeypatch, reachable_endpoint):
    calls = []

    def fake_snapshot_download(model_id, **kwargs):
        calls.append((model_id, kwargs))
        return str(tiny_model_dir)

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", fake_snapshot_download)
    scorer = LycheeScorer.load("vec-ai/lychee-rerank-mm", device="cpu")
    # Online, the download itself runs (it verifies the cache and fetches what is missing) ... (the memory
    # check only looked in the cache first, for the checkpoint's config)
    assert [call for call in calls if call[1] != {"local_files_only": True}] == [("vec-ai/lychee-rerank-mm", {})]
    assert scorer.model_name == "vec-ai/lychee-rerank-mm"
    assert len(scorer.score("q", ["d"])) == 1


def test_an_interrupted_download_resumes_instead_of_loading_the_partial_copy(
    tmp_path, tiny_model_dir, monkeypatch, reachable_endpoint
):
    partial = partial_snapshot(tmp_path / "partial", tiny_model_dir)
    calls = []

    def fake_snapshot_download(model_id, **kwargs):
        calls.append(kwargs)
        return str(partial if kwargs.get("local_files_only") else tiny_model_dir)

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", fake_snapshot_download)
    assert weights.resolve_model_dir("vec-ai/lychee-rerank-mm") == tiny_model_dir
    assert calls == [{}]  # the cache-only lookup that returned partial copies is not used online


def test_offline_an_interrupted_download_is_reported_not_loaded(tmp_path, tiny_model_dir, monkeypatch, unreachable_endpoint):
    partial = partial_snapshot(tmp_path / "partial", tiny_model_dir)

    def cache_only(model_id, **kwargs):
        assert kwargs.get("local_files_only"), "a download was attempted with the endpoint unreachable"
        return str(partial)

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", cache_only)
    with pytest.raises(ModelLoadError, match="incomplete") as caught:
        weights.resolve_model_dir("vec-ai/lychee-rerank-mm")
    assert "model-00002-of-00002.safetensors" in str(caught.value) and "interrupted" in str(caught.value)
    assert "MODELSCOPE_DOMAIN" in str(caught.value)


def test_offline_a_complete_cached_model_is_used(tiny_model_dir, monkeypatch, unreachable_endpoint):
    monkeypatch.setattr(weights, "_modelscope_snapshot_download", lambda model_id, **kw: str(tiny_model_dir))
    assert weights.resolve_model_dir("vec-ai/lychee-rerank-mm") == tiny_model_dir


def test_a_wrong_proxy_is_told_apart_from_having_no_network(monkeypatch):
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    assert "proxy http://127.0.0.1:9" in weights.endpoint_problem(timeout=3)


def test_the_default_model_comes_from_the_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LYCHEE_MODEL", str(tiny_model_dir))
    assert weights.resolve_model_dir(None) == tiny_model_dir
    monkeypatch.delenv("LYCHEE_MODEL")
    assert weights.default_model() == "vec-ai/lychee-rerank-mm"


def test_a_failed_download_says_what_failed_and_how_to_use_a_local_folder(monkeypatch):
    def failing_download(model_id, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", failing_download)
    monkeypatch.setattr(weights, "endpoint_problem", lambda: None)
    with pytest.raises(ModelLoadError, match="Name or service not known") as caught:
        weights.resolve_model_dir("someone/no-such-model")
    assert "someone/no-such-model" in str(caught.value) and "--model /models/" in str(caught.value)


def test_an_unreachable_endpoint_fails_fast_with_a_clear_error(monkeypatch, unreachable_endpoint):
    def not_cached(model_id, **kwargs):
        assert kwargs.get("local_files_only"), "a download was attempted without network"
        raise FileNotFoundError("not cached")

    monkeypatch.setattr(weights, "_modelscope_snapshot_download", not_cached)
    with pytest.raises(ModelLoadError, match="not reachable") as caught:
        weights.resolve_model_dir("vec-ai/lychee-rerank-mm")
    assert "local folder" in str(caught.value) and "MODELSCOPE_DOMAIN" in str(caught.value)


@pytest.mark.parametrize("model", ["/no/such/folder", "./missing", "not a model id"])
def test_a_missing_folder_is_reported_as_such(model):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        weights.resolve_model_dir(model)


def test_a_folder_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        weights.resolve_model_dir(tmp_path)


def test_auto_runtime_on_a_cpu_machine_is_sdpa_in_the_dtype_the_cpu_computes_natively():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test describes the CPU-only machine (CI); a GPU is present here")
    runtime = weights.choose_runtime()
    native = weights.cpu_bf16()[0]
    assert (runtime.device, runtime.dtype, runtime.attn_implementation) == (
        "cpu",
        torch.bfloat16 if native else torch.float32,
        "sdpa",
    )
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        weights.choose_runtime(device="cuda")
