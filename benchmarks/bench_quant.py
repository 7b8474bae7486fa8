"""Packed GGUF weights vs bf16 on this CPU: decode speed, the bandwidth roofline, top-1 agreement.

1. read bandwidth: STREAM-like reads of 1 GiB (sum of an fp32 tensor; a one-row bf16 matmul, which
   streams faster here), torch's threads, best of 5 each; the roofline uses the faster;
2. decode tok/s of plait's runner (greedy, R streams of a 32-token prompt, `--steps` steps),
   packed (`--packed`: "gguf" = int8 activations, "gguf-exact" = exact bf16 activations) vs
   `bf16`, at each `--rows`, interleaved rounds, medians;
   the roofline: weight bytes read per decode step / read bandwidth, and the packed 1-row speed
   as a % of it;
3. llama.cpp: `llama-bench` (if built: `make llama-bench`) on the same GGUF, same thread count,
   text generation of `--steps` tokens (1 sequence);
4. quality: teacher-forced greedy top-1 agreement of each packed mode vs bf16 over `--quality-tokens`
   tokens of real text (plait's own docs), i.e. the next-token choice at every position. The
   packed kernel is batch-invariant, so each position's logits are those of a decode step.
   Both are also compared with an fp32 run on the same (bf16-rounded) weights: bf16's own
   rounding noise flips near-tied choices, and that agreement is the scale to read it against.

Prints a table and, last, a JSON line; writes benchmarks/results/<--tag>.json.

    flock /tmp/plait-bench.lock python benchmarks/bench_quant.py --model qwen2.5-0.5b
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save, table  # noqa: E402

from plait.runtime.attention.dense import causal_context  # noqa: E402
from plait.runtime.loading.loader import load_model  # noqa: E402
from plait.runtime.model import linear  # noqa: E402
from plait.runtime.quant.build import resident_bytes  # noqa: E402
from plait.runtime.quant.weight import QuantLinear  # noqa: E402
from plait.runtime.runner import Runner, StreamInput  # noqa: E402
from plait.runtime.segments import KVStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPT = 32


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """GB/s of two plain sequential reads of `gib` GiB, best of `repeats` each: the sum of an
    fp32 tensor, and a one-row bf16 matmul (plait's `linear`, the stream a bf16 decode step
    reads). The roofline uses the larger: the sum alone reads slower than a bf16 decode step
    streams its weights on this machine, so it is no ceiling."""
    x = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32)
    w = x.view(torch.bfloat16).view(-1, 8192)  # (n, 8192) bf16, the same bytes
    v = torch.ones(1, 8192, dtype=torch.bfloat16)

    def best(fn) -> float:  # noqa: ANN001
        t_min = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            t_min = min(t_min, time.perf_counter() - t)
        return x.numel() * 4 / t_min / 1e9

    with torch.inference_mode():
        out = {"sum": best(x.sum), "linear": best(lambda: linear(v, w))}
    return {**out, "max": max(out.values())}


def bytes_per_step(model: nn.Module) -> int:
    """Weight bytes one decode step reads: every projection and the head (embedding rows and
    norms are negligible)."""
    total = 0
    for mod in model.modules():
        if isinstance(mod, QuantLinear):
            total += mod.weight.nbytes
        elif isinstance(mod, nn.Linear):
            total += mod.weight.numel() * mod.weight.element_size()
    if model.lm_head is None:  # tied: the head reads the embedding table
        w = model.head_weight
        total += w.nbytes if hasattr(w, "nbytes") else w.numel() * w.element_size()
    return total


def decode_seconds(lm, rows: int, steps: int) -> float:
    model = lm.model
    gen = torch.Generator().manual_seed(rows)
    prompts = [
        [int(t) for t in torch.randint(100, 5000, (PROMPT,), generator=gen)] for _ in range(rows)
    ]
    store = KVStore(model.config, model.dtype, model.device, rope=model.rope)
    runner = Runner(model, store)
    segs = [store.new_segment(PROMPT + steps + 1) for _ in range(rows)]
    with torch.inference_mode():
        logits = runner.step([StreamInput(p, [s], s) for p, s in zip(prompts, segs)])
        nxt = logits.argmax(-1).tolist()
        logits = runner.step([StreamInput([t], [s], s) for t, s in zip(nxt, segs)])  # warm
        t0 = time.perf_counter()
        for _ in range(steps):
            nxt = logits.argmax(-1).tolist()
            logits = runner.step([StreamInput([t], [s], s) for t, s in zip(nxt, segs)])
        return time.perf_counter() - t0


def llama_bench(gguf: Path, steps: int, threads: int) -> float | None:
    exe = Path.home() / ".cache/plait/llama.cpp-0.3.36/build/bin/llama-bench"
    if not exe.is_file():
        return None
    cmd = [str(exe), "-m", str(gguf), "-t", str(threads), "-p", "0", "-n", str(steps)]
    out = subprocess.run(
        cmd + ["-r", "3", "-o", "json"], capture_output=True, text=True, check=False
    )
    try:
        return float(json.loads(out.stdout)[0]["avg_ts"])
    except (ValueError, KeyError, IndexError):
        print(f"llama-bench failed: {out.stderr[-500:]}", file=sys.stderr)
        return None


def top1(lm, ids: list[int], chunk: int = 256) -> torch.Tensor:
    """Greedy next-token choice at every position of `ids` (teacher forced)."""
    model = lm.model
    with torch.inference_mode():
        h = model.hidden_states(torch.tensor(ids), causal_context(model.rope, len(ids)))  # (T, H)
        return torch.cat(
            [
                linear(h[i : i + chunk], model.head_weight).float().argmax(-1)
                for i in range(0, len(ids), chunk)
            ]
        )


def real_text_ids(lm, n: int) -> list[int]:
    text = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < n + 1:
        raise SystemExit(f"only {len(ids)} tokens of text in docs/, need {n + 1}")
    return ids[: n + 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality-tokens", type=int, default=2000)
    ap.add_argument("--packed", nargs="+", default=["gguf", "gguf-exact"], help="packed modes")
    ap.add_argument("--baseline", default="bf16", help="dtype to compare with ('' = none)")
    ap.add_argument("--tag", default=None)
    args = ap.parse_args()
    info = machine()
    bw = read_bandwidth()
    modes = {d: d for d in args.packed} | ({args.baseline: args.baseline} if args.baseline else {})
    lms = {m: load_model(args.model, dtype=d) for m, d in modes.items()}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # interleaved: every mode and row count once per round
        for rows in args.rows:
            for m, lm in lms.items():
                times.setdefault((m, rows), []).append(decode_seconds(lm, rows, args.steps))
    out_rows = []
    for (m, rows), ts in times.items():
        med = statistics.median(ts)
        nbytes = bytes_per_step(lms[m].model)
        out_rows.append(
            {
                "weights": m,
                "rows": rows,
                "tok_s": rows * args.steps / med,
                "step_ms": med / args.steps * 1e3,
                "spread": (max(ts) - min(ts)) / med,
                "weight_MB_per_step": nbytes / 1e6,
                "roofline_pct": 100 * (args.steps / med) / (bw["max"] * 1e9 / nbytes),
            }
        )
    result = {
        "machine": info,
        "load_after": os.getloadavg()[0],
        "model": args.model,
        "read_GBps": bw,
        "resident_GB": {m: resident_bytes(lm.model) / 1e9 for m, lm in lms.items()},
        "decode": out_rows,
    }
    from plait.runtime.loading.bundled import BUNDLED, resolve_gguf

    if args.model in BUNDLED:
        gguf = resolve_gguf(BUNDLED[args.model])
        tg = llama_bench(gguf, args.steps, torch.get_num_threads())
        result["llama_bench_tg_tok_s"] = tg
        if tg:  # the same bytes as plait's packed weights, give or take the norms
            result["llama_bench_roofline_pct"] = 100 * tg / (bw["max"] * 1e9 / gguf.stat().st_size)
    if args.quality_tokens and args.baseline:
        ids = real_text_ids(lms[args.packed[0]], args.quality_tokens)[:-1]
        choice = {m: top1(lm, ids) for m, lm in lms.items()}
        del lms
        ref = top1(load_model(args.model, dtype="fp32"), ids)  # same weights, fp32 activations
        b = choice[args.baseline]
        for m in args.packed:
            result[f"top1_{m}_vs_{args.baseline}"] = float((choice[m] == b).float().mean())
        for m, a in choice.items():
            result[f"top1_{m}_vs_fp32"] = float((a == ref).float().mean())
        result["quality_tokens"] = len(ids)
    cols = ["weights", "rows", "tok_s", "step_ms", "spread", "weight_MB_per_step", "roofline_pct"]
    print(table(out_rows, cols))
    print({k: v for k, v in result.items() if k not in ("decode", "machine")})
    save(args.tag or f"quant_{args.model.replace('.', '')}", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
