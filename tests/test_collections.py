"""Collections callers fill themselves: `POST /v1/index` and gradio_client's `/index_files` keep and embed what is
sent (never a server path), `--collections-dir` names the only folders a search reads, `GET /v1/collections`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lychee_gradio import app
from lychee_gradio.cli import main as lychee

from .helpers import file_data, gradio_call, make_clip, make_pdf


def png(colour, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture()
def server(scorer, embedder, tmp_path):
    running = app.start(scorer, app.ServerSettings(port=0, data_dir=str(tmp_path / "data")), [embedder])
    yield running, tmp_path / "data"
    running.close()


def post(running, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{running.url}{path.lstrip('/')}", json=body, timeout=120)


def test_documents_sent_to_v1_index_are_embedded_once_and_found_by_search(server):
    running, data = server
    documents = [
        {"text": "a white porcelain cup", "name": "cup.txt"},
        "a blue enamel mug",
        {"image": "data:image/png;base64," + b64(png((250, 250, 250))), "name": "white.png"},
        {"pdf": b64(make_pdf([Image.new("RGB", (120, 90), "red"), Image.new("RGB", (120, 90), "blue")])), "name": "two.pdf"},
    ]
    first = post(running, "/v1/index", {"collection": "mine", "documents": documents}).json()
    assert (first["embedded"], first["unchanged"]) == (4, 0)
    again = post(running, "/v1/index", {"collection": "mine", "documents": [*documents, "a steel tumbler"]}).json()
    assert (again["embedded"], again["unchanged"]) == (1, 4)  # only the new one is embedded
    listed = httpx.get(f"{running.url}v1/collections", timeout=30).json()["collections"]
    assert listed == [{"name": "mine", "items": 6}]  # five files, the PDF as two pages

    found = post(running, "/v1/search", {"collection": "mine", "query": "a white porcelain cup", "top_k": 6, "rerank_top_n": 6})
    assert found.status_code == 200, found.text
    rows = found.json()["first_stage"]
    assert sorted(Path(row["path"]).name for row in rows) == sorted(
        ["cup.txt", "document-1.txt", "white.png", "two.pdf", "two.pdf", "document-4.txt"]
    )
    assert {row.get("page") for row in rows if row["path"].endswith("two.pdf")} == {1, 2}
    # The first stage's scores are the cosine of /v1/embeddings' vectors (the text matches itself best).
    vector = post(running, "/v1/embeddings", {"input": ["a white porcelain cup"]}).json()["data"][0]["embedding"]
    best = next(row for row in rows if row["path"].endswith("cup.txt"))
    assert best["score"] == pytest.approx(sum(v * v for v in vector), abs=1e-5) and rows[0] == best
    assert len(found.json()["results"]) == 6
    kept = list((data / "uploads" / "mine").rglob("*.*"))
    assert sorted(path.name for path in kept) == sorted(
        ["cup.txt", "document-1.txt", "white.png", "two.pdf", "document-4.txt"]
    ) and all(path.is_relative_to(data / "uploads" / "mine") for path in kept)


def test_a_caller_cannot_index_a_server_path_or_a_loopback_url(server, tmp_path):
    running, data = server
    secret = tmp_path / "secret.png"
    secret.write_bytes(png((1, 2, 3)))
    cases = [
        ({"image": str(secret)}, "documents[0].image"),
        ({"image": f"file://{secret}"}, "documents[0].image"),
        ({"pdf": str(secret)}, "documents[0].pdf"),
        ({"video": "/etc/passwd"}, "documents[0].video"),
        ({"image": "http://127.0.0.1:9/x.png"}, "documents[0].image"),
        ({"text": "a", "image": "data:image/png;base64," + b64(png((0, 0, 0)))}, "documents[0]"),
        ({"image": "data:image/png;base64," + b64(b"not a png")}, "documents[0].image"),
    ]
    for document, field in cases:
        answer = post(running, "/v1/index", {"collection": "mine", "documents": [document]})
        assert 400 <= answer.status_code < 500 and answer.json()["field"] == field, (document, answer.text)
        assert str(tmp_path) not in answer.text and "Traceback" not in answer.text
    for name in ("../up", "\U0001d400" * 64):  # a climb; 64 letters of 4 bytes each (no folder name that long)
        answer = post(running, "/v1/index", {"collection": name, "documents": ["a"]})
        assert answer.status_code == 400 and answer.json()["field"] == "collection"

    # The page's door: a path the caller never uploaded is refused before any handler reads it.
    answer = gradio_call(running.url, "index_files", ["mine", [file_data(str(secret))]])
    error = json.loads(answer.removeprefix("data: "))["error"]
    assert "this file was not uploaded to this server" in error and str(tmp_path) not in error
    assert not (data / "uploads").exists() or not list((data / "uploads").rglob("*.*"))
    assert httpx.get(f"{running.url}health", timeout=30).status_code == 200


def test_gradio_client_indexes_uploads_as_v1_index_does(server, tmp_path):
    from gradio_client import Client, handle_file

    running, _ = server
    photo = tmp_path / "red.png"
    photo.write_bytes(png((200, 10, 10)))
    note = tmp_path / "note.txt"
    note.write_text("a red plate", encoding="utf-8")
    clip = make_clip(tmp_path / "pour.mp4", seconds=2.0)
    client = Client(running.url, verbose=False)
    words, done = client.predict(
        collection="page", files=[handle_file(str(photo)), handle_file(str(note)), handle_file(clip)], api_name="/index_files"
    )
    assert "3 embedded" in words
    assert (done["embedded"], done["unchanged"]) == (3, 0)
    found = post(running, "/v1/search", {"collection": "page", "query": "pouring", "top_k": 3, "rerank_top_n": 3}).json()
    assert sorted(row["path"].rsplit("/", 1)[1] for row in found["results"]) == ["note.txt", "pour.mp4", "red.png"]
    same = post(running, "/v1/index", {"collection": "page", "documents": [{"text": "a red plate", "name": "note.txt"}]})
    assert (same.json()["embedded"], same.json()["unchanged"]) == (0, 1)  # the same bytes under the same name


def test_collections_dir_names_the_only_folders_a_search_reads(scorer, embedder, embedding_model_dir, tmp_path):
    folder, elsewhere, data = tmp_path / "photos", tmp_path / "allowed", tmp_path / "data"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "a.txt").write_text("a white cup", encoding="utf-8")
    (folder / "two.pdf").write_bytes(make_pdf([Image.new("RGB", (120, 90), "red"), Image.new("RGB", (120, 90), "blue")]))
    command = ["index", str(folder), "--collection", "c", "--embedding-model", str(embedding_model_dir), "--device", "cpu"]
    refused = io.StringIO()
    with contextlib.redirect_stderr(refused):
        assert lychee([*command, "--data-dir", str(data), "--collections-dir", str(elsewhere)]) == 2
    assert "not inside --collections-dir" in refused.getvalue()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert lychee([*command, "--data-dir", str(data), "--json"]) == 0
    assert json.loads(printed.getvalue().splitlines()[-1]) == {"embedded": 2, "unchanged": 0, "removed": 0, "skipped": 0}
    settings = app.ServerSettings(port=0, data_dir=str(data), collections_dir=(str(elsewhere),))
    running = app.start(scorer, settings, [embedder])
    try:
        for reranked in (10, 0):  # not even the first stage's names and scores
            answer = post(running, "/v1/search", {"collection": "c", "query": "cup", "rerank_top_n": reranked})
            assert answer.status_code == 403 and answer.json()["field"] == "collection"
            assert str(folder) not in answer.text and "a.txt" not in answer.text and "two.pdf" not in answer.text
    finally:
        running.close()
    running = app.start(scorer, app.ServerSettings(port=0, data_dir=str(data), collections_dir=(str(tmp_path),)), [embedder])
    try:
        found = post(running, "/v1/search", {"collection": "c", "query": "cup", "top_k": 4, "rerank_top_n": 4}).json()
        pages = sorted(row["part"]["page"] for row in found["results"] if row["path"] == "two.pdf")
        assert pages == [1, 2]  # the PDF's pages, each an item of its own
    finally:
        running.close()


def test_the_search_tabs_endpoint_shows_both_stages_as_v1_search_gives_them(server):
    from gradio_client import Client

    running, _ = server
    documents = [f"a {colour} cup" for colour in ("white", "blue", "red", "green", "black")]
    documents.append({"image": "data:image/png;base64," + b64(png((250, 250, 250))), "name": "white.png"})
    post(running, "/v1/index", {"collection": "tab", "documents": documents})
    body = {"collection": "tab", "query": "a white cup", "top_k": 5, "rerank_top_n": 3}
    expected = post(running, "/v1/search", body).json()
    client = Client(running.url, verbose=False)
    for first_order in (False, True):
        gallery, found = client.predict(
            collection="tab", query_text="a white cup", top_k=5, rerank_top_n=3, first_order=first_order, api_name="/search_page"
        )
        assert [row["file"] for row in found["first_stage"]] == [row["path"] for row in expected["first_stage"]]
        assert [row["file"] for row in found["results"]] == [row["path"] for row in expected["results"]]
        shown = expected["first_stage"] if first_order else expected["results"]
        names = [row["path"].rsplit("/", 1)[-1] for row in shown]
        assert [item["caption"].split(" · ")[2] for item in gallery] == names


def test_lychee_eval_over_a_collection_measures_the_first_stage_and_what_the_reranker_makes_of_it(
    scorer, embedder, embedding_model_dir, tiny_model_dir, tmp_path
):
    from lychee_gradio.contract import Item
    from lychee_gradio.evaluation.metrics import ndcg_at_k

    folder, data = tmp_path / "notes", tmp_path / "data"
    folder.mkdir()
    texts = {
        f"note{i}.txt": f"a {colour} {thing}"
        for i, (colour, thing) in enumerate(
            zip(
                ["white", "blue", "red", "green", "black", "white", "blue", "steel"],
                ["cup", "mug", "plate", "bowl", "cup", "mug", "cup", "tumbler"],
            )
        )
    }
    for name, words in texts.items():
        (folder / name).write_text(words, encoding="utf-8")
    common = ["--embedding-model", str(embedding_model_dir), "--data-dir", str(data), "--device", "cpu", "--dtype", "float32"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert lychee(["index", str(folder), "--collection", "notes", *common]) == 0
    queries = [("a white cup", {"note0.txt": 1, "note5.txt": 1}), ("a blue mug", {"note1.txt": 2, "note6.txt": 1})]
    labelled = tmp_path / "labels.jsonl"
    labelled.write_text(
        json.dumps({"query": queries[0][0], "relevant": list(queries[0][1])})
        + "\n"
        + json.dumps({"query": queries[1][0], "labels": queries[1][1]})
        + "\n",
        encoding="utf-8",
    )
    report_file = tmp_path / "report.json"
    command = ["eval", str(labelled), "--collection", "notes", "--model", str(tiny_model_dir), "--top-k", "6"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert lychee([*command, "--rerank-top-n", "3", "--k", "1,3,6", "--output", str(report_file), *common]) == 0
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert "first stage" in printed.getvalue() and report["queries"] == 2

    # The same measured by hand: the exact cosine order of the library's vectors, then the scorer over its best 3.
    names = sorted(texts)
    vectors = embedder.embed_items([Item(text=texts[name]) for name in names])
    expected = {"first_stage": [], "reranked": []}
    for query, labels in queries:
        cosine = vectors @ embedder.embed_items([Item(text=query)])[0]
        first = [names[i] for i in cosine.argsort(descending=True)[:6].tolist()]
        best = scorer.rerank(query, [texts[name] for name in first[:3]])
        reranked = [first[r.index] for r in best] + first[3:]
        for key, order in (("first_stage", first), ("reranked", reranked)):
            grades = [labels.get(name, 0) for name in names]
            ranking = [names.index(name) for name in order]
            expected[key].append(
                {
                    "recall@3": len(set(order[:3]) & set(labels)) / len(labels),
                    "mrr@6": next((1 / rank for rank, name in enumerate(order, start=1) if name in labels), 0.0),
                    "ndcg@6": ndcg_at_k(ranking, grades, 6),
                }
            )
    for key in ("first_stage", "reranked"):
        for metric in ("recall@3", "mrr@6", "ndcg@6"):
            mean = sum(row[metric] for row in expected[key]) / 2
            assert report[key][metric] == pytest.approx(mean, abs=1e-9), (key, metric)


def test_the_search_tab_evaluates_a_collection_from_the_v1_search_answers(server, tmp_path):
    from gradio_client import Client, handle_file

    running, _ = server
    documents = [f"a {colour} {thing}" for colour in ("white", "blue", "red") for thing in ("cup", "mug")]
    post(running, "/v1/index", {"collection": "evaluated", "documents": documents})
    everything = post(running, "/v1/search", {"collection": "evaluated", "query": "cup", "top_k": 6, "rerank_top_n": 0}).json()
    path_of = {}  # each text's path in the collection (the answers name documents by path)
    for row in everything["first_stage"]:
        number = int(row["path"].rsplit("document-", 1)[1].split(".")[0])
        path_of[documents[number]] = row["path"]
    queries = {"a white cup": ["a white cup", "a white mug"], "a red mug": ["a red mug"]}
    labelled = tmp_path / "labels.jsonl"
    lines = [json.dumps({"query": query, "relevant": [path_of[d] for d in wanted]}) for query, wanted in queries.items()]
    labelled.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {"first_stage": [], "reranked": []}
    for query, wanted in queries.items():
        found = post(running, "/v1/search", {"collection": "evaluated", "query": query, "top_k": 4, "rerank_top_n": 2}).json()
        first = [row["path"] for row in found["first_stage"]]
        reranked = [row["path"] for row in found["results"]] + first[2:]
        for key, order in (("first_stage", first), ("reranked", reranked)):
            expected[key].append(len({path_of[d] for d in wanted} & set(order[:1])) / len(wanted))
    table, report = Client(running.url, verbose=False).predict(
        collection="evaluated", data=handle_file(str(labelled)), k="1,3", top_k=4, rerank_top_n=2, api_name="/evaluate_search"
    )
    assert "first stage" in table and report["queries"] == 2
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_bytes(b'{"query": "cup", "relevant": ["a"]}\n\xff\xfe not text\n')
    with pytest.raises(Exception, match="line 2.*not UTF-8"):
        Client(running.url, verbose=False).predict(
            collection="evaluated", data=handle_file(str(garbled)), api_name="/evaluate_search"
        )
    for key in ("first_stage", "reranked"):
        assert report[key]["recall@1"] == pytest.approx(sum(expected[key]) / 2), key


def test_a_collections_server_that_does_not_answer_is_a_503_and_the_server_keeps_serving(scorer, embedder, tmp_path):
    from .conftest import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = app.ServerSettings(port=0, data_dir=str(tmp_path / "data"), collections_url=closed)
    running = app.start(scorer, settings, [embedder])
    try:
        answer = post(running, "/v1/search", {"collection": "c", "query": "cup"})
        assert answer.status_code == 503 and answer.json()["code"] == "store_unreachable"
        assert "Traceback" not in answer.text and str(tmp_path) not in answer.text
        assert httpx.get(f"{running.url}health", timeout=30).status_code == 200
    finally:
        running.close()


def test_one_process_holds_the_collections_folder_and_a_second_is_told_so(tmp_path):
    from lychee_gradio.search.store import Store, StoreBusyError

    first = Store(tmp_path)
    try:
        with pytest.raises(StoreBusyError):
            Store(tmp_path)
    finally:
        first.close()
    Store(tmp_path).close()  # given back: the next one opens it


def test_a_big_collection_gets_an_hnsw_index_that_finds_what_exact_search_finds(tmp_path, monkeypatch):
    import numpy as np

    from lychee_gradio.search import local_store
    from lychee_gradio.search.store import Store

    monkeypatch.setattr(local_store, "HNSW_FROM", 300)  # the real threshold is 50,000 items
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, 64))  # clustered, as embeddings are
    vectors = centres[rng.integers(0, 20, 600)] + 0.3 * rng.standard_normal((600, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = Store(tmp_path)
    try:
        store.ensure("big", 64)
        rows = [
            ({"root": "/r", "path": f"{i}.png", "page": None, "kind": "image", "sha256": str(i)}, v.tolist())
            for i, v in enumerate(vectors)
        ]
        store.put("big", rows)
        shard = store.backend.shard("big")
        assert shard.info().indexed_vectors_count == 0  # searched exactly until indexed
        store.index("big")
        assert shard.info().indexed_vectors_count == 600
        recall = []
        for query in vectors[:30] + 0.1 * rng.standard_normal((30, 64)):
            exact = {f"{i}.png" for i in np.argsort(-(vectors @ query))[:10]}
            recall.append(len(exact & {hit.path for hit in store.search("big", query.tolist(), 10)}) / 10)
        assert np.mean(recall) >= 0.95
    finally:
        store.close()


def test_the_same_upload_sent_at_once_by_several_callers_is_embedded_once(server):
    from concurrent.futures import ThreadPoolExecutor

    running, _ = server
    body = {"collection": "race", "documents": [{"image": "data:image/png;base64," + b64(png((9, 9, 9))), "name": "same.png"}]}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(running, "/v1/index", body), range(6)))
    assert [answer.status_code for answer in answers] == [200] * 6
    assert sorted(answer.json()["embedded"] for answer in answers) == [0, 0, 0, 0, 0, 1]
    assert httpx.get(f"{running.url}v1/collections", timeout=30).json()["collections"] == [{"name": "race", "items": 1}]
