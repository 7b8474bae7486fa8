"""The ThreadWeaver format: tags, the tokenizer binding, reading, checking, writing, measuring.

- `tags`: the eight tag strings; adding them to a tokenizer; initialising their embeddings.
- `codec`: `ThreadFormat` (tag ids + text <-> ids), `CharTokenizer` for tests and synthetic tasks.
- `parser`: token ids -> `SegmentTree` (lenient: any model output parses).
- `validate`: the strict checker; every `FormatError` names a token position and the fix.
- `render`: canonical text and orchestrator-shaped ids from plain strings and `BlockSpec`s.
- `metrics`: critical path, self-parallelism, parallel ratio, speedup vs a baseline.
- `view`: a static HTML page of one trajectory.

Nothing here imports torch (tests/test_imports.py checks it).
"""

from plait.threads.format.codec import TagIds, ThreadFormat
from plait.threads.format.metrics import TrajectoryStats, speedup_vs_baseline, trajectory_stats
from plait.threads.format.parser import SegmentTree, parse
from plait.threads.format.render import BlockSpec, render
from plait.threads.format.validate import FormatError, validate

__all__ = [
    "BlockSpec", "FormatError", "SegmentTree", "TagIds", "ThreadFormat", "TrajectoryStats",
    "parse", "render", "speedup_vs_baseline", "trajectory_stats", "validate",
]  # fmt: skip
