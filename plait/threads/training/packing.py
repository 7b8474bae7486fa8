"""Packing flattened tries into fixed-length training rows.

A `PackedRow` holds several tries (documents) back to back, then padding. Per token: input id,
position id (= trie depth), entry/exit times (entry = row index; exit offset into the row),
document id (-1 for padding). The loss is given as (row, target) pairs: trained node i is
predicted from the logits of its parent row `parent[i]` (a trie branches, so "the next token"
of a row is not unique; the parent-row formulation covers every branch exactly once).

Tries never see each other: a node's subtree interval lies inside its own document, so the
ancestor mask of `plait.threads.training.mask` needs no document ids; padding nodes see only themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from plait.threads.training.trie import FlatTrie, build_trie


@dataclass(slots=True, kw_only=True)
class PackedRow:
    """One training row: tries back to back, padded to `length`."""

    input_ids: torch.Tensor  # (L,) long
    positions: torch.Tensor  # (L,) long, depth in the trie
    entry: torch.Tensor  # (L,) long, = arange(L)
    exit: torch.Tensor  # (L,) long
    parent: torch.Tensor  # (L,) long, parent row, -1 for a trie root or padding
    doc: torch.Tensor  # (L,) long, document index in `docs`, -1 for padding
    key_start: torch.Tensor  # (L,) long, first row of the token's document (own row for padding)
    loss_rows: torch.Tensor  # (M,) long, rows whose logits predict a trained node
    loss_targets: torch.Tensor  # (M,) long, the trained nodes' token ids
    loss_doc: torch.Tensor  # (M,) long, document of each trained node
    loss_nodes: torch.Tensor  # (M,) long, row index of each trained node
    docs: list[int] = field(default_factory=list)  # caller's ids of the packed tries
    used: int = 0  # non-padding tokens

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


def pack_row(
    tries: Sequence[FlatTrie],
    length: int | None = None,
    *,
    pad_id: int = 0,
    doc_ids: Sequence[int] | None = None,
) -> PackedRow:
    """Concatenate flattened tries into one row, padded to `length` (default: no padding)."""
    used = sum(len(t) for t in tries)
    length = used if length is None else length
    if used > length:
        raise ValueError(
            f"tries hold {used} tokens but the row has {length}; pack them with pack_rows "
            "(which splits across rows) or raise the row length"
        )
    ids, pos, ext, par, doc, kst = [], [], [], [], [], []
    rows, targets, ldoc, nodes = [], [], [], []
    off = 0
    for d, t in enumerate(tries):
        ids += t.tokens
        pos += t.depth
        ext += [x + off for x in t.exit]
        par += [p + off if p >= 0 else -1 for p in t.parent]
        doc += [d] * len(t)
        kst += [off] * len(t)
        for i, flag in enumerate(t.trained):
            if flag:
                rows.append(t.parent[i] + off)
                targets.append(t.tokens[i])
                ldoc.append(d)
                nodes.append(i + off)
        off += len(t)
    pad = length - used
    ids += [pad_id] * pad
    pos += [0] * pad
    ext += list(range(used, length))
    par += [-1] * pad
    doc += [-1] * pad
    kst += list(range(used, length))
    long = torch.long
    return PackedRow(
        input_ids=torch.tensor(ids, dtype=long),
        positions=torch.tensor(pos, dtype=long),
        entry=torch.arange(length, dtype=long),
        exit=torch.tensor(ext, dtype=long),
        parent=torch.tensor(par, dtype=long),
        doc=torch.tensor(doc, dtype=long),
        key_start=torch.tensor(kst, dtype=long),
        loss_rows=torch.tensor(rows, dtype=long),
        loss_targets=torch.tensor(targets, dtype=long),
        loss_doc=torch.tensor(ldoc, dtype=long),
        loss_nodes=torch.tensor(nodes, dtype=long),
        docs=list(range(len(tries))) if doc_ids is None else list(doc_ids),
        used=used,
    )


@dataclass(slots=True, kw_only=True)
class PackReport:
    """What packing kept and dropped."""

    rows: int = 0
    tokens: int = 0  # non-padding tokens in all rows
    padding: int = 0
    unit_tokens: int = 0  # sum over kept units of len(context) + len(completion)
    dropped_units: dict[int, list[int]] = field(default_factory=dict)  # trajectory -> unit idx
    dropped_trajectories: list[int] = field(default_factory=list)  # nothing fitted at all

    @property
    def n_dropped_units(self) -> int:
        return sum(len(v) for v in self.dropped_units.values())


def pack_rows(
    trajectories: Sequence[Sequence[object]],
    row_length: int,
    *,
    pad_id: int = 0,
    pad_to_length: bool = True,
) -> tuple[list[PackedRow], PackReport]:
    """Build one trie per trajectory (whole units dropped on overflow) and first-fit them into rows.

    Args:
        trajectories: per trajectory, its units (full-trajectory unit first, see `build_trie`).
        row_length: tokens per row; a trie never spans two rows.
        pad_id: token id of padding.
        pad_to_length: pad every row to `row_length` (else rows end at their last token).

    Returns:
        (rows, report). `PackedRow.docs` holds the trajectory indices packed in that row.
    """
    if row_length < 1:
        raise ValueError(f"row_length must be >= 1, got {row_length}")
    report = PackReport()
    tries: list[tuple[int, FlatTrie]] = []
    for ti, units in enumerate(trajectories):
        flat = build_trie(units, capacity=row_length)
        if flat.dropped:
            report.dropped_units[ti] = list(flat.dropped)
        if not flat.kept:
            report.dropped_trajectories.append(ti)
            continue
        report.unit_tokens += sum(len(p) for p in flat.unit_paths)
        tries.append((ti, flat))
    bins: list[list[tuple[int, FlatTrie]]] = []
    free: list[int] = []
    for item in tries:
        n = len(item[1])
        for b, room in enumerate(free):
            if n <= room:
                bins[b].append(item)
                free[b] -= n
                break
        else:
            bins.append([item])
            free.append(row_length - n)
    rows = []
    for members in bins:
        row = pack_row(
            [t for _, t in members],
            row_length if pad_to_length else None,
            pad_id=pad_id,
            doc_ids=[ti for ti, _ in members],
        )
        rows.append(row)
        report.tokens += row.used
        report.padding += row.length - row.used
    report.rows = len(rows)
    return rows, report
