"""Whole runs: budget snapshots equal separate runs, batching equals solo runs, finisher, stopping,
interjection in headers, and bad input errors."""

from __future__ import annotations

import pytest
import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent, SnapshotEvent, StepEvent, TokenEvent
from plait.hogwild.finisher import MATH_FINISHER
from tests.helpers.toy import Hogwild, ToyTokenizer, always_end, toy_model

BRIEF = "Be brief."


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return toy_model("qwen2", seed=21)


def engine(model, **kw) -> Hogwild:  # noqa: ANN001
    kw.setdefault("instructions", BRIEF)
    hooks = {k: kw.pop(k) for k in ("choose", "step_rule", "on_pass") if k in kw}
    hooks.setdefault("step_rule", always_end)
    return Hogwild(model, ToyTokenizer(), HogwildConfig(**kw), **hooks)


def summary(res) -> list[tuple]:  # noqa: ANN001
    return [
        (s.budget, s.passes, s.answer, s.answer_source, s.finisher_text, s.transcript())
        for s in res.snapshots
    ]


def test_budget_snapshots_equal_separate_runs(model) -> None:  # noqa: ANN001
    together = engine(model, workers=3, budgets=(5, 11, 18), finisher_max_tokens=4).solve("Add.")
    assert [s.budget for s in together.snapshots] == [5, 11, 18]
    for snap in summary(together):
        alone = engine(model, workers=3, budgets=(snap[0],), finisher_max_tokens=4).solve("Add.")
        assert summary(alone) == [snap]
    assert all(s.answer_source in ("finisher", "none") for s in together.snapshots)
    assert together.snapshots[0].finisher_text  # the finisher ran


def test_sampled_snapshots_equal_separate_runs(model) -> None:  # noqa: ANN001
    from plait.runtime.sampling import SamplingParams

    def run(budgets):  # noqa: ANN001, ANN202
        eng = engine(model, workers=2, budgets=budgets, finisher=False, seed=3)
        eng.options["sampling"] = SamplingParams(temperature=1.0, top_p=0.9)
        return eng.solve("Add.")

    together = run((6, 12))
    assert summary(run((6,))) == summary(together)[:1]
    assert summary(run((12,))) == summary(together)[1:]


def test_batch_of_problems_equals_solo_runs_and_uses_one_forward_per_pass(model) -> None:  # noqa: ANN001
    problems = ["Add.", "Multiply two numbers please.", "Go."]
    eng = engine(model, workers=2, budgets=(9,), finisher_max_tokens=3)
    calls = []
    runner = eng.use_engine().runner
    step = runner.step
    runner.step = lambda inputs, **kw: calls.append(len(inputs)) or step(inputs, **kw)  # type: ignore[method-assign]
    batch = eng.solve_batch(problems)
    passes = [c for c in calls if c >= 6]  # generation passes carry all 3 problems x 2 workers
    assert len(passes) == 9
    for p, res in zip(problems, batch):
        assert summary(
            engine(model, workers=2, budgets=(9,), finisher_max_tokens=3).solve(p)
        ) == summary(res)


def test_stops_on_a_valid_answer_and_copies_it_to_later_budgets(model) -> None:  # noqa: ANN001
    tok = ToyTokenizer()
    answer = tok.encode("\\boxed{\\frac{1}{2}}")
    script = {0: list(answer)}

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        if worker == 1 and script[0]:
            return script[0].pop(0)
        return 40

    res = engine(
        model, workers=2, budgets=(30, 60), choose=choose, step_rule=lambda a, b: False
    ).solve("Half?")
    assert [s.answer for s in res.snapshots] == ["\\frac{1}{2}", "\\frac{1}{2}"]
    assert res.snapshots[0].answer_source == "worker:Bob"
    assert res.snapshots[0].passes == res.snapshots[1].passes < 30  # stopped early


def test_answer_closed_by_the_step_ending_token_is_found(model) -> None:  # noqa: ANN001
    tok = ToyTokenizer()
    script = list(tok.encode("\\boxed{7}"))

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        return script.pop(0) if worker == 0 and script else 40

    def rule(step: str, piece: str) -> bool:  # the closing brace ends the step (and is merged)
        return piece == "}"

    res = engine(model, workers=2, budgets=(40,), choose=choose, step_rule=rule).solve("Seven?")
    assert res.final.answer == "7" and res.final.answer_source == "worker:Alice"
    assert res.final.passes < 40
    assert any(s.finished and s.text.endswith("\\boxed{7}") for s in res.final.steps)


def test_finisher_reads_the_last_workers_view_without_writing(model) -> None:  # noqa: ANN001
    eng = engine(model, workers=2, budgets=(6,), finisher_max_tokens=5)
    seen = {}
    runner = eng.use_engine().runner
    step = runner.step

    def spy(inputs, **kw):  # noqa: ANN001, ANN202
        if inputs[0].write_to.name == "reader":
            ws_lengths = [s.length for s in inputs[0].view[:-1]]
            seen.setdefault("views", []).append([s.name for s in inputs[0].view])
            seen.setdefault("lengths", []).append(ws_lengths)
            seen.setdefault("first", inputs[0].tokens)
        return step(inputs, **kw)

    runner.step = spy  # type: ignore[method-assign]
    res = eng.solve("Add.")
    assert seen["views"][0] == [
        "common",
        "others",
        "w0.a",
        "marker0",
        "own",
        "w1.a",
        "reader",
    ] or seen["views"][0][-2].startswith("w1")
    assert all(
        lengths == seen["lengths"][0] for lengths in seen["lengths"]
    )  # no worker segment grew
    assert ToyTokenizer().decode(seen["first"]) == MATH_FINISHER
    assert res.final.answer_source in ("finisher", "none")


