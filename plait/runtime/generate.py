"""Plain generation on plait's runtime: one request on the engine (chunked prefill, then decode).

`generate_tokens` yields token ids as they are sampled; `generate` turns them into printable text
deltas with the engine's incremental detokeniser (`engine.detokenize.TextStream`: a short window
per token, multi-byte characters split across tokens come out whole).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from plait.runtime.engine import Engine, EngineConfig, EngineRequest, raise_for_error
from plait.runtime.engine.detokenize import TextStream
from plait.runtime.model import DecoderLM
from plait.runtime.sampling import SamplingParams


def generate_tokens(
    model: DecoderLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    params: SamplingParams | None = None,
    stop_ids: Iterable[int] = (),
    chunk: int = 512,
    attention: str = "fast",
) -> Iterator[int]:
    """Yield up to `max_new_tokens` sampled ids; stops after emitting a token in `stop_ids`.

    One request on a private `Engine` sized for it (prefill in chunks of `chunk` tokens).

    Raises:
        ValueError: empty prompt, non-positive budget, or prompt beyond the model's context.
    """
    if not prompt_ids:
        raise ValueError("the prompt is empty; pass at least one token (or non-empty text)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    limit = model.config.max_position
    if len(prompt_ids) >= limit:
        raise ValueError(
            f"the prompt has {len(prompt_ids)} tokens but the model's context is {limit}; "
            "shorten the prompt"
        )
    max_new_tokens = min(max_new_tokens, limit - len(prompt_ids))
    config = EngineConfig(
        kv_budget_tokens=len(prompt_ids) + max_new_tokens,
        step_tokens=chunk,
        block_tokens=len(prompt_ids),  # one request: nothing to share, the prompt is one segment
        max_rows=1,
    )
    engine = Engine(model, config=config, eos_token_ids=(), attention=attention)
    request = EngineRequest(
        prompt=list(prompt_ids),
        max_tokens=max_new_tokens,
        sampling=params or SamplingParams(),
        stop_token_ids=tuple(stop_ids),
    )
    engine.add(request)
    while engine.has_work:
        for out in engine.step():
            raise_for_error(out)
            yield from out.token_ids  # type: ignore[union-attr]


@torch.inference_mode()
def greedy(
    model: DecoderLM, prompt_ids: list[int], max_new_tokens: int, stop_ids: Iterable[int] = ()
) -> list[int]:
    """Greedy continuation as a list (convenience for tests and scripts)."""
    return list(generate_tokens(model, prompt_ids, max_new_tokens, SamplingParams(), stop_ids))


def generate(
    loaded: Any,
    prompt: str,
    max_new_tokens: int = 256,
    sampling: SamplingParams | None = None,
    chat: bool = True,
) -> Iterator[str]:
    """Stream text for a prompt with a `LoadedModel` (chat template applied unless `chat=False`).

    Generation stops at any of the model's end-of-sequence tokens.
    """
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty; pass some text to generate from")
    if chat:
        ids = loaded.chat_prompt_ids(prompt)
    else:
        ids = loaded.tokenizer.encode(prompt, add_special_tokens=False)
    tokens = generate_tokens(
        loaded.model, ids, max_new_tokens, sampling, stop_ids=loaded.eos_token_ids
    )
    text = TextStream(loaded.tokenizer)
    for t in tokens:
        piece = text.add(t)
        if piece:
            yield piece
    rest = text.flush()
    if rest:
        yield rest
