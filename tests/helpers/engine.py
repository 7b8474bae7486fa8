"""The engine's slow, obviously-correct twin: greedy decoding with a bare runner loop (one
segment, prefill then one `Runner.step` per token; no engine, no scheduler, no prefix cache)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore


@torch.inference_mode()
def reference_greedy(model, prompt: list[int], n: int, stop_ids: Iterable[int] = ()) -> list[int]:
    stops = set(stop_ids)
    store = KVStore(model.config, model.dtype, model.device, rope=model.rope)
    runner = Runner(model, store)
    seg = store.new_segment(len(prompt) + n)
    logits = runner.prefill(seg, list(prompt))  # (V,)
    out: list[int] = []
    for i in range(n):
        tok = int(torch.argmax(logits))
        out.append(tok)
        if tok in stops or i == n - 1:
            break
        logits = runner.step([StreamInput([tok], [seg], seg)])[0]
    return out