def test_stream_yields_tokens_steps_snapshots_and_done(model) -> None:  # noqa: ANN001
    events = list(engine(model, workers=2, budgets=(4, 8), finisher=False).stream("Add."))
    kinds = {type(e) for e in events}
    assert {TokenEvent, StepEvent, SnapshotEvent, DoneEvent} <= kinds
    assert isinstance(events[-1], DoneEvent)
    assert [e.snapshot.budget for e in events if isinstance(e, SnapshotEvent)] == [4, 8]


def test_interjection_appears_in_headers_at_the_cadence(model) -> None:  # noqa: ANN001
    res = engine(model, workers=2, budgets=(40,), finisher=False, interjection_every=10).solve(
        "Add."
    )
    steps = [s for s in res.final.steps if s.finished]
    marked = [s for s in steps if "Quick check: am I doing redundant work? (yes/no): " in s.text]
    assert marked and len(marked) < len(steps)
    assert all(s.text.startswith(f"**{s.name} [{s.step}]:** Quick check") for s in marked)
    none = engine(model, workers=2, budgets=(40,), finisher=False, interjection_every=0).solve(
        "Add."
    )
    assert not any("Quick check" in s.text for s in none.final.steps)


def test_kv_history_and_transcript_agree(model) -> None:  # noqa: ANN001
    """The step-ending token stays at the end of its step: history KV tokens == transcript text."""
    from plait.hogwild.paragraph import step_ends

    tok = ToyTokenizer()
    cycle = tok.encode("We add. ") + tok.encode(".\n\n")
    eng = engine(model, workers=3, budgets=(20,), finisher=False, step_rule=step_ends)
    counters = [0, 0, 0]

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        counters[worker] += 1
        return cycle[(counters[worker] + worker) % len(cycle)]

    eng.options["choose"] = choose
    captured = {}
    store = eng.use_engine().store
    free = store.free

    def keep(seg):  # noqa: ANN001, ANN202
        if seg.name == "common":
            captured["common"] = list(seg.tokens)
        free(seg)

    store.free = keep  # type: ignore[method-assign]
    res = eng.solve("Add.")
    prompt = eng.prompt_ids("Add.")
    history = "".join(s.text for s in res.final.steps if s.finished)
    assert tok.decode(captured["common"][len(prompt) :]) == history
    assert (
        "**Bob [2]:**" in history and ".\n\n**Bob [2]:**" in history
    )  # ending token closes its step
    assert all(s.text.endswith(".\n\n") for s in res.final.steps if s.finished)


def test_bad_inputs_are_clear_errors(model) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        HogwildConfig(workers=0)
    with pytest.raises(ValueError, match="unknown layout"):
        HogwildConfig(layout="ring")
    for budgets in [(0,), (128, -5), (16.5,), ("64",), (True,), ()]:
        with pytest.raises(ValueError, match="budget"):
            HogwildConfig(budgets=budgets)
    for seed in ["x", 1.5]:
        with pytest.raises(ValueError, match="seed must be an integer"):
            HogwildConfig(seed=seed)
    assert HogwildConfig(seed=None).base_seed == 0
    with pytest.raises(ValueError, match="workers must be an integer"):
        HogwildConfig(workers=2.0)
    with pytest.raises(ValueError, match="names"):
        HogwildConfig(workers=3, names=("A", "B"))
    many = HogwildConfig(workers=10).resolved_names
    assert many[:2] == ("Alice", "Bob") and many[8:] == ("Worker9", "Worker10")
    with pytest.raises(ValueError, match="unknown Hogwild prompt"):
        HogwildConfig(prompt="answer_is")
    with pytest.raises(ValueError, match="unknown sequential prompt"):
        HogwildConfig(workers=1, sequential=True, prompt="roles")
    with pytest.raises(ValueError, match="loop_guard"):
        HogwildConfig(loop_guard="maybe")
    with pytest.raises(ValueError, match="loop_threshold"):
        HogwildConfig(loop_threshold=0)
    with pytest.raises(ValueError, match="sequential"):
        HogwildConfig(workers=2, sequential=True)
    with pytest.raises(ValueError, match="context is 4096"):
        engine(model, workers=2, budgets=(4,)).solve("x" * 5000)
    with pytest.raises(ValueError, match="empty"):
        engine(model, workers=2, budgets=(4,)).solve("  ")


def test_repeated_solves_reuse_the_arena(model) -> None:  # noqa: ANN001
    """Every solve frees all its segments, so later batches reuse the same arena (the GSM8K run
    was OOM-killed when freed space was never reclaimed)."""
    eng = engine(model, workers=4, budgets=(12,), finisher_max_tokens=3)
    store = eng.use_engine().store
    first = eng.solve_batch(["Add.", "Sum up."])
    assert store.top == 0 and not store.segments
    size = store.k.shape[2]
    for _ in range(3):
        again = eng.solve_batch(["Add.", "Sum up."])
        assert store.top == 0 and store.k.shape[2] == size
    assert summary(again[0]) == summary(first[0])


def test_contiguous_without_step_headers(model) -> None:  # noqa: ANN001
    """step_headers=False: each worker's workspace is one continuous text (its first header only)."""
    res = engine(model, workers=2, budgets=(40,), layout="contiguous", step_headers=False,
                 finisher=False).solve("Add.")  # fmt: skip
    steps = res.final.steps
    for w, name in enumerate(("Alice", "Bob")):
        mine = [s.text for s in steps if s.worker == w]
        assert len(mine) > 2 and mine[0].startswith(f"**{name} [1]:**")
        assert not any("**" + name in t for t in mine[1:])
    with pytest.raises(ValueError, match="step_headers=False needs a layout"):
        HogwildConfig(step_headers=False)
