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
