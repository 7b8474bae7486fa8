"""The synthetic product-sum task: canonical, valid trajectories whose units match the orchestrator."""

from __future__ import annotations

import asyncio
import random

from plait.threads.data.synthetic import (
    parse_answer,
    problem_units,
    random_trajectory,
    sample_problem,
)
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.validate import validate
from plait.threads.inference.backend_api import ScriptedBackend
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig
from plait.threads.training.trie import build_trie


def test_product_sum_trajectories_are_valid_and_replay_through_the_orchestrator() -> None:
    fmt = ThreadFormat.char_level()
    rng = random.Random(0)
    for _ in range(5):
        p = sample_problem(rng)
        tokens, units = problem_units(p, fmt)
        n_prompt = len(fmt.encode(p.prompt))
        assert validate(tokens, fmt, prompt_len=n_prompt) == []
        text = fmt.decode(tokens)
        assert parse_answer(text) == p.answer
        assert text.count("<Thread>") == len(p.terms)
        # replaying the units' completions through the orchestrator rebuilds the trajectory,
        # and every request context equals the matching unit's context
        calls = units[1:]
        by_ctx = {tuple(u.context): u.completion for u in calls}
        engine = ScriptedBackend(script=lambda r, m=by_ctx: m[tuple(r.context)])
        run = asyncio.run(Orchestrator(engine, fmt, OrchestratorConfig()).run(tokens[:n_prompt]))
        assert run.tokens == tokens
        assert [list(r.context) for r in engine.requests] == [u.context for u in calls]
        assert len(build_trie(units)) < sum(len(u.context) + len(u.completion) for u in units)


def test_random_trajectory_marks_inserted_tokens() -> None:
    t = random_trajectory(random.Random(0), blocks=2, threads=(3, 3))
    assert t.units[0].completion == t.response
    inserted = len(t.response) - sum(t.generated)
    assert inserted == 2 * (5 + 2 * 4 + 1)  # per block: first header, later headers, join "\n"
    assert parse_answer("... A: 42\n") == 42 and parse_answer("no answer") is None
