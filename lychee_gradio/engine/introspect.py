"""Looking inside one pair's answer: the model's whole next-token distribution, and its own words.

Both run the pair's whole prompt once (no batching, no prefix: one pair) on the engine's model.
The explanation is the same model asked, after its own yes/no, to say why: greedy decoding of a
few dozen tokens, the prompt built through the literal-text path like every prompt (user text
stays text), the request's deadline and Stop checked between tokens. It is the model's text and
can be wrong; a random demo model writes noise.
"""

from __future__ import annotations

import torch

from ..contract import RequestContext
from . import kv_cache
from .encoding import EncodedPair

QUESTION = "In one or two sentences, explain why the answer is {answer}."


def _prompt_inputs(scorer, pair: EncodedPair) -> dict:
    device = scorer.device
    images = pair.images
    return {
        "input_ids": pair.input_ids[None].to(device),
        "attention_mask": torch.ones((1, pair.length), dtype=torch.long, device=device),
        "position_ids": pair.position_ids[:, None, :].to(device),
        "mm_token_type_ids": pair.mm_token_type_ids[None].to(device),
        "pixel_values": torch.cat([image.pixel_values for image in images]).to(device) if images else None,
        "image_grid_thw": torch.stack([image.grid_thw for image in images]).to(device) if images else None,
        **(
            {
                "pixel_values_videos": torch.cat([video.pixel_values for video in pair.videos]).to(device),
                "video_grid_thw": torch.stack([video.grid_thw for video in pair.videos]).to(device),
            }
            if pair.videos
            else {}
        ),
    }


def _vocabulary_logits(scorer, hidden: torch.Tensor) -> torch.Tensor:
    head = scorer.model.get_output_embeddings()
    return head(hidden.to(head.weight.dtype)).float()


@torch.inference_mode()
def next_tokens(scorer, pair: EncodedPair, k: int = 5) -> tuple[float, list[tuple[str, float]]]:
    """The share of next-token probability on "yes" + "no", and the `k` likeliest next tokens with theirs."""
    outputs = scorer.model.model(**_prompt_inputs(scorer, pair), use_cache=False)
    probabilities = torch.softmax(_vocabulary_logits(scorer, outputs.last_hidden_state[0, -1]), dim=-1)
    mass = float(probabilities[scorer.yes_token_id] + probabilities[scorer.no_token_id])
    top = torch.topk(probabilities, k)
    tokenizer = scorer.processor.tokenizer
    return mass, [(tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)]


def can_generate(scorer) -> bool:
    return scorer.model.get_output_embeddings() is not None


@torch.inference_mode()
def generate(scorer, pair: EncodedPair, max_new_tokens: int, context: RequestContext) -> str:
    """Greedy decoding after the pair's prompt, until the end of the turn or `max_new_tokens`."""
    tokenizer = scorer.processor.tokenizer
    stops = {tokenizer.convert_tokens_to_ids(token) for token in ("<|im_end|>", "<|endoftext|>")}
    outputs = scorer.model.model(
        **_prompt_inputs(scorer, pair), use_cache=True, **kv_cache.passing(scorer.model.model, kv_cache.new_cache(scorer.model))
    )
    cache = kv_cache.returned(outputs)
    token = int(torch.argmax(_vocabulary_logits(scorer, outputs.last_hidden_state[0, -1])))
    position = int(pair.position_ids.max()) + 1  # text after the prompt: one position on all three axes
    generated: list[int] = []
    device = scorer.device
    for step in range(max_new_tokens):
        if token in stops:
            break
        generated.append(token)
        context.check()
        outputs = scorer.model.model(
            input_ids=torch.tensor([[token]], device=device),
            attention_mask=torch.ones((1, pair.length + step + 1), dtype=torch.long, device=device),
            position_ids=torch.full((3, 1, 1), position + step, dtype=torch.long, device=device),
            mm_token_type_ids=torch.zeros((1, 1), dtype=torch.long, device=device),
            **kv_cache.passing(scorer.model.model, cache),
            use_cache=True,
        )
        cache = kv_cache.returned(outputs)
        token = int(torch.argmax(_vocabulary_logits(scorer, outputs.last_hidden_state[0, -1])))
    return tokenizer.decode(generated, skip_special_tokens=True).strip()
