"""`plait models` and `plait generate` through the top-level CLI."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plait.cli import main
from plait.runtime import generate as generate_module
from plait.runtime.kernels import quant as quant_kernels
from plait.runtime.loading.bundled import BUNDLED, BundledModel
from plait.runtime.loading.loader import load_model
from tests.helpers.checkpoints import (
    fake_packages,
    save_hf_dir,
    tiny_hf_model,
    tiny_tokenizer,
    write_gguf,
)

pytestmark = pytest.mark.usefixtures("plait_cache")  # every test gets an empty cache


@pytest.fixture
def fake_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, BundledModel]:
    """One installed tiny bundled model and one whose package is missing."""
    site = tmp_path / "site"
    gguf = tmp_path / "tiny.gguf"
    write_gguf(tiny_hf_model(), tiny_tokenizer(), gguf)
    blob = gguf.read_bytes()
    fake_packages(site, {"plait-cli-fake": ("model.gguf", blob)})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    common = dict(family="llama", parameters="tiny", licence="MIT", notes="test model")
    specs = {
        "tiny-installed": BundledModel(
            name="tiny-installed",
            requirements=("plait-cli-fake==1.0",),
            files=("model.gguf",),
            gguf_name="model.gguf",
            sha256=hashlib.sha256(blob).hexdigest(),
            **common,
        ),
        "tiny-missing": BundledModel(
            name="tiny-missing",
            requirements=("plait-cli-absent==2.0",),
            files=("model.gguf",),
            gguf_name="model.gguf",
            sha256="0" * 64,
            **common,
        ),
    }
    monkeypatch.setattr("plait.runtime.loading.bundled.BUNDLED", specs)
    monkeypatch.setattr("plait.runtime.loading.loader.BUNDLED", specs)
    return specs


def _rows(capsys) -> dict[str, dict]:
    assert main(["models", "--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_models_lists_bundled_and_cached(fake_registry, capsys, tmp_path):
    rows = _rows(capsys)
    assert rows["tiny-installed"]["installed"] and not rows["tiny-installed"]["cached"]
    assert not rows["tiny-missing"]["installed"]
    assert rows["tiny-missing"]["missing_packages"] == ["plait-cli-absent"]
    assert "pip install --no-deps plait-cli-absent==2.0" in rows["tiny-missing"]["install"]

    load_model("tiny-installed", dtype="fp32")
    other = tmp_path / "other.gguf"
    write_gguf(tiny_hf_model(seed=3), tiny_tokenizer(), other)
    load_model(other, dtype="fp32")
    rows = _rows(capsys)
    assert rows["tiny-installed"]["cached"] and rows["tiny-installed"]["cache_bytes"] > 0
    assert rows["other"]["kind"] == "gguf" and rows["other"]["cached"]
    assert rows["tiny-installed"]["weights"] == "bf16"
    assert rows["tiny-installed"]["resident_bytes"] > 0
    if quant_kernels.available():  # packed entries: the GGUF type and their smaller size
        quant = tmp_path / "quant.gguf"
        write_gguf(tiny_hf_model(seed=4), tiny_tokenizer(), quant, quantize=True)
        load_model(quant, dtype="gguf")
        row = _rows(capsys)["quant"]
        assert row["weights"] == "gguf Q8_0" and 0 < row["resident_bytes"] < row["cache_bytes"] * 2

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "FAMILY",
        "PARAMS",
        "SIZE",
        "INSTALLED",
        "CACHED",
        "WEIGHTS",
        "RESIDENT",
        "NOTES",
    ]
    assert "install: make install (or pip install --no-deps plait-cli-absent==2.0)" in table
    assert f"cache: {tmp_path / 'cache'}" in table


def test_models_with_the_real_registry(capsys):
    rows = _rows(capsys)
    assert {"smollm2-135m", "qwen2.5-0.5b"} <= set(rows)
    assert rows["qwen2.5-0.5b"]["family"] == "qwen2" and rows["smollm2-135m"]["family"] == "llama"
    assert set(BUNDLED) <= set(rows)


def test_generate_unknown_model_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(generate_module, "generate", lambda *a, **k: iter(()))
    assert main(["generate", "--model", "nope", "hi"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_generate_streams_pieces(monkeypatch, capsys, tmp_path):
    directory = save_hf_dir(tiny_hf_model(), tiny_tokenizer(), tmp_path / "ckpt")
    seen = {}

    def fake_generate(loaded, prompt, max_new_tokens, sampling, chat=True):
        seen.update(
            name=loaded.name, prompt=prompt, n=max_new_tokens, t=sampling.temperature, chat=chat
        )
        yield from ["a", "b"]

    monkeypatch.setattr(generate_module, "generate", fake_generate)
    rc = main(
        [
            "generate",
            "--model",
            str(directory),
            "--max-new-tokens",
            "3",
            "--temperature",
            "0.5",
            "--dtype",
            "fp32",
            "hello",
        ]
    )
    assert rc == 0 and capsys.readouterr().out == "ab\n"
    assert seen == {"name": "ckpt", "prompt": "hello", "n": 3, "t": 0.5, "chat": True}


def test_generate_end_to_end(capsys, tmp_path):
    directory = save_hf_dir(tiny_hf_model(), tiny_tokenizer(), tmp_path / "ckpt")
    assert (
        main(
            [
                "generate",
                "--model",
                str(directory),
                "--max-new-tokens",
                "4",
                "--dtype",
                "fp32",
                "hello",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.endswith("\n")


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, what the one error line must say) for `plait models` / `plait generate`."""
    (tmp / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp / "blank.txt").write_text(" \n\t\n")
    (tmp / "not-a-model").mkdir()
    (tmp / "junk.gguf").write_bytes(b"GGUF but not really")
    long = save_hf_dir(tiny_hf_model(), tiny_tokenizer(), tmp / "ctx256")
    bad_eps = save_hf_dir(tiny_hf_model(), tiny_tokenizer(), tmp / "eps")
    config = json.loads((bad_eps / "config.json").read_text())
    (bad_eps / "config.json").write_text(json.dumps({**config, "rms_norm_eps": -1}))
    g = ["generate"]
    return [
        (["models", "--bogus"], "unrecognized arguments: --bogus"),
        (["models", "smollm2-135m"], "unrecognized arguments"),
        ([*g, "--model", "nope", "hi"], "unknown model 'nope'"),
        ([*g, "--model", str(tmp / "missing"), "hi"], "no such file or directory"),
        ([*g, "--model", str(tmp / "not-a-model"), "hi"], "has no config.json"),
        ([*g, "--model", str(tmp / "junk.gguf"), "hi"], "cannot read GGUF file"),
        ([*g, "--model", "org/not-here", "hi"], "cannot fetch 'org/not-here'"),
        ([*g, "--dtype", "fp8", "hi"], "invalid choice: 'fp8'"),
        ([*g, "--device", "tpu", "hi"], "device must be 'cpu' or 'cuda[:N]'"),
        ([*g, "--max-new-tokens", "0", "hi"], "--max-new-tokens: must be >= 1, got 0"),
        ([*g, "--max-new-tokens", "lots", "hi"], "expected a whole number, got 'lots'"),
        ([*g, "--temperature", "-1", "hi"], "temperature must be a finite number >= 0"),
        ([*g, "--temperature", "warm", "hi"], "invalid float value: 'warm'"),
        ([*g, "--top-k", "-2", "hi"], "top_k must be >= 0"),
        ([*g, "--top-p", "0", "hi"], "top_p must be in (0, 1]"),
        ([*g, "--top-p", "1.5", "hi"], "top_p must be in (0, 1]"),
        ([*g, ""], "the prompt is empty"),
        ([*g, "   "], "the prompt is empty"),
        (g, "no prompt: give it as an argument"),
        ([*g, "hi", "--file", str(tmp / "blank.txt")], "not both"),
        ([*g, "--file", str(tmp / "missing.txt")], "missing.txt: no such file; check the path"),
        ([*g, "--file", str(tmp / "not-a-model")], "not-a-model is a directory"),
        ([*g, "--file", str(tmp / "latin1.txt")], "latin1.txt is not UTF-8 text (byte 3"),
        ([*g, "--file", str(tmp / "blank.txt")], "blank.txt is empty; put the prompt in it"),
        ([*g, "--model", str(long), "--dtype", "fp32", "x " * 400], "shorten the prompt"),
        # issue 22
        ([*g, "--temperature", "nan", "hi"], "--temperature: must be a finite number, got 'nan'"),
        ([*g, "--temperature", "inf", "hi"], "--temperature: must be a finite number"),
        ([*g, "--top-p", "nan", "hi"], "--top-p: must be a finite number"),
        ([*g, "--model", str(bad_eps), "hi"], "rms_norm_eps"),
    ]


