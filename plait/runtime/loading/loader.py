"""`load_model`: a bundled name, an HF-format directory, a GGUF file or a hub id -> LoadedModel.

Every source ends as an HF-format directory (config.json + safetensors + tokenizer files) that
is read directly into plait's `DecoderLM`, without instantiating a transformers model. GGUF
sources (bundled or not) are dequantised once into plait's cache (see `conversion.py`), so later
loads only read safetensors. A damaged cache entry is rebuilt once, automatically.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plait.runtime import kernels
from plait.runtime.config import ModelConfig
from plait.runtime.loading import conversion, packed
from plait.runtime.loading.bundled import BUNDLED, get_bundled
from plait.runtime.loading.errors import (
    CorruptModelError,
    MissingModelFilesError,
    UnknownModelError,
)
from plait.runtime.loading.hub import hub_snapshot
from plait.runtime.loading.tokenizer import Messages, chat_prompt_ids, eos_token_ids, load_tokenizer
from plait.runtime.loading.weights import one_thread, read_safetensors_dir
from plait.runtime.model import DecoderLM, hf_to_plait_state_dict
from plait.runtime.quant.build import install_packed, is_packed, set_int8
from plait.runtime.rope import Rope

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
    elif dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(
        f"dtype must be one of bf16, fp16, fp32 (or a matching torch dtype), got {dtype!r}"
    )


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = torch.device("meta")  # reported as unsupported below
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


@dataclass(slots=True, kw_only=True)
class LoadedModel:
    """A model ready for inference with its tokenizer."""

    model: DecoderLM  # plait's forward, eval mode, no grads
    tokenizer: Any  # HF fast tokenizer with the chat template
    config: ModelConfig
    name: str  # bundled name, directory/file stem, or hub id
    path: Path  # HF-format directory the weights were read from
    eos_token_ids: tuple[int, ...]  # every id that ends generation
    hf_config: Any  # the transformers config (reference models in tests)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def chat_prompt_ids(
        self, prompt: str | Messages, add_generation_prompt: bool = True
    ) -> list[int]:
        """Ids of `prompt` (text or chat messages) through the chat template.

        Raises ValueError for an empty prompt or one longer than the model's context.
        """
        ids = chat_prompt_ids(self.tokenizer, prompt, add_generation_prompt)
        if len(ids) > self.config.max_position:
            raise ValueError(
                f"prompt is {len(ids)} tokens but {self.name} has a context of "
                f"{self.config.max_position}; shorten the prompt"
            )
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))


def read_hf_config(directory: Path) -> Any:
    """The transformers config in `directory` (MissingModelFilesError if none)."""
    if not (directory / "config.json").is_file():
        raise MissingModelFilesError(
            f"{directory} has no config.json; an HF-format model directory needs config.json, "
            "*.safetensors and tokenizer files (or pass a .gguf file)"
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(directory))
    except Exception as exc:  # noqa: BLE001 - transformers and huggingface_hub raise many types
        first = " ".join(str(exc).split())[:300]  # one line
        raise CorruptModelError(f"cannot parse {directory / 'config.json'}: {first}; fix that "
                                "field or re-download it") from exc  # fmt: skip


def build_model(
    cfg: ModelConfig,
    sd: dict[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device,
    fix: str,
) -> DecoderLM:
    """A DecoderLM holding weights `sd` (transformers names), built without random init.

    The model is created on the meta device and the (cast) checkpoint tensors are assigned as
    its parameters, so a tensor already in the right dtype is used without a copy.
    """
    with torch.device("meta"):
        model = DecoderLM(cfg)
    model.rope = Rope(cfg.rope, cfg.head_dim)  # built on meta above; rebuild on the CPU
    try:
        with one_thread():
            if is_packed(sd):  # GGUF blocks kept quantized (plait.runtime.quant)
                own = install_packed(model, cfg, sd, torch.bfloat16)
            else:
                cast = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
                own = hf_to_plait_state_dict(cast, cfg)
            if model.lm_head is None:
                own.pop("lm_head.weight", None)
            missing, unexpected = model.load_state_dict(own, strict=False, assign=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CorruptModelError(f"weights do not fit config.json: {exc}; {fix}") from exc
    if missing or unexpected:
        raise CorruptModelError(
            f"weights do not fit config.json: missing {missing[:5]}, unexpected {unexpected[:5]}; {fix}"
        )
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:  # NOTE: a parameter the checkpoint did not provide would stay on meta
            raise CorruptModelError(f"weights do not provide {name!r}; {fix}")
    return model.eval().requires_grad_(False)


def load_from_dir(
    directory: Path,
    name: str,
    dtype: torch.dtype,
    device: torch.device,
    fix: str = "re-download the checkpoint",
) -> LoadedModel:
    """Load an HF-format directory into plait's DecoderLM (no transformers model involved).

    The tokenizer is parsed in a helper thread while the weights are read and cast (torch
    releases the GIL), which hides most of its cost.
    """
    hf_cfg = read_hf_config(directory)
    try:
        cfg = ModelConfig.from_hf(hf_cfg)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CorruptModelError(f"{directory / 'config.json'}: {exc}; fix that field") from exc
    with ThreadPoolExecutor(max_workers=1) as pool:
        tok_future = pool.submit(load_tokenizer, directory)
        sd = read_safetensors_dir(directory, fix)
        model = build_model(cfg, sd, dtype, device, fix)
        del sd
        tok = tok_future.result()
    return LoadedModel(
        model=model,
        tokenizer=tok,
        config=cfg,
        name=name,
        path=directory,
        eos_token_ids=eos_token_ids(tok, hf_cfg, directory),
        hf_config=hf_cfg,
    )


def _from_cache(
    make_entry: Any, name: str, mode: str | torch.dtype, device: torch.device
) -> LoadedModel:
    """Load a GGUF's cache entry for `mode` (the dtype argument); a damaged entry is rebuilt
    once from its source. Packed weights meet int8-quantised activations unless mode is
    "gguf-exact"."""
    dtype = packed.compute_dtype(mode) or parse_dtype(mode)
    entry = make_entry(rebuild=False)
    packed.note_dense_types(entry)
    try:
        loaded = load_from_dir(entry, name, dtype, device, fix=f"delete {entry} and load again")
    except (CorruptModelError, MissingModelFilesError) as exc:
        log.warning("cache entry %s is damaged (%s); rebuilding it", entry, exc)
        entry = make_entry(rebuild=True)
        loaded = load_from_dir(entry, name, dtype, device, fix=f"delete {entry} and load again")
    set_int8(loaded.model, packed.int8_activations(mode))
    return loaded


def load_model(
    name_or_path: str | os.PathLike[str],
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a model for inference.

    Args:
        name_or_path: a bundled name (`smollm2-135m`, `qwen2.5-0.5b`), an HF-format directory,
            a `.gguf` file, or a Hugging Face hub id `org/name`.
        dtype: "auto" (GGUF blocks kept quantized on CPUs that run plait's quantized
            kernels, activations quantised to int8 per block as llama.cpp does; otherwise
            bf16), "gguf" (quantized or an error), "gguf-exact" (quantized weights, exact bf16
            activations), "bf16", "fp16" or "fp32" (weights dequantised to that dtype).
        device: "cpu" or "cuda[:N]".

    Returns:
        LoadedModel with `.model` (plait DecoderLM), `.tokenizer`, `.config`, `.eos_token_ids`.
    """
    loaded = _load_model(name_or_path, dtype, device)
    if loaded.model.device.type == "cpu":
        # NOTE: build plait's CPU kernels now (once per machine, ~80 s, with a message), not
        # silently inside the first decode step, where it would count as decoding time
        kernels.available()
    return loaded


