"""A bf16 model on the CPU multiplies in bf16 and keeps its residual stream in float32 (engine/precision.py), so its
scores come closer to float32's; every path (prefix reuse, batches, images, explanations, the model's own words)
runs that way. How close and how fast: `python -m lychee_gradio.bench --roofline --plain-stream`, never a test."""

from __future__ import annotations

import pytest
import torch

from lychee_gradio import LycheeScorer
from lychee_gradio.engine.precision import keep_residual_float32


@pytest.fixture(scope="module")
def bf16_scorer(tiny_model_dir):
    with LycheeScorer.load(tiny_model_dir, device="cpu", dtype="bfloat16") as scorer:
        yield scorer


@pytest.fixture(scope="module")
def bf16_qwen3(tiny_qwen3_dir):
    with LycheeScorer.load(tiny_qwen3_dir, device="cpu", dtype="bfloat16") as scorer:
        yield scorer


def seen_dtypes(scorer, run):
    """The dtypes of a run's residual stream (each decoder layer's output) and of what its linear layers multiply."""
    layers = scorer.model.model.language_model.layers
    stream, multiplied = set(), set()
    handles = [
        layer.register_forward_hook(lambda _m, _a, output: stream.add((output[0] if isinstance(output, tuple) else output).dtype))
        for layer in layers
    ]
    handles += [layer.mlp.down_proj.register_forward_pre_hook(lambda _m, args: multiplied.add(args[0].dtype)) for layer in layers]
    handles += [
        layer.self_attn.q_proj.register_forward_pre_hook(lambda _m, args: multiplied.add(args[0].dtype)) for layer in layers
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return stream, multiplied


def test_a_bf16_model_on_the_cpu_multiplies_in_bf16_and_keeps_its_residual_stream_in_float32(bf16_scorer):
    assert bf16_scorer.model.dtype == torch.bfloat16 and bf16_scorer.residual_float32
    assert bf16_scorer.dtype_why == "bfloat16 with a float32 residual stream: asked for"
    stream, multiplied = seen_dtypes(bf16_scorer, lambda: bf16_scorer.score("white cup", ["a white cup", "a pan"]))
    assert stream == {torch.float32} and multiplied == {torch.bfloat16}


def test_the_stream_can_be_turned_off_for_comparison_which_gives_plain_bf16(tiny_model_dir):
    with LycheeScorer.load(tiny_model_dir, device="cpu", dtype="bfloat16", reuse_prefix=False) as scorer:
        mixed = scorer.score("white cup", ["a white cup", "a pan"])
        keep_residual_float32(scorer.model, on=False)
        assert not scorer.residual_float32
        stream, multiplied = seen_dtypes(scorer, lambda: scorer.score("white cup", ["a white cup", "a pan"]))
        keep_residual_float32(scorer.model)
    assert stream == multiplied == {torch.bfloat16}
    assert all(0 < score < 1 for score in mixed)


def test_a_float32_model_is_left_as_it_is(scorer):
    assert not scorer.residual_float32 and scorer.dtype_why == "float32: asked for"
    stream, multiplied = seen_dtypes(scorer, lambda: scorer.score("white cup", ["a white cup"]))
    assert stream == multiplied == {torch.float32}


@pytest.mark.parametrize("which", ["bf16_scorer", "bf16_qwen3"])
def test_prefix_reuse_batches_and_one_at_a_time_agree_in_bf16_within_its_noise(which, request, red_image, blue_image):
    scorer = request.getfixturevalue(which)
    documents = ["a red square", {"image": red_image}, {"text": "blue", "image": blue_image}, "a long text " * 20]
    together = scorer.score({"text": "red", "image": blue_image}, documents)
    alone = LycheeScorer(
        scorer.model,
        scorer.processor,
        model_name=scorer.model_name,
        device="cpu",
        family=scorer.family,
        batch_size=1,
        reuse_prefix=False,
    )
    one_by_one = [alone.score({"text": "red", "image": blue_image}, [document])[0] for document in documents]
    alone.close()
    assert max(abs(a - b) for a, b in zip(together, one_by_one)) < 1e-2  # bf16 noise (float32: 1e-5 elsewhere)


@pytest.mark.parametrize("which", ["bf16_scorer", "bf16_qwen3"])
def test_explanations_and_the_models_own_words_run_in_bf16(which, request, red_image):
    scorer = request.getfixturevalue(which)
    explanation = scorer.explain("red", {"text": "a red square", "image": red_image}, grid=2, explanation=True)
    assert explanation.images and explanation.text and explanation.next_tokens and 0 < explanation.score < 1
    assert isinstance(explanation.explanation, str), explanation.explanation_note


@pytest.mark.parametrize("which", ["bf16_scorer", "bf16_qwen3"])
def test_a_clip_scores_in_bf16_on_both_families(which, request, tmp_path):
    pytest.importorskip("av")
    from .helpers import make_clip

    scorer = request.getfixturevalue(which)
    clip = make_clip(tmp_path / "clip.mp4", seconds=2.0)
    scores: list[float] = []
    stream, _ = seen_dtypes(scorer, lambda: scores.extend(scorer.score("a moving square", [{"video": clip}, "a photo"])))
    assert stream == {torch.float32} and len(scores) == 2 and all(0 < score < 1 for score in scores)
