"""Strict and lenient answer extraction: which rule fires, in which order."""

from __future__ import annotations

import pytest

from plait.eval.extraction import RULES, Extracted, answer_is, last_number, lenient, strict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is 18.", "18"),
        ("The answer is: **1,234**", "1234"),
        ("Answer: $42", "42"),
        ("#### 7", "7"),
        ("the answer is approximately 3.5 hours", "3.5"),
        ("The answer is \\(-4\\)", "-4"),
        ("first the answer is 3, then the answer is 5", "5"),
        ("no statement here, just 12 and 13", None),
        ("the answer is unclear", None),
    ],
)
def test_answer_is(text: str, expected: str | None) -> None:
    assert answer_is(text) == expected


def test_last_number() -> None:
    assert last_number("3 apples and 1,500 pears.") == "1500"
    assert last_number("costs -2.50 dollars.") == "-2.50"
    assert last_number("no digits") is None


def test_rules_in_order() -> None:
    text = "9 + 9 = 18. The answer is 18. Then 20."
    assert strict("18", None) == Extracted("18", "boxed")
    assert strict(None, "7") == Extracted("7", "finisher")
    assert strict(None, None) == Extracted(None, "none")
    assert lenient(text, "17", "7") == Extracted("17", "boxed")  # the model's own box first
    # a statement beats the finisher
    assert lenient(text, None, "7") == Extracted("18", "answer_is")
    assert lenient("9 + 9 = 18", None, "7") == Extracted("7", "finisher")
    assert lenient("9 + 9 = 18", None, None) == Extracted("18", "last_number")
    assert lenient("nothing", None, None) == Extracted(None, "none")
    assert set(RULES) == {"boxed", "answer_is", "finisher", "last_number", "none"}
