"""Search over the user's own collection: `lychee index` into a collection on disk (Qdrant's local mode), then
`/v1/search`: the first stage the exact top-k by cosine of the embedding model's vectors, the reranker over its best."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from lychee_gradio import app
from lychee_gradio.cli import main as lychee
from lychee_gradio.contract import InputError
from lychee_gradio.search.indexing import index_folders
from lychee_gradio.search.searching import document_of
from lychee_gradio.search.store import Hit, Store

WORDS = ["white", "blue", "steel", "red", "green", "tall", "small", "striped", "round", "square"]
THINGS = ["cup", "mug", "tumbler", "plate", "bowl"]


def make_folder(folder: Path, texts: int = 25, photos: int = 15) -> Path:
    """`texts` texts and `photos` photos (40 files by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(texts):
        (folder / f"note{i:02d}.txt").write_text(f"a {WORDS[i % 10]} {THINGS[i % 5]} number {i}", encoding="utf-8")
    for i in range(photos):
        Image.new("RGB", (64 + 8 * i, 48), (17 * i, 255 - 15 * i, (40 * i) % 256)).save(folder / f"photo{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedding_model_dir):
    folder = make_folder(tmp_path_factory.mktemp("files") / "catalogue")
    data = tmp_path_factory.mktemp("data")
    command = ["index", str(folder), "--collection", "cups", "--embedding-model", str(embedding_model_dir)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert lychee([*command, "--data-dir", str(data), "--device", "cpu", "--dtype", "float32", "--json"]) == 0
    counts = json.loads(printed.getvalue().strip().splitlines()[-1])
    assert counts == {"embedded": 40, "unchanged": 0, "removed": 0, "skipped": 0}
    return folder, data


def as_document(path: Path) -> dict:
    if path.suffix == ".txt":
        return {"text": path.read_text(encoding="utf-8")}
    return {"image": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()}


def test_search_is_the_exact_top_k_by_cosine_then_what_v1_rerank_gives_for_those_candidates(indexed, scorer, embedder):
    folder, data = indexed
    running = app.start(scorer, app.ServerSettings(port=0, data_dir=str(data)), [embedder])
    try:
        body = {"collection": "cups", "query": "a white cup", "top_k": 10, "rerank_top_n": 5}
        found = httpx.post(f"{running.url}v1/search", json=body, timeout=120).json()
        files = sorted(folder.iterdir())
        vectors = httpx.post(f"{running.url}v1/embeddings", json={"input": [as_document(p) for p in files]}, timeout=120).json()
        matrix = torch.tensor([row["embedding"] for row in vectors["data"]])
        (query,) = httpx.post(f"{running.url}v1/embeddings", json={"input": "a white cup"}, timeout=60).json()["data"]
        cosine = matrix @ torch.tensor(query["embedding"])
        exact = [files[i].name for i in torch.argsort(cosine, descending=True)[:10].tolist()]
        assert [row["path"] for row in found["first_stage"]] == exact  # recall 1.0, in order
        assert [row["score"] for row in found["first_stage"]] == pytest.approx(
            sorted(cosine.tolist(), reverse=True)[:10], abs=1e-5
        )
        candidates = [folder / name for name in exact[:5]]
        reranked = httpx.post(
            f"{running.url}v1/rerank",
            json={"query": "a white cup", "documents": [as_document(p) for p in candidates]},
            timeout=120,
        ).json()
        assert [row["path"] for row in found["results"]] == [candidates[row["index"]].name for row in reranked["results"]]
        assert [row["relevance_score"] for row in found["results"]] == pytest.approx(
            [row["relevance_score"] for row in reranked["results"]], abs=1e-6
        )
        first = {row["path"]: row["score"] for row in found["first_stage"]}
        assert all(row["first_stage_score"] == first[row["path"]] for row in found["results"])
    finally:
        running.close()
    # After a restart the collection is still there, and answers the same.
    again = app.start(scorer, app.ServerSettings(port=0, data_dir=str(data)), [embedder])
    try:
        repeat = httpx.post(f"{again.url}v1/search", json=body, timeout=120).json()
        assert [row["path"] for row in repeat["first_stage"]] == exact
    finally:
        again.close()


def test_indexing_again_embeds_only_what_changed_and_removed_files_leave(tmp_path, embedder):
    folder, store = make_folder(tmp_path / "files", texts=6, photos=4), Store(tmp_path / "data")
    try:
        runs = [index_folders(store, "cups", [folder], embedder).as_dict()]
        runs.append(index_folders(store, "cups", [folder], embedder).as_dict())
        (folder / "new.txt").write_text("a new cup", encoding="utf-8")
        (folder / "note00.txt").unlink()
        runs.append(index_folders(store, "cups", [folder], embedder).as_dict())
        assert store.count("cups") == 10
    finally:
        store.close()
    assert [(run["embedded"], run["unchanged"], run["removed"]) for run in runs] == [(10, 0, 0), (0, 10, 0), (1, 9, 1)]


def test_bad_searches_get_a_4xx_naming_the_field_and_a_point_never_leads_outside_its_folder(indexed, scorer, embedder):
    folder, data = indexed
    store = Store(data)
    try:
        with pytest.raises(InputError):
            document_of(store, Hit("x", 1.0, str(folder), "../../../etc/passwd", None, "text"))
    finally:
        store.close()
    running = app.start(scorer, app.ServerSettings(port=0, data_dir=str(data)), [embedder])
    try:
        cases = [
            ({"collection": "../cups", "query": "cup"}, "collection"),
            ({"collection": "nope", "query": "cup"}, "collection"),
            ({"collection": "cups", "query": "cup", "top_k": 0}, "top_k"),
            ({"collection": "cups", "query": "cup", "rerank_top_n": "5"}, "rerank_top_n"),
            ({"collection": "cups", "query": {"image": "/etc/passwd"}}, "query.image"),
        ]
        for body, field in cases:
            answer = httpx.post(f"{running.url}v1/search", json=body, timeout=60)
            assert 400 <= answer.status_code < 500 and answer.json()["field"] == field, (body, answer.text)
            assert str(data) not in answer.text and "Traceback" not in answer.text
        assert httpx.post(f"{running.url}v1/search", json={"collection": "cups", "query": "cup"}, timeout=120).status_code == 200
    finally:
        running.close()


def test_mcp_and_gradio_client_search_as_v1_search_does(indexed, scorer, embedder):
    from gradio_client import Client

    from .helpers import mcp_call

    _, data = indexed
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, data_dir=str(data)), [embedder])
    try:
        body = {"collection": "cups", "query": "a blue mug", "top_k": 8, "rerank_top_n": 4}
        expected = httpx.post(f"{running.url}v1/search", json=body, timeout=120).json()
        tool = json.loads(mcp_call(running.url, "search", body).content[0].text)
        page = Client(running.url, verbose=False).predict(
            collection="cups", query_text="a blue mug", top_k=8, rerank_top_n=4, api_name="/search"
        )
        for found, key in ((tool, "path"), (page, "file")):  # gradio_client's rows name the path `file`
            assert [row[key] for row in found["first_stage"]] == [row["path"] for row in expected["first_stage"]]
            assert [row[key] for row in found["results"]] == [row["path"] for row in expected["results"]]
    finally:
        running.close()
