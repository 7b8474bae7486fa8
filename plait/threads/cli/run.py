"""`plait threads run`: the orchestrator against an OpenAI-compatible server, resumable.

Each trajectory is appended to `--out` (and flushed) as soon as it finishes, so an interrupted
run keeps every finished one. A rerun into the same `--out` skips the prompts already there
(matched by prompt text; a prompt listed twice runs twice). The settings of a run are kept in
`<out>.manifest.json`; a rerun with other settings, or into a file without a manifest, is refused
unless `--overwrite` starts the file afresh. Nothing is written before the first trajectory is
done, so a run that fails at once (a wrong URL, say) leaves `--out` as it was. A record keeps
the log-prob the server reported for each token it sampled (`logprobs`, null for inserted tokens
and tokens the server gave none for; left out when it gave none at all): `plait threads
logprobs` compares them with the trainer's.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from plait.arguments import read_text_input
from plait.errors import OutputError, UsageError
from plait.outputs import JsonlAppender, Manifest, check_writable, read_jsonl
from plait.threads.cli.common import emit
from plait.threads.data.records import TrajectoryRecord, load_format


def _prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts:
        text = read_text_input(args.prompts, "--prompts", "one prompt per line")
        # lines end at "\n" only (a U+2028 inside a prompt stays in it); "\r\n" files work
        prompts += [ln.removesuffix("\r") for ln in text.split("\n") if ln.strip()]
    if not prompts:
        raise UsageError("give at least one --prompt or a --prompts file with non-blank lines")
    return prompts


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("base_url", "model", "prompt_mode", "tokenizer", "max_total_tokens",
            "max_thread_tokens", "max_threads", "max_blocks", "temperature", "top_p", "seed")  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def _done_prompts(args: argparse.Namespace) -> tuple[Counter[str], Manifest]:
    """Prompts already in --out, after checking its manifest (written with the first record)."""
    out = Path(args.out)
    manifest = Manifest(Path(f"{out}.manifest.json"), _settings(args))
    existing = [] if args.overwrite else read_jsonl(out)
    if existing and not manifest.path.exists():
        raise OutputError(f"{out} already holds {len(existing)} trajectories but no manifest of "
                          "their settings; pass --overwrite to start it afresh, or choose "
                          "another --out")  # fmt: skip
    diff = manifest.differences()
    if existing and diff:
        raise OutputError(f"{out} holds trajectories made with other settings ({', '.join(diff)});"
                          " pass --overwrite to start it afresh, or choose another --out")  # fmt: skip
    return Counter(str(r.get("prompt")) for r in existing), manifest


def _open(args: argparse.Namespace, manifest: Manifest) -> JsonlAppender:
    """Start writing: record the settings; on --overwrite empty --out (only now, with a result)."""
    manifest.check(overwrite=True)
    return JsonlAppender(args.out, fresh=args.overwrite)


def cmd_run(args: argparse.Namespace) -> int:
    from plait.threads.inference.openai_backend import OpenAIBackend, OpenAIConfig
    from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig

    prompts = _prompts(args)
    check_writable(args.out, "--out", [("--prompts", args.prompts)])
    check_writable(f"{args.out}.manifest.json", "--out's manifest", [("--prompts", args.prompts)])
    fmt = load_format(args.tokenizer)
    engine = OpenAIBackend(
        OpenAIConfig(base_url=args.base_url, model=args.model, prompt_mode=args.prompt_mode,
                     timeout_s=args.timeout), fmt,
    )  # fmt: skip
    cfg = OrchestratorConfig(
        max_total_tokens=args.max_total_tokens, max_thread_tokens=args.max_thread_tokens,
        max_threads=args.max_threads, max_blocks=args.max_blocks, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed,
    )  # fmt: skip
    orch = Orchestrator(engine, fmt, cfg)
    done, manifest = _done_prompts(args)
    summary, lines = [], []
    out: JsonlAppender | None = None
    try:
        for i, text in enumerate(prompts):
            if done[text] > 0:
                done[text] -= 1
                lines.append(f"#{i}: already in {args.out}, skipped")
                continue
            run = orch.run_sync(fmt.encode(text))
            lps = run.logprobs if any(x is not None for x in run.logprobs) else None
            rec = TrajectoryRecord(tokens=run.tokens, prompt_len=run.prompt_len, prompt=text,
                                   inserted=run.inserted, problem=str(i), stop_reason=run.stop_reason,
                                   logprobs=lps)  # fmt: skip
            out = out or _open(args, manifest)
            out.write(rec.to_dict())
            s = {"index": i, "calls": len(run.calls), "response_tokens": len(run.response),
                 "blocks": len(run.tree.blocks), "stop_reason": run.stop_reason,
                 "wall_s": round(run.wall_s, 3), "warnings": run.warnings}  # fmt: skip
            summary.append(s)
            lines.append(f"#{i}: {s['response_tokens']} tokens, {s['blocks']} blocks, "
                         f"{s['calls']} calls, {s['stop_reason']}, {s['wall_s']} s")  # fmt: skip
    finally:
        if out is not None:
            out.close()
    skipped = len(prompts) - len(summary)
    obj = {"out": args.out, "runs": summary, "skipped": skipped}
    emit(args, obj, "\n".join(lines + [f"wrote {len(summary)} to {args.out} ({skipped} skipped)"]))
    return 0