def test_bad_inputs_get_one_error_line(tmp_path, monkeypatch, capsys):
    """Every bad input: exit 2, exactly one `plait <cmd>: error:` line naming the problem, no
    traceback, nothing on stdout (argparse's usage lines aside)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id fails at once, offline or not
    table = _bad_inputs(tmp_path)
    capsys.readouterr()  # what writing the checkpoints printed
    for argv, says in table:
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if "error:" in line]
        assert rc == 2, (argv, err)
        # argparse's top-level parser reports leftover arguments as `plait: error:`
        assert len(errors) == 1 and re.match(r"plait( \w+)?: error: ", errors[0]), (argv, err)
        assert says in errors[0], (argv, errors[0])
        assert "Traceback" not in err and out == "", (argv, err)


def test_bad_input_in_a_real_process(tmp_path):
    """The same boundary through the installed `plait` script: no traceback, exit 2."""
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    for argv, says in [
        (["generate", "--file", str(bad)], "is not UTF-8 text"),
        (["generate", "--model", "nope", "hi"], "unknown model 'nope'"),
        (["generate", "--file", "-"], "--file - (standard input) is empty; put the prompt in it"),
        (["generate", "--file", "-", "<&-"], "standard input is closed"),
    ]:
        closed = argv[-1] == "<&-"
        proc = subprocess.run(
            " ".join([sys.executable, "-m", "plait.cli", *argv]) if closed
            else [sys.executable, "-m", "plait.cli", *argv],
            capture_output=True, text=True, timeout=120, input=None if closed else " \n",
            shell=closed,
        )  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().startswith("plait generate: error: ") and says in proc.stderr
