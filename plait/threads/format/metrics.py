"""Latency metrics from the segment tree, and dataset-level speedup (always with self-parallelism).

Per trajectory (response tokens only; orchestrator-inserted tokens count unless excluded):
- critical path (token latency) = tokens outside blocks + per block (its tokens outside thread
  bodies: tags, outlines, `<Thread>`/`</Thread>` wrappers, glue + its longest thread body);
- total tokens; acceleration eta = 1 - critical/total; self-parallelism = total/critical;
- parallel ratio = fraction of tokens in blocks, under one of two conventions (`PARALLEL_RATIO`):
  "block" (plait's default) counts a block whole, its `<Parallel>` and `</Parallel>` included;
  "inside" (the release's) counts only what lies between them. On one release trajectory they
  differ in the third decimal (0.7973 vs 0.7905); pick one and say which (`stats --json` does).
Per dataset: activation ratio (fraction of trajectories with >= 1 block); speedup vs a baseline =
mean over problems of (baseline mean latency / our mean latency), plus the correct-only and max
(correct-only) variants; `critical_path_stream` is the one-pass twin of `critical_path`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.parser import Block, SegmentTree

ParallelRatio = Literal["block", "inside"]
PARALLEL_RATIO: tuple[ParallelRatio, ...] = ("block", "inside")


@dataclass(slots=True, frozen=True, kw_only=True)
class TrajectoryStats:
    total_tokens: int
    critical_path: int
    parallel_tokens: int  # tokens of blocks, <Parallel> and </Parallel> included
    parallel_tags: int  # how many of them are <Parallel> / </Parallel> tags
    blocks: int
    threads: int
    critical_path_model_only: int | None = None  # inserted tokens excluded (needs the mask)

    @property
    def acceleration(self) -> float:
        """eta = 1 - L_longest / L_total (0 for an empty response)."""
        return 0.0 if self.total_tokens == 0 else 1.0 - self.critical_path / self.total_tokens

    @property
    def self_parallelism(self) -> float:
        return 1.0 if self.critical_path == 0 else self.total_tokens / self.critical_path

    @property
    def parallel_ratio(self) -> float:
        """The "block" convention: whole blocks, their `<Parallel>`/`</Parallel>` included."""
        return self.parallel_ratio_as("block")

    def parallel_ratio_as(self, convention: ParallelRatio) -> float:
        """Fraction of response tokens in blocks: "block" (plait) or "inside" (the release)."""
        if convention not in PARALLEL_RATIO:
            raise ValueError(f"parallel ratio convention must be one of {PARALLEL_RATIO}, got "
                             f"{convention!r}")  # fmt: skip
        tokens = self.parallel_tokens - (self.parallel_tags if convention == "inside" else 0)
        return 0.0 if self.total_tokens == 0 else tokens / self.total_tokens


def _block_latency(b: Block, weight: list[int], base: int) -> int:
    """Critical-path tokens of one block, counting tokens with weight 1 (or 0 if excluded)."""

    def count(a: int, z: int) -> int:
        return sum(weight[a - base : z - base])

    bodies = [count(*t.body) for t in b.threads]
    return count(b.start, b.end) - sum(bodies) + max(bodies, default=0)


def trajectory_stats(tree: SegmentTree, inserted: list[bool] | None = None) -> TrajectoryStats:
    """All per-trajectory metrics; `inserted` (per response token) enables the model-only path."""
    n, base = tree.response_len, tree.prompt_len
    ones = [1] * n
    blocks = tree.blocks
    cp = n - sum(len(b) for b in blocks) + sum(_block_latency(b, ones, base) for b in blocks)
    model_only = None
    if inserted is not None:
        if len(inserted) != n:
            raise ValueError(f"inserted has {len(inserted)} flags for {n} response tokens")
        w = [0 if x else 1 for x in inserted]
        in_blocks = sum(sum(w[b.start - base : b.end - base]) for b in blocks)
        model_only = sum(w) - in_blocks + sum(_block_latency(b, w, base) for b in blocks)
    return TrajectoryStats(
        total_tokens=n, critical_path=cp, parallel_tokens=sum(len(b) for b in blocks),
        parallel_tags=sum(1 + b.closed for b in blocks),
        blocks=len(blocks), threads=sum(len(b.threads) for b in blocks),
        critical_path_model_only=model_only,
    )  # fmt: skip


def critical_path(tree: SegmentTree) -> int:
    return trajectory_stats(tree).critical_path


def critical_path_stream(tokens: list[int], fmt: ThreadFormat, *, prompt_len: int = 0) -> int:
    """One pass over the token stream with the parser's rules (the twin used in tests)."""
    tg = fmt.tags
    cp = cur = mx = 0
    in_block = in_thread = had_thread = False
    for t in tokens[prompt_len:]:
        if in_block and in_thread:
            if t in (tg.thread_end, tg.thread, tg.parallel_end):
                mx, in_thread = max(mx, cur), False
            else:
                cur += 1
                continue
            if t == tg.thread_end:
                cp += 1
                continue
        if in_block:
            if t == tg.thread:
                in_thread, had_thread, cur = True, True, 0
                cp += 1
                continue
            if t == tg.parallel_end:
                cp, in_block = cp + mx + 1, False
                continue
            if had_thread and not fmt.is_tag(t) and not fmt.is_space(t):
                cp, in_block = cp + mx, False  # block cut by text: fall through as sequential
            else:
                cp += 1
                continue
        if t == tg.parallel:
            in_block, had_thread, mx = True, False, 0
        cp += 1
    if in_thread:
        mx = max(mx, cur)
    return cp + (mx if in_block else 0)


