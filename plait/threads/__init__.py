"""plait.threads: ThreadWeaver adaptive parallel reasoning threads.

Sub-packages by concern (imports flow downward: data/training/inference use format):
- `format`: tags, `ThreadFormat`, parser, strict validator, renderer, metrics, HTML view (no torch);
- `inference`: the engine protocol, the orchestrator and its OpenAI-compatible backend (no torch),
  and the runtime backend (`EngineBackend`, torch);
- `training`: units, trie packing, the packed-trie forward (`TrieContext`), SFT, reward, RL loss;
- `data`: trajectory records, stage-1 data generation, synthetic tasks;
- `cli`: `plait threads ...`.
The names below import no torch. `OpenAIBackend`, `OpenAIConfig` (httpx) and
`EngineBackend` (torch) load on first use.
"""

from __future__ import annotations

from typing import Any

from plait.threads.format.codec import TagIds, ThreadFormat
from plait.threads.format.metrics import TrajectoryStats, speedup_vs_baseline, trajectory_stats
from plait.threads.format.parser import SegmentTree, parse
from plait.threads.format.validate import FormatError, validate
from plait.threads.inference.backend_api import (
    Completion,
    CompletionBackend,
    CompletionRequest,
    ScriptedBackend,
)
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig, ThreadRun
from plait.threads.training.reward import RewardConfig, group_advantages, reward
from plait.threads.training.units import Unit, extract_units

_LAZY = {
    "OpenAIBackend": "plait.threads.inference.openai_backend",
    "OpenAIConfig": "plait.threads.inference.openai_backend",
    "EngineBackend": "plait.threads.inference.runtime_backend",
}


def __getattr__(name: str) -> Any:
    """Names whose modules import httpx or torch, loaded when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plait.threads' has no attribute {name!r}")


__all__ = [
    "Completion", "CompletionBackend", "CompletionRequest", "FormatError", "OpenAIBackend",
    "OpenAIConfig", "Orchestrator", "OrchestratorConfig", "RewardConfig", "EngineBackend",
    "ScriptedBackend", "SegmentTree", "TagIds", "ThreadFormat", "ThreadRun", "TrajectoryStats",
    "Unit", "extract_units", "group_advantages", "parse", "reward", "speedup_vs_baseline",
    "trajectory_stats", "validate",
]  # fmt: skip
