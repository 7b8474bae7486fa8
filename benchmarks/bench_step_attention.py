"""One decode step's attention, all layers: plait's fused step kernel vs its per-read twin vs torch.

The step is the Hogwild combined layout (shared history of `--contexts` tokens, shared headers,
W workers' current steps of `--own` tokens; random K/V), built by the engine's own `Workspace`,
one new token per worker. Three ways to run the runner's attention context for every layer:
  fused     `kernels.step_attention`: one call per layer (the default for decode steps);
  per-read  plait's segment kernel once per segment (read batch) + the torch LSE merge
            (`runner.FUSED_MAX_ROWS = 0`: what prefill chunks use; session 3's decode path);
  torch     plait's kernels off: torch's flash / math kernels + the same merge.
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
from plait.runtime import runner as runner_module  # noqa: E402
from plait.runtime.config import ModelConfig  # noqa: E402
from plait.runtime.model import DecoderLM  # noqa: E402
from plait.runtime.runner import Runner, StreamInput  # noqa: E402
from plait.runtime.presets import attention_only, qwen25_05b, qwen25_7b  # noqa: E402

SHAPES = {
    "qwen2.5-0.5b": attention_only(qwen25_05b(max_position=65536)),
    "qwen2.5-7b(8 layers)": attention_only(qwen25_7b(layers=8, max_position=65536)),
}
VARIANTS = ("fused", "per-read", "torch")


def attention_model(cfg: ModelConfig) -> DecoderLM:
    return DecoderLM.random(cfg, dtype=torch.bfloat16)


def one_step(model: DecoderLM, W: int, context: int, own: int, variant: str):  # noqa: ANN201
    """A callable that runs the attention of every layer for one W-worker step."""
    cfg = model.config
    with torch.inference_mode():
        store, ws = workspace(model, W, context, own, torch.device("cpu"))
    runner = Runner(model, store)
    runner.allow_beyond_context = True
    feeds = [Feed(cur=[1]) for _ in range(W)]
    inputs = [StreamInput(s.tokens, s.view, s.write_to) for s in ws.plan(feeds)]
    g = torch.Generator().manual_seed(1)
    q = torch.randn(W, cfg.num_heads, cfg.head_dim, generator=g).bfloat16()
    k = torch.randn(W, cfg.num_kv_heads, cfg.head_dim, generator=g).bfloat16()
    v = torch.randn_like(k)
    before = runner_module.FUSED_MAX_ROWS
    kernels.set_enabled(variant != "torch")
    runner_module.FUSED_MAX_ROWS = before if variant == "fused" else 0
    try:
        with torch.inference_mode():
            plan, ctx = runner.attention_context(inputs, instant=True)
    finally:
        runner_module.FUSED_MAX_ROWS = before
    if plan.fused != (variant == "fused"):
        raise RuntimeError(f"{variant}: the runner planned fused={plan.fused}")

    def run() -> None:
        kernels.set_enabled(variant != "torch")
        with torch.inference_mode():
            for layer in range(cfg.num_layers):
                ctx.attend(layer, q, k, v)

    return run, store


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
    try:
        for name in args.shapes:
            shape = SHAPES[name]
            model = attention_model(shape)
            for threads in args.threads:
                torch.set_num_threads(threads)
                for context in args.contexts:
                    for W in args.workers:
                        runs = {v: one_step(model, W, context, args.own, v)[0] for v in VARIANTS}
                        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
                        for rep in range(args.repeats + 2):  # variants interleaved
                            for v in VARIANTS:
                                t = time.perf_counter()
                                runs[v]()
                                if rep >= 2:
                                    times[v].append(time.perf_counter() - t)
                        us = {
                            v: 1e6 * statistics.median(times[v]) / shape["num_layers"]
                            for v in VARIANTS
                        }
                        rows.append(
                            {
                                "shape": name,
                                "threads": threads,
                                "context": context,
                                "workers": W,
                                "fused_us": us["fused"],
                                "per_read_us": us["per-read"],
                                "torch_us": us["torch"],
                                "fused_vs_per_read": us["per-read"] / us["fused"],
                                "fused_vs_torch": us["torch"] / us["fused"],
                            }
                        )
                        print(
                            f"{name} t{threads} ctx {context} W={W}: fused {us['fused']:.0f} us, "
                            f"per-read {us['per-read']:.0f} us, torch {us['torch']:.0f} us",
                            file=sys.stderr,
                        )
    finally:
        kernels.set_enabled(None)
    cols = ["shape", "threads", "context", "workers", "fused_us", "per_read_us", "torch_us"]
    print(table(rows, [*cols, "fused_vs_per_read", "fused_vs_torch"]))
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
