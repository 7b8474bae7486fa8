"""Tiny random checkpoints for loader tests: an HF-format directory and a GGUF file.

Built in a few hundred milliseconds, no download: a byte-level BPE tokenizer with a chat
template, a random transformers Llama or Qwen2 model, and a GGUF writer that lays tensors out as
llama.cpp does (q/k rows interleaved per head for the llama architecture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGE = ("Ġ", "t")  # one BPE merge, so merges are exercised


def tiny_tokenizer() -> Any:
    """Byte-level BPE over the 256 byte symbols plus chat specials (vocab 260)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    for s in [MERGE[0] + MERGE[1], *SPECIALS]:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[MERGE]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def tiny_hf_model(family: str = "llama", tie: bool = True, seed: int = 0, vocab: int = 260) -> Any:
    """A random transformers causal LM (2 layers, 4 query heads, 2 KV heads, head dim 16) whose
    special token ids match `tiny_tokenizer`; built by `tests.helpers.tiny`."""
    from tests.helpers.tiny import tiny_hf

    theta = 10000.0 if family == "llama" else 1000000.0
    return tiny_hf(
        family,
        seed,
        vocab=vocab,
        tie=tie,
        intermediate=128,
        max_position=256,
        rope_theta=theta,
        bos=257,
        eos=259,
    )


def save_hf_dir(model: Any, tokenizer: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's conversion of q/k rows (rotate-half pairs -> adjacent pairs), written here
    independently of plait's `unpermute_qk`."""
    d2 = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, d2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _gguf_name(hf: str) -> str:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf in top:
        return top[hf]
    _, _, idx, rest = hf.split(".", 3)
    return f"blk.{idx}.{_GGUF_NAMES[rest]}"


def write_gguf(
    model: Any, tokenizer: Any, path: Path, quantize: bool = False
) -> dict[str, torch.Tensor]:
    """Write `model` as a GGUF file; returns the HF state dict the file really holds.

    With `quantize`, 2-D weights are stored as Q8_0, and the returned state dict holds their
    dequantised values (what a correct loader must reproduce).
    """
    import gguf
    from gguf.quants import dequantize
    from gguf.quants import quantize as q_quantize

    cfg = model.config
    arch = "llama" if cfg.model_type == "llama" else "qwen2"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_merges([" ".join(MERGE)])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_chat_template(CHAT_TEMPLATE)
    real: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        a = t.detach().float().numpy().copy()
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.num_attention_heads if "q_proj" in name else cfg.num_key_value_heads
            a = llama_cpp_permute(a, heads)
        if quantize and a.ndim == 2:
            qt = gguf.GGMLQuantizationType.Q8_0
            data = q_quantize(a, qt)
            w.add_tensor(_gguf_name(name), data, raw_dtype=qt)
            deq = dequantize(data, qt).reshape(a.shape)
            if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
                heads = cfg.num_attention_heads if "q_proj" in name else cfg.num_key_value_heads
                deq = _inverse_permute(deq, heads)
            real[name] = torch.from_numpy(np.array(deq, dtype=np.float32))
        else:
            w.add_tensor(_gguf_name(name), a)
            real[name] = t.detach().float().clone()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if cfg.tie_word_embeddings:
        real["lm_head.weight"] = real["model.embed_tokens.weight"]
    return real


def _inverse_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    d2 = w.shape[0] // n_head // 2
    return w.reshape(n_head, d2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def fake_packages(root: Path, files: dict[str, tuple[str, bytes]]) -> None:
    """Create importable-looking packages under `root` (put it on sys.path) holding data files.

    Each package's `__init__` raises, so a test fails if plait ever imports one.
    """
    for package, (rel, data) in files.items():
        pkg = root / package.replace("-", "_")
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(
            "raise ImportError('plait must locate, not import, this')\n"
        )
        (pkg / rel).write_bytes(data)


class LoadStopped(Exception):
    """Raised by `stop_at_load` instead of loading a model."""


def stop_at_load(monkeypatch: Any) -> list[Any]:
    """Make `load_model` record its `dtype` and raise LoadStopped: what a command would load."""
    seen: list[Any] = []

    def load(*args: Any, **kw: Any) -> Any:
        seen.append(kw["dtype"])
        raise LoadStopped

    monkeypatch.setattr("plait.runtime.loading.loader.load_model", load)
    return seen
