"""The models one server serves, by name: `lychee load --model A --model B`. The first is the default.

A model answers to its shown name (a ModelScope id as it is, a folder by its last part) and to its
family's name ("lychee-rerank-mm", "Qwen3-VL-Reranker") when no other served model shares that
family; never to its folder's path on the server. The app, /v1/rerank and eval look models up here; the scorer knows
nothing of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from .contract import InputError

RANDOM_PREFIX = "random-"  # `--demo`'s random models are served under folder names that start so


def is_random(name: str) -> bool:
    """Whether a served model's name says it has random weights (`lychee load --demo`)."""
    return display_name(name).startswith(RANDOM_PREFIX)


def display_name(model_name: str) -> str:
    """A ModelScope id as it is; a folder by its last part."""
    text = os.fspath(model_name)
    if text.startswith(("/", ".", "~")) or Path(text).expanduser().is_dir():
        return Path(text).expanduser().name or text
    return text


class ModelSet:
    def __init__(self, scorers: Iterable[Any]):
        self.scorers = list(scorers)
        if not self.scorers:
            raise ValueError("a server needs at least one model")
        self.names: list[str] = []
        for scorer in self.scorers:
            name = display_name(scorer.model_name)
            while name in self.names:  # two folders with the same last part
                name += "'"
            self.names.append(name)
        families = [scorer.family.name for scorer in self.scorers]
        self._aliases: dict[str, Any] = {}
        for scorer, name in zip(self.scorers, self.names):
            # A model is called by its shown name (a folder's last part, or the ModelScope id) and its family,
            # never by its folder's path on the server: a caller guessing paths learns nothing.
            aliases = [name]
            if families.count(scorer.family.name) == 1:
                aliases.append(scorer.family.name)
            for alias in aliases:
                self._aliases.setdefault(alias, scorer)

    @classmethod
    def of(cls, value: Any) -> "ModelSet":
        """A ModelSet as it is; one scorer, or a list of them, becomes one."""
        if isinstance(value, ModelSet):
            return value
        if isinstance(value, (list, tuple)):
            return cls(value)
        return cls([value])

    @property
    def default(self):
        return self.scorers[0]

    def __len__(self) -> int:
        return len(self.scorers)

    def name_of(self, scorer: Any) -> str:
        return self.names[self.scorers.index(scorer)]

    def get(self, name: str | None = None):
        """The model called `name` (None or empty: the default); an `InputError` listing the served ones."""
        if name is None or (isinstance(name, str) and not name.strip()):
            return self.default
        if isinstance(name, str) and name.strip() in self._aliases:
            return self._aliases[name.strip()]
        served = ", ".join(repr(n) for n in self.names)
        raise InputError("model", "unknown_model", name=repr(name), served=served)
