"""load_model on tiny random checkpoints: HF directories and GGUF files, parity with
transformers, the safetensors cache (atomic, reused, rebuilt), dtypes, and every error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.cache_dir import META_FILE, atomic_dir, list_cached, models_dir
from plait.runtime.loading import conversion
from plait.runtime.loading.errors import (
    CorruptModelError,
    HubUnavailableError,
    MissingModelFilesError,
    UnknownModelError,
)
from plait.runtime.loading.gguf_file import permute_qk, unpermute_qk
from plait.runtime.loading.loader import load_model
from plait.runtime.loading.weights import read_safetensors_dir
from plait.runtime.seeding import seed_everything
from tests.helpers.checkpoints import save_hf_dir, tiny_hf_model, tiny_tokenizer, write_gguf

pytestmark = pytest.mark.usefixtures("plait_cache")  # every test gets an empty cache


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _logits(loaded, ids: list[int]) -> torch.Tensor:
    x = torch.tensor(ids)
    with torch.no_grad():
        return loaded.model(x, causal_context(loaded.model.rope, len(ids)))  # (T, V)


def _hf_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()  # (T, V)


PROMPT = "the quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize(
    "family,tie", [("llama", True), ("llama", False), ("qwen2", True), ("qwen2", False)]
)
def test_hf_directory_matches_transformers(tmp_path, tok, family, tie):
    hf = tiny_hf_model(family, tie, seed=1)
    directory = save_hf_dir(hf, tok, tmp_path / "ckpt")
    loaded = load_model(directory, dtype="fp32")
    ids = loaded.chat_prompt_ids(PROMPT)
    diff = (_logits(loaded, ids) - _hf_logits(hf, ids)).abs().max().item()
    assert diff <= 1e-4
    assert loaded.config.family == family and loaded.config.tie_embeddings == tie
    assert loaded.name == "ckpt" and not loaded.model.training
    assert all(not p.requires_grad for p in loaded.model.parameters())


@pytest.mark.parametrize(
    "family,tie,quantize",
    [
        ("llama", True, False),
        ("llama", False, True),
        ("qwen2", False, True),
        ("qwen2", True, False),
    ],
)
def test_gguf_matches_transformers(tmp_path, tok, family, tie, quantize):
    hf = tiny_hf_model(family, tie, seed=2)
    real = write_gguf(hf, tok, tmp_path / "tiny.gguf", quantize=quantize)
    loaded = load_model(tmp_path / "tiny.gguf", dtype="fp32")
    cached = read_safetensors_dir(loaded.path)
    for name, value in real.items():
        if name == "lm_head.weight" and tie:
            assert name not in cached
            continue
        # quantised tensors are cached in bf16: within 2^-8 relative of the dequantised values
        torch.testing.assert_close(cached[name].float(), value, rtol=2.0**-8, atol=1e-7)
        assert cached[name].dtype == (
            torch.bfloat16 if quantize and value.dim() == 2 else torch.float32
        )
    hf.load_state_dict({k: cached.get(k, v).float() for k, v in real.items()}, strict=False)
    ids = loaded.chat_prompt_ids(PROMPT)
    assert (_logits(loaded, ids) - _hf_logits(hf, ids)).abs().max().item() <= 1e-4
    assert loaded.config.tie_embeddings == tie


def test_llama_qk_permutation_convention():
    # transformers pairs dim i with i + D/2 (rotate-half); llama.cpp stores pairs adjacently.
    w = torch.arange(8.0)[:, None]  # one head of dim 8: rows 0..7
    assert permute_qk(w, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    x = torch.randn(3 * 16, 5)
    assert torch.equal(unpermute_qk(permute_qk(x, 3), 3), x)


def test_cache_is_complete_and_reused(tmp_path, tok, monkeypatch):
    hf = tiny_hf_model("llama", True, seed=3)
    write_gguf(hf, tok, tmp_path / "m.gguf")
    first = load_model(tmp_path / "m.gguf", dtype="fp32")
    entry = first.path
    assert entry.parent == models_dir()
    files = {p.name for p in entry.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        META_FILE,
        "generation_config.json",
    } <= files
    config = json.loads((entry / "config.json").read_text())
    assert not any("quantiz" in k or "gguf" in k for k in config)
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert first.tokenizer.chat_template
    assert [c["key"] for c in list_cached()] == [entry.name]
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")]  # no temp dirs left

    real_convert = conversion.convert_gguf

    def refuse(*a, **k):
        raise AssertionError("converted again although the cache is valid")

    monkeypatch.setattr(conversion, "convert_gguf", refuse)
    second = load_model(tmp_path / "m.gguf", dtype="fp32")
    ids = second.chat_prompt_ids("hi")
    assert torch.equal(_logits(first, ids), _logits(second, ids))
    # a changed source file invalidates the entry
    st = (tmp_path / "m.gguf").stat()
    os.utime(tmp_path / "m.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []
    monkeypatch.setattr(conversion, "convert_gguf", lambda *a: calls.append(a) or real_convert(*a))
    load_model(tmp_path / "m.gguf", dtype="fp32")
    assert len(calls) == 1


def test_cache_entry_is_a_transformers_checkpoint(tmp_path, tok):
    from transformers import AutoModelForCausalLM

    hf = tiny_hf_model("qwen2", False, seed=4)
    real = write_gguf(hf, tok, tmp_path / "m.gguf")
    loaded = load_model(tmp_path / "m.gguf", dtype="fp32")
    again = AutoModelForCausalLM.from_pretrained(str(loaded.path), dtype=torch.float32).eval()
    hf.load_state_dict(real)
    ids = loaded.chat_prompt_ids(PROMPT)
    assert (_hf_logits(again, ids) - _hf_logits(hf, ids)).abs().max().item() <= 1e-5


def test_damaged_cache_entry_is_rebuilt(tmp_path, tok):
    hf = tiny_hf_model("llama", True, seed=5)
    write_gguf(hf, tok, tmp_path / "m.gguf")
    first = load_model(tmp_path / "m.gguf", dtype="fp32")
    weights = first.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    second = load_model(tmp_path / "m.gguf", dtype="fp32")
    ids = second.chat_prompt_ids("hi")
    assert torch.equal(_logits(first, ids), _logits(second, ids))


def test_garbage_inside_the_cached_weights_is_detected(tmp_path, tok, monkeypatch, capfd):
    """4 KB of garbage in model.safetensors, same size: the checksum written at conversion
    catches it (hashed because the mtime changed, or always with PLAIT_VERIFY_WEIGHTS=1) and the
    entry is rebuilt; an entry from before checksums gets its record on first use."""
    hf = tiny_hf_model("llama", True, seed=7)
    write_gguf(hf, tok, tmp_path / "m.gguf")
    first = load_model(tmp_path / "m.gguf", dtype="fp32")
    ids = first.chat_prompt_ids("hi")
    weights, meta_path = first.path / "model.safetensors", first.path / META_FILE
    assert json.loads(meta_path.read_text())["weights"]["size"] == weights.stat().st_size
    clean = weights.read_bytes()

    def damage(keep_mtime: bool) -> None:
        st = weights.stat()
        data = bytearray(clean)
        data[-8192:-4096] = os.urandom(4096)  # inside the last tensor's data
        weights.write_bytes(bytes(data))
        if keep_mtime:
            os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))

    damage(keep_mtime=False)
    capfd.readouterr()
    second = load_model(tmp_path / "m.gguf", dtype="fp32")
    assert "does not match the checksum" in capfd.readouterr().err
    assert torch.equal(_logits(first, ids), _logits(second, ids))
    assert weights.read_bytes() == clean
    damage(keep_mtime=True)  # size and mtime as recorded: found only when asked to hash
    monkeypatch.setenv("PLAIT_VERIFY_WEIGHTS", "1")
    third = load_model(tmp_path / "m.gguf", dtype="fp32")
    assert "does not match the checksum" in capfd.readouterr().err
    assert torch.equal(_logits(first, ids), _logits(third, ids))
    meta = json.loads(meta_path.read_text())
    del meta["weights"]  # an entry converted before checksums existed
    meta_path.write_text(json.dumps(meta))
    load_model(tmp_path / "m.gguf", dtype="fp32")
    assert json.loads(meta_path.read_text())["weights"]["sha256"]


@pytest.mark.parametrize(
    "dtype,expected", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)]
)
def test_dtypes(tmp_path, tok, dtype, expected):
    directory = save_hf_dir(tiny_hf_model("qwen2", False), tok, tmp_path / "ckpt")
    loaded = load_model(directory, dtype=dtype)
    assert {p.dtype for p in loaded.model.parameters()} == {expected}
    assert loaded.dtype == expected and loaded.device == torch.device("cpu")
    assert torch.isfinite(_logits(loaded, loaded.chat_prompt_ids("hi"))).all()


def test_bad_dtype_and_device(tmp_path, tok):
    directory = save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="bf16, fp16, fp32"):
        load_model(directory, dtype="int8")
    with pytest.raises(ValueError, match="cpu"):
        load_model(directory, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use device='cpu'"):
            load_model(directory, device="cuda")


# ----------------------------------------------------------------------------- errors


def test_unknown_name_lists_bundled_models():
    with pytest.raises(
        UnknownModelError, match=r"smollm2-135m.*qwen2\.5-0\.5b|qwen2\.5-0\.5b.*smollm2-135m"
    ):
        load_model("no-such-model")


def test_missing_path(tmp_path):
    with pytest.raises(MissingModelFilesError, match="no such file"):
        load_model(tmp_path / "absent.gguf")
    with pytest.raises(MissingModelFilesError, match="no such file"):
        load_model("./absent/dir")


def test_directory_without_config_weights_or_tokenizer(tmp_path, tok):
    directory = save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt")
    (directory / "model.safetensors").rename(tmp_path / "weights.bak")
    with pytest.raises(MissingModelFilesError, match=r"no \*\.safetensors"):
        load_model(directory)
    (tmp_path / "weights.bak").rename(directory / "model.safetensors")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (directory / f).unlink()
    with pytest.raises(MissingModelFilesError, match="no tokenizer"):
        load_model(directory)
    (directory / "config.json").unlink()
    with pytest.raises(MissingModelFilesError, match="no config.json"):
        load_model(directory)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors(tmp_path, tok, damage):
    directory = save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3] if damage == "truncate" else os.urandom(len(data)))
    with pytest.raises(CorruptModelError, match="cannot read weights .*re-download"):
        load_model(directory)


def test_weights_that_do_not_fit_the_config(tmp_path, tok):
    directory = save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt")
    config = json.loads((directory / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptModelError, match="do not fit config.json"):
        load_model(directory)
    config["num_hidden_layers"], config["intermediate_size"] = 2, 96
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptModelError, match="do not fit config.json"):
        load_model(directory)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "nan"])
def test_corrupt_gguf(tmp_path, tok, damage):
    hf = tiny_hf_model(seed=6)
    if damage == "nan":
        with torch.no_grad():
            hf.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    path = tmp_path / "m.gguf"
    write_gguf(hf, tok, path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    with pytest.raises(CorruptModelError, match="download or reinstall"):
        load_model(path)
    assert not list_cached()  # nothing half-written under a final name
    leftovers = list(models_dir().iterdir()) if models_dir().exists() else []
    assert leftovers == []


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HubUnavailableError, match="offline.*pass its directory.*smollm2-135m"):
        load_model("someorg/some-model")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "new"


def test_prompt_errors(tmp_path, tok):
    loaded = load_model(save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt"), dtype="fp32")
    with pytest.raises(ValueError, match="empty prompt"):
        loaded.chat_prompt_ids("   ")
    with pytest.raises(ValueError, match="empty prompt"):
        loaded.chat_prompt_ids([])
    with pytest.raises(ValueError, match="context of 256; shorten the prompt"):
        loaded.chat_prompt_ids("x" * 300)


def test_seed_everything_is_deterministic():
    g1 = seed_everything(7)
    a = (torch.rand(3), np.random.rand(2), torch.rand(2, generator=g1))
    g2 = seed_everything(7)
    b = (torch.rand(3), np.random.rand(2), torch.rand(2, generator=g2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(-1)


def test_first_conversion_says_what_it_does_once(tmp_path, tok, capfd):
    write_gguf(tiny_hf_model("llama", True, seed=4), tok, tmp_path / "m.gguf")
    load_model(tmp_path / "m.gguf", dtype="fp32")
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "first load of m" in line]
    assert len(lines) == 1, err
    assert "converting its GGUF" in lines[0] and str(models_dir()) in lines[0] and " s " in lines[0]
    load_model(tmp_path / "m.gguf", dtype="fp32")
    assert "first load" not in capfd.readouterr().err


def _aged(path: Path, seconds: float) -> Path:
    for p in [path, *path.rglob("*")]:
        st = p.stat()
        os.utime(p, (st.st_atime - seconds, st.st_mtime - seconds))
    return path


def test_stale_temporary_entries_are_swept_at_load(tmp_path, tok, capfd):
    """A conversion killed with SIGKILL leaves `.tmp-*` behind: swept after an hour idle; a
    temporary entry that is still being written (a live converter) and real entries stay."""
    models = models_dir()
    dead = models / ".tmp-m-dead"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    _aged(dead, 7200)
    live = models / ".tmp-m-live"
    live.mkdir()
    (live / "model.safetensors").write_bytes(b"\0" * 10)
    _aged(live, 7200)
    (live / "model.safetensors").write_bytes(b"\0" * 20)  # still being written
    recent = models / ".tmp-other-recent"
    recent.mkdir()
    (models / "keep-me").mkdir()
    keep = _aged(models / "keep-me", 7200)  # not a temporary entry: never swept
    bundled = models.parent / "bundled" / "x"
    bundled.mkdir(parents=True)
    half = bundled / ".tmp-x.gguf-abc"
    half.write_bytes(b"\0" * 3_000_000)
    _aged(half, 3700)
    write_gguf(tiny_hf_model("llama", True, seed=5), tok, tmp_path / "m.gguf")
    load_model(tmp_path / "m.gguf", dtype="fp32")
    err = capfd.readouterr().err
    assert not dead.exists() and not half.exists()
    assert live.exists() and recent.exists() and keep.exists()
    removed = [line for line in err.splitlines() if line.startswith("plait: removed")]
    assert len(removed) == 2, err
    assert str(dead) in removed[0] and "(2 MB)" in removed[0] and "2.0 h ago" in removed[0]
    assert str(half) in removed[1] and "(3 MB)" in removed[1]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("rms_norm_eps", -1, "rms_norm_eps"),
        ("num_attention_heads", "x", "num_attention_heads"),
        ("vocab_size", None, "vocab_size"),
        ("max_position_embeddings", "big", "max_position_embeddings"),
        ("head_dim", 3.5, "head_dim"),
        ("hidden_size", 0, "hidden_size must be positive"),
    ],
)
def test_a_wrong_config_field_is_one_clear_error(tmp_path, tok, field, value, says):
    from plait.cli import error_message, is_user_error

    directory = save_hf_dir(tiny_hf_model(), tok, tmp_path / "ckpt")
    config = json.loads((directory / "config.json").read_text())
    config[field] = value
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptModelError) as exc:
        load_model(directory)
    assert is_user_error(exc.value) and says in error_message(exc.value)
    assert "\n" not in error_message(exc.value)


def test_model_config_refuses_bad_numerics():
    from plait.runtime.config import ModelConfig, RopeConfig

    base = dict(family="llama", vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1,
                num_heads=2, num_kv_heads=1, head_dim=4, rope=RopeConfig(rotary_dim=4))  # fmt: skip
    for bad, error in ((dict(rms_eps=-1.0), ValueError), (dict(rms_eps=float("nan")), ValueError),
                       (dict(max_position=2.5), TypeError), (dict(num_heads=True), TypeError)):  # fmt: skip
        with pytest.raises(error):
            ModelConfig(**base, **bad)
    with pytest.raises(ValueError, match="rope theta"):
        RopeConfig(theta=float("nan"))


def test_a_full_disk_during_conversion_is_one_line(tmp_path, tok, monkeypatch):
    import safetensors
    import safetensors.torch

    def full(*a, **k):
        raise safetensors.SafetensorError("Error while serializing: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    write_gguf(tiny_hf_model(seed=8), tok, tmp_path / "m.gguf")
    with pytest.raises(OSError, match="free some disk space"):
        load_model(tmp_path / "m.gguf")
    assert not list(models_dir().iterdir())  # nothing half-written left in the cache
