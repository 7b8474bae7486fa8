"""Every `plait threads` subcommand on a table of bad inputs: exit code 2, one `error:` line that
names the problem, no traceback, and no output file left behind that a rerun could not use."""

from __future__ import annotations

import json
import os
import socket

import pytest

from plait.cli import main
from plait.threads.format.render import BlockSpec, render
from tests.helpers.threads import Raw

GOOD = render(["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\ndone"])
FILES = {
    "good.jsonl": json.dumps({"prompt": "Q\n", "response": GOOD, "problem": "p1"}) + "\n",
    "bad_json.jsonl": '{"prompt": "Q", "response": \n',
    "array.jsonl": json.dumps([{"prompt": "Q", "response": GOOD}]),
    "non_utf8.jsonl": b'{"prompt": "\xff\xfe"}\n',
    "empty.jsonl": "",
    "blank.jsonl": "\n\n  \n",
    "scalar.jsonl": "42\n",
    "no_fields.jsonl": '{"foo": 1}\n',
    "str_tokens.jsonl": '{"tokens": ["a", "b"], "prompt_len": 1}\n',
    "bad_prompt_len.jsonl": '{"tokens": [65, 66], "prompt_len": 5}\n',
    "bad_inserted.jsonl": '{"tokens": [65, 66, 67], "prompt_len": 1, "inserted": [true]}\n',
    "null_response.jsonl": '{"prompt": "Q", "response": null}\n',
    "oov.jsonl": '{"tokens": [65, 66, 999999], "prompt_len": 1}\n',
    "invalid.jsonl": json.dumps(
        {
            "prompt": "Q\n",
            "response": GOOD.replace("</Thread><Thread>", "</Thread> <Thread>").replace(
                "1: x", "1:x"
            ),
        }
    )
    + "\n",  # fmt: skip
    "gap.jsonl": json.dumps(
        {"prompt": "Q\n", "response": GOOD.replace("<Outline>2:", "<Outline>5:")}
    )
    + "\n",  # fmt: skip
    "no_prompt.jsonl": json.dumps({"prompt": "", "response": GOOD}) + "\n",
    "baseline_other.jsonl": json.dumps({"prompt": "Q", "response": "z" * 9, "problem": "p9"})
    + "\n",
    "baseline_partial.jsonl": json.dumps({"prompt": "Q", "response": "z" * 9, "problem": "p1"})
    + "\n",
    "two_problems.jsonl": "".join(
        json.dumps({"prompt": "Q\n", "response": GOOD, "problem": p}) + "\n" for p in ("p1", "p2")
    ),  # fmt: skip
    "no_problem.jsonl": json.dumps({"prompt": "Q", "response": "z"}) + "\n",
    "prompts_bad.txt": b"\xff\n",
    "prompts.txt": "Q\n",
    "deep.jsonl": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
    "bool_prompt_len.jsonl": '{"tokens": [65, 66], "prompt_len": true}\n',
    "empty_response.jsonl": json.dumps({"prompt": "Q", "response": "", "problem": "p1"}) + "\n",
    "prompts_blank.txt": "\n \n",
}
READ_ERRORS = {  # input file -> words the one line must contain
    "bad_json.jsonl": "not valid JSON",
    "array.jsonl": "JSON array",
    "non_utf8.jsonl": "not UTF-8",
    "empty.jsonl": "no trajectories",
    "blank.jsonl": "no trajectories",
    "scalar.jsonl": "expected a JSON object",
    "no_fields.jsonl": "needs 'tokens'",
    "str_tokens.jsonl": "integer token ids",
    "bad_prompt_len.jsonl": "prompt_len",
    "bad_inserted.jsonl": "inserted",
    "null_response.jsonl": "response text",
    "deep.jsonl": "nested too deeply",
    "bool_prompt_len.jsonl": "'prompt_len' must be an integer",
    "missing.jsonl": "No such file",
    ".": "directory",
}
OOV = {"oov.jsonl": "outside the vocabulary"}


@pytest.fixture()
def files(tmp_path, monkeypatch):
    for name, content in FILES.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.mkfifo(tmp_path / "fifo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fails(capsys, argv, *words):
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    command = " ".join(["plait"] + [a for a in argv[:2]])
    assert rc == 2, f"{argv}: exit {rc}, stderr {err!r}"
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), err
    assert "Traceback" not in err and not out.strip()
    for w in words:
        assert w in lines[0], f"{argv}: {w!r} not in {lines[0]!r}"
    return lines[0]


def _reading_commands(name):
    return {
        "validate": ["threads", "validate", name],
        "normalize": ["threads", "normalize", name, "--out", "norm.jsonl"],
        "stats": ["threads", "stats", name],
        "view": ["threads", "view", name, "--out", "v.html"],
        "pack": ["threads", "pack", name, "--out", "rows.pt"],
        # the file is read before the model loads (never, here)
        "logprobs": [
            "threads",
            "logprobs",
            name,
            "--model",
            "no-such-model",
            "--tokenizer",
            "char",
        ],
    }


@pytest.mark.parametrize("command", ["validate", "normalize", "stats", "view", "pack", "logprobs"])
def test_every_reading_command_on_every_bad_file(files, capsys, command):
    table = READ_ERRORS | ({} if command == "validate" else OOV)
    for name, words in table.items():
        _fails(capsys, _reading_commands(name)[command], words)
        for out in ("norm.jsonl", "v.html", "rows.pt"):
            assert not (files / out).exists(), f"{command} {name} left {out}"