def _load_model(
    name_or_path: str | os.PathLike[str],
    dtype: str | torch.dtype,
    device: str | torch.device,
) -> LoadedModel:
    torch_dtype = packed.compute_dtype(dtype) or parse_dtype(dtype)
    dev = parse_device(device)
    text = os.fspath(name_or_path)
    if text in BUNDLED:
        spec = get_bundled(text)
        pk = packed.use_packed(dtype, dev, gguf=True)
        return _from_cache(
            lambda rebuild: conversion.bundled_entry(spec, rebuild, pk), spec.name, dtype, dev
        )
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        gguf = path.resolve()
        pk = packed.use_packed(dtype, dev, gguf=True)
        return _from_cache(
            lambda rebuild: conversion.gguf_entry(gguf, rebuild, pk), gguf.stem, dtype, dev
        )
    packed.use_packed(dtype, dev, gguf=False)  # dtype="gguf" on a dense source: ValueError
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").is_file() and len(ggufs) == 1:
            return _load_model(ggufs[0], dtype, device)
        return load_from_dir(path.resolve(), path.resolve().name, torch_dtype, dev)
    if path.exists():
        raise MissingModelFilesError(
            f"{path} is neither a model directory nor a .gguf file; pass a directory with "
            "config.json + *.safetensors or a .gguf file"
        )
    looks_like_path = (
        text.startswith((".", "/", "~")) or text.lower().endswith(".gguf") or text.count("/") > 1
    )
    if _HUB_ID.fullmatch(text) and not looks_like_path:
        return load_from_dir(hub_snapshot(text), text, torch_dtype, dev)
    if looks_like_path:
        raise MissingModelFilesError(f"no such file or directory: {path}; check the path")
    get_bundled(text)  # raises UnknownModelError listing the known names
    raise UnknownModelError(text)  # pragma: no cover
