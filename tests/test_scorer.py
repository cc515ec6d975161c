"""The scoring engine on the tiny random Qwen2.5-VL: prompt, scores, batching, ranking."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lychee_gradio import DEFAULT_INSTRUCTION, RerankResult, ScoringOutOfMemoryError
from lychee_gradio.engine.naive import NaiveScorer
from lychee_gradio.engine.prompt import SYSTEM_PROMPT
from lychee_gradio.inputs import Item

CUSTOM_INSTRUCTION = "Given a product image and description, decide whether they match."


@pytest.fixture(scope="module")
def naive(tiny_model_dir):
    return NaiveScorer.load(tiny_model_dir)


@pytest.fixture(scope="module")
def mixed_documents(red_image, blue_image):
    return [
        "short",
        "a much longer document about ceramic coffee cups with mountain line patterns " * 12,
        red_image,
        {"text": "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml", "image": blue_image},
        "Mixed 中文 and English: 不锈钢真空保温旅行杯, double wall, 500ml",
        blue_image,
        {"text": "tiny", "image": red_image},
    ]


def query_of_kind(kind: str, text: str, image):
    """A query that is text, an image, or both ("text+image")."""
    return {"text": text, "image": image, "text+image": {"text": text, "image": image}}[kind]


def _as_pair(value):
    """The reference scorer's (text, image) form of a test input."""
    if isinstance(value, str):
        return (value, None)
    if isinstance(value, dict):
        return (value.get("text"), value.get("image"))
    return (None, value)


def test_the_prompt_of_a_text_and_image_pair_is_rendered_exactly(scorer, red_image, blue_image):
    query = Item(text="white cup", image=red_image)
    document = Item(text="a mug", image=blue_image)
    rendered = scorer.encoder.render(query, document, "Find cups")
    assert rendered == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\n"
        "<Instruct>: Find cups"
        "<Query>:<|vision_start|><|image_pad|><|vision_end|>white cup"
        "\n<Document>:<|vision_start|><|image_pad|><|vision_end|>a mug<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_the_system_prompt_and_default_instruction_are_the_model_contract():
    assert SYSTEM_PROMPT == (
        "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
        'Note that the answer can only be "yes" or "no".'
    )
    assert DEFAULT_INSTRUCTION == "Given a web search query, retrieve relevant passages that answer the query"


def test_a_pair_is_encoded_exactly_as_the_processor_encodes_it(scorer, naive, red_image, blue_image):
    query, document = Item(text="cup", image=red_image), Item(text="mug 杯", image=blue_image)
    (pair,) = scorer.encoder.encode(query, [document], "inst")
    expected = naive.inputs(("cup", red_image), ("mug 杯", blue_image), "inst")
    assert pair.input_ids.tolist() == expected["input_ids"][0].tolist()
    assert pair.mm_token_type_ids.tolist() == expected["mm_token_type_ids"][0].tolist()
    assert torch.equal(torch.cat([im.pixel_values for im in pair.images]), expected["pixel_values"])
    assert torch.equal(torch.stack([im.grid_thw for im in pair.images]), expected["image_grid_thw"])


@pytest.mark.parametrize("instruction", [None, CUSTOM_INSTRUCTION])
@pytest.mark.parametrize("query_kind", ["text", "image", "text+image"])
def test_scores_equal_the_naive_one_pair_per_forward_scorer(scorer, naive, mixed_documents, red_image, instruction, query_kind):
    query = query_of_kind(query_kind, "white ceramic cup 白瓷杯", red_image)
    scores = scorer.score(query, mixed_documents, instruction=instruction)
    expected = [naive.score(_as_pair(query), _as_pair(d), instruction) for d in mixed_documents]
    assert scores == pytest.approx(expected, abs=1e-5)


def test_batched_scores_equal_one_at_a_time_scores(scorer, mixed_documents):
    batched = scorer.score_with_logits("coffee cup", mixed_documents)
    single = [scorer.score_with_logits("coffee cup", [d])[0] for d in mixed_documents]
    assert [p.score for p in batched] == pytest.approx([p.score for p in single], abs=1e-5)
    assert [p.yes_logit for p in batched] == pytest.approx([p.yes_logit for p in single], abs=1e-4)