def test_out_of_vocabulary_ids_fail_validation(files, capsys):
    assert main(["threads", "validate", "oov.jsonl", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["trajectories"][0]["errors"][0]["code"] == "bad-token"
    assert report["trajectories"][0]["errors"][0]["pos"] == 2


CASES = [
    (["threads", "validate", "good.jsonl", "--max-outlines", "0"], "--max-outlines"),
    (["threads", "validate", "good.jsonl", "--tokenizer", "nowhere"], "existing local directory"),
    (["threads", "stats", "good.jsonl", "--baseline", "baseline_other.jsonl"], "none of the problems"),
    (["threads", "stats", "two_problems.jsonl", "--baseline", "baseline_partial.jsonl"],
     "--partial-baseline"),
    (["threads", "stats", "good.jsonl", "--baseline", "no_problem.jsonl"], "'problem' field"),
    (["threads", "stats", "good.jsonl", "--baseline", "missing.jsonl"], "No such file"),
    (["threads", "view", "good.jsonl", "--index", "3", "--out", "v.html"], "--index 3"),
    (["threads", "view", "good.jsonl", "--out", "nodir/v.html"], "does not exist"),
    (["threads", "view", "good.jsonl", "--out", "."], "is a directory"),
    (["threads", "normalize", "good.jsonl", "--out", "nodir/n.jsonl"], "does not exist"),
    (["threads", "normalize", "gap.jsonl", "--out", "norm.jsonl"], "still invalid"),
    (["threads", "pack", "good.jsonl", "--row-length", "8"], "at least"),
    (["threads", "pack", "good.jsonl", "--row-length", "0"], "--row-length"),
    (["threads", "pack", "invalid.jsonl"], "not valid"),
    (["threads", "pack", "no_prompt.jsonl"], "no prompt"),
    (["threads", "pack", "good.jsonl", "--out", "nodir/rows.pt"], "does not exist"),
    (["threads", "run", "--base-url", "http://127.0.0.1:9/v1", "--out", "runs.jsonl"], "--prompt"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompts", "nope.txt", "--out", "r.jsonl"],
     "no such file"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompts", "prompts_bad.txt", "--out",
      "runs.jsonl"], "not UTF-8"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompts", "prompts_blank.txt", "--out",
      "runs.jsonl"], "--prompt"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompts", ".", "--out", "runs.jsonl"],
     "--prompts . is a directory"),
    (["threads", "run", "--base-url", "ftp://x", "--prompt", "Q", "--out", "runs.jsonl"], "http"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompt", "Q", "--out", "nodir/r.jsonl"],
     "does not exist"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompt", "Q", "--out", "runs.jsonl",
      "--max-total-tokens", "0"], "max_total_tokens"),
    # issue 22: outputs that are inputs or special files; values that were silently accepted
    (["threads", "view", "good.jsonl", "--out", "good.jsonl"], "same file as FILE"),
    (["threads", "view", "good.jsonl", "--out", "./good.jsonl"], "same file as FILE"),
    (["threads", "normalize", "good.jsonl", "--out", "good.jsonl"], "same file as FILE"),
    (["threads", "pack", "good.jsonl", "--out", "good.jsonl"], "same file as FILE"),
    (["threads", "view", "good.jsonl", "--out", "fifo"], "special file"),
    (["threads", "normalize", "good.jsonl", "--out", "x" * 300], "over 255 bytes"),
    (["threads", "stats", "good.jsonl", "--baseline", "empty_response.jsonl"], "empty response"),
    (["threads", "stats", "empty_response.jsonl", "--baseline", "good.jsonl"], "empty response"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompts", "prompts.txt", "--out",
      "prompts.txt"], "same file as --prompts"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompt", "Q", "--out", "fifo"],
     "special file"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompt", "Q", "--out", "r" * 250],
     "manifest"),
    (["threads", "run", "--base-url", "http://x/v1", "--prompt", "Q", "--out", "runs.jsonl",
      "--top-p", "0"], "top_p must be in (0, 1]"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0][1:3]) for c in CASES])
def test_bad_arguments(files, capsys, argv, words):
    before = {p.name for p in files.iterdir()}
    _fails(capsys, argv, words)
    assert {p.name for p in files.iterdir()} == before  # nothing written


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(url, *extra):
    return ["threads", "run", "--base-url", url, "--prompt", "Q", "--out", "runs.jsonl", *extra]


def _ids_answer(tokens):
    """vLLM's ids-mode answer: the generated ids as 'token_id:N' logprob tokens."""
    return {"choices": [{"text": "x", "finish_reason": "length",
                         "logprobs": {"tokens": tokens, "token_logprobs": [0.0] * len(tokens)}}]}  # fmt: skip


def test_run_against_broken_servers(files, capsys, stub_server):
    _fails(capsys, _run(f"http://127.0.0.1:{_free_port()}/v1"), "cannot reach", "/completions")
    answers = {
        "html": (Raw(200, "text/html", b"<html>hello</html>"), "did not answer JSON"),
        "no choices": ({"object": "text_completion"}, "without 'choices'"),
        "http 500": (Raw(500, "text/plain", b"boom"), "HTTP 500"),
        "http 404": (Raw(404, "application/json", b'{"error": "no model"}'), "HTTP 404"),
        "text 12345": (
            {"choices": [{"text": 12345, "finish_reason": "length"}]},
            "'text' is a int",
        ),
        "negative id": (_ids_answer(["token_id:65", "token_id:-5"]), "token id -5, outside"),
        "huge id": (_ids_answer(["token_id:999999"]), "token id 999999, outside"),
    }
    for answer, words in answers.values():
        server = stub_server(lambda path, body, a=answer: a)
        _fails(capsys, _run(server.url), words)
        assert (
            not (files / "runs.jsonl").exists()
            and not (files / "runs.jsonl.manifest.json").exists()
        )
