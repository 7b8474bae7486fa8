"""Random decode schedules over shared segments: the workload the runner's backends are compared
on (tests/runtime/test_runner.py) and that the GPU benchmark checks on the device first."""

from __future__ import annotations

import random

import torch

from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore


def random_schedule(
    model, attention: str, seed: int, instant: bool, steps: int = 4
) -> list[torch.Tensor]:
    """Random segments, views, write targets and ragged inputs; returns every step's logits."""
    rng = random.Random(seed)
    store = KVStore(model.config, model.dtype, model.device)
    runner = Runner(model, store, attention=attention)
    V = model.config.vocab_size
    shared = [store.new_segment(rng.randint(1, 8), name=f"shared{i}") for i in range(3)]
    for seg in shared:  # some shared segments stay empty
        if rng.random() < 0.8:
            runner.prefill(seg, [rng.randrange(V) for _ in range(rng.randint(1, 9))], chunk=4)
    own = [store.new_segment(4, name=f"own{i}") for i in range(rng.randint(2, 4))]
    views = []
    for seg in own:
        others = rng.sample(shared + [o for o in own if o is not seg], rng.randint(1, 4))
        view = others + [seg]
        rng.shuffle(view)  # the written segment may sit anywhere in the view
        views.append(view)
    out = []
    for _ in range(steps):
        active = [i for i in range(len(own)) if rng.random() < 0.8] or [0]
        inputs = [
            StreamInput([rng.randrange(V) for _ in range(rng.randint(1, 3))], views[i], own[i])
            for i in active
        ]
        out.extend(runner.step(inputs, instant=instant, all_logits=True))
        if rng.random() < 0.3:  # a finished run moves into a shared segment
            i = rng.randrange(len(own))
            if own[i].length:
                store.move(own[i], shared[0])
    return out
