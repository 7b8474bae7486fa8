"""The `plain_after` prompt: one worker is the sequential run; more workers start without a seed."""

from __future__ import annotations

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import TokenEvent
from tests.helpers.toy import Hogwild, ToyTokenizer, toy_model

PLAIN = {"prompt": "plain_after", "layout": "contiguous", "step_headers": False}
PROBLEM = "Add 2 and 3, then double it."


def test_one_plain_worker_is_the_sequential_run() -> None:
    tok, model = ToyTokenizer(), toy_model("llama", seed=3)
    seq_cfg = HogwildConfig(workers=1, sequential=True, budgets=(16, 40), finisher=False)
    # the sequential baseline's token rules: '#' allowed, stops at EOS
    cfg = HogwildConfig(workers=1, budgets=(16, 40), finisher=False, suppress=("</think>",),
                        suppress_eos=False, **PLAIN)  # fmt: skip
    seq, hog = Hogwild(model, tok, seq_cfg), Hogwild(model, tok, cfg)
    assert hog.problem(PROBLEM).prompt_text == seq.problem(PROBLEM).prompt_text
    a, b = seq.solve(PROBLEM), hog.solve(PROBLEM)
    assert [s.transcript() for s in a.snapshots] == [s.transcript() for s in b.snapshots]
    assert [s.passes for s in a.snapshots] == [s.passes for s in b.snapshots]


def test_plain_workers_start_without_headers() -> None:
    tok, model = ToyTokenizer(), toy_model("llama", seed=3)
    cfg = HogwildConfig(workers=3, budgets=(12,), finisher=False, **PLAIN)
    eng = Hogwild(model, tok, cfg)
    prompt = eng.problem(PROBLEM).prompt_text
    assert "3 assistants" in prompt and "**Alice" not in prompt
    events = list(eng.stream(PROBLEM))
    text = {w: "".join(e.text for e in events if isinstance(e, TokenEvent) and e.worker == w)
            for w in range(3)}  # fmt: skip
    assert not any("**" in t[:12] for t in text.values())  # no header
    assert text[1].startswith("Let's solve this step by step.")  # a seed breaks the symmetry
    assert text[2].startswith("First, let's list what we know.")
    assert len(text[0]) > 0 and text[0] != text[1][: len(text[0])]


def test_a_merging_layout_drops_the_small_presets_step_headers() -> None:
    from plait.hogwild.presets import PRESETS, fit_layout

    fields = dict(PRESETS["small"].hogwild)
    fit_layout(fields, "contiguous")
    assert fields["step_headers"] is False
    fit_layout(fields, "interleaved")
    assert "step_headers" not in fields
    assert HogwildConfig(workers=2, **{**fields, "layout": "interleaved"}).step_headers
