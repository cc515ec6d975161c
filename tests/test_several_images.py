"""A query or document of several images: each image before the text, in the caller's order, through the processor's
own path; the one-image shapes score as they always did; every door takes them."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from lychee_gradio import InputError, LycheeScorer
from lychee_gradio.contract import Item
from lychee_gradio.engine.naive import NaiveScorer

from .conftest import CUP, MUG, TUMBLER

QUERY = "a white cup and a blue mug"


@pytest.fixture(scope="module")
def naives(tiny_model_dir, tiny_qwen3_dir):
    return {"qwen2_5_vl": NaiveScorer.load(tiny_model_dir), "qwen3_vl": NaiveScorer.load(tiny_qwen3_dir)}


@pytest.fixture(params=["qwen2_5_vl", "qwen3_vl"])
def family(request, scorer, qwen3_scorer, naives):
    return request.param, {"qwen2_5_vl": scorer, "qwen3_vl": qwen3_scorer}[request.param], naives[request.param]


def test_a_document_of_two_images_scores_as_the_processors_own_path(family, red_image, blue_image):
    _, engine, naive = family
    documents = [
        {"text": "two cups", "images": [red_image, blue_image]},
        {"images": [blue_image, red_image]},
        "a plain text",
        {"image": red_image},
    ]
    scores = engine.score(QUERY, documents)
    expected = [
        naive.score((QUERY, None), ("two cups", [red_image, blue_image])),
        naive.score((QUERY, None), (None, [blue_image, red_image])),
        naive.score((QUERY, None), ("a plain text", None)),
        naive.score((QUERY, None), (None, red_image)),
    ]
    assert scores == pytest.approx(expected, abs=1e-5)


def test_swapping_the_two_images_changes_the_prompt_and_the_score(family, red_image, blue_image):
    _, engine, _ = family
    (first,) = engine.encoder.encode(Item(text=QUERY), [Item(images=(red_image, blue_image))], "inst")
    (second,) = engine.encoder.encode(Item(text=QUERY), [Item(images=(blue_image, red_image))], "inst")
    assert first.input_ids.tolist() != second.input_ids.tolist() or not all(
        a.pixel_values.equal(b.pixel_values) for a, b in zip(first.images, second.images)
    )
    forward, backward = engine.score(QUERY, [{"images": [red_image, blue_image]}, {"images": [blue_image, red_image]}])
    assert forward != pytest.approx(backward, abs=1e-7)


def test_a_query_of_several_images_is_prefix_reused_and_stays_pointwise(family, red_image, blue_image):
    _, engine, naive = family
    query = {"text": "these two", "images": [red_image, blue_image]}
    documents = ["a red cup", {"image": blue_image}, "a blue mug", {"text": "both", "images": [blue_image, red_image]}]
    together = engine.score(query, documents)
    alone = [engine.score(query, [document])[0] for document in documents]
    expected = [naive.score(("these two", [red_image, blue_image]), _pair(document)) for document in documents]
    assert together == pytest.approx(alone, abs=1e-5) and together == pytest.approx(expected, abs=1e-5)


def _pair(document):
    if isinstance(document, str):
        return document, None
    return document.get("text"), document.get("images") or document.get("image")


def test_one_image_given_as_images_scores_as_image(scorer, red_image):
    assert scorer.score(QUERY, [{"images": [red_image]}]) == scorer.score(QUERY, [{"image": red_image}])
    assert Item(images=(red_image,)) == Item(image=red_image)


def test_image_and_images_together_or_too_many_are_refused_by_name(scorer, red_image):
    with pytest.raises(InputError) as both:
        scorer.score(QUERY, [{"image": red_image, "images": [red_image]}])
    assert both.value.field == "documents[0]" and both.value.code == "image_and_images"
    with pytest.raises(InputError) as bad:
        scorer.score(QUERY, ["a", {"images": [red_image, "/no/such.png"]}])
    assert bad.value.field == "documents[1].images[1]"


def test_each_image_of_a_document_gets_its_own_map(scorer, red_image, blue_image):
    document = Item(text="two cups", images=(red_image, blue_image))
    found = scorer.explain(Item(text=QUERY), document, grid=2)
    maps = [image_map for image_map in found.images if image_map.target == "document"]
    assert [m.index for m in maps] == [0, 1] and all(m.cells for m in maps)
    assert (maps[0].width, maps[0].height) == red_image.size and (maps[1].width, maps[1].height) == blue_image.size
    # each value is the score with that one cell of that one image filled in
    first_box = maps[1].cells[0].box
    from lychee_gradio.explain import mean_colour, occluded

    changed = Item(text="two cups", images=(red_image, occluded(blue_image, first_box, mean_colour(blue_image))))
    assert maps[1].cells[0].delta == pytest.approx(
        found.score - scorer.score(QUERY, [changed], scorer.family.default_instruction)[0], abs=1e-5
    )


# -- the doors ----------------------------------------------------------------------------------------------


def data_url(path: str) -> str:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_v1_rerank_takes_several_images_as_a_vllm_content_list_or_as_images(live_app, scorer):
    parts = [
        {"type": "text", "text": "two cups"},
        {"type": "image_url", "image_url": {"url": data_url(CUP)}},
        {"type": "image_url", "image_url": {"url": data_url(MUG)}},
    ]
    as_content = httpx.post(
        f"{live_app}v1/rerank", json={"query": QUERY, "documents": [{"content": parts}, "x"]}, timeout=60
    ).json()
    as_images = httpx.post(
        f"{live_app}v1/rerank",
        json={"query": QUERY, "documents": [{"text": "two cups", "images": [data_url(CUP), data_url(MUG)]}, "x"]},
        timeout=60,
    ).json()
    scores = {r["index"]: r["relevance_score"] for r in as_content["results"]}
    assert scores == {r["index"]: r["relevance_score"] for r in as_images["results"]}
    expected = scorer.score(QUERY, [{"text": "two cups", "images": [CUP, MUG]}, "x"])
    assert [scores[0], scores[1]] == pytest.approx(expected, abs=1e-6)


def test_v1_rerank_names_the_image_at_fault_among_several(live_app):
    answer = httpx.post(
        f"{live_app}v1/rerank", json={"query": QUERY, "documents": [{"images": [data_url(CUP), "bm90IGFuIGltYWdl"]}]}, timeout=60
    )
    assert answer.status_code == 400 and answer.json()["field"] == "documents[0].images[1]"


def test_the_batch_tab_attaches_several_uploads_to_a_block(scorer):
    from lychee_gradio.ui.batch import rerank_view

    from .conftest import page

    _, rows = page(
        rerank_view, scorer, QUERY, None, "two [image: mountain_cup.png, blue_mug.png]\n---\nnone", [CUP, MUG, TUMBLER], "", 0
    )
    by_index = {row["index"]: row["score"] for row in rows}
    expected = scorer.score(QUERY, [{"text": "two", "images": [CUP, MUG]}, "none", {"image": TUMBLER}])
    assert [by_index[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)


def test_lychee_eval_lines_take_several_image_paths_inside_the_data_folder(tmp_path):
    import json
    import shutil

    from lychee_gradio.evaluation.data import BadLine, parse_line

    for path in (CUP, MUG):
        shutil.copy(path, tmp_path)
    line = {"query": QUERY, "documents": [{"text": "two", "images": ["mountain_cup.png", "blue_mug.png"]}, "x"], "relevant": [0]}
    query = parse_line(json.dumps(line), 1, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in query.documents[0]["images"]] == ["mountain_cup.png", "blue_mug.png"]
    line["documents"][0]["images"][1] = "../outside.png"
    with pytest.raises(BadLine, match=r"documents\[0\]\.images\[1\]"):
        parse_line(json.dumps(line), 1, tmp_path)


def test_a_library_call_loads_paths_in_images(tiny_model_dir):
    with LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32") as own:
        (score,) = own.score(QUERY, [{"images": [CUP, MUG]}])
    assert 0 < score < 1
