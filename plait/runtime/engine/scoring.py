"""The sampler's log-probs of a finished sequence, recomputed in one forward (trainer = sampler).

The engine reports `TokenLogprob`s while it samples: the log-softmax of a row whose K/V sit in
the request's view [prompt blocks of B tokens, private tail, sample segment] (`prefix_cache`).
With batch invariance (`plait.runtime.kernels.batch_invariant`) a row's bits depend only on its
own inputs and visible keys, never on how many rows shared its step or how the prompt was
chunked. So one step that writes the same layout at once (every block, the tail and all the
completion's tokens but the last, `instant` visibility) gives every completion token the bits
the engine reported when it sampled it: an RL trainer's "old policy" log-probs, exact, at the
cost of one prefill instead of a decode per token.

    lp = sampler_logprobs(model, prompt, completion, block_tokens=engine.config.block_tokens)

Exact where plait's kernels run (bf16/fp32 CPU); a sequence whose prefix came from another
request's `cache_output` (K/V copied and re-rotated, not recomputed) may differ in the last bits.
Twin and test: the engine's own `logprobs` (tests/runtime/test_invariance.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plait.runtime.model import DecoderLM
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore


@torch.no_grad()
def sampler_logprobs(
    model: DecoderLM,
    prompt: Sequence[int],
    completion: Sequence[int],
    *,
    block_tokens: int,
    attention: str = "fast",
) -> torch.Tensor:
    """Log-prob (float32, shape (len(completion),)) of each completion token given the prompt
    and the tokens before it, computed in the engine's layout for `block_tokens` (its
    `EngineConfig.block_tokens`); see the module docstring."""
    if not prompt or not completion:
        raise ValueError("sampler_logprobs needs a non-empty prompt and completion")
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1 (the engine's block size), got {block_tokens}")
    prompt, completion = [int(t) for t in prompt], [int(t) for t in completion]
    nb = (len(prompt) - 1) // block_tokens  # full blocks that leave a token after them
    store = KVStore(
        model.config,
        model.dtype,
        model.device,
        rope=model.rope,
        slots=len(prompt) + len(completion),
    )
    runner = Runner(model, store, attention=attention)
    blocks = [store.new_segment(block_tokens, name=f"block{i}") for i in range(nb)]
    tail = store.new_segment(len(prompt) - nb * block_tokens, name="tail")
    sample = store.new_segment(len(completion), name="sample")
    inputs = [
        StreamInput(prompt[i * block_tokens : (i + 1) * block_tokens], blocks[: i + 1], blocks[i])
        for i in range(nb)
    ]
    inputs.append(StreamInput(prompt[nb * block_tokens :], [*blocks, tail], tail))
    if len(completion) > 1:
        inputs.append(StreamInput(completion[:-1], [*blocks, tail, sample], sample))
    per_stream = runner.step(inputs, instant=True, all_logits=True)  # list of (T_i, V)
    rows = [per_stream[nb][-1]] + (list(per_stream[nb + 1]) if len(completion) > 1 else [])
    # row by row, as the engine does (its log-softmax sees one (V,) row at a time)
    return torch.stack(
        [torch.log_softmax(r.float(), -1)[t] for r, t in zip(rows, completion)]
    )  # (n,)
