"""One batched forward over the new tokens of several streams that read shared KV segments.

A stream has new `tokens`, a `view` (ordered segments it reads) and a `write_to` segment (in its
view) that receives its tokens. Segment i of a view sits at offset = sum of the lengths before it;
the stream's new tokens sit at offset(write_to) + len(write_to) + i. A key is visible to a query
iff its view position <= the query's.

`step` plans once (positions, rotations, visibility limits: `StepPlan`, plain data), then runs the
model with an attention context that, in every layer:
  1) rotates the new keys at their segment-local positions and writes all streams' K/V;
  2) attends each segment once with the stacked, per-stream-rotated queries of all its readers;
  3) merges each query's per-segment partials exactly by log-sum-exp.
`instant=True` lets a stream see other streams' same-step tokens (written in step 1 of the same
layer); `instant=False` limits other segments to their length at the start of the step.
`attention="reference"` replaces 2-3 by an explicit float64 materialisation of every view.
Where plait's CPU kernels run, a step of up to `FUSED_MAX_ROWS` tokens does 1-3 in one kernel call
per layer (`kernels.step_attention`: a row's online softmax carries on across its segments, which
is the exact merge); the per-read path below is its twin and serves longer steps (prefill).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from plait.runtime import kernels
from plait.runtime.attention import (
    batched_attention,
    from_groups,
    gather_index,
    grouped_attention,
    limit_bias,
    merge_gathered,
    plait_kernel_applies,
    to_groups,
)
from plait.runtime.model import AttentionContext, DecoderLM
from plait.runtime.reference import ReferenceAttention
from plait.runtime.rope import apply_rotary
from plait.runtime.segments import KVStore, Segment

FUSED_MAX_ROWS = 64
"""Largest step (new tokens of all streams) whose attention runs as one fused kernel call per
layer. Its work splits over KV heads (x query-head chunks) only, which suits decode steps; longer
steps (prefill chunks) use the per-read kernel, which also splits over segments. 0 disables."""


@dataclass(slots=True)
class StreamInput:
    """New tokens of one stream, the segments it reads, and the segment it writes to."""

    tokens: list[int]
    view: list[Segment]
    write_to: Segment


@dataclass(slots=True)
class SegmentRead:
    """All queries of one step that read one segment."""

    segment: Segment
    rows: torch.Tensor  # (M,) flat query rows
    rel: torch.Tensor  # (M,) query position relative to the segment's start in its view
    visible: int  # keys 0..visible-1 may be read
    limit: torch.Tensor | None  # (M,) last visible key per query, None if all `visible` keys are
    span: tuple[int, int] = (0, 0)  # this read's slice of the step's stacked query rows


@dataclass(slots=True)
class ReadBatch:
    """Reads of equally sized segments at evenly spaced arena slots, attended in one call.

    The segments' K/V are one strided view of the arena: (B, Hkv, L, D) starting at slot `base`
    with `stride` slots between segments; no copy.
    """

    first: int  # index of the first read in plan.reads (the batch's reads are consecutive)
    count: int  # B
    base: int  # arena slot of the first segment
    stride: int  # slots between consecutive segments (their common capacity)
    length: int  # L: keys read per segment (max visible)
    bias: torch.Tensor | None  # (B, 1, M*G, L) additive mask, None if every key is visible
    empty: torch.Tensor | None  # (B, M*G) rows with no visible key, None if none
    limits: torch.Tensor | None = None  # (B, M*G) the same mask as last visible keys (plait kernel)


@dataclass(slots=True)
class StepPlan:
    """Everything index-related about one step, computed once and reused by every layer."""

    input_ids: torch.Tensor  # (T,)
    starts: list[int]  # first flat row of each stream
    lengths: list[int]  # new tokens per stream
    write_slots: list[int]  # first slot written in each stream's write_to
    arena_slots: torch.Tensor  # (T,) arena slot of every new token (filled after reserve)
    positions: torch.Tensor  # (T,) query positions in their stream's view
    key_cos: torch.Tensor  # (T, 1, R) rotation of new keys at segment-local positions
    key_sin: torch.Tensor
    reads: list[SegmentRead]
    read_rows: torch.Tensor  # (N,) rows of all reads stacked (N = sum of M over reads)
    read_cos: torch.Tensor  # (N, 1, R) per-read query rotations, stacked
    read_sin: torch.Tensor
    single_read: bool  # every row reads exactly one segment (no merge needed)
    merge_index: torch.Tensor | None  # (T, R) each row's partials in read_rows order (see merge)
    merge_pad: torch.Tensor | None  # (T, R) unused entries of merge_index, None if none
    batches: list[ReadBatch]  # groups of reads attended in one call (others: one call each)
    fused: bool = False  # one kernels.step_attention call per layer (cos/sin tables float32)
    read_table: torch.Tensor | None = None  # (n, 4) fused: [span start, span end, base, visible]
    entry_limits: torch.Tensor | None = None  # (N,) fused: last visible key of every read entry


class Runner:
    """Runs steps of a `DecoderLM` over segments of a `KVStore`.

    Args:
        model: the decoder.
        store: the KV store (same config, dtype and device as the model).
        attention: "fast" (per-segment partials, LSE merge) or "reference" (float64 views).
        impl: kernel choice for the fast path: "auto", "fused" or "math".
    """

    def __init__(
        self,
        model: DecoderLM,
        store: KVStore,
        attention: Literal["fast", "reference"] = "fast",
        impl: str = "auto",
    ) -> None:
        if attention not in ("fast", "reference"):
            raise ValueError(f"attention must be 'fast' or 'reference', got {attention!r}")
        self.model, self.store, self.attention, self.impl = model, store, attention, impl
        self.max_position = model.config.max_position
        self.allow_beyond_context = False

    # ------------------------------------------------------------------ plan

    def plan(self, inputs: list[StreamInput], instant: bool = True) -> StepPlan:
        """Validate the inputs and compute positions, rotations and visibility for one step."""
        if not inputs:
            raise ValueError("step needs at least one stream input")
        writers: dict[int, int] = {}
        for s, inp in enumerate(inputs):
            if not inp.tokens:
                raise ValueError(f"stream {s} has no new tokens; drop it from this step")
            if not any(seg is inp.write_to for seg in inp.view):
                raise ValueError(
                    f"stream {s}: write_to {inp.write_to.name!r} must be part of its view"
                )
            if len({id(seg) for seg in inp.view}) != len(inp.view):
                raise ValueError(f"stream {s}: a segment appears twice in its view")
            if id(inp.write_to) in writers:
                raise ValueError(
                    f"streams {writers[id(inp.write_to)]} and {s} both write to "
                    f"{inp.write_to.name!r}; give each stream its own segment"
                )
            writers[id(inp.write_to)] = s
        for inp in inputs:  # NOTE: before any slot arithmetic: reserving may move a segment
            self.store.reserve(inp.write_to, len(inp.tokens))
        device, rope = self.store.device, self.model.rope
        new_len = {id(inp.write_to): len(inp.tokens) for inp in inputs}
        # NOTE: index bookkeeping in Python ints, turned into a few tensors at the end: a decode
        # step of 4 workers has ~25 (stream, segment) pairs, and small torch ops per pair cost
        # more than the layer's attention (docs/log.md, session 4)
        starts: list[int] = []
        lengths: list[int] = []
        slots: list[int] = []
        pos_list: list[int] = []  # (T,) query positions in their stream's view
        local_list: list[int] = []  # (T,) positions in the written segment
        row = 0
        per_seg: dict[int, list[tuple[int, int, int, int, int]]] = {}
        segs: dict[int, Segment] = {}
        for s, inp in enumerate(inputs):
            n = len(inp.tokens)
            offsets, off = {}, 0
            for seg in inp.view:
                offsets[id(seg)] = off
                off += (
                    seg.length + new_len.get(id(seg), 0)
                    if (instant or seg is inp.write_to)
                    else seg.length
                )
            base = offsets[id(inp.write_to)] + inp.write_to.length
            if base + n > self.max_position and not self.allow_beyond_context:
                raise ValueError(
                    f"stream {s} would reach position {base + n}, beyond the model's context of "
                    f"{self.max_position} tokens; shorten the prompt or lower the budget"
                )
            starts.append(row)
            lengths.append(n)
            slots.append(inp.write_to.length)
            pos_list.extend(range(base, base + n))
            local_list.extend(range(inp.write_to.length, inp.write_to.length + n))
            for seg in inp.view:
                visible = seg.length + (
                    new_len.get(id(seg), 0) if (instant or seg is inp.write_to) else 0
                )
                per_seg.setdefault(id(seg), []).append((row, n, base, offsets[id(seg)], visible))
                segs[id(seg)] = seg
            row += n
        positions = torch.tensor(pos_list, device=device)  # (T,)
        cfg = self.model.config
        fused = (
            self.attention == "fast"
            and row <= FUSED_MAX_ROWS
            and plait_kernel_applies(device, self.model.dtype, cfg.head_dim, self.impl)
        )
        table_dtype = torch.float32 if fused else self.model.dtype
        kcos, ksin = rope.cos_sin(torch.tensor(local_list, device=device), table_dtype)  # (T, R)
        reads = [self._read(segs[key], entries) for key, entries in per_seg.items()]
        reads, batches = (reads, []) if fused else self._batch_reads(reads)
        at = 0
        for r in reads:
            r.span = (at, at + r.rows.shape[0])
            at = r.span[1]
        qcos, qsin = rope.cos_sin(torch.cat([r.rel for r in reads]), table_dtype)  # (N, R)
        ids = torch.tensor([t for inp in inputs for t in inp.tokens], device=device)
        read_rows = torch.cat([r.rows for r in reads])
        single = all(len(inp.view) == 1 for inp in inputs)
        merge_index, merge_pad = (None, None) if single or fused else gather_index(read_rows, row)
        read_table = entry_limits = None
        if fused:
            read_table = torch.tensor(
                [[*r.span, r.segment.base, r.visible] for r in reads], dtype=torch.long
            )
            entry_limits = torch.cat(
                [
                    r.limit if r.limit is not None else torch.full_like(r.rel, r.visible - 1)
                    for r in reads
                ]
            )
        return StepPlan(
            ids,
            starts,
            lengths,
            slots,
            torch.empty(0, dtype=torch.long),
            positions,
            kcos[:, None],
            ksin[:, None],
            reads,
            read_rows,
            qcos[:, None],
            qsin[:, None],
            single_read=single,
            merge_index=merge_index,
            merge_pad=merge_pad,
            batches=batches,
            fused=fused,
            read_table=read_table,
            entry_limits=entry_limits,
        )

    def _batch_reads(self, reads: list[SegmentRead]) -> tuple[list[SegmentRead], list[ReadBatch]]:
        """Order reads so that runs of evenly spaced, equally sized segments with the same number
        of queries sit together, and describe each run of >= 2 as one `ReadBatch`."""
        keyed: dict[tuple[int, int], list[SegmentRead]] = {}
        for r in reads:
            keyed.setdefault((r.rows.shape[0], r.segment.capacity), []).append(r)
        ordered: list[SegmentRead] = []
        batches: list[ReadBatch] = []
        for (_, cap), group in keyed.items():
            group.sort(key=lambda r: r.segment.base)
            runs: list[list[SegmentRead]] = []
            for r in group:  # split into runs of consecutive ranges (base steps by capacity)
                if runs and r.segment.base == runs[-1][-1].segment.base + cap:
                    runs[-1].append(r)
                else:
                    runs.append([r])
            for run in runs:
                if len(run) >= 2:
                    batches.append(self._read_batch(run, len(ordered)))
                ordered.extend(run)
        return ordered, batches

    def _read_batch(self, run: list[SegmentRead], first: int) -> ReadBatch:
        cfg = self.model.config
        G = cfg.num_heads // cfg.num_kv_heads
        length = max(r.visible for r in run)
        bias = empty = limits = None
        if any(r.limit is not None or r.visible < length for r in run):
            lims = torch.stack(
                [
                    (
                        r.limit if r.limit is not None else torch.full_like(r.rel, r.visible - 1)
                    ).clamp(max=r.visible - 1)
                    for r in run
                ]
            )  # (B, M)
            limits = lims.repeat_interleave(G, dim=-1)  # (B, M*G)
            if not plait_kernel_applies(
                self.store.device, self.model.dtype, cfg.head_dim, self.impl
            ):
                bias = limit_bias(lims, length, G, self.model.dtype)[:, None]  # (B, 1, M*G, L)
                empty = (limits < 0) if bool((lims < 0).any()) else None
        return ReadBatch(
            first,
            len(run),
            run[0].segment.base,
            run[0].segment.capacity,
            length,
            bias,
            empty,
            limits,
        )

    def _read(self, seg: Segment, entries: list[tuple[int, int, int, int, int]]) -> SegmentRead:
        """The reads of one segment; entries are (first row, rows, first position, segment
        offset in that stream's view, keys visible to that stream)."""
        rows: list[int] = []
        rel: list[int] = []
        limits: list[int] = []
        visible = max(e[4] for e in entries)
        for row, n, base, offset, vis in entries:
            rows.extend(range(row, row + n))
            first = base - offset  # position of the first query relative to the segment
            rel.extend(range(first, first + n))
            limits.extend(min(p, vis - 1) for p in range(first, first + n))
        device = self.store.device
        full = min(limits) >= visible - 1
        return SegmentRead(
            seg,
            torch.tensor(rows, device=device),
            torch.tensor(rel, device=device),
            visible,
            None if full else torch.tensor(limits, device=device),
        )

    # ------------------------------------------------------------------ run

    def attention_context(
        self, inputs: list[StreamInput], instant: bool = True
    ) -> tuple[StepPlan, AttentionContext]:
        """Plan one step (reserving its slots) and build the attention context `step` runs the
        model with; exposed so benchmarks can time attention alone. Calling `attend` on every
        layer writes the new K/V, but segment lengths only advance in `step`."""
        plan = self.plan(inputs, instant)
        plan.arena_slots = torch.cat(
            [
                torch.arange(inp.write_to.base + slot, inp.write_to.base + slot + n)
                for inp, slot, n in zip(inputs, plan.write_slots, plan.lengths)
            ]
        ).to(self.store.device)
        if self.attention == "reference":
            return plan, ReferenceAttention(self.store, self.model.rope, inputs, plan, instant)
        return plan, _StepAttention(self.store, plan, inputs, self.impl)

    @torch.inference_mode()
    def step(
        self, inputs: list[StreamInput], instant: bool = True, all_logits: bool = False
    ) -> Any:
        """Run one forward pass; return last-token logits (S, V) as a Tensor, or, with
        `all_logits`, a list of per-stream (T_i, V) tensors."""
        plan, ctx = self.attention_context(inputs, instant)
        rows = (
            None
            if all_logits
            else torch.tensor(
                [a + n - 1 for a, n in zip(plan.starts, plan.lengths)], device=self.store.device
            )
        )
        logits = self.model(plan.input_ids, ctx, rows)
        for inp in inputs:
            inp.write_to.length += len(inp.tokens)
            inp.write_to.tokens.extend(inp.tokens)
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
        if not tokens:
            raise ValueError("prefill needs at least one token")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        view = view if view is not None else [segment]
        self.store.reserve(segment, len(tokens))
        logits = None
        for i in range(0, len(tokens), chunk):
            logits = self.step([StreamInput(tokens[i : i + chunk], view, segment)])
        assert logits is not None
        return logits[0]


class _StepAttention:
    """The fast path's attention context for one step (see the module docstring)."""

    def __init__(
        self, store: KVStore, plan: StepPlan, inputs: list[StreamInput], impl: str
    ) -> None:
        self.store, self.plan, self.inputs, self.impl = store, plan, inputs, impl
        cfg = store.config
        # plait's CPU kernel writes every read straight into one per-layer buffer; its per-row
        # key limits (grouped) are built once per step here, not once per layer
        self.kernel = not plan.fused and plait_kernel_applies(
            store.device, store.dtype, cfg.head_dim, impl
        )
        G = cfg.num_heads // cfg.num_kv_heads
        self.read_limits = [
            None if r.limit is None or not self.kernel else r.limit.repeat_interleave(G)[None]
            for r in plan.reads
        ]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        T, Hq, D = q.shape
        if plan.fused:  # 1-3 in one kernel call
            assert plan.read_table is not None and plan.entry_limits is not None
            return kernels.step_attention(
                q,
                k,
                v,
                self.store.k[layer],
                self.store.v[layer],
                plan.arena_slots,
                plan.key_cos[:, 0],
                plan.key_sin[:, 0],
                plan.read_table,
                plan.read_rows,
                plan.entry_limits,
                plan.read_cos[:, 0],
                plan.read_sin[:, 0],
            ).view(T, Hq * D)
        # 1) rotate new keys at segment-local positions and write every stream's K/V (one copy)
        k = apply_rotary(k, plan.key_cos, plan.key_sin)  # (T, Hkv, D)
        self.store.write_slots(layer, plan.arena_slots, k, v)
        # 2) each segment once, for all its readers' queries; queries of all reads are rotated and
        #    regrouped (Hkv, N*G, D) at once, so a read is a column slice of one tensor
        N, Hkv = plan.read_rows.shape[0], k.shape[1]
        G = Hq // Hkv
        qg = to_groups(apply_rotary(q[plan.read_rows], plan.read_cos, plan.read_sin), Hkv)
        reads = self._kernel_reads if self.kernel else self._torch_reads
        out_g, lse_g = reads(layer, qg, G)  # (Hkv, N*G, D), (Hkv, N*G) (None: not needed)
        out_n = from_groups(out_g, N, Hq)  # (N, Hq, D)
        # 3) exact merge
        if plan.single_read:
            out = torch.empty(T, Hq, D, dtype=q.dtype, device=q.device)
            out[plan.read_rows] = out_n
        else:
            assert plan.merge_index is not None and lse_g is not None
            lse_n = from_groups(lse_g, N, Hq)  # (N, Hq)
            out = merge_gathered(out_n, lse_n, plan.merge_index, plan.merge_pad, q.dtype)
        return out.reshape(T, Hq * D)

    def _torch_reads(
        self, layer: int, qg: torch.Tensor, G: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All reads of one layer through torch's kernels (`batched_attention` /
        `grouped_attention`), concatenated in read order; lse only when a merge needs it."""
        plan = self.plan
        Hkv, _, D = qg.shape
        outs, lses = [], []
        batch_at = {b.first: b for b in plan.batches}
        i = 0
        while i < len(plan.reads):
            if i in batch_at:  # evenly spaced segments: one call over a strided arena view
                bt = batch_at[i]
                a, b = plan.reads[i].span[0], plan.reads[i + bt.count - 1].span[1]
                qb = qg[:, a * G : b * G].reshape(Hkv, bt.count, -1, D).transpose(0, 1)
                kb, vb = (self._strided(arena[layer], bt) for arena in (self.store.k, self.store.v))
                out, lse = batched_attention(qb, kb, vb, bt.bias, bt.empty, self.impl, bt.limits)
                outs.append(out.transpose(0, 1).reshape(Hkv, -1, D))  # (Hkv, B*M*G, D)
                lses.append(lse.transpose(0, 1).reshape(Hkv, -1))
                i += bt.count
                continue
            r = plan.reads[i]
            a, b = r.span
            out, lse = grouped_attention(
                qg[:, a * G : b * G],
                r.segment.keys(layer, r.visible),
                r.segment.values(layer, r.visible),
                r.limit,
                G,
                self.impl,
            )
            outs.append(out)
            lses.append(lse)
            i += 1
        return torch.cat(outs, dim=1), None if plan.single_read else torch.cat(lses, dim=1)

    def _kernel_reads(
        self, layer: int, qg: torch.Tensor, G: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All reads of one layer through plait's kernel into one (Hkv, N*G, D) output and
        (Hkv, N*G) lse buffer: batches and single reads write their column slices in place."""
        plan = self.plan
        Hkv, NG, D = qg.shape
        out_g = torch.empty_like(qg)
        lse_g = torch.empty(Hkv, NG, dtype=torch.float32, device=qg.device)
        batch_at = {b.first: b for b in plan.batches}
        i = 0
        while i < len(plan.reads):
            a = plan.reads[i].span[0] * G
            if i in batch_at:  # (Hkv, B*M*G, D) column slice seen as (B, Hkv, M*G, D)
                bt = batch_at[i]
                b = plan.reads[i + bt.count - 1].span[1] * G
                kb, vb = (self._strided(arena[layer], bt) for arena in (self.store.k, self.store.v))
                kernels.segment_attention(
                    qg[:, a:b].view(Hkv, bt.count, -1, D).transpose(0, 1),
                    kb,
                    vb,
                    bt.limits,
                    out=out_g[:, a:b].view(Hkv, bt.count, -1, D).transpose(0, 1),
                    lse=lse_g[:, a:b].view(Hkv, bt.count, -1).transpose(0, 1),
                )
                i += bt.count
                continue
            r = plan.reads[i]
            b = r.span[1] * G
            kernels.segment_attention(
                qg[None, :, a:b],
                r.segment.keys(layer, r.visible)[None],
                r.segment.values(layer, r.visible)[None],
                self.read_limits[i],
                out=out_g[None, :, a:b],
                lse=lse_g[None, :, a:b],
            )
            i += 1
        return out_g, lse_g

    @staticmethod
    def _strided(arena: torch.Tensor, bt: ReadBatch) -> torch.Tensor:
        """(Hkv, slots, D) arena of one layer -> (B, Hkv, L, D) view of a batch's segments."""
        s_head, s_slot, s_dim = arena.stride()
        return arena.as_strided(
            (bt.count, arena.shape[0], bt.length, arena.shape[2]),
            (bt.stride * s_slot, s_head, s_slot, s_dim),
            arena.storage_offset() + bt.base * s_slot,
        )