def test_scores_do_not_depend_on_the_batch_size(scorer, mixed_documents, monkeypatch):
    reference = scorer.score("coffee cup", mixed_documents)
    for batch_size in (1, 2, 3):
        monkeypatch.setattr(scorer, "batch_size", batch_size)
        assert scorer.score("coffee cup", mixed_documents) == pytest.approx(reference, abs=1e-5)


def test_shuffling_documents_permutes_their_scores(scorer, mixed_documents):
    scores = scorer.score("coffee cup", mixed_documents)
    order = list(range(len(mixed_documents)))
    random.Random(7).shuffle(order)
    shuffled = scorer.score("coffee cup", [mixed_documents[i] for i in order])
    assert shuffled == pytest.approx([scores[i] for i in order], abs=1e-5)


def test_an_image_query_scores_text_documents(scorer, naive, red_image):
    documents = ["红色的杯子", "a blue plate", "杯"]
    scores = scorer.score(red_image, documents)
    assert scores == pytest.approx([naive.score((None, red_image), (d, None)) for d in documents], abs=1e-5)


def test_chinese_and_mixed_text_score_like_the_reference(scorer, naive):
    query = "北欧风 white 咖啡杯 with mountains"
    documents = [
        "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml",
        "不锈钢真空保温旅行杯,双层设计,500ml,防漏硅胶圈",
        "Stainless 保温杯 500ml",
    ]
    scores = scorer.score(query, documents)
    assert scores == pytest.approx([naive.score((query, None), (d, None)) for d in documents], abs=1e-5)


def test_a_score_is_a_float_in_0_1_equal_to_the_sigmoid_of_the_logit_difference(scorer, mixed_documents):
    for pair in scorer.score_with_logits("cup", mixed_documents):
        assert type(pair.score) is float and 0.0 <= pair.score <= 1.0
        assert pair.score == pytest.approx(1 / (1 + math.exp(pair.no_logit - pair.yes_logit)), abs=1e-9)


def test_rerank_returns_documents_best_first_with_their_input_index(scorer, mixed_documents):
    scores = scorer.score("coffee cup", mixed_documents)
    results = scorer.rerank("coffee cup", mixed_documents)
    assert all(isinstance(r, RerankResult) for r in results)
    assert [r.index for r in results] == sorted(range(len(scores)), key=lambda i: -scores[i])
    assert [r.score for r in results] == sorted(scores, reverse=True)
    assert all(r.document is mixed_documents[r.index] for r in results)


def test_rerank_top_n_keeps_the_best_n(scorer, mixed_documents):
    full = scorer.rerank("coffee cup", mixed_documents)
    top = scorer.rerank("coffee cup", mixed_documents, top_n=3)
    assert [r.index for r in top] == [r.index for r in full[:3]]
    assert len(scorer.rerank("coffee cup", mixed_documents, top_n=100)) == len(mixed_documents)


@pytest.mark.parametrize("top_n", [-1, 2.5, "3", True])
def test_rerank_refuses_a_top_n_that_is_not_a_whole_number(scorer, top_n):
    with pytest.raises(ValueError, match="top_n"):
        scorer.rerank("q", ["a", "b"], top_n=top_n)


@pytest.mark.parametrize("top_n", [0, None, 2.0])
def test_rerank_top_n_zero_or_none_means_all_and_a_whole_float_is_fine(scorer, top_n):
    assert len(scorer.rerank("q", ["a", "b"], top_n=top_n)) == 2


def test_rerank_hands_back_the_id_and_metadata_attached_to_each_document(scorer, red_image):
    documents = [
        {"text": "a red cup", "id": "sku-1", "metadata": {"price": 12.5, "tags": ["red"]}},
        {"image": red_image, "id": 42},
        "plain text, nothing attached",
    ]
    results = scorer.rerank("red cup", documents)
    by_index = {result.index: result for result in results}
    assert by_index[0].id == "sku-1" and by_index[0].metadata == {"price": 12.5, "tags": ["red"]}
    assert by_index[1].id == 42 and by_index[1].metadata is None
    assert by_index[2].id is None and by_index[2].metadata is None
    # Attached fields never reach the model: the scores equal those of the bare documents.
    bare = scorer.score("red cup", [{"text": "a red cup"}, red_image, "plain text, nothing attached"])
    assert [by_index[i].score for i in range(3)] == bare


