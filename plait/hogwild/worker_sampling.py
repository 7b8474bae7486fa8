"""Per-worker token choice with suppressed tokens, and which token ids a suppress list covers.

Each worker is one stream of the runtime `Sampler` with its own seeded generator, so a worker's samples do not depend on what other
workers or other problems in the batch do (budget snapshots equal separate runs, sampled or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from plait.runtime.sampling import Sampler, SamplingParams

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
            ids.update(
                i
                for i, tok in enumerate(vocab)
                if tok and tok.strip(_SPACE_MARKS) and set(tok.strip(_SPACE_MARKS)) == {"#"}
            )
            continue
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc) == 1:
            ids.add(int(enc[0]))
        ids.update(i for i, tok in enumerate(vocab) if tok == text)
    return sorted(ids)


class WorkerSampler:
    """`sampler(worker, logits (V,)) -> token id`, on the runtime's `Sampler` (one stream per worker).

    Args:
        workers: number of workers (streams).
        params: a `SamplingParams`-like object (temperature, top_k, top_p) or None for greedy.
        suppress: token ids never chosen.
        seed: base seed; worker w uses seed * 7919 + w.
    """

    def __init__(self, workers: int, params: Any, suppress: Sequence[int], seed: int = 0) -> None:
        has = params is not None
        temperature = float(getattr(params, "temperature", 0.0)) if has else 0.0
        top_k = int(getattr(params, "top_k", 0)) if has else 0
        top_p = float(getattr(params, "top_p", 1.0)) if has else 1.0
        per_worker = [
            SamplingParams(
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                suppress_tokens=tuple(suppress),
                seed=seed * 7919 + w,
            )
            for w in range(workers)
        ]
        self.sampler = Sampler(per_worker)

    def __call__(self, worker: int, logits: torch.Tensor) -> int:
        return int(self.sampler(logits[None], [worker])[0])