def activation_ratio(stats: Sequence[TrajectoryStats]) -> float:
    """Fraction of trajectories with at least one parallel block."""
    if not stats:
        raise ValueError("activation_ratio needs at least one trajectory")
    return sum(s.blocks > 0 for s in stats) / len(stats)


@dataclass(slots=True, frozen=True, kw_only=True)
class Rollout:
    """One rollout of one problem: its token latency, total tokens and correctness."""

    problem: str
    latency: int
    total: int
    correct: bool


@dataclass(slots=True, frozen=True, kw_only=True)
class SpeedupReport:
    problems: int  # problems present in both sets
    speedup: float  # mean over problems of baseline mean latency / our mean latency
    speedup_correct_only: float | None  # problems where both have a correct rollout; correct ones
    max_speedup_correct_only: float | None
    correct_problems: int
    self_parallelism: float  # ours: mean total tokens / mean latency
    baseline_self_parallelism: float
    mean_latency: float
    mean_total: float
    baseline_mean_latency: float
    baseline_mean_total: float

    def summary(self) -> str:
        """One line; speedup is never shown without self-parallelism."""
        co = "n/a" if self.speedup_correct_only is None else f"{self.speedup_correct_only:.3f}x"
        return (
            f"speedup {self.speedup:.3f}x (correct-only {co}, {self.correct_problems}/"
            f"{self.problems} problems) | self-parallelism {self.self_parallelism:.3f}x "
            f"(baseline {self.baseline_self_parallelism:.3f}x) | latency {self.mean_latency:.1f} vs "
            f"{self.baseline_mean_latency:.1f}, total {self.mean_total:.1f} vs {self.baseline_mean_total:.1f}"
        )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def speedup_vs_baseline(ours: Sequence[Rollout], baseline: Sequence[Rollout]) -> SpeedupReport:
    """Per-problem mean of ratios (paper Table 1), with self-parallelism alongside."""
    mine, base = defaultdict(list), defaultdict(list)
    for r in ours:
        mine[r.problem].append(r)
    for r in baseline:
        base[r.problem].append(r)
    common = sorted(set(mine) & set(base))
    if not common:
        raise ValueError(
            "no problem appears in both rollout sets; pass rollouts of the same problems"
        )
    for side, rolls in (("ours", mine), ("baseline", base)):
        empty = [p for p in common if any(r.latency <= 0 for r in rolls[p])]
        if empty:  # a latency ratio over an empty response is undefined
            raise ValueError(f"problem {empty[0]!r} has a rollout with an empty response in "
                             f"{side}; a speedup needs at least one response token per rollout: "
                             "drop those rollouts")  # fmt: skip
    ratios = [
        _mean([r.latency for r in base[p]]) / _mean([r.latency for r in mine[p]]) for p in common
    ]
    correct = []
    for p in common:
        a = [r.latency for r in mine[p] if r.correct]
        b = [r.latency for r in base[p] if r.correct]
        if a and b:
            correct.append(_mean(b) / _mean(a))
    sel_m = [r for p in common for r in mine[p]]
    sel_b = [r for p in common for r in base[p]]
    return SpeedupReport(
        problems=len(common), speedup=_mean(ratios),
        speedup_correct_only=_mean(correct) if correct else None,
        max_speedup_correct_only=max(correct) if correct else None,
        correct_problems=len(correct),
        self_parallelism=_mean([r.total for r in sel_m]) / _mean([r.latency for r in sel_m]),
        baseline_self_parallelism=_mean([r.total for r in sel_b]) / _mean([r.latency for r in sel_b]),
        mean_latency=_mean([r.latency for r in sel_m]), mean_total=_mean([r.total for r in sel_m]),
        baseline_mean_latency=_mean([r.latency for r in sel_b]),
        baseline_mean_total=_mean([r.total for r in sel_b]),
    )  # fmt: skip
