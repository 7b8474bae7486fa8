"""`plait demo` tells the truth: its problem, answer, preset and table come from the measured runs.

The demo prints a GSM8K problem, the `small` preset's settings and an accuracy table. These tests
check them against the committed results (benchmarks/results): the table is the one those files
give, the files were made with the preset's settings, the problem is the GSM8K problem named, and
the preset's Hogwild run solved it there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plait.hogwild import demo
from plait.hogwild.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]


def payloads() -> list[dict[str, Any]]:
    return [json.loads((ROOT / f).read_text(encoding="utf-8")) for f in demo.DEMO_RESULTS]


def records(results: str) -> list[dict[str, Any]]:
    path = ROOT / results.replace(".json", "_records.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_printed_table_is_the_results_table() -> None:
    assert demo.format_table(payloads()) == demo.DEMO_TABLE


def test_the_results_were_made_with_the_small_preset() -> None:
    small = PRESETS["small"]
    hogwild, sequential = payloads()
    assert hogwild["settings"]["hogwild"] == json.loads(json.dumps(dict(small.hogwild)))
    assert hogwild["settings"]["temperature"] == small.temperature
    assert sequential["settings"]["sequential"] == dict(small.sequential)
    assert sequential["settings"]["temperature"] == 0.0
    assert "sequential" in sequential["table"]


def test_the_problem_is_the_named_gsm8k_problem_and_the_preset_solved_it() -> None:
    from plait.eval.checking import is_correct

    index = int(demo.DEMO_SOURCE.split("problem ")[1].split()[0])
    try:
        from plait.eval.datasets import load

        problem = load("gsm8k", limit=1, offset=index)[0]
    except (ImportError, ValueError) as exc:  # the dataset package is optional
        pytest.skip(f"GSM8K not installed: {exc}")
    assert (problem.question, problem.answer) == (demo.DEMO_PROBLEM, demo.DEMO_ANSWER)
    rows = [r for r in records(demo.DEMO_RESULTS[0]) if r["problem"] == problem.id]
    workers = int(demo.DEMO_METHOD.split("-")[1])
    solved = [r for r in rows if r["method"] == demo.DEMO_METHOD and r["budget"] == 512]
    assert workers >= 2 and solved and solved[-1]["correct"]
    assert is_correct(solved[-1]["answer"], demo.DEMO_ANSWER)


def test_format_table_rows() -> None:
    cell = {"accuracy": 0.25, "accuracy_lenient": 0.5, "duplicate_rate": 0.1}
    p = {"variant": "v", "budgets": [256, 512], "problems_per_method": {"hogwild-2": 8},
         "table": {"hogwild-2": {"512": cell}}}  # fmt: skip
    lines = demo.format_table([p]).splitlines()
    assert lines[1].split() == ["method", "variant", "n", "256", "512", "dup"]
    assert lines[2].split() == ["hogwild-2", "v", "8", "-", "25/50", "10%"]
