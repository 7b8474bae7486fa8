"""One batched forward over the new tokens of several streams that read shared KV segments.

A stream (`StreamInput`) has new `tokens`, a `view` (ordered segments it reads) and a `write_to`
segment (in its view) that receives its tokens; where its tokens sit and what they see is defined
in plait.runtime.attention.plan. A step:
  1) plans (`plan_step`: validation, positions, visibility, reads; pure) and checks token ids;
  2) reserves room in every written segment (the store may move a segment);
  3) picks the attention backend once (`choose_backend`: the named one, or the "fast" policy)
     and builds its context from the plan;
  4) runs the model, whose layers write the new K/V and attend through that context;
  5) advances the written segments' lengths through the store.
`instant=True` lets a stream see other streams' same-step tokens (written earlier in the same
layer); `instant=False` limits other segments to their length at the start of the step.
"""

from __future__ import annotations

from typing import Any

import torch

from plait.runtime.attention.context import AttentionContext
from plait.runtime.attention.plan import StepPlan, StreamInput, plan_step
from plait.runtime.attention.registry import FAST, check_attention, choose_backend
from plait.runtime.checks import check_owner, check_token_ids
from plait.runtime.model import DecoderLM
from plait.runtime.segments import KVStore, Segment

__all__ = ["Runner", "StreamInput"]


class Runner:
    """Runs steps of a `DecoderLM` over segments of a `KVStore`.

    Args:
        model: the decoder.
        store: the KV store (same config, dtype and device as the model).
        attention: "fast" (plait's step kernel for decode steps and its segment kernel for
            longer ones where they run, torch's kernels elsewhere; per-segment partials merged
            exactly), "reference" (float64 views, the twin), or a backend by name
            ("step_kernel", "segment_kernel", "torch"; see plait.runtime.attention.registry).
    """

    def __init__(self, model: DecoderLM, store: KVStore, attention: str = FAST) -> None:
        cfg = model.config
        check_attention(attention, store.device, model.dtype, cfg.head_dim)
        self.model, self.store, self.attention = model, store, attention
        self.max_position = cfg.max_position
        self.allow_beyond_context = False

    def attention_context(
        self, inputs: list[StreamInput], instant: bool = True
    ) -> tuple[StepPlan, AttentionContext]:
        """Steps 1-3 of the module docstring: the plan and the context `step` runs the model
        with (exposed so benchmarks can time attention alone). Calling `attend` on every layer
        writes the new K/V; the segments' lengths only advance in `step`."""
        self._check_inputs(inputs)
        plan = plan_step(inputs, instant, None if self.allow_beyond_context else self.max_position)
        self._check_tokens(plan.tokens)
        for seg, n in zip(plan.write_to, plan.lengths):
            self.store.reserve(seg, n)
        cfg = self.model.config
        backend = choose_backend(
            self.attention, plan.rows, self.store.device, self.model.dtype, cfg.head_dim
        )
        return plan, backend.context(self.store, self.model.rope, plan)

    @torch.inference_mode()
    def step(
        self, inputs: list[StreamInput], instant: bool = True, all_logits: bool = False
    ) -> Any:
        """Run one forward pass; return last-token logits (S, V) as a Tensor, or, with
        `all_logits`, a list of per-stream (T_i, V) tensors."""
        plan, ctx = self.attention_context(inputs, instant)
        device = self.store.device
        ids = torch.tensor(plan.tokens, device=device)  # (T,)
        rows = None
        if not all_logits:
            last = [a + n - 1 for a, n in zip(plan.starts, plan.lengths)]
            rows = torch.tensor(last, device=device)  # (S,)
        logits = self.model(ids, ctx, rows)
        for inp in inputs:
            self.store.advance(inp.write_to, inp.tokens)
        if all_logits:
            return [logits[a : a + n] for a, n in zip(plan.starts, plan.lengths)]
        return logits

    def prefill(
        self,
        segment: Segment,
        tokens: list[int],
        view: list[Segment] | None = None,
        chunk: int = 512,
    ) -> torch.Tensor:
        """Append a long token run to `segment` in chunks; returns the last token's logits (V,)."""
        check_token_ids(tokens)
        if not tokens:
            raise ValueError("prefill needs at least one token")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._check_tokens(tokens)
        view = view if view is not None else [segment]
        self.store.reserve(segment, len(tokens))
        logits = torch.empty(0)
        for i in range(0, len(tokens), chunk):
            logits = self.step([StreamInput(tokens[i : i + chunk], view, segment)])
        return logits[0]

    def _check_inputs(self, inputs: list[StreamInput]) -> None:
        """Types before anything runs: StreamInputs of int token ids over this store's segments
        (a segment of another store would be read from this store's arena)."""
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"inputs must be a list of StreamInput, got {type(inputs).__name__}")
        for i, inp in enumerate(inputs):
            if not isinstance(inp, StreamInput):
                raise TypeError(f"inputs[{i}] must be a StreamInput, got {type(inp).__name__}")
            check_token_ids(inp.tokens, f"inputs[{i}].tokens")
            if not isinstance(inp.view, (list, tuple)):
                raise TypeError(f"inputs[{i}].view must be a list of segments")
            for seg in [*inp.view, inp.write_to]:
                check_owner(seg, self.store.uid, f"a segment of inputs[{i}]")

    def _check_tokens(self, tokens: list[int]) -> None:
        """ValueError for a token id outside the vocabulary (one min and one max per call)."""
        vocab = self.model.config.vocab_size
        low, high = min(tokens), max(tokens)
        if low < 0 or high >= vocab:
            raise ValueError(
                f"token id {low if low < 0 else high} is outside the model's vocabulary "
                f"(0..{vocab - 1}); encode text with this model's tokenizer"
            )
