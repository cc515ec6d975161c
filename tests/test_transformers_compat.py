"""The key/value cache reaches transformers under the name the installed release takes (engine/kv_cache.py):
`past_key_values` up to 5.23, `cache` from 5.24 (the old name warns there and is removed in 5.40)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

from lychee_gradio.engine import kv_cache


class _Before524:
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        pass


class _From524:
    def forward(self, input_ids=None, cache=None, use_cache=None):
        pass


def test_the_cache_is_passed_under_the_name_the_forward_declares():
    assert kv_cache.passing(_Before524(), "kv") == {"past_key_values": "kv"}
    assert kv_cache.passing(_From524(), "kv") == {"cache": "kv"}


def test_the_returned_cache_is_read_under_either_name():
    assert kv_cache.returned(SimpleNamespace(past_key_values="old")) == "old"
    assert kv_cache.returned(SimpleNamespace(cache="new", past_key_values="alias")) == "new"


@pytest.mark.parametrize("which", ["scorer", "qwen3_scorer"])
def test_prefix_reuse_and_the_models_words_use_no_deprecated_cache_name(which, request):
    scorer = request.getfixturevalue(which)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        scores = scorer.score("a red cup", ["a red cup on a table", "a blue bowl", "the cup is red"])
        found = scorer.explain("cup", "a white cup", explanation=True)
    assert len(scores) == 3 and isinstance(found.explanation, str)


def test_a_checkpoint_loads_without_hub_kernels_whatever_transformers_defaults(tiny_model_dir, monkeypatch):
    # transformers 5.25 turns `use_kernels` on by default: layers replaced by kernels fetched from the Hub at load
    # (a network fetch, and other numbers than the tested ones). The loader and the reference turn it off.
    import transformers

    from lychee_gradio import LycheeScorer
    from lychee_gradio.engine.naive import NaiveScorer

    asked = []
    real = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        asked.append(kwargs.get("use_kernels"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.Qwen2_5_VLForConditionalGeneration, "from_pretrained", classmethod(spy))
    with LycheeScorer.load(tiny_model_dir, device="cpu", dtype="float32") as scorer:
        assert 0 <= scorer.score("cup", ["a cup"])[0] <= 1
    NaiveScorer.load(tiny_model_dir)
    assert asked == [False, False]
