"""Two model replicas on a local Ray Serve (one Ray start for the whole module): same scores, faults, back-pressure."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is the cluster extra: pip install -e '.[cluster]'")

from gradio_client import Client, handle_file  # noqa: E402

from lychee_gradio import app  # noqa: E402
from lychee_gradio.contract import ScoreStats  # noqa: E402
from lychee_gradio.replica import ScorerReplica  # noqa: E402
from lychee_gradio.serving.cluster import Cluster, ClusterSettings  # noqa: E402

from .conftest import CUP, CUPS, CUPS_TEXT, MUG, TUMBLER  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    # One CPU more than the machine has, so that the back-pressure test's extra replica can be placed
    # beside the two main ones (Ray counts CPUs; it does not pin them).
    ray.init(num_cpus=(os.cpu_count() or 1) + 1, include_dashboard=False, log_to_driver=False)
    running = Cluster(
        ClusterSettings(replicas=2, max_queued=64, load_options={"device": "cpu", "dtype": "float32"}, cpus_per_replica=1),
        ScorerReplica,
    )
    yield running
    running.close()


@pytest.fixture(scope="module")
def replicated(cluster, tiny_model_dir):
    return cluster.deploy(str(tiny_model_dir), 0)


@pytest.fixture(scope="module")
def replicated_app(replicated):
    running = app.start(replicated, app.ServerSettings(port=0, concurrency=2))
    yield running.url
    running.close()


def replica_pids(replicated, tries: int = 20) -> set[int]:
    """The PIDs of the live replicas, asked of the replicas themselves (concurrent calls spread over them)."""
    seen: set[int] = set()
    for _ in range(tries):
        responses = [replicated.handle.describe.remote() for _ in range(8)]
        for response in responses:
            try:
                seen.add(response.result(timeout_s=30)["pid"])
            except Exception:  # noqa: BLE001 - a replica that is going away
                pass
        if len(seen) >= replicated.replicas:
            break
    return seen


def test_each_replica_uses_its_share_of_the_cores(cluster):
    options, threads = Cluster(ClusterSettings(replicas=2), ScorerReplica).resources("cpu")  # the default: an equal share
    cpus = ray.cluster_resources()["CPU"]
    assert options == {"num_cpus": round(cpus / 2, 2)} and threads == max(1, int(cpus / 2))


def test_the_replicated_scorer_scores_what_the_local_scorer_scores(replicated, scorer, red_image):
    documents = CUPS + [red_image, {"text": "mug", "image": red_image}]
    for query in ("保温杯 500ml", {"image": red_image}, {"text": "cup", "image": red_image}):
        assert replicated.score(query, documents) == pytest.approx(scorer.score(query, documents), abs=1e-5)


def test_a_replicated_scorer_splits_long_documents_into_the_parts_the_local_scorer_does(replicated, scorer):
    long_text = "\n\n".join(f"Part {k}. " + "A white cup with a mountain line, glazed and fired. " * 40 for k in range(30))

    def in_order(rows):
        return sorted(rows, key=lambda r: (r.index, r.part.index if r.part else 0))

    remote = in_order(replicated.rerank("white cup", [long_text, "a plate"], long_documents="split"))
    local = in_order(scorer.rerank("white cup", [long_text, "a plate"], long_documents="split"))
    assert [(r.index, r.part) for r in remote] == [(r.index, r.part) for r in local]
    assert [r.score for r in remote] == pytest.approx([r.score for r in local], abs=1e-5)
    assert sum(1 for r in remote if r.part is not None) >= 2


def test_a_replicated_scorer_explains_what_the_local_scorer_explains(replicated, scorer, red_image):
    pair = ({"text": "a red card", "image": red_image}, "a red card on a table")
    remote, local = replicated.explain(*pair, grid=2), scorer.explain(*pair, grid=2)
    assert remote.score == pytest.approx(local.score, abs=1e-5)
    assert [c.delta for c in remote.images[0].cells] == pytest.approx([c.delta for c in local.images[0].cells], abs=1e-5)
    assert [s.delta for s in remote.text[1].segments] == pytest.approx([s.delta for s in local.text[1].segments], abs=1e-5)
    assert remote.yes_no_mass == pytest.approx(local.yes_no_mass, abs=1e-5)


def test_a_large_request_is_split_across_both_replicas_and_merged_in_order(replicated, scorer):
    documents = [f"document {i} about cups and mugs" for i in range(64)]
    progress, stats = [], ScoreStats()
    scores = replicated.score("white cup", documents, on_progress=lambda done, total: progress.append((done, total)), stats=stats)
    assert scores == pytest.approx(scorer.score("white cup", documents), abs=1e-5)
    assert len(set(stats.replicas)) == 2
    assert progress[-1] == (64, 64) and [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_v1_rerank_and_gradio_client_answer_the_local_scores(replicated_app, scorer):
    body = {"query": "white cup", "documents": CUPS}
    answer = httpx.post(f"{replicated_app}v1/rerank", json=body, timeout=120).json()
    assert {r["index"]: r["relevance_score"] for r in answer["results"]} == pytest.approx(
        dict(enumerate(scorer.score("white cup", CUPS))), abs=1e-5
    )
    client = Client(replicated_app, verbose=False)
    _, rows = client.predict(query_text="保温杯", documents=CUPS_TEXT, api_name="/rerank")
    assert [r["index"] for r in rows] == [r.index for r in scorer.rerank("保温杯", CUPS)]
    _, ranking = client.predict(
        query_text="a blue mug", images=[handle_file(p) for p in (CUP, MUG, TUMBLER)], api_name="/rank_images"
    )
    expected = scorer.rerank("a blue mug", [{"image": p} for p in (CUP, MUG, TUMBLER)])
    assert [(r["index"], r["score"]) for r in ranking] == [(r.index, pytest.approx(r.score, abs=1e-5)) for r in expected]


def mixed_request(i: int) -> tuple[dict, tuple]:
    documents = [f"doc {i}-{j} about a {('red', 'blue', 'white')[j % 3]} cup" for j in range(8 + i % 9)]
    if i % 2:
        image = base64.b64encode(open(CUP, "rb").read()).decode()
        return {"query": {"image": image}, "documents": documents}, ({"image": CUP}, documents)
    return {"query": f"cup number {i}", "documents": documents}, (f"cup number {i}", documents)


def test_twenty_concurrent_mixed_clients_are_all_answered_correctly(replicated_app, scorer):
    def call(i: int):
        body, (query, documents) = mixed_request(i)
        answer = httpx.post(f"{replicated_app}v1/rerank", json=body, timeout=180)
        return answer, scorer.score(query, documents)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        for answer, expected in pool.map(call, range(20)):
            assert answer.status_code == 200
            assert {r["index"]: r["relevance_score"] for r in answer.json()["results"]} == pytest.approx(
                dict(enumerate(expected)), abs=1e-5
            )


def test_killing_a_replica_under_load_loses_no_request_and_the_replica_comes_back(replicated_app, replicated, scorer):
    before = replica_pids(replicated)
    assert len(before) == 2
    victim = sorted(before)[0]

    def call(i: int):
        body, (query, documents) = mixed_request(i)
        return httpx.post(f"{replicated_app}v1/rerank", json=body, timeout=180), scorer.score(query, documents)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(call, i) for i in range(10)]
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)  # a replica process this test's cluster started
        for future in futures:
            answer, expected = future.result()
            assert answer.status_code == 200, answer.text
            assert {r["index"]: r["relevance_score"] for r in answer.json()["results"]} == pytest.approx(
                dict(enumerate(expected)), abs=1e-5
            )
    deadline = time.monotonic() + 120
    while len(replica_pids(replicated) - {victim}) < 2:
        assert time.monotonic() < deadline, "Ray Serve did not bring the replica back"
        time.sleep(1)


def test_ready_says_degraded_while_a_replica_is_dead_and_metrics_count_the_live_ones(replicated_app, replicated):
    def ready_until(status: int, seconds: float) -> httpx.Response:
        deadline = time.monotonic() + seconds
        while (answer := httpx.get(f"{replicated_app}ready", timeout=10)).status_code != status:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        return answer

    ready_until(200, 120)
    assert "lychee_replicas_alive{model=" in httpx.get(f"{replicated_app}metrics", timeout=10).text
    os.kill(sorted(replica_pids(replicated))[0], signal.SIGKILL)  # a replica process this test's cluster started
    degraded = ready_until(503, 60).json()
    assert degraded["status"] == "degraded" and "of 2 replicas running" in degraded["message"]
    ready_until(200, 120)


def test_a_full_queue_answers_503_with_retry_after_and_the_server_keeps_serving(cluster, tiny_model_dir, scorer):
    # Same Ray instance, a second application: one replica (on the spare half core), a queue of one.
    narrow = Cluster(
        ClusterSettings(replicas=1, max_queued=1, load_options=cluster.settings.load_options, cpus_per_replica=0.5), ScorerReplica
    )
    scorer_one = narrow.deploy(str(tiny_model_dir), 9)
    running = app.start(scorer_one, app.ServerSettings(port=0, concurrency=8))
    try:
        body = {"query": "cup", "documents": [f"a long document about cups, number {i} " * 20 for i in range(64)]}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{running.url}v1/rerank", json=body, timeout=180), range(8)))
        busy = [a for a in answers if a.status_code == 503]
        assert busy and all(a.headers.get("retry-after") == "2" for a in busy)
        assert "busy" in busy[0].json()["message"]
        assert all(a.status_code == 200 for a in answers if a not in busy)
        # Once the burst has drained (the refused requests' chunks were cancelled), requests are served again.
        deadline = time.monotonic() + 30
        while (
            after := httpx.post(f"{running.url}v1/rerank", json={"query": "cup", "documents": ["a", "b"]}, timeout=60)
        ).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert after.status_code == 200
    finally:
        running.close()
        from ray import serve

        serve.delete("lychee-9")


def test_plain_lychee_load_does_not_import_ray():
    code = (
        "import sys\nfrom lychee_gradio import cli\nimport lychee_gradio.app, lychee_gradio.serving.cluster\n"
        "args = cli.build_parser().parse_args(['load', '--demo'])\nassert not cli.uses_ray(args)\n"
        "assert 'ray' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_ray_native_application_serves_the_same_app_with_the_same_settings(cluster, tiny_model_dir, scorer):
    from ray import serve

    from lychee_gradio.serve_app import build

    from .conftest import free_port

    port = free_port()
    serve.run(
        build(
            {
                "model": str(tiny_model_dir),
                "replicas": 1,
                "cpus_per_replica": 0.5,
                "device": "cpu",
                "dtype": "float32",
                "host": "127.0.0.1",
                "port": port,
                "api_key": "native-key",
                "max_documents": "12",
            }
        ),
        name="native",
        route_prefix=None,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/rerank"
        key = {"Authorization": "Bearer native-key"}
        answer = httpx.post(url, json={"query": "white cup", "documents": CUPS}, headers=key, timeout=120)
        assert {r["index"]: r["relevance_score"] for r in answer.json()["results"]} == pytest.approx(
            dict(enumerate(scorer.score("white cup", CUPS))), abs=1e-5
        )
        assert httpx.post(url, json={"query": "q", "documents": ["d"]}, timeout=60).status_code == 401
        too_many = httpx.post(url, json={"query": "q", "documents": ["d"] * 13}, headers=key, timeout=60)
        assert too_many.status_code == 400 and "at most 12" in too_many.json()["message"]
    finally:
        serve.delete("native")


def test_the_serve_config_file_names_the_application_builder():
    import yaml

    from lychee_gradio import serve_app

    config = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "deploy", "serve-config.yaml")))
    (application,) = config["applications"]
    module, _, name = application["import_path"].partition(":")
    assert module == "lychee_gradio.serve_app" and callable(getattr(serve_app, name))
    assert {"model", "replicas", "port"} <= set(application["args"])
