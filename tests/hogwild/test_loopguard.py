"""The step-level loop guard: overlap measure, duplicate counting, cuts and penalties.

The cut test compares a run whose worker repeats a step (the guard cuts it and the worker then
writes something new) with a run where the worker wrote the new text directly: the logits, the
transcript and the KV contents must be the same, so a cut leaves nothing behind.
"""

from __future__ import annotations

import pytest
import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import CutEvent, DoneEvent
from plait.hogwild.loopguard import LoopGuard, StepMemory, words
from plait.hogwild.solve import stream
from tests.helpers.toy import ToyTokenizer, toy_model

X = " one two three four five six seven.\n\n"
Y = " eight nine ten"


def test_words_and_overlap() -> None:
    assert words("So, 1,200 Apples = 3.5 each!") == ["so", "1200", "apples", "3.5", "each"]
    m = StepMemory(n=3)
    assert m.overlap("a b c d") == 0.0
    m.add("Tom has 8 apples left.")
    assert m.overlap("tom has 8 apples left") == 1.0
    assert m.overlap("Tom has 8 pears now, so we add two more") == pytest.approx(1 / 8)
    assert m.overlap("8 apples left") == 1.0  # repeats part of an earlier step
    assert m.overlap("go go go go go") == pytest.approx(2 / 3)  # loops inside the step count too
    m.add("Yes.")
    assert m.overlap("yes") == 1.0 and m.overlap("no") == 0.0  # steps shorter than n: equality


def test_guard_counts_duplicates_and_penalises() -> None:
    g = LoopGuard(2, mode="penalise", threshold=0.5, penalty=3.0)
    assert not g.on_step(0, "Tom has 8 apples left.", [5, 6])
    assert g.on_step(1, "Tom has 8 apples left!", [7, 8])
    assert (g.stats.steps, g.stats.duplicates, g.stats.duplicate_rate) == (2, 1, 0.5)
    row = torch.zeros(10)
    assert g.adjust(0, row) is row  # worker 0's step was new: nothing penalised
    assert g.adjust(1, row)[[7, 8]].tolist() == [-3.0, -3.0] and row.sum() == 0
    assert not g.should_cut(1, "Tom has 8 apples left.", ends=True)  # penalise never cuts
    cut = LoopGuard(1, mode="cut", min_ngrams=3)
    cut.on_step(0, "a b c d e f", [])
    assert not cut.should_cut(0, "a b c", ends=False)  # too short to judge mid-step
    assert cut.should_cut(0, "a b c d e", ends=False)
    with pytest.raises(ValueError, match="mode"):
        LoopGuard(1, mode="sometimes")


def _run(model, script: list[str], guard: str, sequential: bool = False, layout: str = "combined"):  # noqa: ANN001, ANN202
    tok = ToyTokenizer()
    queue = [t for text in script for t in tok.encode(text)] + [tok.eos_token_id]
    logits, events = [], []

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        if worker == 1:
            return tok.eos_token_id  # worker 1 stops at once: worker 0 writes alone
        logits.append(row.clone())
        return queue.pop(0)

    mode = (
        {"workers": 1, "sequential": True, "prompt": "answer_is"} if sequential else {"workers": 2}
    )
    cfg = HogwildConfig(
        **mode, budgets=(200,), instructions="Be brief.", suppress_eos=False,
        stop_on_answer=False, finisher=False, loop_guard=guard, loop_penalty=0.0,
    )  # fmt: skip
    kv = []  # per pass: the tokens of worker 0's view, in view order (what its attention reads)

    def on_pass(problem, index, feeds, streams, rows):  # noqa: ANN001, ANN202
        kv.append([t for s in streams if s.worker == 0 for seg in s.view for t in seg.tokens])

    for ev in stream(model, tok, "Count.", cfg, choose=choose, on_pass=on_pass):
        events.append(ev)
    result = next(e.result for e in events if isinstance(e, DoneEvent))
    return result.final, logits, events, kv


@pytest.mark.parametrize(
    ("sequential", "layout"),
    [(False, "combined"), (False, "interleaved"), (False, "contiguous"), (True, "combined")],
)
def test_cut_step_leaves_nothing_behind(sequential: bool, layout: str) -> None:
    """Hogwild: the cut step restarts after its header. Sequential without a seed or headers:
    the first step restarts after the prompt's last token, a later one after the previous step's."""
    model = toy_model("qwen2", seed=5)
    loop = " go go go go.\n\n"  # repeats itself: cut when it ends (the first step, no seed)
    script = [loop, X, X, Y] if sequential else [X, X, Y]
    cut, cut_logits, cut_events, cut_kv = _run(model, script, "cut", sequential, layout)
    plain, plain_logits, _, plain_kv = _run(model, [X, Y], "off", sequential, layout)
    cuts = [e.text for e in cut_events if isinstance(e, CutEvent)]
    assert cuts == ([loop[:-3]] if sequential else []) + [X[:-3]]
    assert cut.cut_steps == len(cuts) and plain.cut_steps == 0
    assert [s.text for s in cut.steps] == [s.text for s in plain.steps]
    # the last choices (Y and the stop) saw exactly the same logits and KV
    n = len(ToyTokenizer().encode(Y)) + 1
    for a, b in zip(cut_logits[-n:], plain_logits[-n:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert cut_kv[-1] == plain_kv[-1]
    assert cut.passes > plain.passes  # the cut step cost passes


def test_guard_off_counts_the_duplicate() -> None:
    model = toy_model("qwen2", seed=5)
    off, *_ = _run(model, [X, X, Y], "off")
    assert (off.finished_steps, off.duplicate_steps, off.cut_steps) == (
        2,
        1,
        0,
    )  # X and its repeat (Y is unfinished)
