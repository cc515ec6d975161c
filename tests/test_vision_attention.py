"""One attention call per vision layer (engine/vision_attention.py): same outputs and scores as transformers'
per-window / per-image attention, with a number of calls that does not grow with windows or images."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from lychee_gradio.engine import vision_attention
from lychee_gradio.engine.random_model import build_processor, build_random_model

FAMILIES = ("qwen2_5_vl", "qwen3_vl")
# Odd sizes: Qwen2.5-VL's 8x8-patch windows do not tile them, so the right and bottom windows are partial.
MIXED_SIZES = [(333, 217), (129, 401), (77, 93)]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    """(family, processor, a tiny random model with the batched vision attention installed)."""
    processor = build_processor(request.param)
    model = build_random_model(processor, "tiny", family=request.param)
    return request.param, processor, model


def photos(sizes):
    return [Image.new("RGB", size, (37 * i % 256, 90, 200 - 20 * i)) for i, size in enumerate(sizes)]


def encode(processor, images):
    encoded = processor.image_processor(images=images, return_tensors="pt")
    return encoded["pixel_values"], encoded["image_grid_thw"]


def tower(model, pixels, grid):
    with torch.inference_mode():
        output = model.model.visual(pixels, grid_thw=grid)
    features = [output.last_hidden_state, output.pooler_output, *(getattr(output, "deepstack_features", None) or [])]
    return [feature.float() for feature in features]


def without_patch(model, function):
    vision_attention.uninstall(model)
    try:
        return function()
    finally:
        vision_attention.install(model)


def max_difference(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def chunk_lengths(model, grid) -> dict[str, list[int]]:
    """The chunk lengths each kind of layer attends over: images, and on Qwen2.5-VL its windows."""
    from transformers.vision_utils import get_vision_window_index

    visual = model.model.visual
    images = (grid[:, 0] * grid[:, 1] * grid[:, 2]).tolist()
    if not hasattr(visual, "window_size"):
        return {"image": images}
    _, cu_windows = get_vision_window_index(
        grid, spatial_merge_size=visual.spatial_merge_size, window_size=visual.window_size, patch_size=visual.patch_size
    )
    cu_windows = torch.as_tensor(cu_windows)
    return {"image": images, "window": (cu_windows[1:] - cu_windows[:-1]).tolist()}


def test_build_random_model_installs_the_batched_vision_attention_on_every_vision_layer(tiny):
    _, _, model = tiny
    modules = vision_attention.vision_attention_modules(model)
    assert len(modules) == len(model.model.visual.blocks)
    assert vision_attention.installed(model)
    language_model = model.model.language_model.modules()
    assert not any(getattr(module, "_lychee_packed_vision_attention", False) for module in language_model)


def test_install_is_idempotent_and_uninstall_gives_back_transformers_forward(tiny):
    _, _, model = tiny
    assert vision_attention.install(model) == vision_attention.install(model) == len(model.model.visual.blocks)
    module = vision_attention.vision_attention_modules(model)[0]
    try:
        assert vision_attention.uninstall(model) == len(model.model.visual.blocks)
        assert "forward" not in vars(module) and not vision_attention.installed(model)
        assert vision_attention.uninstall(model) == 0
    finally:
        vision_attention.install(model)
    assert vision_attention.installed(model)


def test_vision_outputs_equal_the_per_window_attention_within_1e_5_for_images_with_partial_edge_windows(tiny):
    family, processor, model = tiny
    pixels, grid = encode(processor, photos(MIXED_SIZES))
    lengths = chunk_lengths(model, grid)
    assert len(set(lengths["image"])) == 3  # three image lengths: the padded path
    if family == "qwen2_5_vl":
        assert len(set(lengths["window"])) > 1  # full and partial windows
    reference = without_patch(model, lambda: tower(model, pixels, grid))
    batched = tower(model, pixels, grid)
    assert max_difference(batched, reference) <= 1e-5


def test_eager_attention_is_batched_too_within_a_memory_bound_and_equals_the_per_window_sdpa_reference(tiny, monkeypatch):
    _, processor, model = tiny
    pixels, grid = encode(processor, photos(MIXED_SIZES))
    reference = without_patch(model, lambda: tower(model, pixels, grid))
    monkeypatch.setattr(model.model.visual.config, "_attn_implementation", "eager")
    with vision_attention.count_attention_calls(model) as sdpa_calls:
        batched = tower(model, pixels, grid)
    assert sum(sdpa_calls.values()) == 0  # eager: no SDPA at all
    assert max_difference(batched, reference) <= 1e-5
    monkeypatch.setattr(vision_attention, "MAX_SCORES", 1)  # eager's scores bounded: one chunk per call
    assert max_difference(tower(model, pixels, grid), reference) <= 1e-5


def test_attention_calls_per_vision_layer_are_one_and_do_not_grow_from_one_image_to_six(tiny):
    _, processor, model = tiny
    calls = {}
    for count in (1, 6):
        pixels, grid = encode(processor, photos([(333, 217)] * count))
        with vision_attention.count_attention_calls(model) as batched:
            tower(model, pixels, grid)
        with vision_attention.count_attention_calls(model) as per_chunk:
            without_patch(model, lambda: tower(model, pixels, grid))
        calls[count] = (dict(batched), dict(per_chunk))
    layers = range(len(model.model.visual.blocks))
    for count in (1, 6):
        assert calls[count][0] == {layer: 1 for layer in layers}
    # transformers' own code: one call per image (and per window), growing with the images
    assert sum(calls[6][1].values()) == 6 * sum(calls[1][1].values()) > len(layers)


def test_mixed_image_sizes_make_a_bounded_number_of_calls_that_does_not_grow_with_more_images(tiny):
    family, processor, model = tiny
    counted = []
    for sizes in (MIXED_SIZES, MIXED_SIZES * 3):
        pixels, grid = encode(processor, photos(sizes))
        with vision_attention.count_attention_calls(model) as calls:
            tower(model, pixels, grid)
        lengths = chunk_lengths(model, grid)
        for layer, _module in enumerate(model.model.visual.blocks):
            windowed = family == "qwen2_5_vl" and layer not in model.model.visual.fullatt_block_indexes
            chunks = lengths["window" if windowed else "image"]
            assert calls[layer] == vision_attention.calls_for(chunks) <= vision_attention.call_bound(max(chunks))
            if windowed:
                assert calls[layer] == 1  # windows (at most 64 patches) are always one call
        counted.append(dict(calls))
    assert counted[0] == counted[1]


def test_chunk_grouping_pads_small_chunks_together_and_keeps_very_different_lengths_apart():
    assert vision_attention.calls_for([64] * 500 + [32, 16, 4] * 40) == 1
    assert vision_attention.calls_for([5084] * 60) == 1
    assert vision_attention.calls_for([5084, 4800, 4200, 3900]) == 1  # each within 2x of the longest's work
    assert vision_attention.calls_for([5120, 100, 5120, 90]) == 2
    assert vision_attention.calls_for(list(range(16, 5121))) <= vision_attention.call_bound(5120) == 12


def test_the_flash_attention_path_is_left_to_transformers(tiny, monkeypatch):
    _, _, model = tiny
    module = vision_attention.vision_attention_modules(model)[0]
    seen = []
    monkeypatch.setattr(type(module), "forward", lambda self, *args, **kwargs: seen.append(kwargs) or "transformers")
    monkeypatch.setattr(module.config, "_attn_implementation", "flash_attention_2")
    assert module(torch.zeros(4, module.dim), cu_seqlens=torch.tensor([0, 4])) == "transformers"
    assert len(seen) == 1


def test_an_unsupported_transformers_version_keeps_transformers_code_and_logs_once(monkeypatch, caplog):
    import transformers

    processor = build_processor("qwen2_5_vl")
    model = build_random_model(processor, "tiny")
    vision_attention.uninstall(model)
    monkeypatch.setattr(transformers, "__version__", "5.99.0")
    monkeypatch.setattr(vision_attention, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=vision_attention.__name__):
        assert vision_attention.install(model) == 0
        assert vision_attention.install(model) == 0
    assert not vision_attention.installed(model)
    assert len([r for r in caplog.records if "outside" in r.getMessage()]) == 1
    assert all(vision_attention.supported_version(v) for v in ("5.23.0", "5.24.1", "5.25.0"))
    assert not any(vision_attention.supported_version(v) for v in ("5.22.0", "5.26.0", "6.0.0"))


def test_in_bf16_the_batched_vision_attention_stays_close_to_the_per_window_attention():
    processor = build_processor("qwen2_5_vl")
    model = build_random_model(processor, "tiny", dtype=torch.bfloat16)
    pixels, grid = encode(processor, photos(MIXED_SIZES))
    pixels = pixels.to(torch.bfloat16)
    reference = without_patch(model, lambda: tower(model, pixels, grid))
    batched = tower(model, pixels, grid)
    for got, want in zip(batched, reference, strict=True):
        assert torch.isfinite(got).all()
        assert (got - want).abs().max().item() <= 2e-2 * want.abs().max().item()


@pytest.mark.parametrize("scorer_fixture", ["scorer", "qwen3_scorer"])
def test_reranker_scores_of_image_documents_are_unchanged_within_1e_5_by_the_batched_attention(scorer_fixture, request):
    scorer = request.getfixturevalue(scorer_fixture)
    assert vision_attention.installed(scorer.model)  # weights.py's loader installed it
    documents = photos(MIXED_SIZES) + ["a white cup", photos([(210, 150)])[0]]
    query = photos([(160, 120)])[0]
    with vision_attention.count_attention_calls(scorer.model) as batched_calls:
        batched = scorer.score(query, documents)
    with vision_attention.count_attention_calls(scorer.model) as reference_calls:
        reference = without_patch(scorer.model, lambda: scorer.score(query, documents))
    assert batched == pytest.approx(reference, abs=1e-5)
    assert 0 < sum(batched_calls.values()) < sum(reference_calls.values())  # the images went through both paths
