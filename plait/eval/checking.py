"""Answer checking with math-verify (symbolic equivalence), with an exact-string fallback.

`is_correct(predicted, gold)` compares a model's extracted answer (the content of \\boxed{}) with
the gold answer: both are parsed by math-verify (LaTeX and plain expressions) and compared with
`verify`. When math-verify is not installed or cannot parse either side, normalised strings are
compared (commas, spaces, "$" and a trailing ".0" removed).
"""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    t = text.strip().strip("$").replace(",", "").replace(" ", "").replace("\\!", "")
    t = re.sub(r"^\\text\{(.*)\}$", r"\1", t)
    t = re.sub(r"\.0+$", "", t)
    return t.lower()


def _math_verify(predicted: str, gold: str) -> bool | None:
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    try:
        gold_p = parse(f"${gold}$")
        pred_p = parse(f"\\boxed{{{predicted}}}")
        if not gold_p or not pred_p:
            return None
        return bool(verify(gold_p, pred_p))
    except Exception:  # noqa: BLE001 - math-verify raises many parser errors; fall back to strings
        return None


def is_correct(predicted: str | None, gold: str) -> bool:
    """True when `predicted` (an extracted answer, may be None) matches `gold`."""
    if predicted is None or not predicted.strip():
        return False
    verdict = _math_verify(predicted, gold)
    if verdict:
        return True
    return normalise(predicted) == normalise(gold)
