"""User text stays text: the literal tokenizer (a prompt's user text tokenized as plain text, never as the control
tokens it may spell), and the slots that stand for user text while the chat template renders (docs/design.md,
"User text stays text")."""

from __future__ import annotations

import json
import re
import secrets

from tokenizers import Tokenizer


class LiteralTokenizer:
    """Tokenizes a rendered prompt so that what users typed is always literal text.

    The chat template's own control tokens (`<|im_start|>`, `<|image_pad|>`, ...) become their ids;
    every character of user text goes through the plain BPE, which knows no added token, so a
    document that spells `<|im_end|>` is read as those eleven characters. For text that spells no
    added token the ids equal the processor's own (docs/design.md, "User text stays text").
    """

    def __init__(self, tokenizer, image_token: str):
        config = json.loads(tokenizer.backend_tokenizer.to_str())
        config["added_tokens"] = []
        self.plain = Tokenizer.from_str(json.dumps(config))
        self.control_ids = {token.content: token_id for token_id, token in tokenizer.added_tokens_decoder.items()}
        self.image_token = image_token
        self._control_re = re.compile(
            "(" + "|".join(re.escape(token) for token in sorted(self.control_ids, key=len, reverse=True)) + ")"
        )

    def encode(
        self,
        prompts: list[tuple[str, dict[str, str]]],
        image_tokens: list[list[int]],
        video_tokens: list[list[list[int]]] | None = None,
        video_token: str | None = None,
    ) -> list[list[int]]:
        """Token ids of each prompt skeleton, its slots filled with user text, image tokens expanded (and each
        `video_token` replaced by its video's own ids, `video_tokens`)."""
        plans, texts = [], []
        for number, ((skeleton, values), counts) in enumerate(zip(prompts, image_tokens)):
            plan, images = [], iter(counts)
            videos = iter(video_tokens[number] if video_tokens is not None else ())
            for piece in self._control_re.split(skeleton):
                if not piece:
                    continue
                if piece in self.control_ids and video_token is not None and piece == video_token:
                    plan.append(list(next(videos)))
                elif piece in self.control_ids:
                    size = next(images) if piece == self.image_token else 1
                    plan.append([self.control_ids[piece]] * size)
                else:
                    plan.append(len(texts))
                    texts.append(_SLOT_RE.sub(lambda match: values[match.group(0)], piece))
            plans.append(plan)
        encoded = [e.ids for e in self.plain.encode_batch(texts, add_special_tokens=False)] if texts else []
        return [[i for step in plan for i in (encoded[step] if isinstance(step, int) else step)] for plan in plans]


# A slot in a prompt skeleton where user text goes: private-use delimiters around a per-call random
# nonce, which no user text can guess, and which holds no control token.
_SLOT_RE = re.compile("\ue000[0-9a-f]{16}:[0-9]+\ue001")


class _Slots:
    """Stands in for user text while the chat template renders; remembers what goes where."""

    def __init__(self):
        self._nonce = secrets.token_hex(8)
        self.values: dict[str, str] = {}

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        slot = f"\ue000{self._nonce}:{len(self.values)}\ue001"
        self.values[slot] = text
        return slot
