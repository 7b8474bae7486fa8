"""Paragraph rule, headers, interjection cadence and policies, answers with balanced braces."""

from __future__ import annotations

import pytest

from plait.hogwild.answering import (
    boxed_contents,
    final_answer,
    last_boxed,
    last_code_block,
    match_brace,
)
from plait.hogwild.finisher import finisher_answer, finisher_text
from plait.hogwild.interjection import InterjectionPolicy
from plait.hogwild.paragraph import ends_sentence, header, open_blocks, step_ends


@pytest.mark.parametrize(
    ("step", "token", "ends"),
    [
        ("**Alice [1]:** We add 2 and 3", ".\n\n", True),
        ("**Alice [1]:** We add 2 and 3.", "\n\n", True),
        ("**Alice [1]:** Is it 5?", "\n\n", True),
        ("**Alice [1]:** It is 5 (done).", "\n\n", True),
        ("**Alice [1]:** We add 2 and 3", "\n\n", False),  # no sentence end
        ("**Alice [1]:** We add.", " so", False),  # no "\n\n" in the token
        ("**Alice [1]:** Code:\n```python\nx = 1.", "\n\n", False),  # open code block
        ("**Alice [1]:** Then\n$$x = 1.", "\n\n", False),  # open display math
        ("**Alice [1]:** Then \\[ x = 1.", "\n\n", False),
        ("**Alice [1]:** ```python\nx = 1\n``` Done.", "\n\n", True),  # closed block
        ("**Bob [2]:** 这是答案。", "\n\n", True),  # CJK full stop
        ("**Alice [1]:** ", "\n\n", False),  # empty step
        ("**Alice [1]:** Done.", "\n\nNext", True),  # text after the separator in the same token
    ],
)
def test_step_rule(step: str, token: str, ends: bool) -> None:
    assert step_ends(step, token) is ends


def test_sentence_and_blocks_helpers() -> None:
    assert ends_sentence('He said "yes."') and ends_sentence("ok!**") and not ends_sentence("x = 1")
    assert (
        open_blocks("```py\n")
        and not open_blocks("```py\n```")
        and open_blocks("~~~")
        and not open_blocks("\\$\\$")
    )


def test_header() -> None:
    assert header("Alice", 3) == "**Alice [3]:** "
    assert header("Bob", 2, "Quick check: ") == "**Bob [2]:** Quick check: "
    with pytest.raises(ValueError):
        header("Bob", 0)


def test_interjection_global_counter() -> None:
    p = InterjectionPolicy(2, every=5, policy="global")
    for _ in range(3):
        p.on_tokens(0)
        p.on_tokens(1)
    assert p.take(1) is True  # 6 tokens in total >= 5: the next worker to start a step gets it
    assert p.take(0) is False  # counter restarted
    p.on_tokens(0, 5)
    assert p.take(0) is True


def test_interjection_per_worker_counter() -> None:
    p = InterjectionPolicy(2, every=4, policy="per_worker")
    p.on_tokens(0, 3)
    p.on_tokens(1, 4)
    assert p.take(0) is False and p.take(1) is True and p.take(1) is False
    p.on_tokens(0)
    assert p.take(0) is True


def test_interjection_random_worker_is_seeded_and_targets_one_worker() -> None:
    def draws(seed: int) -> list[int]:
        p = InterjectionPolicy(4, every=3, policy="random_worker", seed=seed)
        got = []
        for _ in range(8):
            p.on_tokens(0, 3)
            got.append([w for w in range(4) if p.take(w)])
        assert all(len(g) <= 1 for g in got)
        return [g[0] for g in got if g]

    assert draws(1) == draws(1)
    assert len(set(draws(1))) > 1


def test_interjection_disabled_and_bad_input() -> None:
    p = InterjectionPolicy(2, every=0)
    p.on_tokens(0, 10_000)
    assert p.take(0) is False
    with pytest.raises(ValueError, match="policy"):
        InterjectionPolicy(2, every=3, policy="sometimes")  # type: ignore[arg-type]


def test_boxed_balanced_braces() -> None:
    assert last_boxed(r"so \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} then \boxed{\sqrt{\frac{a}{b}}}") == r"\sqrt{\frac{a}{b}}"
    assert last_boxed(r"\boxed{2} and an open \boxed{\frac{1}{") == "2"  # unfinished one is skipped
    assert last_boxed(r"\boxed{}") is None and last_boxed("no answer") is None
    assert boxed_contents(r"\boxed{\{1, 2\}}") == [r"\{1, 2\}"]
    assert last_boxed(r"\boxed{x} \boxed{y}", valid=lambda s: s == "x") == "x"
    assert match_brace("{a{b}c}", 0) == 6 and match_brace("{a{b}", 0) == -1


def test_code_answers() -> None:
    text = "try:\n```python\nprint(1)\n```\nbetter:\n```python\ndef f(x):\n    return x\n```\nbroken:\n```python\ndef (\n```"
    assert last_code_block(text) == "def f(x):\n    return x\n"
    assert final_answer(text, "code") == "def f(x):\n    return x\n"
    assert final_answer(r"\boxed{7}", "math") == "7"
    with pytest.raises(ValueError):
        final_answer("x", "poetry")


def test_finisher_text_and_answer() -> None:
    math = finisher_text("math")
    assert math.startswith("\n\n") and math.endswith("\\boxed{")
    assert finisher_answer(r"\frac{1}{2}} is it", "math") == r"\frac{1}{2}"
    assert finisher_answer(r"\frac{1}{2", "math") is None
    code = finisher_text("code")
    assert code.endswith("```python\n")
    assert finisher_answer("print(2)\n```", "code") == "print(2)\n"
    assert finisher_answer("print(2)\n", "code") is None
