"""Datasets, math-verify checking, budget tables, plots and the hogwild evaluation driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.eval.checking import is_correct, normalise
from plait.eval.curves import BudgetTable, Record, append_records, read_records, wilson
from plait.eval.datasets import Problem, gsm8k_answer, load, load_jsonl
from plait.eval.plots import plot_budget_curves


def test_gsm8k_and_aime_load_from_the_package() -> None:
    g = load("gsm8k", limit=3)
    assert [p.id for p in g] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert g[0].answer == "18" and "ducks" in g[0].question
    a = load("aime2025")
    assert len(a) == 30 and a[0].answer == "70"
    assert load("gsm8k", limit=2, offset=1)[0].id == "gsm8k-1"


def test_gsm8k_answer_parsing() -> None:
    assert gsm8k_answer("so 1,234 apples\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="####"):
        gsm8k_answer("no marker")


def test_user_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text('{"q": "1+1?", "a": "2"}\n\n{"q": "2+2?", "a": "4", "id": "x"}\n')
    ps = load_jsonl(f, "q", "a")
    assert ps == [Problem("mine-0", "1+1?", "2"), Problem("x", "2+2?", "4")]
    with pytest.raises(ValueError, match="--question-key"):
        load_jsonl(f)
    with pytest.raises(ValueError, match="unknown dataset"):
        load("mmlu")
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("18", "18", True),
        ("18.00", "18", True),
        ("\\frac{1}{2}", "0.5", True),
        ("1,234", "1234", True),
        ("\\$18", "18", True),
        ("17", "18", False),
        (None, "3", False),
        ("", "3", False),
        ("2\\sqrt{2}", "\\sqrt{8}", True),
    ],
)
def test_is_correct(pred: str | None, gold: str, ok: bool) -> None:
    assert is_correct(pred, gold) is ok


def test_normalise() -> None:
    assert normalise(" $1,000.0$ ") == "1000" and normalise("\\text{Yes}") == "yes"


def test_budget_table_records_and_plot(tmp_path: Path) -> None:
    recs = [
        Record("sequential", f"p{i}", b, "1", "1" if i % 2 else "2", i % 2 == 1, "finisher", b)
        for i in range(4)
        for b in (128, 256)
    ]
    recs += [
        Record("hogwild-2", f"p{i}", b, "1", "1", True, "worker:Alice", 10)
        for i in range(4)
        for b in (128, 256)
    ]
    path = tmp_path / "r.jsonl"
    append_records(path, recs[:5])
    append_records(path, recs[5:])
    assert read_records(path) == recs
    t = BudgetTable.from_records(recs)
    j = t.to_json()
    assert j["sequential"]["128"]["accuracy"] == 0.5 and j["hogwild-2"]["256"]["early_stops"] == 4
    assert t.budgets == [128, 256] and "hogwild-2" in t.format()
    lo, hi = wilson(2, 4)
    assert 0 < lo < 0.5 < hi < 1 and wilson(0, 0) == (0.0, 0.0)
    png = plot_budget_curves(t, tmp_path / "c.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
