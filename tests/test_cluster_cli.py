"""`lychee load --replicas`: the command starts its own Ray and replicas, serves, and stops them on Ctrl+C.

A module of its own, so that it runs after test_cluster.py's Ray cluster (kept for that module) has
stopped: the command's Ray and replicas then have the cores to themselves.
"""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pytest

pytest.importorskip("ray", reason="Ray Serve is the cluster extra: pip install -e '.[cluster]'")

from .conftest import CUPS, free_port, served_command

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_lychee_load_with_replicas_serves_the_demo(tmp_path):
    port = free_port()
    # Stopped with SIGINT, as Ctrl+C would: the command stops its replicas and its Ray instance.
    with served_command(
        [sys.executable, "-m", "lychee_gradio.cli", "load", "--demo", "qwen2_5_vl", "--replicas", "2", "--port", str(port)],
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
        timeout=240,
        stop=signal.SIGINT,
    ) as lines:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", json={"query": "cup", "documents": CUPS}, timeout=120)
        assert answer.status_code == 200 and len(answer.json()["results"]) == len(CUPS)
        assert any("model replicas: 2 per model on Ray Serve" in line for line in lines)
        # Ray's own ports (GCS, raylet, workers, agents) listen on loopback only. The one exception is
        # Ray Serve's inter-deployment gRPC port in each replica, which Ray Serve binds to [::] itself
        # (ray/serve/_private/replica.py) and guards with Ray's token authentication.
        import psutil

        command = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if "--replicas" in (p.info["cmdline"] or []) and str(port) in (p.info["cmdline"] or [])
        )
        family = {child.pid: child.name() for child in command.children(recursive=True)}
        family[command.pid] = command.name()
        listening = {
            (c.laddr.ip, family[c.pid])
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in family
        }
        outside = {(ip, name) for ip, name in listening if ip not in {"127.0.0.1", "::ffff:127.0.0.1", "::1"}}
        # (A replica's name is its process title, "ray::ServeReplica:lychee-0:scorer..."; read while Ray retitles
        # it, psutil may give it cut short: "ray::Se...".)
        assert listening and all(name.startswith("ray::Se") for _, name in outside), listening
        assert os.environ.get("RAY_AUTH_MODE", "token") != "disabled"
