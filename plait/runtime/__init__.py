"""plait.runtime: plait's own decoder forward, shared KV segments, view attention, sampling.

Public names (import from here): `load_model`, `DecoderLM`, `ModelConfig`, `KVStore`, `Segment`,
`Runner`, `StreamInput`, `SamplingParams`, `Sampler`, `DenseContext`, `generate`.
Heavy imports happen on first attribute access, so `import plait.runtime` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_model": "plait.runtime.loading.loader",
    "LoadedModel": "plait.runtime.loading.loader",
    "DecoderLM": "plait.runtime.model",
    "ModelConfig": "plait.runtime.config",
    "RopeConfig": "plait.runtime.config",
    "KVStore": "plait.runtime.segments",
    "Segment": "plait.runtime.segments",
    "Runner": "plait.runtime.runner",
    "StreamInput": "plait.runtime.runner",
    "SamplingParams": "plait.runtime.sampling",
    "Sampler": "plait.runtime.sampling",
    "DenseContext": "plait.runtime.attention.dense",
    "generate": "plait.runtime.generate",
    "generate_tokens": "plait.runtime.generate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plait.runtime' has no attribute {name!r}")
