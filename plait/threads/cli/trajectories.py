"""`plait threads validate | normalize | stats | view`: commands that read a trajectory file."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from typing import Any

from plait.errors import UsageError
from plait.jsonl import dumps_line
from plait.outputs import atomic_write_text, check_writable
from plait.threads.cli.common import emit, load
from plait.threads.data.records import TrajectoryRecord
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.lenient import Normalized, normalize
from plait.threads.format.metrics import TrajectoryStats, trajectory_stats
from plait.threads.format.parser import parse
from plait.threads.format.validate import explain, validate


def _normalized(r: TrajectoryRecord, fmt: ThreadFormat) -> Normalized:
    if fmt.out_of_vocabulary(r.tokens) is not None:  # the validator reports it; nothing to fix
        return Normalized(tokens=r.tokens, prompt_len=r.prompt_len)
    return normalize(r.tokens, fmt, prompt_len=r.prompt_len)


def cmd_validate(args: argparse.Namespace) -> int:
    if args.max_outlines < 1:
        raise UsageError(f"--max-outlines must be >= 1, got {args.max_outlines}")
    fmt, recs = load(args, check_vocab=False)
    report: list[dict[str, Any]] = []
    lines: list[str] = []
    for i, r in enumerate(recs):
        norm = _normalized(r, fmt) if args.lenient else None
        tokens = norm.tokens if norm else r.tokens
        errs = validate(tokens, fmt, prompt_len=r.prompt_len, max_outlines=args.max_outlines)
        entry: dict[str, Any] = {"index": i, "valid": not errs, "errors": [
            {"pos": e.pos, "code": e.code, "message": e.message} for e in errs]}  # fmt: skip
        fixed = ""
        if norm is not None:
            entry["fixes"] = [dataclasses.asdict(x) for x in norm.fixes]
            codes = Counter(x.code for x in norm.fixes)
            fixed = (
                f" (normalised: {', '.join(f'{c} x{n}' for c, n in codes.items())})"
                if codes
                else ""
            )
        report.append(entry)
        lines.append(f"#{i}: ok{fixed}" if not errs else f"#{i}: {len(errs)} error(s){fixed}")
        lines += [f"  {explain(tokens, fmt, e)}" for e in errs]
    n_ok = sum(1 for x in report if x["valid"])
    where = " (positions index the normalised tokens)" if args.lenient and n_ok < len(recs) else ""
    lines.append(f"{n_ok}/{len(recs)} valid{' after normalising' if args.lenient else ''}{where}")
    obj = {"valid": n_ok, "total": len(recs), "lenient": args.lenient, "trajectories": report}
    emit(args, obj, "\n".join(lines))
    return 0 if n_ok == len(recs) else 1


def _canonical_record(r: TrajectoryRecord, norm: Normalized, fmt: ThreadFormat) -> dict[str, Any]:
    """The record in its input form, with the normalised response."""
    meta = {k: v for k, v in r.to_dict().items()
            if k in ("problem", "correct", "stop_reason") and v is not None}  # fmt: skip
    if r.text_form:
        return {"prompt": r.prompt or "", "response": fmt.decode(norm.tokens[r.prompt_len :]),
                **meta}  # fmt: skip
    inserted = r.inserted if not norm.fixes else None  # the orchestrator's mask no longer aligns
    out = {"tokens": norm.tokens, "prompt_len": r.prompt_len, "inserted": inserted, **meta}
    if r.logprobs is not None and not norm.fixes:  # per token: kept only if the tokens are
        out["logprobs"] = r.logprobs
    return out | ({"prompt": r.prompt} if r.prompt is not None else {})


def cmd_normalize(args: argparse.Namespace) -> int:
    check_writable(args.out, "--out", [("FILE", args.file)])
    fmt, recs = load(args)
    out_lines, changed, codes = [], 0, Counter[str]()
    for i, r in enumerate(recs):
        norm = normalize(r.tokens, fmt, prompt_len=r.prompt_len)
        errs = validate(norm.tokens, fmt, prompt_len=r.prompt_len)
        if errs and not args.keep_invalid:
            raise UsageError(
                f"{args.file}: trajectory #{i} is still invalid after normalising "
                f"({explain(norm.tokens, fmt, errs[0])}); fix it by hand or pass --keep-invalid"
            )
        changed += bool(norm.fixes)
        codes.update(x.code for x in norm.fixes)
        out_lines.append(dumps_line(_canonical_record(r, norm, fmt)))
    atomic_write_text(args.out, "\n".join(out_lines) + "\n")
    obj = {"trajectories": len(recs), "changed": changed, "fixes": dict(codes), "out": args.out}
    text = f"{changed}/{len(recs)} trajectories changed ({dict(codes) or 'no fixes'}); wrote {args.out}"
    emit(args, obj, text)
    return 0


def _stats(recs: list[TrajectoryRecord], fmt: ThreadFormat) -> list[TrajectoryStats]:
    return [trajectory_stats(parse(r.tokens, fmt, prompt_len=r.prompt_len), r.inserted)
            for r in recs]  # fmt: skip


def _rollouts(recs: list[TrajectoryRecord], stats: list[TrajectoryStats], what: str) -> list[Any]:
    from plait.threads.format.metrics import Rollout

    missing = [i for i, r in enumerate(recs) if r.problem is None]
    if missing:
        raise UsageError(f"--baseline needs a 'problem' field on every {what} record; record "
                         f"#{missing[0]} has none")  # fmt: skip
    return [Rollout(problem=str(r.problem), latency=s.critical_path, total=s.total_tokens,
                    correct=bool(r.correct)) for r, s in zip(recs, stats)]  # fmt: skip


def _speedup(args: argparse.Namespace, fmt: ThreadFormat, recs: list, st: list) -> dict[str, Any]:
    from plait.threads.data.records import read_records
    from plait.threads.format.metrics import speedup_vs_baseline

    base = read_records(args.baseline, fmt)
    ours, theirs = _rollouts(recs, st, "input"), _rollouts(base, _stats(base, fmt), "baseline")
    have = {r.problem for r in theirs}
    missing = sorted({r.problem for r in ours} - have)
    if len(missing) == len({r.problem for r in ours}):
        raise UsageError(f"the baseline {args.baseline} has none of the problems of {args.file} "
                         f"(e.g. {missing[0]!r}); pass rollouts of the same problems")  # fmt: skip
    if missing and not args.partial_baseline:
        shown = ", ".join(repr(m) for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise UsageError(f"the baseline has no rollouts for {len(missing)} problem(s) of "
                         f"{args.file} ({shown}); pass --partial-baseline to compare on the "
                         "problems both files have")  # fmt: skip
    rep = speedup_vs_baseline(ours, theirs)
    return {"report": rep, "json": dataclasses.asdict(rep) | {"problems_missing": missing}}


def cmd_stats(args: argparse.Namespace) -> int:
    from plait.threads.format.metrics import activation_ratio

    fmt, recs = load(args)
    st = _stats(recs, fmt)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    conv = args.parallel_ratio
    out: dict[str, Any] = {
        "trajectories": len(st),
        "mean_total_tokens": mean([s.total_tokens for s in st]),
        "mean_critical_path": mean([s.critical_path for s in st]),
        "self_parallelism": mean([s.total_tokens for s in st])
        / max(1e-9, mean([s.critical_path for s in st])),
        "mean_acceleration": mean([s.acceleration for s in st]),
        "mean_parallel_ratio": mean([s.parallel_ratio_as(conv) for s in st]),
        "parallel_ratio_convention": conv,
        "activation_ratio": activation_ratio(st),
        "mean_blocks": mean([s.blocks for s in st]),
        "mean_threads_per_block": sum(s.threads for s in st) / max(1, sum(s.blocks for s in st)),
    }
    lines = [f"{k:26s} {v:.4g}" if isinstance(v, float) else f"{k:26s} {v}" for k, v in out.items()]
    if args.baseline:
        sp = _speedup(args, fmt, recs, st)
        out["speedup"] = sp["json"]
        lines.append(sp["report"].summary())
        if sp["json"]["problems_missing"]:
            lines.append(f"(not in the baseline, left out: {len(sp['json']['problems_missing'])})")
    emit(args, out, "\n".join(lines))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from plait.threads.format.view import render_html

    check_writable(args.out, "--out", [("FILE", args.file)])
    fmt, recs = load(args)
    if not 0 <= args.index < len(recs):
        raise UsageError(f"--index {args.index} is outside [0, {len(recs)}) for {args.file}")
    r = recs[args.index]
    doc = render_html(r.tokens, fmt, prompt_len=r.prompt_len, inserted=r.inserted,
                      title=f"{args.file} #{args.index}")  # fmt: skip
    atomic_write_text(args.out, doc)
    print(f"wrote {args.out}")
    return 0
