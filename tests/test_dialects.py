"""TEI's `/rerank` and vLLM's `/score` beside the Cohere format, by plain HTTP and by the frameworks' own clients
(LlamaIndex, Haystack) pointed at a live server by base URL."""

from __future__ import annotations

import math

import httpx
import pytest

from lychee_gradio import InputError, app
from lychee_gradio.config import Config, Limits

from .conftest import CUP
from .helpers import DOCS, data_url

QUERY = "white cup"


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60, **kwargs)


def cohere_scores(url: str, query, documents, **kwargs) -> dict[int, float]:
    answer = post(url, "v1/rerank", {"query": query, "documents": documents}, **kwargs)
    assert answer.status_code == 200, answer.text
    return {r["index"]: r["relevance_score"] for r in answer.json()["results"]}


def cohere_order(url: str, query, documents) -> list[int]:
    scores = cohere_scores(url, query, documents)
    return sorted(scores, key=lambda i: (-scores[i], i))


# -- TEI ----------------------------------------------------------------------------------------------------


def test_a_tei_request_on_rerank_gets_teis_answer_with_the_scores_of_v1_rerank(live_app):
    answer = post(live_app, "rerank", {"query": QUERY, "texts": DOCS})
    assert answer.status_code == 200
    ranks = answer.json()
    assert isinstance(ranks, list) and all(set(rank) == {"index", "score"} for rank in ranks)
    expected = cohere_scores(live_app, QUERY, DOCS)
    assert [rank["index"] for rank in ranks] == cohere_order(live_app, QUERY, DOCS)
    assert {rank["index"]: rank["score"] for rank in ranks} == pytest.approx(expected, abs=1e-6)


def test_tei_raw_scores_are_the_logits_whose_sigmoid_is_the_score(live_app):
    raw = {r["index"]: r["score"] for r in post(live_app, "rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()}
    expected = cohere_scores(live_app, QUERY, DOCS)
    assert {i: 1 / (1 + math.exp(-logit)) for i, logit in raw.items()} == pytest.approx(expected, abs=1e-6)


def test_tei_return_text_echoes_each_text(live_app):
    ranks = post(live_app, "rerank", {"query": QUERY, "texts": DOCS, "return_text": True}).json()
    assert all(rank["text"] == DOCS[rank["index"]] for rank in ranks)


@pytest.fixture(scope="module")
def tight_app(scorer):
    """A server whose model keeps 64 tokens of a text (as a small budget would)."""
    budget = scorer.encoder.max_text_tokens
    scorer.encoder.max_text_tokens = 64
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=Limits(max_documents=8))))
    yield running.url
    running.close()
    scorer.encoder.max_text_tokens = budget


def test_tei_truncate_false_refuses_a_text_over_the_budget_and_true_cuts_it(tight_app):
    long_text = "a white ceramic cup with a mountain line pattern " * 40
    refused = post(tight_app, "rerank", {"query": QUERY, "texts": ["short", long_text], "truncate": False})
    assert refused.status_code == 413
    body = refused.json()
    assert body["field"] == "texts[1]" and "64 tokens" in body["message"] and body["error_type"] == "Validation"
    assert body["error"] == body["message"]
    for cut in ({"truncate": True}, {}):
        assert post(tight_app, "rerank", {"query": QUERY, "texts": ["short", long_text], **cut}).status_code == 200
    too_long_query = post(tight_app, "rerank", {"query": long_text, "texts": ["short"], "truncate": False})
    assert too_long_query.status_code == 413 and too_long_query.json()["field"] == "query"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"query": "q"}, 422, "body", "{query, documents}"),
        ({"query": "q", "texts": ["a"], "documents": ["a"]}, 422, "body", "both"),
        ({"query": "q", "texts": ["a", 5]}, 422, "texts[1]", "string"),
        ({"query": "q", "texts": ["a"], "truncation_direction": "Left"}, 400, "truncation_direction", "Right"),
        ({"query": "q", "texts": ["a"] * 51}, 400, "texts", "at most 50"),
    ],
)
def test_a_request_rerank_cannot_read_gets_one_clear_error_and_the_server_keeps_serving(live_app, body, status, field, words):
    answer = post(live_app, "rerank", body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and words in answer.json()["message"]
    assert post(live_app, "rerank", {"query": "q", "texts": ["a"]}).status_code == 200


def test_tei_info_names_the_model_as_a_reranker(live_app):
    info = httpx.get(f"{live_app}info", timeout=30).json()
    assert info["model_id"] and "reranker" in info["model_type"] and info["max_client_batch_size"] == 50


# -- vLLM ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["v1/score", "score"])
def test_vllms_score_of_one_text_1_against_a_list_gives_v1_reranks_scores(live_app, path):
    answer = post(live_app, path, {"model": "lychee-rerank-mm", "text_1": QUERY, "text_2": DOCS})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list" and body["id"].startswith("score-") and body["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in body["data"]] == list(range(len(DOCS)))
    assert all(d["object"] == "score" for d in body["data"])
    assert {d["index"]: d["score"] for d in body["data"]} == pytest.approx(cohere_scores(live_app, QUERY, DOCS), abs=1e-6)


