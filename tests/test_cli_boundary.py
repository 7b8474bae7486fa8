"""The CLI's one error boundary and the output-file helpers (plait/cli.py, plait/outputs.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait import cli
from plait.errors import OutputError, UsageError
from plait.outputs import (
    JsonlAppender,
    Manifest,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    read_jsonl,
    save_figure,
)


def _extra_command(monkeypatch, register) -> None:
    """`plait`'s real parser plus what `register(subparsers)` adds."""
    real = cli.build_parser

    def build():
        parser = real()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        register(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def _fake_command(monkeypatch, exc: BaseException) -> None:
    def register(sub):
        p = sub.add_parser("boom")
        p.add_argument("--x")

        def func(args):
            raise exc

        p.set_defaults(func=func)

    _extra_command(monkeypatch, register)


@pytest.mark.parametrize(
    "exc",
    [UsageError("bad --x"), ValueError("bad value"), FileNotFoundError(2, "No such file", "f.txt"),
     OutputError("no dir"), json.JSONDecodeError("Expecting value", "x", 0),
     UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")],
)  # fmt: skip
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, exc):
    _fake_command(monkeypatch, exc)
    assert cli.main(["boom", "--x", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plait boom: error: ")
    assert "Traceback" not in err


def test_debug_shows_traceback(monkeypatch, capsys):
    _fake_command(monkeypatch, ValueError("bad"))
    monkeypatch.setenv("PLAIT_DEBUG", "1")
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "plait boom: error: bad" in err


def test_bugs_keep_their_traceback(monkeypatch):
    _fake_command(monkeypatch, IndexError("bug"))
    with pytest.raises(IndexError):
        cli.main(["boom"])


def test_command_name_follows_subcommands():
    parser = cli.build_parser()
    assert cli.command_name(parser, ["threads", "validate", "x"]) == "plait threads validate"
    assert cli.command_name(parser, ["sgc", "--help"]) == "plait sgc"


def test_closed_pipe_exits_quietly():
    code = "import sys; sys.argv=['plait','boom']; from plait import cli\n" + (
        "import argparse\n"
        "def b():\n"
        "    p=argparse.ArgumentParser(prog='plait'); s=p.add_subparsers()\n"
        "    q=s.add_parser('boom')\n"
        "    def f(a):\n"
        "        for i in range(100000): print('line', i)\n"
        "    q.set_defaults(func=f); return p\n"
        "cli.build_parser=b\nraise SystemExit(cli.main(['boom']))\n"
    )
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | head -1', shell=True, capture_output=True, text=True
    )
    assert proc.stdout == "line 0\n"
    assert "Traceback" not in proc.stderr and "Broken" not in proc.stderr


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "a.json") == tmp_path / "a.json"
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "nodir" / "a.json", "--json")
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, "--json")


