"""`/v1/rerank` in the Cohere / Jina / vLLM format, called by real clients and by plain HTTP."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lychee_gradio import app
from lychee_gradio.config import Config, Limits

from .conftest import CUP, CUPS, MUG
from .helpers import DOCS, b64, data_url


def post(url: str, body, path: str = "v1/rerank", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60, **kwargs)


def expected_results(scorer, query, documents, top_n=None, instruction=None):
    return [(r.index, pytest.approx(r.score, abs=1e-6)) for r in scorer.rerank(query, documents, instruction, top_n=top_n)]


# -- real clients -----------------------------------------------------------------------------------


def test_the_cohere_sdk_gets_the_engine_ranking(live_app, scorer):
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=live_app.rstrip("/"))
    response = client.rerank(model="lychee-rerank-mm", query="white cup", documents=DOCS, top_n=3)
    assert [(r.index, r.relevance_score) for r in response.results] == expected_results(scorer, "white cup", DOCS, 3)


def test_langchains_cohere_reranker_gets_the_engine_ranking(live_app, scorer):
    from langchain_cohere import CohereRerank

    reranker = CohereRerank(model="lychee-rerank-mm", cohere_api_key="unused", base_url=live_app.rstrip("/"), top_n=2)
    results = reranker.rerank(DOCS, "white cup")
    assert [(r["index"], r["relevance_score"]) for r in results] == expected_results(scorer, "white cup", DOCS, 2)


@pytest.mark.parametrize("provider", ["cohere", "jina_ai"])
def test_litellm_rerank_gets_the_engine_ranking(live_app, scorer, provider, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price list
    import litellm

    response = litellm.rerank(
        model=f"{provider}/lychee-rerank-mm",
        query="white cup",
        documents=DOCS,
        top_n=3,
        api_base=live_app.rstrip("/"),
        api_key="unused",
    )
    assert [(r["index"], r["relevance_score"]) for r in response.results] == expected_results(scorer, "white cup", DOCS, 3)


# -- plain HTTP: formats ------------------------------------------------------------------------------


def test_text_documents_are_ranked_best_first_without_the_document_field(live_app, scorer):
    answer = post(live_app, {"query": "white cup", "documents": DOCS})
    assert answer.status_code == 200
    body = answer.json()
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected_results(scorer, "white cup", DOCS)
    assert all("document" not in r for r in body["results"])
    assert body["model"] and body["id"] and body["usage"]["total_tokens"] > 0


def test_return_documents_echoes_text_and_never_an_image(live_app):
    documents = ["plain text", {"text": "with image", "image": b64(CUP)}, {"image": data_url(MUG)}]
    body = post(live_app, {"query": "cup", "documents": documents, "return_documents": True}).json()
    by_index = {r["index"]: r["document"] for r in body["results"]}
    assert by_index == {0: {"text": "plain text"}, 1: {"text": "with image"}, 2: {"text": ""}}


def test_base64_data_url_and_content_part_images_score_as_the_engine_scores(live_app, scorer):
    documents = [
        {"image": b64(CUP)},
        {"text": "a blue mug", "image": data_url(MUG)},
        {"content": [{"type": "text", "text": "a cup"}, {"type": "image_url", "image_url": {"url": data_url(CUP)}}]},
        "just text",
    ]
    query = {"content": [{"type": "text", "text": "white cup"}]}
    body = post(live_app, {"query": query, "documents": documents, "instruction": "Find cups."}).json()
    engine_documents = [{"image": CUP}, {"text": "a blue mug", "image": MUG}, {"text": "a cup", "image": CUP}, "just text"]
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected_results(
        scorer, "white cup", engine_documents, instruction="Find cups."
    )


def test_an_image_query_works_and_top_n_is_honoured(live_app, scorer):
    body = post(live_app, {"query": {"image": b64(CUP)}, "documents": CUPS, "top_n": 3}).json()
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected_results(scorer, {"image": CUP}, CUPS, 3)


def test_top_n_zero_means_all_documents_as_on_the_page(live_app):
    body = post(live_app, {"query": "cup", "documents": DOCS, "top_n": 0}).json()
    assert sorted(r["index"] for r in body["results"]) == list(range(len(DOCS)))


def test_v2_and_bare_rerank_paths_answer_the_same(live_app):
    answers = [
        post(live_app, {"query": "cup", "documents": DOCS}, path).json()["results"]
        for path in ("v1/rerank", "v2/rerank", "rerank")
    ]
    assert answers[0] == answers[1] == answers[2]


def test_max_pixels_bounds_the_images_of_one_request(live_app, scorer):
    body = post(live_app, {"query": "cup", "documents": [{"image": b64(CUP)}], "max_pixels": 8 * 28 * 28}).json()
    assert body["results"][0]["relevance_score"] == pytest.approx(
        scorer.score("cup", [{"image": CUP}], max_pixels=8 * 28 * 28)[0], abs=1e-6
    )


def test_error_messages_say_what_to_do_instead(live_app):
    path = post(live_app, {"query": "q", "documents": [{"image": "/etc/passwd"}]}).json()["message"]
    assert path == ("documents[0].image: file paths are not read over HTTP; send the file itself, as base64 or a data URL")
    junk = post(live_app, {"query": "q", "documents": [{"image": base64.b64encode(b"no image").decode()}]})
    assert junk.json()["message"] == "documents[0].image: cannot decode image (not JPEG, PNG, WebP, GIF, BMP or TIFF)"


def test_the_openapi_page_documents_the_endpoint(live_app):
    spec = httpx.get(f"{live_app}openapi.json").json()
    assert "/v1/rerank" in spec["paths"]
    assert httpx.get(f"{live_app}docs").status_code == 200


# -- plain HTTP: errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"documents": ["a"]}, 422, "query"),
        ({"query": "q", "documents": ["a", 5]}, 422, "documents[1]"),
        ({"query": "q", "documents": ["a", {"title": "no text"}]}, 422, "documents[1]"),
        ({"query": "q", "documents": ["a", "b", {"image": "@@not base64@@"}]}, 400, "documents[2].image"),
        ({"query": "q", "documents": [{"image": "/etc/passwd"}]}, 400, "documents[0].image"),
        ({"query": "q", "documents": [{"image": "https://example.com/a.png"}]}, 400, "documents[0].image"),
        ({"query": "q", "documents": [{"image": base64.b64encode(b"not an image").decode()}]}, 400, "documents[0].image"),
        ({"query": "q", "documents": ["a", ""]}, 400, "documents[1]"),
        ({"query": "q", "documents": ["a"], "top_n": -1}, 422, "top_n"),
        ({"query": "q", "documents": [{"content": [{"type": "video"}]}]}, 422, "documents[0].content[0]"),
        ({"query": "q", "documents": ["a"], "max_pixels": 10**12}, 400, "max_pixels"),
    ],
)
def test_a_bad_request_gets_a_4xx_naming_the_field_and_the_server_keeps_serving(live_app, body, status, field):
    answer = post(live_app, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and field.split("[")[0] in answer.json()["message"]
    assert post(live_app, {"query": "q", "documents": ["a"]}).status_code == 200


@pytest.fixture(scope="module")
def strict_app(scorer):
    settings = app.ServerSettings(
        port=0,
        config=Config(limits=Limits(max_documents=3, max_body_bytes=200_000, max_image_pixels=150 * 150), api_key="sekrit"),
    )
    running = app.start(scorer, settings)
    yield running.url
    running.close()


def test_the_api_key_is_required_when_set(strict_app):
    body = {"query": "q", "documents": ["a"]}
    assert post(strict_app, body).status_code == 401
    assert post(strict_app, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = post(strict_app, body, headers={"Authorization": "Bearer sekrit"})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 1


def test_a_bare_data_url_document_is_an_image_and_obeys_the_pixel_limit(live_app, strict_app, scorer):
    body = post(live_app, {"query": "cup", "documents": [data_url(CUP), "text"]}).json()
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected_results(
        scorer, "cup", [{"image": CUP}, "text"]
    )
    big = io.BytesIO()
    Image.new("RGB", (200, 200)).save(big, format="PNG")
    too_big = f"data:image/png;base64,{base64.b64encode(big.getvalue()).decode()}"
    answer = post(strict_app, {"query": "q", "documents": [too_big]}, headers={"Authorization": "Bearer sekrit"})
    assert answer.status_code == 413 and answer.json()["field"] == "documents[0]"


def test_the_limits_refuse_with_a_clear_status(strict_app):
    auth = {"Authorization": "Bearer sekrit"}
    too_many = post(strict_app, {"query": "q", "documents": ["a", "b", "c", "d"]}, headers=auth)
    assert too_many.status_code == 400 and "at most 3" in too_many.json()["message"]
    big = Image.new("RGB", (200, 200))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    too_big_image = post(
        strict_app, {"query": "q", "documents": ["a", {"image": base64.b64encode(buffer.getvalue()).decode()}]}, headers=auth
    )
    assert too_big_image.status_code == 413 and too_big_image.json()["field"] == "documents[1].image"
    too_big_body = post(strict_app, {"query": "q", "documents": ["x" * 300_000]}, headers=auth)
    assert too_big_body.status_code == 413 and too_big_body.json()["field"] == "body"
    assert post(strict_app, {"query": "q", "documents": ["a"]}, headers=auth).status_code == 200


# -- MCP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True))
    yield running.url
    running.close()


def test_an_mcp_client_lists_the_tools_and_gets_the_engine_ranking(mcp_app, scorer):
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def call():
        async with streamablehttp_client(f"{mcp_app}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = [tool.name for tool in (await session.list_tools()).tools]
                result = await session.call_tool("rerank", {"query": "white cup", "documents": ["a cup", "a plate", "a mug"]})
                return tools, result

    tools, result = asyncio.run(call())
    assert tools == ["explain", "score", "rerank", "rank_images"]
    expected = scorer.rerank("white cup", ["a cup", "a plate", "a mug"])
    assert [(r["index"], r["score"]) for r in result.structuredContent["results"]] == [
        (r.index, pytest.approx(r.score, abs=1e-6)) for r in expected
    ]


# -- image URLs, when the server allows them (served from this machine's loopback) -----------------------


@pytest.fixture(scope="module")
def image_host():
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(Path(CUP).parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def url_app(scorer):
    # The image host is this machine's loopback, which only an allow-listed host may be (test_doors.py
    # holds the refusals).
    settings = app.ServerSettings(
        port=0, config=Config(allow_image_urls=True, limits=Limits(max_image_url_bytes=1500), allowed_image_hosts=("127.0.0.1",))
    )
    running = app.start(scorer, settings)
    yield running.url
    running.close()


def test_allowed_image_urls_are_fetched_and_scored_and_capped_in_size(url_app, image_host, scorer):
    cup = f"{image_host}/{Path(CUP).name}"  # 1.7 KB: over the 1,500-byte cap
    mug = f"{image_host}/{Path(MUG).name}"  # 1.3 KB
    body = post(url_app, {"query": "cup", "documents": [{"image": mug}, "text"]}).json()
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == expected_results(
        scorer, "cup", [{"image": MUG}, "text"]
    )
    too_big = post(url_app, {"query": "cup", "documents": ["a", {"image": cup}]})
    assert too_big.status_code == 413 and too_big.json()["field"] == "documents[1].image"
    missing = post(url_app, {"query": "cup", "documents": [{"image": f"{image_host}/nope.png"}]})
    assert missing.status_code == 400 and "the image URL could not be fetched" in missing.json()["message"]
