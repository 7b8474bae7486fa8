"""The evaluation driver: strict and lenient scoring, resume, manifest refusal, torn records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.errors import OutputError
from plait.eval.curves import read_records
from plait.eval.datasets import Problem
from plait.hogwild.evaluate import EvalSettings, Method, content_text, evaluate, score
from plait.hogwild.events import Snapshot, StepText
from tests.helpers.toy import ToyTokenizer, toy_model

PROBLEMS = [Problem(f"p{i}", f"What is {i} + 1?", str(i + 1)) for i in range(3)]
METHODS = [Method.parse("sequential"), Method.parse("hogwild-2")]


def settings(**hogwild) -> EvalSettings:  # noqa: ANN003
    common = {"finisher_max_tokens": 2, "instructions": "Be brief."}
    return EvalSettings(
        budgets=(4, 8),
        hogwild={**common, **hogwild},
        sequential={**common, "prompt": "boxed"},
        describe={"model": "toy"},
    )


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return toy_model("llama")


def run(model, out: Path, s: EvalSettings, **kw):  # noqa: ANN001, ANN003, ANN201
    return evaluate(model, ToyTokenizer(), PROBLEMS, METHODS, s, out, batch=2, progress=False, **kw)


def test_driver_resumes_and_writes_table(model, tmp_path: Path) -> None:  # noqa: ANN001
    table = run(model, tmp_path, settings())
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 2
    rec = json.loads(lines[0])
    assert rec["rule"] in ("boxed", "finisher", "none") and "rule_lenient" in rec
    assert {"steps", "duplicate_steps", "cut_steps", "tokens"} <= set(rec) and rec["tokens"] > 0
    transcripts = [json.loads(x) for x in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    assert len(transcripts) == 6 and "**Alice [1]:**" in transcripts[-1]["transcript"]
    run(model, tmp_path, settings())  # resumes: nothing new to run
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == len(lines)
    data = json.loads((tmp_path / "table.json").read_text())
    assert set(data["table"]) == {"sequential", "hogwild-2"} and table.budgets == [4, 8]
    cell = data["table"]["hogwild-2"]["8"]
    assert {"accuracy", "accuracy_lenient", "duplicate_rate", "cut_steps"} <= set(cell)
    assert (tmp_path / "curve.png").is_file()
    with pytest.raises(ValueError, match="unknown method"):
        Method.parse("hogwild-x")


def test_differing_rerun_is_refused_unless_overwrite(model, tmp_path: Path) -> None:  # noqa: ANN001
    run(model, tmp_path, settings())
    before = (tmp_path / "records.jsonl").read_text()
    with pytest.raises(OutputError, match="other settings.*--overwrite"):
        run(model, tmp_path, settings(layout="interleaved"))
    assert (tmp_path / "records.jsonl").read_text() == before  # nothing lost or mixed
    run(model, tmp_path, settings(layout="interleaved"), overwrite=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["hogwild"]["layout"] == "interleaved" and manifest["budgets"] == [4, 8]
    assert len(read_records(tmp_path / "records.jsonl")) == 12  # the old records were replaced


def test_torn_last_record_is_skipped_and_rerun(model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run(model, tmp_path, settings())
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])  # killed mid-write
    run(model, tmp_path, settings())
    assert "torn last line" in capsys.readouterr().err
    records = read_records(path)  # the partial (method, problem) was solved again
    assert len({(r.method, r.problem, r.budget) for r in records}) == 12
    assert path.read_text().endswith("\n")
    table = json.loads((tmp_path / "table.json").read_text())["table"]
    assert all(c["total"] == 3 for row in table.values() for c in row.values())


def test_bad_settings_fail_before_anything_is_written(model, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="unknown layout"):
        run(model, out, settings(layout="spiral"))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(model, ToyTokenizer(), [], METHODS, settings(), out, progress=False)
    assert not out.exists()
    with pytest.raises(OutputError, match="does not exist"):
        run(model, tmp_path / "missing" / "deeper", settings())


def _snap(answer, source, *texts) -> Snapshot:  # noqa: ANN001
    steps = [StepText(0, "Alice", k + 1, t, True) for k, t in enumerate(texts)]
    return Snapshot(budget=8, passes=8, answer=answer, answer_source=source, steps=steps)


def test_score_names_the_rule_strict_and_lenient() -> None:
    own = _snap("18", "worker:Alice", "**Alice [1]:** so \\boxed{18}")
    assert score(own, "18") | {} == {
        "answer": "18", "rule": "boxed", "correct": True,
        "answer_lenient": "18", "rule_lenient": "boxed", "correct_lenient": True,
    }  # fmt: skip
    stated = _snap(
        "7", "finisher", "**Alice [1]:** 9 + 9 = 18.", "**Alice [2]:** The answer is 18."
    )
    s = score(stated, "18")
    assert (s["rule"], s["correct"], s["rule_lenient"], s["correct_lenient"]) == (
        "finisher", False, "answer_is", True,
    )  # fmt: skip
    bare = _snap(None, "none", "**Alice [1]:** 3 * 6 = 18", "**Alice [2]:** ")
    s = score(bare, "18")  # the last header's [2] is not a number of the answer
    assert s["rule"] == "none" and s["rule_lenient"] == "last_number" and s["correct_lenient"]
    assert content_text(bare) == "3 * 6 = 18"
