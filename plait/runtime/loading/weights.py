"""Safetensors reading and writing for HF-format model directories and plait's cache.

`read_safetensors_dir` accepts a single `model.safetensors`, a sharded checkpoint with
`model.safetensors.index.json`, or any `*.safetensors` files in the directory. Unreadable,
truncated or non-finite weights raise CorruptModelError naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from plait.runtime.loading.errors import CorruptModelError, MissingModelFilesError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def safetensors_files(directory: Path) -> list[Path]:
    """Weight files of an HF-format directory, in a stable order."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptModelError(
                f"cannot parse {index}: {exc}; re-download the checkpoint"
            ) from exc
        files = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise MissingModelFilesError(
                f"{index} lists shards that are missing: {missing}; download them into {directory}"
            )
        return files
    if (directory / SINGLE_FILE).is_file():
        return [directory / SINGLE_FILE]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise MissingModelFilesError(
            f"no *.safetensors weights in {directory}; put model.safetensors (or shards with "
            f"{INDEX_FILE}) next to config.json, or pass a .gguf file instead"
        )
    return files


def read_safetensors(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """All tensors of one file; CorruptModelError (with `fix` appended) if it cannot be read."""
    from safetensors.torch import load_file

    try:
        try:
            # NOTE: read into owned memory (pread), never mmap: a model whose parameters are
            # mapped pages would crash (SIGBUS) if the file were truncated while in use.
            return load_file(str(path), backend="pread")
        except TypeError:  # safetensors < 0.8 has no `backend`
            return {k: v.clone() for k, v in load_file(str(path)).items()}
    except Exception as exc:  # safetensors raises its own SafetensorError, plus OSError
        raise CorruptModelError(f"cannot read weights {path}: {exc}; {fix}") from exc


def read_safetensors_dir(
    directory: Path, fix: str = "re-download the checkpoint"
) -> dict[str, torch.Tensor]:
    """Every tensor of an HF-format directory, keyed by transformers parameter name."""
    out: dict[str, torch.Tensor] = {}
    for path in safetensors_files(directory):
        out.update(read_safetensors(path, fix))
    return out


def check_finite(sd: dict[str, torch.Tensor], where: str, fix: str) -> None:
    """CorruptModelError if any floating tensor holds NaN or infinity."""
    for name, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CorruptModelError(f"{where}: tensor {name!r} contains NaN or inf; {fix}")


def write_safetensors(sd: dict[str, torch.Tensor], path: Path) -> None:
    """Write `sd` as one safetensors file (tensors must not share storage: drop tied copies)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except Exception as exc:  # safetensors raises its own SafetensorError for I/O failures
        if isinstance(exc, OSError) or type(exc).__name__ != "SafetensorError":
            raise
        raise OSError(f"cannot write {path} ({exc}); free some disk space (or set "
                      "PLAIT_CACHE_DIR to a disk with room) and load again") from None  # fmt: skip


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (for memory-bound weight copies).

    NOTE: on a busy 2-core machine, torch.cat of SmolLM2's fused weights took 1.7 s with two
    intra-op threads and 0.06 s with one (thread oversubscription); copies gain nothing from
    a second thread anyway.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
