"""A script that scored ends with exit code 0, every time: no thread that ran the model is alive when the
interpreter finalizes (Python 3.11 ends such a daemon thread with pthread_exit, and inside torch that aborts
the process: "terminate called without an active exception", exit code 134)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

SCRIPT = """
import atexit, json, threading, sys
# Registered before lychee_gradio is imported, so it runs after the package's own exit hooks (LIFO).
atexit.register(lambda: print("ALIVE " + json.dumps(sorted(t.name for t in threading.enumerate()
                                                        if t.name.startswith("lychee") and t.is_alive())), flush=True))
from PIL import Image
from lychee_gradio import LycheeScorer
scorer = LycheeScorer.load(sys.argv[1], device="cpu")
image = Image.new("RGB", (300, 200), (20, 40, 200))
for _ in range(3):
    print(scorer.score({"image": image, "text": "a blue card"}, ["a cup", {"image": image}, "a plate"]), flush=True)
"""


def run_script(model_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(model_dir)], capture_output=True, text=True, timeout=300)


def alive_at_exit(result: subprocess.CompletedProcess) -> list[str]:
    line = next(line for line in result.stdout.splitlines() if line.startswith("ALIVE "))
    return json.loads(line[len("ALIVE ") :])


@pytest.mark.slow
def test_a_script_that_scored_images_leaves_no_model_thread_running_at_exit(tiny_model_dir):
    result = run_script(tiny_model_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("[") >= 3  # it scored three times
    assert alive_at_exit(result) == []


def test_a_scorer_used_as_a_context_manager_stops_its_worker_and_a_later_call_starts_it_again(own_scorer):
    with own_scorer as scorer:
        first = scorer.score("white cup", ["a cup", "a plate"])
    assert not own_scorer.scheduler._worker.is_alive()
    assert own_scorer.score("white cup", ["a cup", "a plate"]) == first


@pytest.mark.slow
def test_the_library_script_exits_0_in_every_one_of_many_runs(tiny_model_dir):
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_script(tiny_model_dir), range(8)))
    codes = [result.returncode for result in results]
    assert codes == [0] * 8, [result.stderr[-500:] for result in results if result.returncode]


@pytest.mark.slow
def test_lychee_eval_exits_0_in_every_run(tiny_model_dir, tmp_path):
    from .conftest import ASSETS

    data = ASSETS / "eval" / "sample.jsonl"
    command = [sys.executable, "-m", "lychee_gradio.cli", "eval", str(data), "--model", str(tiny_model_dir), "--device", "cpu"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: subprocess.run(command, capture_output=True, text=True, timeout=300), range(4)))
    assert [result.returncode for result in results] == [0] * 4, [r.stderr[-500:] for r in results if r.returncode]
    assert all("ndcg@1" in result.stdout for result in results)
