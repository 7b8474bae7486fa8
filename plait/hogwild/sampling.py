"""Per-worker token choice with suppressed tokens, and which token ids a suppress list covers.

Each worker has its own seeded generator, so a worker's samples do not depend on what other
workers or other problems in the batch do (budget snapshots equal separate runs, sampled or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_SPACE_MARKS = "Ġ▁Ċ \n\t"


def suppressed_ids(tokenizer: Any, texts: Sequence[str], vocab_size: int) -> list[int]:
    """Token ids to ban for the strings in `texts`.

    "#" bans every token made only of '#' (and spacing): "#", "##", " ###", ... so workers cannot
    write markdown headers that imitate the structural "###" headers. Any other string bans the
    token(s) whose text is exactly that string.
    """
    ids: set[int] = set()
    vocab = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    for text in texts:
        if text == "#":
            ids.update(i for i, tok in enumerate(vocab)
                       if tok and tok.strip(_SPACE_MARKS) and set(tok.strip(_SPACE_MARKS)) == {"#"})
            continue
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc) == 1:
            ids.add(int(enc[0]))
        ids.update(i for i, tok in enumerate(vocab) if tok == text)
    return sorted(ids)


class WorkerSampler:
    """`sampler(worker, logits (V,)) -> token id`: greedy, or temperature / top-k / top-p sampling."""

    def __init__(self, workers: int, params: Any, suppress: Sequence[int], seed: int = 0) -> None:
        self.temperature = float(getattr(params, "temperature", 0.0) or 0.0) if params else 0.0
        self.top_k = int(getattr(params, "top_k", 0) or 0) if params else 0
        self.top_p = float(getattr(params, "top_p", 1.0) or 1.0) if params else 1.0
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1")
        self.suppress = torch.tensor(sorted(set(suppress)), dtype=torch.long)
        self.generators = [torch.Generator().manual_seed(seed * 7919 + w) for w in range(workers)]

    def __call__(self, worker: int, logits: torch.Tensor) -> int:
        row = logits.detach().float().cpu().clone()  # (V,)
        if self.suppress.numel():
            row[self.suppress[self.suppress < row.shape[0]]] = float("-inf")
        if self.temperature == 0.0:
            return int(row.argmax())
        row = row / self.temperature
        if self.top_k:
            kth = torch.topk(row, min(self.top_k, row.shape[0])).values[-1]
            row[row < kth] = float("-inf")
        probs = torch.softmax(row, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            cut = sorted_p.cumsum(0) - sorted_p > self.top_p
            sorted_p[cut] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=self.generators[worker]))
