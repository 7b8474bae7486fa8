"""GGUF -> safetensors cache entries: build once, reuse while the source is unchanged.

An entry `<cache>/models/<key>/` holds config.json (plain, unquantised), model.safetensors
(dequantised; dtypes in `gguf_file.storage_dtype`; or, in a packed entry `<key>-packed`, the
GGUF's matrices kept as packed blocks, see plait.runtime.quant), the tokenizer files with the chat
template, generation_config.json (end-of-sequence ids) and `plait-cache.json` (written last:
what source it was built from).
An entry is reused only while that source record matches; otherwise it is rebuilt atomically.
Looking an entry up first sweeps temporary entries that interrupted conversions left behind.
The record also holds model.safetensors' sha256, size and mtime, written at conversion: a lookup
re-hashes the weights when their size or mtime changed (or always, with PLAIT_VERIFY_WEIGHTS=1)
and rebuilds an entry whose weights no longer match, with one stderr line. An entry converted
before checksums existed gets its record on first use.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from plait.outputs import atomic_write_text
from plait.runtime.cache_dir import (
    CACHE_FORMAT,
    META_FILE,
    atomic_dir,
    models_dir,
    read_meta,
    sweep_stale,
)
from plait.runtime.config import ModelConfig
from plait.runtime.loading import gguf_file
from plait.runtime.loading.bundled import BundledModel, fingerprint, part_paths, resolve_gguf
from plait.runtime.loading.tokenizer import eos_token_ids
from plait.runtime.loading.weights import SINGLE_FILE, check_finite, one_thread, write_safetensors

VERIFY_ENV = "PLAIT_VERIFY_WEIGHTS"  # 1: hash the weights at every lookup


def _valid(entry: Path, source: dict[str, Any]) -> bool:
    meta = read_meta(entry)
    return (
        meta is not None
        and meta.get("source") == source
        and (entry / "config.json").is_file()
        and (entry / SINGLE_FILE).is_file()
        and _weights_match(entry, meta)
    )


def _weights_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    st = path.stat()
    return {"sha256": h.hexdigest(), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _weights_match(entry: Path, meta: dict[str, Any]) -> bool:
    """Whether model.safetensors is what the conversion wrote (hashed only when its size or
    mtime changed, or with PLAIT_VERIFY_WEIGHTS=1); False (one stderr line) when it is not."""
    path, rec = entry / SINGLE_FILE, meta.get("weights")
    if not isinstance(rec, dict):  # converted before checksums: record what is there now
        meta["weights"] = _weights_record(path)
        with contextlib.suppress(OSError):  # a read-only cache keeps working, unrecorded
            atomic_write_text(entry / META_FILE, json.dumps(meta, indent=2))
        return True
    st = path.stat()
    if (st.st_size, st.st_mtime_ns) == (
        rec.get("size"),
        rec.get("mtime_ns"),
    ) and not os.environ.get(VERIFY_ENV):
        return True
    if st.st_size == rec.get("size") and _weights_record(path)["sha256"] == rec.get("sha256"):
        return True
    print(f"plait: {path} does not match the checksum written when it was converted (changed "
          "or damaged since); rebuilding the entry", file=sys.stderr)  # fmt: skip
    return False


# Seconds per MB of GGUF for a first conversion, fitted on 2 cores (docs/log.md, 2026-11-29:
# smollm2-135m 98 MB 32 s, qwen2.5-0.5b 491 MB 116 s with the machine busy). Most of it is
# transformers parsing the GGUF metadata (config, tokenizer) and the dequantisation.
_BASE_S, _S_PER_MB = 10.0, 0.2


def _announce(gguf_path: Path, entry: Path, name: str) -> None:
    """The one line a first conversion prints: what it does, where, and about how long."""
    mb = gguf_path.stat().st_size / 1e6
    eta = _BASE_S + _S_PER_MB * mb
    about = f"{eta:.0f} s" if eta < 90 else f"{eta / 60:.0f} min"
    print(
        f"plait: first load of {name}: converting its GGUF ({mb:.0f} MB) into a safetensors "
        f"cache at {entry}, about {about} on 2 cores (once; later loads take about a second)",
        file=sys.stderr,
    )


PACKED = "packed-3"
"""`layout` of a packed entry's source record: bump when the packed layout changes (entries
built before are then rebuilt, never read with another layout). Dense entries have none."""


def _source(base: dict[str, Any], packed: bool) -> dict[str, Any]:
    return {**base, "layout": PACKED} if packed else base


def resident_bytes(sd: dict[str, Any]) -> dict[str, Any]:
    """What a load of this entry holds in memory: packed blocks as stored, every floating
    tensor as bf16; and the GGUF types kept packed."""
    from plait.runtime.quant.formats import NAMES
    from plait.runtime.quant.weight import QMETA, QPACK

    total, types = 0, set()
    for k, v in sd.items():
        if k.endswith(QMETA):
            types.add(NAMES[int(v[0])])
        elif k.endswith(QPACK):
            total += v.numel()
        else:
            total += v.numel() * 2
    return {"resident_bytes": total, "packed_types": sorted(types)}


def entry_name(key: str, packed: bool) -> str:
    """Directory name of a cache entry: packed and dense entries of one model live side by side."""
    return f"{key}-packed" if packed else key


def convert_gguf(
    gguf_path: Path, entry: Path, name: str, source: dict[str, Any], packed: bool = False
) -> Path:
    """Convert `gguf_path` into the cache entry `entry` (replacing any old one atomically):
    dequantised, or with `packed` its matrices kept as packed blocks.

    Prints one line first and, on a terminal, a progress bar over the conversion's steps.
    """
    fix = f"the GGUF file {gguf_path} is corrupt; download or reinstall it"
    with atomic_dir(entry) as tmp, one_thread():
        reader = gguf_file.open_gguf(gguf_path)
        _announce(gguf_path, entry, name)  # the cache is writable and the file a GGUF
        # steps: config, one per tensor, check, write, tokenizer
        steps = len(reader.tensors) + 4
        with tqdm(
            total=steps, desc="reading the config", unit="step", disable=None, leave=False
        ) as bar:
            hf_cfg = gguf_file.hf_config(gguf_path, reader)
            ModelConfig.from_hf(hf_cfg)  # refuse unsupported models before writing gigabytes
            bar.update()
            bar.set_description("dequantising")
            sd = gguf_file.state_dict(reader, hf_cfg, progress=bar.update, packed=packed)
            if hf_cfg.tie_word_embeddings:
                sd.pop("lm_head.weight", None)
            bar.set_description("checking")
            check_finite(sd, str(gguf_path), fix)
            resident = resident_bytes(sd)
            bar.update()
            bar.set_description("writing safetensors")
            hf_cfg.save_pretrained(str(tmp))
            write_safetensors(sd, tmp / SINGLE_FILE)
            del sd
            bar.update()
            bar.set_description("converting the tokenizer")
            tok = gguf_file.tokenizer(gguf_path)
            tok.save_pretrained(str(tmp))
            bar.update(bar.total - bar.n)
        extra: dict[str, Any] = {"weight_format": "packed" if packed else "bf16", **resident}
        if packed:
            extra["dense_types"] = gguf_file.dense_types(reader)
        _write_metadata(tmp, hf_cfg, tok, name, source, extra)
    return entry


def _write_metadata(
    tmp: Path, hf_cfg: Any, tok: Any, name: str, source: dict[str, Any], extra: dict[str, Any]
) -> None:
    """generation_config.json (end-of-sequence ids), then the cache record, written last."""
    gen = {"bos_token_id": hf_cfg.bos_token_id, "eos_token_id": list(eos_token_ids(tok, hf_cfg))}
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
    meta = {
        "format": CACHE_FORMAT,
        "name": name,
        "family": ModelConfig.from_hf(hf_cfg).family,
        "source": source,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights": _weights_record(tmp / SINGLE_FILE),  # checked at each lookup (_weights_match)
        **extra,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))


def bundled_entry(spec: BundledModel, rebuild: bool = False, packed: bool = False) -> Path:
    """Cache entry of a bundled model, built (with sha256 verification) if absent or stale."""
    sweep_stale()
    base = {"kind": "bundled", "sha256": spec.sha256, "parts": fingerprint(part_paths(spec))}
    source = _source(base, packed)
    entry = models_dir() / entry_name(spec.name, packed)
    if not rebuild and _valid(entry, source):
        return entry
    gguf_path = resolve_gguf(spec)  # verifies the sha256 (HashMismatchError on a mismatch)
    return convert_gguf(gguf_path, entry, spec.name, source, packed)


def gguf_key(path: Path) -> str:
    """Cache key of a user GGUF file: readable stem plus a hash of its absolute path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-") or "model"
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def gguf_entry(path: Path, rebuild: bool = False, packed: bool = False) -> Path:
    """Cache entry of a user GGUF file, rebuilt whenever the file's size or mtime changes."""
    sweep_stale()
    source = _source({"kind": "gguf", "file": fingerprint([path])}, packed)
    entry = models_dir() / entry_name(gguf_key(path), packed)
    if not rebuild and _valid(entry, source):
        return entry
    return convert_gguf(path, entry, path.stem, source, packed)
