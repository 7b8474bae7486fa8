"""Loading GGUF files with their blocks kept packed: default on capable CPUs, separate versioned
cache entries, the same model as a bf16 load (to bf16 rounding), refusals named clearly."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.cache_dir import read_meta
from plait.runtime.kernels import quant as qk
from plait.runtime.loading import conversion
from plait.runtime.loading.loader import load_model
from plait.runtime.quant.build import packed_types, resident_bytes
from plait.runtime.quant.weight import QuantEmbedding, QuantLinear
from tests.helpers.checkpoints import save_hf_dir, tiny_hf_model, tiny_tokenizer, write_gguf

pytestmark = [
    pytest.mark.usefixtures("plait_cache"),
    pytest.mark.skipif(not qk.available(), reason=f"quant kernels: {qk.why_not()}"),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _logits(loaded, ids):
    x = torch.tensor(ids)
    with torch.inference_mode():
        return loaded.model(x, causal_context(loaded.model.rope, len(ids))).float()


@pytest.mark.parametrize("family,tie", [("llama", True), ("qwen2", False)])
def test_packed_load_is_the_bf16_model(tmp_path, tok, family, tie):
    hf = tiny_hf_model(family, tie, seed=3)
    write_gguf(hf, tok, tmp_path / "m.gguf", quantize=True)  # Q8_0 matrices
    packed = load_model(tmp_path / "m.gguf", dtype="gguf-exact")  # exact bf16 activations
    fast = load_model(tmp_path / "m.gguf")  # auto: packed on this CPU, int8 activations
    dense = load_model(tmp_path / "m.gguf", dtype="bf16")
    ref = load_model(tmp_path / "m.gguf", dtype="fp32")
    assert packed.path.name.endswith("-packed") and packed.path != dense.path
    assert packed_types(packed.model) and not packed_types(dense.model)
    assert isinstance(packed.model.embed, QuantEmbedding)
    assert isinstance(packed.model.layers[0].qkv, QuantLinear) and packed.dtype == torch.bfloat16
    assert resident_bytes(packed.model) < resident_bytes(dense.model)
    ids = packed.chat_prompt_ids("hello there")
    lp, ld, lr = _logits(packed, ids), _logits(dense, ids), _logits(ref, ids)
    # the packed model is the bf16 model: it sits as close to fp32 as bf16 does (2x margin)
    bf16_err = (ld - lr).abs().max().item()
    assert (lp - lr).abs().max().item() <= 2 * bf16_err + 1e-3
    # auto: the same entry, activations rounded to int8 per block: close, not as close
    assert fast.path == packed.path and fast.model.layers[0].qkv.weight.int8
    assert not packed.model.layers[0].qkv.weight.int8
    tiled = [m.weight.tiled for m in fast.model.modules() if isinstance(m, QuantLinear)]
    assert any(any(t) for t in tiled)  # int8: Q8_0 matrices of whole 16-row tiles are tiled
    assert not any(m.weight.tiled[0] for m in packed.model.modules() if isinstance(m, QuantLinear))
    lf = _logits(fast, ids)
    assert (lf - lr).norm() / lr.norm() < 0.05 and not torch.equal(lf, lp)
    meta = read_meta(packed.path)
    assert (
        meta is not None and meta["weight_format"] == "packed" and meta["packed_types"] == ["Q8_0"]
    )
    assert meta["source"]["layout"] == conversion.PACKED
    assert meta["resident_bytes"] < read_meta(dense.path)["resident_bytes"]  # type: ignore[index]


def test_entries_are_versioned(tmp_path, tok, monkeypatch):
    write_gguf(tiny_hf_model("qwen2", False), tok, tmp_path / "m.gguf", quantize=True)
    load_model(tmp_path / "m.gguf", dtype="gguf")
    load_model(tmp_path / "m.gguf", dtype="bf16")
    calls: list[object] = []
    real = conversion.convert_gguf
    monkeypatch.setattr(conversion, "convert_gguf", lambda *a: calls.append(a) or real(*a))
    load_model(tmp_path / "m.gguf", dtype="gguf")
    load_model(tmp_path / "m.gguf", dtype="bf16")
    assert calls == []  # both entries reused, each by its own path
    monkeypatch.setattr(conversion, "PACKED", "packed-next")  # a new packed layout
    load_model(tmp_path / "m.gguf", dtype="gguf")
    load_model(tmp_path / "m.gguf", dtype="bf16")
    assert len(calls) == 1 and calls[0][4] is True  # only the packed entry is rebuilt


def test_gguf_dtype_needs_a_gguf_source(tmp_path, tok):
    directory = save_hf_dir(tiny_hf_model("qwen2", False), tok, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="not a GGUF file.*use dtype bf16"):
        load_model(directory, dtype="gguf")
    assert load_model(directory).dtype == torch.bfloat16  # auto: HF weights load as bf16