def test_no_documents_give_no_scores(scorer):
    assert scorer.score("q", []) == []
    assert scorer.rerank("q", []) == []


def test_a_blank_instruction_means_the_default_instruction(scorer):
    assert scorer.score("q", ["doc"], instruction="  ") == scorer.score("q", ["doc"], instruction=DEFAULT_INSTRUCTION)


def test_changing_the_instruction_changes_the_scores(scorer):
    assert scorer.score("q", ["doc"], instruction="Rank by colour") != scorer.score("q", ["doc"])


def test_long_document_text_is_cut_to_the_token_budget_keeping_the_prompt_end(scorer, monkeypatch):
    monkeypatch.setattr(scorer.encoder, "max_text_tokens", 20)
    long_text = "ceramic mountain cup " * 200
    (pair,) = scorer.encoder.encode(Item(text="q"), [Item(text=long_text)], DEFAULT_INSTRUCTION)
    (short,) = scorer.encoder.encode(Item(text="q"), [Item(text="x")], DEFAULT_INSTRUCTION)
    assert pair.length <= short.length + 20
    tokenizer = scorer.processor.tokenizer
    assert tokenizer.decode(pair.input_ids[-5:]) == "<|im_end|>\n<|im_start|>assistant\n"
    cut = scorer.score("q", [long_text], long_documents="truncate")  # (by default a long text scores by its chunks)
    assert cut == scorer.score("q", [scorer.encoder.truncate(Item(text=long_text)).text])