def test_jsonl_torn_tail_is_skipped_and_cut(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert "torn last line" in capsys.readouterr().err
    with JsonlAppender(path) as out:
        out.write({"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(OutputError, match=":2:"):
        read_jsonl(path)


def test_manifest_refuses_other_settings(tmp_path):
    m = Manifest(tmp_path / "manifest.json", {"model": "a", "budgets": (1, 2)})
    assert m.check(overwrite=False) is False
    assert (
        Manifest(tmp_path / "manifest.json", {"model": "a", "budgets": [1, 2]}).check(False)
        is False
    )
    other = Manifest(tmp_path / "manifest.json", {"model": "b", "budgets": [1, 2]})
    with pytest.raises(OutputError, match="model"):
        other.check(overwrite=False)
    assert other.check(overwrite=True) is True


def test_atomic_writes_whole_files_with_plain_permissions(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    out = tmp_path / "out.bin"
    atomic_write_bytes(out, b"\x00\xffdata")
    assert out.read_bytes() == b"\x00\xffdata"
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    os.chmod(out, 0o640)
    atomic_write_text(out, "caf\u00e9\n")  # replacing keeps the file's mode
    assert out.read_bytes() == "caf\u00e9\n".encode() and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "plain.bin"]


def test_atomic_file_keeps_the_old_file_when_the_writer_fails(tmp_path):
    out = tmp_path / "rows.pt"
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_file(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-rows.pt-")
        tmp.write_bytes(b"half of the new")
        raise KeyboardInterrupt
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["rows.pt"]


def test_atomic_file_errors_name_the_target(tmp_path):
    missing = tmp_path / "nodir" / "x.json"
    with pytest.raises(FileNotFoundError) as exc:
        atomic_write_text(missing, "{}")
    assert exc.value.filename == str(missing)
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match="is a directory") as exc2:
        atomic_write_text(tmp_path / "adir", "{}")
    assert ".tmp-" not in str(exc2.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


def test_save_figure_writes_whole_pngs_and_leaves_nothing_on_failure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = tmp_path / "curve.png"
    save_figure(fig, out, dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = tmp_path / "plot"  # no suffix: png, written at exactly the path given
    save_figure(fig, bare)
    assert bare.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "bad.notaformat")
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "plot"]


# --- issue 22: outputs that respect what is there; JSONL that round-trips ---


def test_check_writable_refuses_special_files_inputs_and_long_names(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="special file"):
        check_writable(tmp_path / "fifo", "--log")
    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    (tmp_path / "alias.jsonl").symlink_to(src)
    for same in (src, tmp_path / "." / "in.jsonl", tmp_path / "alias.jsonl"):
        with pytest.raises(OutputError, match="same file as FILE"):
            check_writable(same, "--out", [("FILE", src)])
    check_writable(tmp_path / "other.jsonl", "--out", [("FILE", src), ("--x", None), ("-", "-")])
    with pytest.raises(OutputError, match="over 255 bytes"):
        check_writable(tmp_path / ("x" * 256), "--out")
    assert src.read_text() == "{}\n" and (tmp_path / "fifo").is_fifo()


def test_atomic_file_follows_links_and_refuses_special_files(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    os.chmod(tmp_path / "real.txt", 0o600)
    (tmp_path / "link.txt").symlink_to("real.txt")
    atomic_write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"
    assert stat.S_IMODE((tmp_path / "real.txt").stat().st_mode) == 0o600
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="special file"):
        atomic_write_text(tmp_path / "fifo", "x")
    assert (tmp_path / "fifo").is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.txt", "real.txt"]


def test_temporary_names_fit_the_name_limit(tmp_path):
    name = "\u00e9" * 120 + ".json"  # 245 bytes: valid, but ".tmp-<name>-XXXXXXXX" would not be
    atomic_write_text(tmp_path / name, "{}")
    assert (tmp_path / name).read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_jsonl_appender_refuses_special_files_and_empties_in_place(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="special file"):
        JsonlAppender(tmp_path / "fifo")
    log = tmp_path / "log.jsonl"
    log.write_text('{"a": 1}\n')
    inode = log.stat().st_ino
    with JsonlAppender(log, fresh=True) as out:
        out.write({"b": 2})
    assert log.stat().st_ino == inode and read_jsonl(log) == [{"b": 2}]


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085", "\n", "\r", "\x00"])
def test_every_string_round_trips(tmp_path, char):
    path = tmp_path / "r.jsonl"
    record = {"text": f"a{char}b", "caf\u00e9": [char]}
    with JsonlAppender(path) as out:
        out.write(record)
        out.write({"n": 2})
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 2 and len(raw.splitlines()) == 2  # no reader splits a record
    assert read_jsonl(path) == [record, {"n": 2}]


def test_a_raw_line_separator_written_by_another_tool_is_read(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a\u2028b"}\n{"n": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"text": "a\u2028b"}, {"n": 2}]


def test_a_last_record_without_its_newline_is_kept_on_resume(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # stopped between the record and its newline
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with JsonlAppender(path) as out:
        out.write({"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert "torn" not in capsys.readouterr().err


def test_deep_json_is_one_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(OutputError, match="nested too deeply"):
        read_jsonl(path)
    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(OutputError, match="unreadable manifest"):
        Manifest(tmp_path / "manifest.json", {"a": 1}).check(overwrite=False)


@pytest.mark.parametrize("stored", ["[1]", "null", "3"])
def test_a_manifest_that_is_not_an_object_is_refused(tmp_path, stored):
    (tmp_path / "manifest.json").write_text(stored)
    with pytest.raises(OutputError, match="manifest is a JSON"):
        Manifest(tmp_path / "manifest.json", {"a": 1}).check(overwrite=False)
    with pytest.raises(OutputError, match="NaN or infinity"):
        Manifest(tmp_path / "m2.json", {"t": float("nan")})


def test_closed_stdin_is_one_line(monkeypatch):
    from plait.arguments import read_text_input

    monkeypatch.setattr(sys, "stdin", None)  # what Python sets for `plait ... <&-`
    with pytest.raises(UsageError, match="standard input is closed"):
        read_text_input("-", "--prompts")


def test_closed_stdin_in_a_real_process(tmp_path):
    cmd = (f"{sys.executable} -m plait.cli threads run --base-url http://x/v1 --prompts - "
           "--out r.jsonl <&-")  # fmt: skip
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "--prompts - (standard input): cannot read it (standard input is closed)" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("module", "extra"), [("matplotlib", "eval"), ("ray", "ray"), ("starlette", "serve")]
)
def test_require_extra_names_the_extra(monkeypatch, module, extra):
    from plait.arguments import require_extra

    require_extra(module, extra, "x")  # installed here
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UsageError, match=rf"x needs the package {module}.*'\.\[{extra}\]'"):
        require_extra(module, extra, "x")


@pytest.mark.parametrize("module", ["starlette", "uvicorn"])
def test_serve_without_its_extra_is_one_line(monkeypatch, capsys, module):
    import plait.runtime.loading.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setitem(sys.modules, module, None)
    assert cli.main(["serve", "--model", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"needs {module}" in err and "'.[serve]'" in err


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(st.dictionaries(st.text(), _JSON, max_size=4), min_size=1, max_size=4))
def test_jsonl_round_trips_any_record(tmp_path_factory, records):
    """Property: whatever strings a record holds, plait reads back what it wrote, and even a
    reader that splits on every Unicode line break (str.splitlines) sees one line per record."""
    path = tmp_path_factory.mktemp("rt") / "r.jsonl"
    with JsonlAppender(path) as out:
        for rec in records:
            out.write(rec)
    raw = path.read_text(encoding="utf-8")
    assert len(raw.splitlines()) == len(records)
    assert [json.loads(line) for line in raw.splitlines()] == records
    assert read_jsonl(path) == records


def test_no_batch_invariant_switches_the_kernels_off_for_the_command(monkeypatch):
    from plait.runtime import kernels

    seen = []

    def register(sub):
        p = sub.add_parser("probe")
        p.set_defaults(func=lambda args: seen.append(kernels.batch_invariant()) or 0)

    _extra_command(monkeypatch, register)
    monkeypatch.setenv("PLAIT_BATCH_INVARIANT", "1")
    monkeypatch.setattr(kernels, "_invariant", True)
    assert cli.main(["probe"]) == 0
    assert cli.main(["--no-batch-invariant", "probe"]) == 0
    assert seen == [True, False]
    assert os.environ["PLAIT_BATCH_INVARIANT"] == "0"  # child processes and Ray workers too