def test_vllms_equal_length_lists_are_scored_pair_by_pair(live_app):
    queries = [QUERY, "steel tumbler", QUERY]
    body = post(live_app, "v1/score", {"text_1": queries, "text_2": DOCS[:3]}).json()
    expected = [cohere_scores(live_app, query, [document])[0] for query, document in zip(queries, DOCS[:3])]
    assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=1e-6)


def test_vllms_multimodal_content_scores_each_part_as_a_document(live_app):
    image = {"type": "image_url", "image_url": {"url": data_url(CUP)}}
    text = {"type": "text", "text": "a white cup"}
    as_parts = post(live_app, "v1/score", {"text_1": QUERY, "text_2": {"content": [image, text]}}).json()
    expected = cohere_scores(live_app, QUERY, [{"content": [image]}, "a white cup"])
    assert [d["score"] for d in as_parts["data"]] == pytest.approx([expected[0], expected[1]], abs=1e-6)
    as_list = post(live_app, "v1/score", {"text_1": QUERY, "text_2": [{"content": [image, text]}]}).json()
    both = cohere_scores(live_app, QUERY, [{"content": [image, text]}])
    assert as_list["data"][0]["score"] == pytest.approx(both[0], abs=1e-6)


def test_vllm_lists_of_different_lengths_are_refused_naming_both(live_app):
    answer = post(live_app, "v1/score", {"text_1": ["a", "b"], "text_2": ["a", "b", "c"]})
    assert answer.status_code == 400 and answer.json()["field"] == "text_1"
    assert "text_1 has 2 items and text_2 3" in answer.json()["message"]
    bad_image = post(
        live_app,
        "v1/score",
        {"text_1": "q", "text_2": ["a", {"content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]},
    )
    assert bad_image.status_code == 400 and bad_image.json()["field"].startswith("text_2[1]")


@pytest.fixture(scope="module")
def keyed_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(api_key="dialect-key")))
    yield running.url
    running.close()


def test_every_dialect_needs_the_api_key_when_one_is_set(keyed_app):
    for path, body in (
        ("rerank", {"query": "q", "texts": ["a"]}),
        ("v1/score", {"text_1": "q", "text_2": ["a"]}),
        ("score", {"text_1": "q", "text_2": "a"}),
    ):
        assert post(keyed_app, path, body).status_code == 401
        assert post(keyed_app, path, body, headers={"Authorization": "Bearer dialect-key"}).status_code == 200
    assert httpx.get(f"{keyed_app}info", timeout=30).status_code == 401


def test_the_dialects_are_documented_and_counted_in_the_metrics(live_app):
    spec = httpx.get(f"{live_app}openapi.json", timeout=30).json()
    assert {"/rerank", "/v1/score", "/info"} <= set(spec["paths"])
    post(live_app, "v1/score", {"text_1": "q", "text_2": ["a"]})
    metrics = httpx.get(f"{live_app}metrics", timeout=30).text
    assert 'endpoint="/v1/score"' in metrics


# -- the frameworks' own clients ------------------------------------------------------------------------------


def nodes(texts):
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0) for i, text in enumerate(texts)]


def ranked_ids(found) -> list[int]:
    return [int(node.node.id_) for node in found]


