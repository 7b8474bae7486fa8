"""plait.runtime.attention: how a `DecoderLM` step attends over shared KV segments.

  context         `AttentionContext` (what the model calls once per layer) and `Backend`
  plan            `StreamInput`, `StepPlan` and the pure `plan_step`: positions, visibility and
                  reads of one step, backend-neutral, in Python ints
  registry        `BACKENDS` by name and `choose_backend`, the one place that picks a step's path
  step_kernel     backend: plait's step kernel, one call per layer (decode steps)
  segment_kernel  backend: plait's segment kernel per read batch + LSE merge (prefill chunks)
  torch_reads     backend "torch": torch's kernels per read batch + LSE merge (any device)
  reference       backend: float64 materialised views, the twin of the others
  per_read        the per-read path the segment_kernel and torch backends share
  partials        partial attention over one segment (out, lse), batched reads, the LSE merges
  dense           `DenseContext`, `causal_context`: explicit positions and mask, no cache
A backend turns a `StepPlan` into its own tables once per step and returns the context that
every layer calls; `plait.runtime.runner.Runner` plans, reserves, picks and runs.
"""

from plait.runtime.attention.context import AttentionContext, Backend
from plait.runtime.attention.dense import DenseContext, causal_context
from plait.runtime.attention.partials import (
    batched_attention,
    from_groups,
    gather_index,
    grouped_attention,
    limit_bias,
    merge_gathered,
    partial_attention,
    to_groups,
)
from plait.runtime.attention.plan import SegmentRead, StepPlan, StreamInput, plan_step
from plait.runtime.attention.registry import BACKENDS, FAST, choose_backend

__all__ = [
    "BACKENDS",
    "FAST",
    "AttentionContext",
    "Backend",
    "DenseContext",
    "SegmentRead",
    "StepPlan",
    "StreamInput",
    "batched_attention",
    "causal_context",
    "choose_backend",
    "from_groups",
    "gather_index",
    "grouped_attention",
    "limit_bias",
    "merge_gathered",
    "partial_attention",
    "plan_step",
    "to_groups",
]
