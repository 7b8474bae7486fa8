"""The main correctness test: the engine's logits equal a brute-force fp64 simulator's, every pass.

Random schedules: random tokens, random step ends (so ragged multi-token inputs: the ending token
plus the next header, fed by two streams in the same pass), workers that stop at random (EOS),
W in {2, 3, 4}, instant visibility on and off, tiny random Llama / Qwen2 / Qwen3 models, the
combined layout everywhere and the interleaved and contiguous layouts on a subset.
"""

from __future__ import annotations

import random

import pytest
import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.problem import HogwildProblem
from plait.hogwild.solve import solve
from tests.helpers.toy import ToyTokenizer, toy_model

from .simulator import Simulator

PROBLEM = "Add 2 and 3."


def run_against_simulator(
    family: str,
    workers: int,
    instant: bool,
    layout: str,
    seed: int,
    attention: str = "fast",
    passes: int = 24,
) -> int:
    tok = ToyTokenizer()
    model = toy_model(family, seed=seed)
    rng = random.Random(seed)
    eos_prob = 0.03

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        return 1 if rng.random() < eos_prob else rng.randrange(2, 104)

    def rule(step_text: str, piece: str) -> bool:
        return rng.random() < 0.25

    cfg = HogwildConfig(
        instructions="Work as a team.",
        workers=workers,
        layout=layout,
        instant=instant,
        budgets=(passes,),
        finisher=False,
        suppress_eos=False,
        stop_on_answer=False,
        interjection_every=7,
    )
    sim = Simulator(model, layout, workers, instant)
    checked = []

    def on_pass(problem: int, index: int, feeds, streams, logits: torch.Tensor) -> None:  # noqa: ANN001
        expected = sim.step(feeds).float()
        assert [s.worker for s in streams] == [
            i
            for i, f in enumerate(feeds)
            if f is not None
            for _ in range(
                1
                + (f.switch and bool(f.nxt) and instant and layout != "contiguous" and bool(f.cur))
            )
        ]
        torch.testing.assert_close(
            logits, expected, atol=2e-4, rtol=1e-4, msg=lambda m: f"pass {index}: {m}"
        )
        checked.append(len(streams))

    unit = HogwildProblem(model, tok, cfg, PROBLEM)
    shared = [(k, unit.encode(t)) for k, t in unit.layout.shared(workers)]
    sim.prefill(unit.encode(unit.prompt_text), shared)
    solve(model, tok, PROBLEM, cfg, attention=attention, choose=choose, step_rule=rule,
          on_pass=on_pass)  # fmt: skip
    assert len(checked) >= 5, "the schedule ended too early to test anything"
    return sum(checked)


@pytest.mark.parametrize("instant", [True, False], ids=["instant", "step-start"])
@pytest.mark.parametrize("workers", [2, 3, 4])
def test_combined_matches_simulator(family: str, workers: int, instant: bool) -> None:
    streams = run_against_simulator(
        family, workers, instant, "combined", seed=workers * 10 + instant
    )
    assert streams > 24  # several streams per pass on average


@pytest.mark.parametrize("layout", ["interleaved", "contiguous"])
@pytest.mark.parametrize("instant", [True, False], ids=["instant", "step-start"])
def test_other_layouts_match_simulator(layout: str, instant: bool) -> None:
    run_against_simulator("qwen2", 3, instant, layout, seed=7)


def test_reference_attention_matches_simulator() -> None:
    run_against_simulator("qwen3", 3, True, "combined", seed=3, attention="reference", passes=12)


def test_simulator_detects_a_wrong_view() -> None:
    """Negative control: a layout that swaps two others' order must disagree with the simulator."""
    from plait.hogwild import layouts

    original = layouts._combined_views

    def swapped(state):  # noqa: ANN001, ANN202
        views = original(state)
        v = views[0]
        i, j = v.index(state.current[1]), v.index(state.current[2])
        v[i], v[j] = v[j], v[i]
        return views

    patched = layouts.Layout(
        name="combined", shared=layouts._combined_shared, views=swapped, merges_steps=True
    )
    saved = layouts.LAYOUTS["combined"]
    layouts.LAYOUTS["combined"] = patched
    try:
        with pytest.raises(AssertionError, match="pass"):
            run_against_simulator("llama", 3, True, "combined", seed=5, passes=10)
    finally:
        layouts.LAYOUTS["combined"] = saved