@pytest.mark.slow  # the frameworks' imports take seconds
def test_llamaindexs_tei_postprocessor_ranks_as_v1_rerank(live_app):
    from llama_index.core.schema import QueryBundle
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    reranker = TextEmbeddingInference(base_url=live_app.rstrip("/"), top_n=3)
    found = reranker.postprocess_nodes(nodes(DOCS), QueryBundle(QUERY))
    assert ranked_ids(found) == cohere_order(live_app, QUERY, DOCS)[:3]


@pytest.mark.slow  # the frameworks' imports take seconds
def test_llamaindexs_tei_postprocessor_sends_the_key_as_its_auth_token(keyed_app):
    from llama_index.core.schema import QueryBundle
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    reranker = TextEmbeddingInference(base_url=keyed_app.rstrip("/"), top_n=2, auth_token="Bearer dialect-key")
    assert len(reranker.postprocess_nodes(nodes(DOCS), QueryBundle(QUERY))) == 2


@pytest.mark.slow  # the frameworks' imports take seconds
def test_llamaindexs_cohere_and_jina_postprocessors_rank_as_v1_rerank(live_app):
    from llama_index.core.schema import QueryBundle
    from llama_index.postprocessor.cohere_rerank import CohereRerank
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    expected = cohere_order(live_app, QUERY, DOCS)[:3]
    cohere = CohereRerank(model="lychee-rerank-mm", api_key="unused", base_url=live_app.rstrip("/"), top_n=3)
    assert ranked_ids(cohere.postprocess_nodes(nodes(DOCS), QueryBundle(QUERY))) == expected
    jina = JinaRerank(model="lychee-rerank-mm", api_key="unused", base_url=live_app.rstrip("/") + "/v1", top_n=3)
    assert ranked_ids(jina.postprocess_nodes(nodes(DOCS), QueryBundle(QUERY))) == expected


@pytest.mark.slow  # the frameworks' imports take seconds
def test_haystacks_cohere_and_jina_rankers_rank_as_v1_rerank(live_app, monkeypatch):
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker
    from haystack_integrations.components.rankers.jina import JinaRanker

    documents = [Document(content=text, id=str(i)) for i, text in enumerate(DOCS)]
    expected = cohere_order(live_app, QUERY, DOCS)[:3]
    cohere = CohereRanker(
        model="lychee-rerank-mm", top_k=3, api_key=Secret.from_token("unused"), api_base_url=live_app.rstrip("/")
    )
    assert [int(d.id) for d in cohere.run(query=QUERY, documents=documents)["documents"]] == expected
    jina = JinaRanker(model="lychee-rerank-mm", top_k=3, api_key=Secret.from_token("unused"), base_url=live_app + "v1/rerank")
    assert [int(d.id) for d in jina.run(query=QUERY, documents=documents)["documents"]] == expected


def test_a_tei_text_is_text_whatever_it_spells(live_app):
    spelled = "data:image/png;base64,iVBORw0KGgo="
    ranks = post(live_app, "rerank", {"query": QUERY, "texts": [spelled, "a cup"]}).json()
    expected = cohere_scores(live_app, QUERY, [{"text": spelled}, "a cup"])
    assert {rank["index"]: rank["score"] for rank in ranks} == pytest.approx(expected, abs=1e-6)


def test_vllm_without_a_text_1_is_a_400_not_a_500(live_app):
    answer = post(live_app, "v1/score", {"text_1": [], "text_2": []})
    assert answer.status_code == 400 and answer.json()["field"] == "text_1"


def test_media_urls_beyond_the_document_limit_are_refused_before_any_is_fetched(scorer):
    import asyncio

    from lychee_gradio.service import Service

    fetched = []

    async def fetch(values, context, client):
        fetched.append(values)
        return {}

    service = Service(scorer, Config(limits=Limits(max_documents=3)), fetch=fetch)
    values = [(f"documents[0].images[{k}]", f"https://example.com/{k}.png") for k in range(4)]
    with service.request("/v1/rerank") as req, pytest.raises(InputError) as refused:
        asyncio.run(req.fetch(values))
    assert refused.value.code == "too_many_urls" and refused.value.field == "documents[0].images[3]" and not fetched
