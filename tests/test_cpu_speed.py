"""`--dtype auto` on the CPU follows the processor: bfloat16 where it multiplies bf16 natively, float32 elsewhere;
torch's threads follow the cores the process may use; the choice and its reason are said at startup, in `/ready`
and in `/metrics`. (How fast each is: `python -m lychee_gradio.bench --roofline`, never a timed test.)"""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx
import pytest
import torch

from lychee_gradio import LycheeScorer, app
from lychee_gradio.engine import memory, weights
from lychee_gradio.engine.random_model import build_checkpoint
from lychee_gradio.engine.weights import Runtime, choose_runtime, cpu_bf16, fit_cpu_threads, usable_cpus

from .conftest import free_port, served_command


def test_auto_is_bfloat16_on_a_cpu_with_native_bf16_and_says_why(monkeypatch):
    monkeypatch.setattr(weights, "cpu_bf16", lambda: (True, "the CPU has AVX512-BF16"))
    runtime = choose_runtime("cpu", "auto")
    assert runtime.dtype == torch.bfloat16 and runtime.why == "bfloat16: the CPU has AVX512-BF16"


def test_auto_stays_float32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(weights, "cpu_bf16", lambda: (False, "the CPU has no native bfloat16"))
    runtime = choose_runtime("cpu", "auto")
    assert runtime.dtype == torch.float32 and runtime.why == "float32: the CPU has no native bfloat16"


def test_a_dtype_asked_for_is_kept_and_said_so():
    assert choose_runtime("cpu", "float32").why == "float32: asked for"
    assert choose_runtime("cpu", "bfloat16").dtype == torch.bfloat16


def test_the_rule_asks_torchs_own_cpu_checks():
    native, why = cpu_bf16()
    capabilities = torch.cpu.get_capabilities()
    assert native == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16")) or "Arm" in why
    assert ("AVX512-BF16" in why or "AMX" in why or "Arm" in why) if native else "no native" in why


@pytest.mark.parametrize("native", [True, False])
def test_load_with_the_default_dtype_follows_the_rule(tiny_model_dir, monkeypatch, native):
    monkeypatch.setattr(weights, "cpu_bf16", lambda: (native, "the CPU has AVX512-BF16" if native else "no bf16"))
    with LycheeScorer.load(tiny_model_dir, device="cpu") as scorer:
        assert scorer.model.dtype == (torch.bfloat16 if native else torch.float32)
        assert scorer.dtype_why.startswith("bfloat16" if native else "float32")
        assert scorer.threads == torch.get_num_threads() <= usable_cpus()
        scores = scorer.score("white cup", ["a white cup", "a steel tumbler"])
    assert all(0 < score < 1 for score in scores)


def test_threads_follow_the_cores_the_process_may_use(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert usable_cpus() == 1
        assert fit_cpu_threads() == 1 == torch.get_num_threads()
        assert fit_cpu_threads(3) == 3 == torch.get_num_threads()  # a Ray replica's share is taken as given
    finally:
        torch.set_num_threads(before)


def test_the_memory_check_on_an_old_cpu_says_what_bfloat16_would_cost_there(small_dir, monkeypatch):
    monkeypatch.setattr(weights, "cpu_bf16", lambda: (False, "no native bf16"))
    runtime = Runtime("cpu", torch.float32, "sdpa")
    found = memory.estimate(small_dir, runtime)
    half = memory.estimate(small_dir, Runtime("cpu", torch.bfloat16, "sdpa"))
    monkeypatch.setattr(memory, "free_memory", lambda device: (half.total_bytes + found.total_bytes) // 2)
    message = memory.wont_fit_message(memory.estimate(small_dir, runtime), runtime)
    assert "--dtype bfloat16 (about" in message and "slower than float32 on this CPU" in message


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("small-cpu") / "small", "small")


def test_ready_and_metrics_say_which_dtype_each_model_runs_in_and_why(scorer):
    running = app.start(scorer, app.ServerSettings(port=0))
    try:
        ready = httpx.get(f"{running.url}ready", timeout=30).json()
        assert ready["runtime"][ready["models"][0]]["dtype_why"] == "float32: asked for"
        metrics = httpx.get(f"{running.url}metrics", timeout=30).text
        assert 'lychee_model_info{dtype_why="float32: asked for"' in metrics
    finally:
        running.close()


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_lychee_load_states_the_dtype_it_chose_and_why_at_startup_and_exits_0_when_stopped(stop):
    command = [sys.executable, "-m", "lychee_gradio.cli", "load", "--demo", "qwen2_5_vl", "--port", str(free_port())]
    codes: list[int] = []
    with served_command(command, env={"LYCHEE_DTYPE": "auto"}, stop=stop, exit_codes=codes) as lines:
        deadline = time.monotonic() + 30
        while not any(line.startswith("model ") for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)  # the model lines follow the ready line
        said = [line for line in lines if line.startswith("model ")]
    native, why = cpu_bf16()
    expected = f"bfloat16 with a float32 residual stream: {why}" if native else f"float32: {why}"
    assert said and all(expected in line for line in said), said
    assert codes == [0]  # docker stop (SIGTERM) and Ctrl+C (SIGINT) alike