def test_a_huge_image_is_scaled_down_to_max_pixels(scorer, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(scorer.encoder, "max_pixels", 64 * 28 * 28)
    (pair,) = scorer.encoder.encode(Item(text="q"), [Item(image=Image.new("RGB", (4000, 3000)))], "i")
    grid = pair.images[0].grid_thw
    assert int(grid[1] * grid[2]) * 14 * 14 <= 64 * 28 * 28


def test_out_of_memory_halves_the_batch_and_keeps_the_scores(own_scorer, mixed_documents, monkeypatch):
    expected = own_scorer.score("coffee cup", mixed_documents)
    real_forward = own_scorer.runner.forward
    sizes = []

    def forward_that_fits_two(batch, prefix=None):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(batch, prefix)

    monkeypatch.setattr(own_scorer.runner, "forward", forward_that_fits_two)
    assert own_scorer.score("coffee cup", mixed_documents) == pytest.approx(expected, abs=1e-5)
    assert sizes[:3] == [7, 4, 2] and max(sizes[3:]) <= 2 and sum(sizes[2:]) == 7


def test_out_of_memory_in_the_shared_prefix_falls_back_to_whole_prompts(own_scorer, mixed_documents, red_image, monkeypatch):
    expected = own_scorer.score(red_image, mixed_documents)

    def prefix_that_never_fits(groups):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(own_scorer.runner, "encode_prefixes", prefix_that_never_fits)
    assert own_scorer.score(red_image, mixed_documents) == pytest.approx(expected, abs=1e-5)


def test_out_of_memory_on_a_single_pair_raises_a_clear_error(own_scorer, monkeypatch):
    def forward_that_never_fits(batch, prefix=None):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(own_scorer.runner, "forward", forward_that_never_fits)
    with pytest.raises(ScoringOutOfMemoryError, match="max_pixels"):
        own_scorer.score("q", ["a", "b", "c"])


def test_progress_is_reported_after_each_batch(own_scorer, monkeypatch):
    monkeypatch.setattr(own_scorer, "batch_size", 2)
    seen = []
    own_scorer.score("q", ["a", "b", "c", "d", "e"], on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]


# -- prefix reuse (the shared system prompt + instruction + query is computed once per request) --


@pytest.mark.parametrize("query_kind", ["text", "image", "text+image"])
def test_prefix_reuse_gives_the_same_scores_as_running_every_prompt_whole(
    scorer, mixed_documents, red_image, query_kind, monkeypatch
):
    query = query_of_kind(query_kind, "white cup?", red_image)
    monkeypatch.setattr(scorer, "batch_size", 3)
    reused = scorer.score(query, mixed_documents, instruction=CUSTOM_INSTRUCTION)
    monkeypatch.setattr(scorer, "reuse_prefix", False)
    whole = scorer.score(query, mixed_documents, instruction=CUSTOM_INSTRUCTION)
    assert reused == pytest.approx(whole, abs=1e-5)


@pytest.fixture(scope="module")
def bf16_scorer(tiny_model_dir):
    from lychee_gradio import LycheeScorer

    return LycheeScorer.load(tiny_model_dir, device="cpu", dtype="bfloat16")


@pytest.mark.parametrize("query_kind", ["text", "image", "text+image"])
def test_in_bf16_prefix_reuse_and_batching_stay_within_2e_2_of_whole_single_prompts(
    bf16_scorer, mixed_documents, red_image, query_kind, monkeypatch
):
    assert bf16_scorer.model.dtype == torch.bfloat16
    query = query_of_kind(query_kind, "white cup?", red_image)
    monkeypatch.setattr(bf16_scorer, "batch_size", 3)
    reused = bf16_scorer.score(query, mixed_documents)
    monkeypatch.setattr(bf16_scorer, "reuse_prefix", False)
    whole = bf16_scorer.score(query, mixed_documents)
    single = [bf16_scorer.score(query, [document])[0] for document in mixed_documents]
    assert reused == pytest.approx(whole, abs=2e-2)
    assert reused == pytest.approx(single, abs=2e-2)


def test_prefix_reuse_encodes_the_query_image_once_per_request(scorer, red_image, monkeypatch):
    visual = scorer.model.model.visual
    images_seen = []
    real_forward = visual.forward

    def counting_forward(hidden_states, grid_thw, **kwargs):
        images_seen.append(len(grid_thw))
        return real_forward(hidden_states, grid_thw=grid_thw, **kwargs)

    monkeypatch.setattr(visual, "forward", counting_forward)
    monkeypatch.setattr(scorer, "batch_size", 2)
    scorer.score(red_image, ["a", "b", "c", "d"])
    assert images_seen == [1]
    images_seen.clear()
    monkeypatch.setattr(scorer, "reuse_prefix", False)
    scorer.score(red_image, ["a", "b", "c", "d"])
    assert sum(images_seen) == 4


def test_the_shared_prefix_stops_before_the_document_and_keeps_a_token_per_pair(scorer, red_image):
    from lychee_gradio.engine.encoding import shared_prefix_length

    query, instruction = Item(text="cup"), DEFAULT_INSTRUCTION
    tokenizer = scorer.processor.tokenizer
    pairs = scorer.encoder.encode(query, [Item(text="apple"), Item(text="banana")], instruction)
    shared = tokenizer.decode(pairs[0].input_ids[: shared_prefix_length(pairs)[0]])
    assert "<Query>:cup" in shared and "apple" not in shared
    pairs = scorer.encoder.encode(query, [Item(text="same"), Item(text="same")], instruction)
    assert shared_prefix_length(pairs) == (pairs[0].length - 1, 0)
    pairs = scorer.encoder.encode(query, [Item(image=red_image), Item(image=red_image)], instruction)
    length, images = shared_prefix_length(pairs)
    assert int(pairs[0].mm_token_type_ids[:length].sum()) == 0 and images == 0  # no document image in the prefix


def test_two_query_images_of_one_size_never_share_a_prefix(scorer, red_image, blue_image):
    from lychee_gradio.engine.encoding import shared_prefix_length

    other = red_image.copy()
    other.putpixel((3, 3), (0, 255, 0))  # the same size: the same image token ids, other pixels
    first = scorer.encoder.encode(Item(image=red_image), [Item(text="doc")], DEFAULT_INSTRUCTION)
    second = scorer.encoder.encode(Item(image=other), [Item(text="doc")], DEFAULT_INSTRUCTION)
    length, images = shared_prefix_length(first + second)
    assert images == 0 and int(first[0].mm_token_type_ids[:length].sum()) == 0
    same = scorer.encoder.encode(Item(image=red_image), [Item(text="a"), Item(text="b")], DEFAULT_INSTRUCTION)
    assert shared_prefix_length(same)[1] == 1  # one query, one image: shared


def test_identical_documents_get_identical_scores_with_prefix_reuse(scorer, red_image):
    scores = scorer.score({"text": "q", "image": red_image}, ["same doc", "same doc", red_image, red_image])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6) and scores[2] == pytest.approx(scores[3], abs=1e-6)
