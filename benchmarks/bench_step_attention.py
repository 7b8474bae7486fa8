"""One decode step's attention, all layers: plait's step kernel vs its per-read twins.

The step is the Hogwild combined layout (shared history of `--contexts` tokens, shared headers,
W workers' current steps of `--own` tokens; random K/V), built by the engine's own `Workspace`,
one new token per worker. Three attention backends (`Runner(..., attention=name)`) run the
step's attention context for every layer:
  step_kernel     `kernels.step_attention`: one call per layer (the default for decode steps);
  segment_kernel  plait's segment kernel once per read batch + the torch LSE merge (the default
                  for prefill chunks; session 3's decode path);
  torch           torch's flash / math kernels per read batch + the same merge (the default
                  without plait's kernels).
Attention shapes: Qwen2.5-0.5B (14 query / 2 KV heads, head dim 64, 24 layers) and the 7B shape
(28 / 4, head dim 128, 8 of its 28 layers: per-layer cost is what matters). The MLP and vocabulary
of the random model are shrunk: only attention runs. Table: median microseconds per layer.

    flock /tmp/plait-bench.lock python benchmarks/bench_step_attention.py --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, save, table  # noqa: E402
from gpu_hogwild import workspace  # noqa: E402

from plait.hogwild.workspace import Feed  # noqa: E402
from plait.runtime import kernels  # noqa: E402
from plait.runtime.config import ModelConfig  # noqa: E402
from plait.runtime.model import DecoderLM  # noqa: E402
from plait.runtime.runner import Runner, StreamInput  # noqa: E402
from plait.runtime.shapes import attention_only, qwen25_05b, qwen25_7b  # noqa: E402

SHAPES = {
    "qwen2.5-0.5b": attention_only(qwen25_05b(max_position=65536)),
    "qwen2.5-7b(8 layers)": attention_only(qwen25_7b(layers=8, max_position=65536)),
}
VARIANTS = ("step_kernel", "segment_kernel", "torch")


def attention_model(cfg: ModelConfig) -> DecoderLM:
    return DecoderLM.random(cfg, dtype=torch.bfloat16)


def one_step(model: DecoderLM, W: int, context: int, own: int, backend: str):  # noqa: ANN201
    """A callable that runs the attention of every layer for one W-worker step."""
    cfg = model.config
    with torch.inference_mode():
        store, ws = workspace(model, W, context, own, torch.device("cpu"))
    runner = Runner(model, store, attention=backend)
    runner.allow_beyond_context = True
    feeds = [Feed(cur=[1]) for _ in range(W)]
    inputs = [StreamInput(s.tokens, s.view, s.write_to) for s in ws.plan(feeds)]
    g = torch.Generator().manual_seed(1)
    q = torch.randn(W, cfg.num_heads, cfg.head_dim, generator=g).bfloat16()
    k = torch.randn(W, cfg.num_kv_heads, cfg.head_dim, generator=g).bfloat16()
    v = torch.randn_like(k)
    with torch.inference_mode():
        _, ctx = runner.attention_context(inputs, instant=True)

    def run() -> None:
        with torch.inference_mode():
            for layer in range(cfg.num_layers):
                ctx.attend(layer, q, k, v)

    return run, store


def measure(model: DecoderLM, W: int, context: int, own: int, repeats: int) -> dict:
    """Median microseconds per layer of every backend, backends interleaved in each repeat."""
    runs = {v: one_step(model, W, context, own, v)[0] for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(repeats + 2):
        for v in VARIANTS:
            t = time.perf_counter()
            runs[v]()
            if rep >= 2:
                times[v].append(time.perf_counter() - t)
    us = {v: 1e6 * statistics.median(times[v]) / model.config.num_layers for v in VARIANTS}
    return {
        **{f"{v}_us": us[v] for v in VARIANTS},
        "step_vs_segment_kernel": us["segment_kernel"] / us["step_kernel"],
        "step_vs_torch": us["torch"] / us["step_kernel"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--own", type=int, default=24, help="tokens in each worker's current step")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="step_attention_cpu")
    args = ap.parse_args()
    if not kernels.available():
        raise SystemExit(f"plait's CPU kernels are unavailable: {kernels.unavailable_reason()}")
    rows = []
    for name in args.shapes:
        model = attention_model(SHAPES[name])
        for threads in args.threads:
            torch.set_num_threads(threads)
            for context in args.contexts:
                for W in args.workers:
                    row = {"shape": name, "threads": threads, "context": context, "workers": W}
                    rows.append(row | measure(model, W, context, args.own, args.repeats))
                    us = ", ".join(f"{v} {rows[-1][f'{v}_us']:.0f} us" for v in VARIANTS)
                    print(f"{name} t{threads} ctx {context} W={W}: {us}", file=sys.stderr)
    cols = ["shape", "threads", "context", "workers", *(f"{v}_us" for v in VARIANTS)]
    print(table(rows, [*cols, "step_vs_segment_kernel", "step_vs_torch"]))
    payload = {
        "benchmark": "step_attention",
        "machine": machine(),
        "unit": "microseconds per layer (median over interleaved repeats)",
        "own_tokens": args.own,
        "rows": rows,
    }
    save(args.out, payload)
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
