"""Runtime benchmarks on this machine (CPU by default).

1. decode: tokens/s of plait's runner vs transformers `generate` on the same weights (greedy, decode
   only: generate(N+1) - generate(1)), batch 1 and 8.
2. shared prefix: step time of W streams over one shared prefix (held once) vs a plain batched
   decode of W independent sequences with the same context (each holding its own copy).

Prints a table and, as the last line, a JSON object; writes benchmarks/results/runtime_<tag>.json.

    python benchmarks/bench_runtime.py --models qwen2.5-0.5b smollm2-135m --dtypes bf16 fp32
    python benchmarks/bench_runtime.py --prefix-only --contexts 1024 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_time, save, table  # noqa: E402

from plait.runtime.loading.loader import load_model  # noqa: E402
from plait.runtime.runner import Runner, StreamInput  # noqa: E402
from plait.runtime.segments import KVStore  # noqa: E402

PROMPT = 32


def bench_decode(lm, batch: int, steps: int, repeats: int) -> dict:
    model = lm.model
    ids = [
        int(x)
        for x in torch.randint(100, 1000, (PROMPT,), generator=torch.Generator().manual_seed(0))
    ]

    def plait_run(n: int) -> None:
        store = KVStore(model.config, model.dtype, model.device, rope=model.rope)
        runner = Runner(model, store)
        segs = [store.new_segment(PROMPT + n + 1) for _ in range(batch)]
        logits = runner.step([StreamInput(ids, [s], s) for s in segs])
        for _ in range(n):
            nxt = logits.argmax(-1).tolist()
            logits = runner.step([StreamInput([t], [s], s) for t, s in zip(nxt, segs)])

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(lm.path, dtype=model.dtype).eval()
    x = torch.tensor([ids] * batch)

    def hf_run(n: int) -> None:
        hf.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n + 1,
            min_new_tokens=n + 1,
            do_sample=False,
            pad_token_id=0,
        )

    out = {}
    with torch.inference_mode():
        for name, fn in (("plait", plait_run), ("transformers", hf_run)):
            full = median_time(lambda fn=fn: fn(steps), repeats, warmup=1)
            base = median_time(lambda fn=fn: fn(0), repeats, warmup=0)
            out[name] = batch * steps / max(full - base, 1e-9)
    return {
        "plait_tok_s": out["plait"],
        "hf_tok_s": out["transformers"],
        "speedup": out["plait"] / out["transformers"],
    }


def bench_prefix(lm, W: int, context: int, steps: int) -> dict:
    model = lm.model
    ctx_ids = [
        int(x)
        for x in torch.randint(100, 1000, (context,), generator=torch.Generator().manual_seed(1))
    ]
    store = KVStore(model.config, model.dtype, model.device, rope=model.rope)
    runner = Runner(model, store)
    prefix = store.new_segment(context)
    t = time.perf_counter()
    runner.prefill(prefix, ctx_ids, chunk=512)
    prefill_s = time.perf_counter() - t
    shared_own = [store.new_segment(steps + 4) for _ in range(W)]
    bytes_shared = store.used_bytes() + 0

    # independent sequences: W copies of the same context, each read only by its own stream
    ind = KVStore(model.config, model.dtype, model.device, rope=model.rope)
    ind_runner = Runner(model, ind)
    copies = []
    for _ in range(W):
        seg = ind.new_segment(context + steps + 4)
        seg.k[:, :, :context] = prefix.k[:, :, :context]
        seg.v[:, :, :context] = prefix.v[:, :, :context]
        seg.length, seg.tokens = context, list(ctx_ids)
        copies.append(seg)

    def shared_step() -> None:
        runner.step([StreamInput([7], [prefix, s], s) for s in shared_own])

    def independent_step() -> None:
        ind_runner.step([StreamInput([7], [s], s) for s in copies])

    with torch.inference_mode():
        ts = median_time(shared_step, repeats=steps, warmup=2)
        ti = median_time(independent_step, repeats=steps, warmup=2)
    return {
        "prefill_s": prefill_s,
        "shared_ms": ts * 1e3,
        "independent_ms": ti * 1e3,
        "ratio": ts / ti,
        "prefix_bytes_shared": bytes_shared,
        "prefix_bytes_independent": ind.used_bytes() - W * 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["qwen2.5-0.5b", "smollm2-135m"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contexts", nargs="+", type=int, default=[1024, 4096])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-only", action="store_true")
    ap.add_argument("--prefix-only", action="store_true")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decode_rows, prefix_rows = [], []
    if not args.prefix_only:
        for name in args.models:
            for dt in args.dtypes:
                lm = load_model(name, dtype=dt)
                for b in args.batches:
                    r = {
                        "model": name,
                        "dtype": dt,
                        "batch": b,
                        **bench_decode(lm, b, args.steps, args.repeats),
                    }
                    decode_rows.append(r)
                    print(table([r], list(r)), flush=True)
    if not args.decode_only:
        lm = load_model(args.models[0], dtype=args.dtypes[0])
        for ctx in args.contexts:
            r = {
                "model": args.models[0],
                "dtype": args.dtypes[0],
                "W": args.workers,
                "context": ctx,
                **bench_prefix(lm, args.workers, ctx, args.steps),
            }
            prefix_rows.append(r)
            print(table([r], list(r)), flush=True)
    print()
    if decode_rows:
        print("decode tokens/s (plait vs transformers generate)")
        print(table(decode_rows, ["model", "dtype", "batch", "plait_tok_s", "hf_tok_s", "speedup"]))
    if prefix_rows:
        print(
            f"\nW={args.workers} streams over a shared prefix vs {args.workers} independent sequences (step ms)"
        )
        print(
            table(
                prefix_rows,
                [
                    "model",
                    "dtype",
                    "context",
                    "shared_ms",
                    "independent_ms",
                    "ratio",
                    "prefix_bytes_shared",
                    "prefix_bytes_independent",
                ],
            )
        )
    payload = {
        "benchmark": "runtime",
        "machine": machine(),
        "decode": decode_rows,
        "shared_prefix": prefix_rows,
        "goals": {
            "decode_batch8_speedup": 1.1,
            "decode_batch1_speedup": 1.0,
            "shared_prefix_ratio": 1.1,
        },
    }
    save(f"runtime_{args.tag}", payload)
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
