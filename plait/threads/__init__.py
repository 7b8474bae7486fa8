"""plait.threads: ThreadWeaver adaptive parallel reasoning threads.

Format (`tags`, `format`, `parser`, `validate`, `render`), the engine protocol (`engine_api`), the
orchestrator and its OpenAI-compatible backend, units extraction, metrics, reward, stage-1 data
generation and the CLI. Trie packing, training and the runtime backend live in sibling modules.
Imports here are light (no torch).
"""

from plait.threads.engine_api import Completion, CompletionEngine, CompletionRequest, ScriptedEngine
from plait.threads.format import TagIds, ThreadFormat
from plait.threads.metrics import TrajectoryStats, speedup_vs_baseline, trajectory_stats
from plait.threads.orchestrator import Orchestrator, OrchestratorConfig, ThreadRun
from plait.threads.parser import SegmentTree, parse
from plait.threads.reward import RewardConfig, group_advantages, reward
from plait.threads.units import Unit, extract_units
from plait.threads.validate import FormatError, validate

__all__ = [
    "Completion", "CompletionEngine", "CompletionRequest", "FormatError", "Orchestrator",
    "OrchestratorConfig", "RewardConfig", "ScriptedEngine", "SegmentTree", "TagIds",
    "ThreadFormat", "ThreadRun", "TrajectoryStats", "Unit", "extract_units", "group_advantages",
    "parse", "reward", "speedup_vs_baseline", "trajectory_stats", "validate",
]  # fmt: skip
