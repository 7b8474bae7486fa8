"""Public facade of model loading: `from plait.runtime.loader import load_model`.

The implementation lives in `plait.runtime.loading` (registry, cache, GGUF conversion, the
loader itself); this module re-exports the names users call, so the documented import path
stays stable while the package behind it is reorganised. Library code outside
`plait.runtime.loading` imports `load_model` from here (or from `plait.runtime`).
"""

from __future__ import annotations

from plait.runtime.loading.loader import DTYPES, LoadedModel, load_model, parse_device, parse_dtype

__all__ = ["DTYPES", "LoadedModel", "load_model", "parse_device", "parse_dtype"]
