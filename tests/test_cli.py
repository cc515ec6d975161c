"""The `lychee` command and launch.py, run as a user runs them: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from .conftest import free_port, served_command

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lychee_gradio.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_load_and_share():
    result = run_cli("--help")
    assert result.returncode == 0 and "load" in result.stdout and "share" in result.stdout
    load_help = run_cli("load", "--help").stdout
    for flag in ("--model", "--host", "--port", "--device", "--dtype", "--max-pixels", "--demo"):
        assert flag in load_help


@pytest.mark.slow
def test_a_bad_model_path_gives_a_clear_error_and_a_non_zero_exit():
    result = run_cli("load", "--model", "/no/such/model/folder")
    assert result.returncode == 2
    assert "model folder not found: '/no/such/model/folder'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served(tiny_model_dir):
    """`python launch.py --model <tiny folder> --port P`, stopped after the test."""
    port = free_port()
    with served_command([sys.executable, "launch.py", "--model", str(tiny_model_dir), "--port", str(port)], cwd=ROOT) as lines:
        yield port, lines


@pytest.mark.slow
def test_launch_py_serves_the_engine_scores_over_the_api(served, scorer):
    port, lines = served
    assert f"lychee-gradio is ready: http://127.0.0.1:{port}/" in "".join(lines)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    _, details = client.predict(query_text="white cup", document_text="白瓷咖啡杯", api_name="/score")
    assert details["score"] == pytest.approx(scorer.score("white cup", ["白瓷咖啡杯"])[0], abs=1e-6)
    _, rows = client.predict(query_text="cup", documents="a mug\n---\na plate\n---\na cup", api_name="/rerank")
    expected = scorer.rerank("cup", ["a mug", "a plate", "a cup"])
    assert [(r["index"], r["score"]) for r in rows] == [(r.index, pytest.approx(r.score, abs=1e-6)) for r in expected]


@pytest.mark.slow
def test_a_port_in_use_gives_a_clear_error(served, tiny_model_dir):
    port, _ = served
    result = run_cli("load", "--model", str(tiny_model_dir), "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_share_link_that_cannot_be_made_says_so_and_exits_non_zero(tiny_model_dir, tmp_path):
    # Whether or not this machine has internet: the share server is a closed port here, and the tunnel
    # program Gradio would download is one that fails at once, saying what frpc says when it cannot reach
    # the server (else Gradio waits its 30 s tunnel timeout).
    from gradio import tunneling

    frpc = tmp_path / "hf" / "gradio" / "frpc" / tunneling.BINARY_FILENAME
    frpc.parent.mkdir(parents=True)
    frpc.write_text("#!/bin/sh\necho '[W] [service.go:131] login to server failed: dial tcp: connection refused'\nexit 1\n")
    frpc.chmod(0o755)
    env = {"HF_HOME": str(tmp_path / "hf"), "GRADIO_SHARE_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}
    result = run_cli("share", "--model", str(tiny_model_dir), "--port", str(free_port()), "--auth", "me:secret", env=env)
    assert result.returncode == 1
    assert "could not create a public link" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_share_refuses_a_malformed_auth():
    result = run_cli("share", "--demo", "--auth", "no-colon")
    assert result.returncode == 2 and "--auth must look like USER:PASS" in result.stderr


def test_the_api_key_comes_from_the_environment_unless_given(monkeypatch):
    from lychee_gradio.cli import build_parser, server_settings

    monkeypatch.setenv("LYCHEE_API_KEY", "from-env")
    assert server_settings(build_parser().parse_args(["load"]), None).config.api_key == "from-env"
    assert server_settings(build_parser().parse_args(["load", "--api-key", "given"]), None).config.api_key == "given"
    monkeypatch.delenv("LYCHEE_API_KEY")
    assert server_settings(build_parser().parse_args(["load"]), None).config.api_key is None
    # A public link never leaves /v1/rerank open: the share password becomes its key.
    assert server_settings(build_parser().parse_args(["share"]), ("lychee", "pw")).config.api_key == "pw"
