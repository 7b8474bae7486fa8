"""A user-defined layout: every worker sees the history, then ONLY the previous worker's current
step (a ring), then its own step. Runs a tiny random-weight model with the bundled tokenizer (the text is noise; the point is the API).

    python examples/hogwild_custom_layout.py
"""

from __future__ import annotations

import dataclasses

from plait.hogwild import HogwildConfig, Layout, LayoutState, solve
from plait.runtime.model import DecoderLM


def ring_views(state: LayoutState) -> list[list]:
    w = len(state.current)
    return [
        [*state.history, state.current[(i - 1) % w], state.shared["marker"], state.current[i]]
        if w > 1
        else [*state.history, state.current[i]]
        for i in range(w)
    ]


RING = Layout(
    name="ring", shared=lambda w: [("marker", "<...>\n\n")], views=ring_views, merges_steps=True
)


def main() -> None:
    from plait.runtime.loading.loader import load_model

    lm = load_model("qwen2.5-0.5b")  # only its tokenizer is used below
    small = dataclasses.replace(
        lm.config,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rope=dataclasses.replace(lm.config.rope, rotary_dim=16),
    )
    model = DecoderLM.random(small, seed=0)  # random weights: the text is noise
    config = HogwildConfig(workers=3, layout=RING, budgets=(24,))
    result = solve(model, lm.tokenizer, "What is 6 times 7?", config)
    print(result.final.transcript()[:800])


if __name__ == "__main__":
    main()
