"""The per-unit twin of the packed forward: each unit alone, plain causal attention.

Slow and obviously correct: a unit's context and completion run at positions 0..len-1 with the
ordinary causal mask, exactly as at inference. `context.packed_token_logprobs` must give the same
log-probs for the same trained tokens (tests/threads/training/test_packing.py).
"""

from __future__ import annotations

import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.model import DecoderLM
from plait.threads.training.trie import as_unit_tokens


def unit_token_logprobs(model: DecoderLM, unit: object) -> tuple[torch.Tensor, list[int]]:
    """Twin: one unit alone with causal attention at positions 0..len-1.

    Returns:
        (K,) log-probs of the unit's trained completion tokens, and their indices in the unit's
        token list (context + completion).
    """
    u = as_unit_tokens(unit)
    tokens = torch.tensor(u.tokens, dtype=torch.long, device=model.device)
    idx = [len(u.context) + k for k, flag in enumerate(u.trained or []) if flag]
    if not idx:
        return torch.zeros(0, device=model.device), []
    rows = torch.tensor([i - 1 for i in idx], device=model.device)
    logits = model(tokens, causal_context(model.rope, len(u.tokens), model.device), logit_rows=rows)
    logp = torch.log_softmax(logits, dim=-1)  # (K, V)
    return logp.gather(1, tokens[torch.tensor(idx, device=model.device)][:, None])[:, 0], idx
