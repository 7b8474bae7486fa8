"""`plait threads run | pack | stats | validate | view`.

Trajectories live in JSON Lines files (see `records.py`); `--tokenizer` picks the codec (`char`,
`smollm2`, or a local Hugging Face path). `--json` prints one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from plait.threads.data.records import TrajectoryRecord, load_format, read_records, write_records


def _add_common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("--tokenizer", default="char", help="char | smollm2 | local HF tokenizer path")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers: Any) -> None:
    top = subparsers.add_parser("threads", help="ThreadWeaver: parallel reasoning threads")
    sub = top.add_subparsers(dest="threads_command", metavar="ACTION")
    top.set_defaults(func=lambda args: (top.print_help(), 0)[1])

    p = sub.add_parser("validate", help="strict format check of every trajectory")
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--max-outlines", type=int, default=50)
    _add_common(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("stats", help="critical path, self-parallelism, ratios (and speedup)")
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--baseline", help="baseline trajectories (.jsonl) for speedup vs baseline")
    _add_common(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("view", help="write a static HTML view of one trajectory")
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--index", type=int, default=0, help="which trajectory (0-based)")
    p.add_argument("--out", required=True, help="output .html path")
    _add_common(p, json_flag=False)
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("pack", help="extract units and trie-pack them into training rows")
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--row-length", type=int, default=4096)
    p.add_argument("--out", help="save the rows with torch.save (.pt)")
    _add_common(p)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("run", help="run the orchestrator against an OpenAI-compatible server")
    p.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="default")
    p.add_argument("--prompt-mode", choices=["ids", "text"], default="ids")
    p.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable)")
    p.add_argument("--prompts", help="file with one prompt per line")
    p.add_argument("--out", required=True, help="output trajectories (.jsonl)")
    p.add_argument("--max-total-tokens", type=int, default=40960)
    p.add_argument("--max-thread-tokens", type=int, default=8192)
    p.add_argument("--max-threads", type=int, default=16)
    p.add_argument("--max-blocks", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    _add_common(p)
    p.set_defaults(func=cmd_run)


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


def cmd_validate(args: argparse.Namespace) -> int:
    from plait.threads.format.validate import explain, validate

    fmt = load_format(args.tokenizer)
    recs = read_records(args.file, fmt)
    report: list[dict[str, Any]] = []
    lines: list[str] = []
    for i, r in enumerate(recs):
        errs = validate(r.tokens, fmt, prompt_len=r.prompt_len, max_outlines=args.max_outlines)
        report.append({"index": i, "valid": not errs,
                       "errors": [{"pos": e.pos, "code": e.code, "message": e.message} for e in errs]})  # fmt: skip
        lines.append(f"#{i}: ok" if not errs else f"#{i}: {len(errs)} error(s)")
        lines += [f"  {explain(r.tokens, fmt, e)}" for e in errs]
    n_ok = sum(1 for x in report if x["valid"])
    lines.append(f"{n_ok}/{len(recs)} valid")
    _emit(args, {"valid": n_ok, "total": len(recs), "trajectories": report}, "\n".join(lines))
    return 0 if n_ok == len(recs) else 1


def _stats(recs: list[TrajectoryRecord], fmt: Any) -> list[Any]:
    from plait.threads.format.metrics import trajectory_stats
    from plait.threads.format.parser import parse

    return [
        trajectory_stats(parse(r.tokens, fmt, prompt_len=r.prompt_len), r.inserted) for r in recs
    ]


def _rollouts(recs: list[TrajectoryRecord], stats: list[Any], what: str) -> list[Any]:
    from plait.threads.format.metrics import Rollout

    if any(r.problem is None for r in recs):
        raise ValueError(f"--baseline needs a 'problem' field on every {what} record")
    return [Rollout(problem=str(r.problem), latency=s.critical_path, total=s.total_tokens,
                    correct=bool(r.correct)) for r, s in zip(recs, stats)]  # fmt: skip


def cmd_stats(args: argparse.Namespace) -> int:
    from plait.threads.format.metrics import activation_ratio, speedup_vs_baseline

    fmt = load_format(args.tokenizer)
    recs = read_records(args.file, fmt)
    if not recs:
        raise ValueError(f"{args.file} holds no trajectories")
    st = _stats(recs, fmt)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out: dict[str, Any] = {
        "trajectories": len(st),
        "mean_total_tokens": mean([s.total_tokens for s in st]),
        "mean_critical_path": mean([s.critical_path for s in st]),
        "self_parallelism": mean([s.total_tokens for s in st])
        / max(1e-9, mean([s.critical_path for s in st])),
        "mean_acceleration": mean([s.acceleration for s in st]),
        "mean_parallel_ratio": mean([s.parallel_ratio for s in st]),
        "activation_ratio": activation_ratio(st),
        "mean_blocks": mean([s.blocks for s in st]),
        "mean_threads_per_block": sum(s.threads for s in st) / max(1, sum(s.blocks for s in st)),
    }
    lines = [f"{k:24s} {v:.4g}" if isinstance(v, float) else f"{k:24s} {v}" for k, v in out.items()]
    if args.baseline:
        base = read_records(args.baseline, fmt)
        rep = speedup_vs_baseline(
            _rollouts(recs, st, "input"), _rollouts(base, _stats(base, fmt), "baseline")
        )
        out["speedup"] = dataclasses.asdict(rep)
        lines.append(rep.summary())
    _emit(args, out, "\n".join(lines))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from plait.threads.format.view import render_html

    fmt = load_format(args.tokenizer)
    recs = read_records(args.file, fmt)
    if not 0 <= args.index < len(recs):
        raise ValueError(f"--index {args.index} is outside [0, {len(recs)}) for {args.file}")
    r = recs[args.index]
    doc = render_html(r.tokens, fmt, prompt_len=r.prompt_len, inserted=r.inserted,
                      title=f"{args.file} #{args.index}")  # fmt: skip
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(doc)
    print(f"wrote {args.out}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from plait.threads.training.units import extract_units

    try:
        from plait.threads.training.packing import pack_rows
    except ImportError as exc:
        print(
            f"plait threads pack needs plait.threads.training.packing, which is unavailable ({exc})",
            file=sys.stderr,
        )
        return 2
    fmt = load_format(args.tokenizer)
    recs = read_records(args.file, fmt)
    if any(r.prompt_len < 1 for r in recs):
        raise ValueError(
            "pack needs a prompt on every trajectory (prompt_len >= 1): the first "
            "unit's context is the prompt; add 'prompt' / 'prompt_len' to the records"
        )
    units = [
        extract_units(r.tokens, fmt, prompt_len=r.prompt_len, inserted=r.inserted) for r in recs
    ]
    rows, rep = pack_rows(units, args.row_length)
    out = {"trajectories": len(recs), "units": sum(len(u) for u in units), "rows": rep.rows,
           "packed_tokens": rep.tokens, "padding": rep.padding, "unit_tokens": rep.unit_tokens,
           "dropped_units": rep.n_dropped_units, "dropped_trajectories": rep.dropped_trajectories}  # fmt: skip
    if args.out:
        import torch

        torch.save(rows, args.out)
        out["saved"] = args.out
    _emit(args, out, "\n".join(f"{k:22s} {v}" for k, v in out.items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from plait.threads.inference.openai_backend import OpenAICompletionsEngine, OpenAIConfig
    from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig

    prompts = list(args.prompt)
    if args.prompts:
        with open(args.prompts, encoding="utf-8") as fh:
            prompts += [ln.rstrip("\n") for ln in fh if ln.strip()]
    if not prompts:
        raise ValueError("give at least one --prompt or a --prompts file")
    fmt = load_format(args.tokenizer)
    engine = OpenAICompletionsEngine(
        OpenAIConfig(base_url=args.base_url, model=args.model, prompt_mode=args.prompt_mode), fmt
    )
    cfg = OrchestratorConfig(
        max_total_tokens=args.max_total_tokens, max_thread_tokens=args.max_thread_tokens,
        max_threads=args.max_threads, max_blocks=args.max_blocks, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed,
    )  # fmt: skip
    orch = Orchestrator(engine, fmt, cfg)
    recs, summary = [], []
    for i, text in enumerate(prompts):
        run = orch.run_sync(fmt.encode(text))
        recs.append(TrajectoryRecord(tokens=run.tokens, prompt_len=run.prompt_len, inserted=run.inserted,
                                     problem=str(i), stop_reason=run.stop_reason))  # fmt: skip
        summary.append({"index": i, "calls": len(run.calls), "response_tokens": len(run.response),
                        "blocks": len(run.tree.blocks), "stop_reason": run.stop_reason,
                        "wall_s": round(run.wall_s, 3), "warnings": run.warnings})  # fmt: skip
    write_records(args.out, recs)
    lines = [f"#{s['index']}: {s['response_tokens']} tokens, {s['blocks']} blocks, {s['calls']} calls, "
             f"{s['stop_reason']}, {s['wall_s']} s" for s in summary]  # fmt: skip
    _emit(args, {"out": args.out, "runs": summary}, "\n".join(lines + [f"wrote {args.out}"]))
    return 0
