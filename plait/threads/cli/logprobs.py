"""`plait threads logprobs`: how far the RL trainer's log-probs are from the sampler's.

For every trajectory of FILE (each must pass `threads validate`), its engine calls (the units
`threads pack` extracts, the full-trajectory unit left out) go through
`plait.threads.training.sampler_gap.trajectory_logprobs` with `--model` and `--block-tokens` (the
sampling engine's `--block-tokens`, 64 in `plait serve`). Reported per trajectory and overall,
as max |difference| in nats over the generated tokens:

- `packed`: the packed autograd training forward against the sampler's exact bits (plait's
  engine recomputed: `sampler_logprobs`); what `broadcast_pg_loss` without
  `sampler_block_tokens` trains on;
- `trainer`: the exact trainer's values (`sampler_block_tokens` given) against the same bits: 0;
- with `logprobs` in the records (`plait threads run` writes the log-probs the server reported),
  both against those, and how many tokens the exact trainer matches bit for bit. Not 0 when the
  server is not plait's engine with this model, dtype and block size, or when a call read K/V
  another call kept (`EngineBackend(cache_output=True)`, the in-process default).

Costs one packed forward per trajectory and one prefill per call (no gradients).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import UsageError
from plait.threads.cli.common import emit
from plait.threads.data.records import TrajectoryRecord, load_format
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.validate import explain, validate

if TYPE_CHECKING:
    from plait.threads.training.sampler_gap import TrainerLogprobs


def _check(recs: list[TrajectoryRecord], fmt: ThreadFormat, args: argparse.Namespace,
           vocab: int, context: int) -> None:  # fmt: skip
    for i, r in enumerate(recs):
        where = f"{args.file}: trajectory #{i}"
        if r.prompt_len < 1:
            raise UsageError(f"{where} has no prompt (prompt_len 0): the first call's context is "
                             "the prompt; add 'prompt' / 'prompt_len' to the records")  # fmt: skip
        if max(r.tokens) >= vocab:
            raise UsageError(f"{where} holds token id {max(r.tokens)} but {args.model} has "
                             f"{vocab} ids; pass the model (and --tokenizer) that sampled it")  # fmt: skip
        if len(r.tokens) > context:
            raise UsageError(f"{where} has {len(r.tokens)} tokens but {args.model}'s context is "
                             f"{context}; leave it out")  # fmt: skip
        errs = validate(r.tokens, fmt, prompt_len=r.prompt_len)
        if errs:
            raise UsageError(f"{where} is not valid ({explain(r.tokens, fmt, errs[0])}); fix it, "
                             "or run `plait threads normalize`")  # fmt: skip


def _recorded(
    tl: TrainerLogprobs, rec: TrajectoryRecord, spans: list[tuple[int, int]]
) -> dict[str, Any]:
    """The trainer's and the packed forward's values against the record's log-probs."""
    import torch

    lps = rec.logprobs or []
    got: list[torch.Tensor] = []
    packed: list[torch.Tensor] = []
    want: list[float] = []
    for unit, (a, _), vals, pk in zip(tl.calls, spans, tl.per_call(tl.values.detach()),
                                      tl.per_call(tl.packed)):  # fmt: skip
        gen = [j for j, flag in enumerate(unit.trained or []) if flag]
        for k, j in enumerate(gen):
            x = lps[a - rec.prompt_len + j]
            if x is not None:
                got.append(vals[k])
                packed.append(pk[k])
                want.append(x)
    if not want:
        return {"recorded_tokens": 0}
    w = torch.tensor(want, dtype=torch.float32)
    g, p = torch.stack(got).float().cpu(), torch.stack(packed).float().cpu()
    return {"recorded_tokens": len(want), "trainer_vs_recorded": float((g - w).abs().max()),
            "packed_vs_recorded": float((p - w).abs().max()),
            "bitwise_equal": int((g.view(torch.int32) == w.view(torch.int32)).sum())}  # fmt: skip


