"""Which answer a transcript gives: strict (\\boxed{}) and a lenient fallback, each naming its rule.

Rules (`Extracted.rule`), in the order the lenient extraction tries them:

- `boxed`: the last complete `\\boxed{...}` the model wrote itself (strict);
- `answer_is`: the last "the answer is N", "answer: N" or "#### N" statement with a number
  (lenient; what a plain "end with 'The answer is N'" prompt asks for);
- `finisher`: the `\\boxed{}` the finisher wrote when the budget ran out without one (strict: it is
  the method's own forced answer);
- `last_number`: the last number in the text (lenient; the usual fallback of plain GSM8K scripts);
- `none`: nothing found.

Strict extraction uses `boxed`, then `finisher`. Lenient extraction tries all rules in the order
above: a statement the model wrote itself beats the forced finisher, which beats a bare number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULES = ("boxed", "answer_is", "finisher", "last_number", "none")
STRICT_RULES = frozenset({"boxed", "finisher"})

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_DECOR = r"[\s*:=$\\(]*"  # markdown bold, colons, "$", "\(" between the phrase and the number
_ANSWER_IS = re.compile(
    rf"(?:answer\s*(?:is|:|=)|####){_DECOR}(?:approximately\s*)?{_DECOR}({_NUMBER})", re.IGNORECASE
)
_NUMBERS = re.compile(_NUMBER)


@dataclass(frozen=True, slots=True)
class Extracted:
    answer: str | None
    rule: str
    """One of `RULES`."""


def _clean(number: str) -> str:
    return number.replace(",", "").rstrip(".")


def answer_is(text: str) -> str | None:
    """The number of the last "the answer is N" / "answer: N" / "#### N" statement, or None."""
    found = _ANSWER_IS.findall(text)
    return _clean(found[-1]) if found else None


def last_number(text: str) -> str | None:
    """The last number in `text` (commas dropped), or None."""
    found = _NUMBERS.findall(text)
    return _clean(found[-1]) if found else None


def strict(boxed: str | None, finisher: str | None) -> Extracted:
    """The model's own `\\boxed{}` answer, else the finisher's, else none."""
    if boxed:
        return Extracted(boxed, "boxed")
    if finisher:
        return Extracted(finisher, "finisher")
    return Extracted(None, "none")


def lenient(text: str, boxed: str | None, finisher: str | None) -> Extracted:
    """Strict rules plus the fallbacks, in the order of `RULES` (see the module docstring)."""
    if boxed:
        return Extracted(boxed, "boxed")
    stated = answer_is(text)
    if stated is not None:
        return Extracted(stated, "answer_is")
    if finisher:
        return Extracted(finisher, "finisher")
    number = last_number(text)
    if number is not None:
        return Extracted(number, "last_number")
    return Extracted(None, "none")