def _line(s: dict[str, Any]) -> str:
    text = (f"#{s['index']}: {s['calls']} calls, {s['tokens']} tokens: packed {s['packed']:.4g}, "
            f"trainer {s['trainer']:.4g}")  # fmt: skip
    if s.get("recorded_tokens"):
        text += (f"; vs recorded ({s['recorded_tokens']} tokens): trainer "
                 f"{s['trainer_vs_recorded']:.4g} ({s['bitwise_equal']} bitwise equal), packed "
                 f"{s['packed_vs_recorded']:.4g}")  # fmt: skip
    return text


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    top = lambda key: max((r[key] for r in rows if key in r), default=None)  # noqa: E731
    rec = sum(r.get("recorded_tokens", 0) for r in rows)
    out = {"trajectories": len(rows), "tokens": sum(r["tokens"] for r in rows),
           "block_tokens": args.block_tokens, "packed": top("packed"), "trainer": top("trainer"),
           "shared_spread": top("shared_spread"), "recorded_tokens": rec,
           "trainer_vs_recorded": top("trainer_vs_recorded"),
           "packed_vs_recorded": top("packed_vs_recorded"),
           "bitwise_equal": sum(r.get("bitwise_equal", 0) for r in rows), "per_trajectory": rows}  # fmt: skip
    text = (f"max |log-prob difference| vs the sampler (block tokens {args.block_tokens}), "
            f"{out['tokens']} tokens of {len(rows)} trajectories: packed forward "
            f"{out['packed']:.4g}, exact trainer {out['trainer']:.4g}")  # fmt: skip
    if rec:
        text += (f"\nvs the recorded log-probs ({rec} tokens): exact trainer "
                 f"{out['trainer_vs_recorded']:.4g} ({out['bitwise_equal']} bitwise equal), "
                 f"packed forward {out['packed_vs_recorded']:.4g}")  # fmt: skip
    else:
        text += "\n(no recorded log-probs in the records: `plait threads run` writes them)"
    return out, text


def cmd_logprobs(args: argparse.Namespace) -> int:
    try:
        import torch
        from tqdm import tqdm

        from plait.runtime.loading.loader import load_model
        from plait.threads.training.rl_loss import rl_units
        from plait.threads.training.sampler_gap import trajectory_logprobs
        from plait.threads.training.units import extract_units
    except ImportError as exc:
        raise UsageError(f"plait threads logprobs needs torch and plait's runtime ({exc}); "
                         "install plait with torch") from None  # fmt: skip
    from plait.threads.data.records import read_records

    if args.block_tokens < 1:
        raise UsageError(f"--block-tokens must be >= 1 (the sampling engine's), got "
                         f"{args.block_tokens}")  # fmt: skip
    path = Path(args.file)
    if not path.is_file():  # before the model loads
        what = ("is a directory" if path.is_dir() else "is not a regular file" if path.exists()
                else "No such file")  # fmt: skip
        raise UsageError(f"{args.file}: {what}; give a trajectories .jsonl file")
    fmt = load_format(args.tokenizer) if args.tokenizer else None
    recs = read_records(args.file, fmt) if fmt else []  # bad input fails before the model loads
    loaded = load_model(args.model, dtype=args.dtype, device=args.device)  # as the server loads it
    if fmt is None:  # the model's own tokenizer
        fmt = ThreadFormat.from_tokenizer(loaded.tokenizer)
        recs = read_records(args.file, fmt)
    _check(recs, fmt, args, loaded.config.vocab_size, loaded.config.max_position)
    rows, lines = [], []
    for i, r in enumerate(tqdm(recs, desc="logprobs", disable=args.json, file=sys.stderr)):
        calls = rl_units(extract_units(r.tokens, fmt, prompt_len=r.prompt_len, inserted=r.inserted))
        if not calls:  # an empty response: nothing was sampled
            rows.append({"index": i, "calls": 0, "tokens": 0, "packed": 0.0, "trainer": 0.0})
            lines.append(_line(rows[-1]))
            continue
        with torch.no_grad():
            tl = trajectory_logprobs(loaded.model, calls, block_tokens=args.block_tokens,
                                     backend=args.backend)  # fmt: skip
        row: dict[str, Any] = {"index": i, "calls": len(calls), "tokens": int(tl.values.numel()),
                               "packed": tl.sampler_gap, "trainer": tl.trainer_gap,
                               "shared_spread": tl.shared_spread}  # fmt: skip
        if r.logprobs is not None:
            row |= _recorded(tl, r, [u.span for u in calls])
        rows.append(row)
        lines.append(_line(row))
    out, text = _summary(rows, args)
    emit(args, out, "\n".join(lines + [text]))
    return 0
