"""Few-row linear layers: plait's compiled `skinny_linear` against torch's `F.linear`.

Every linear layer of a Qwen2.5-0.5B-shaped decoder (24 layers: qkv 1152x896, o 896x896,
gate_up 9728x896, down 896x4864; tied head 151936x896), each layer with its own random weights
so the ~1 GB of bf16 weights streams from DRAM as in real decoding. One "pass" runs all of them
for R activation rows; the table gives the median pass time for torch and for the kernel, and
the weight bandwidth the kernel reaches.

    flock /tmp/plait-bench.lock python benchmarks/bench_kernels.py --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_time, save, table  # noqa: E402

from plait.runtime import kernels  # noqa: E402

LAYER_SHAPES = [(1152, 896), (896, 896), (9728, 896), (896, 4864)]
HEAD = (151936, 896)


def weights(dtype: torch.dtype, layers: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, i, generator=g).to(dtype) for _ in range(layers) for o, i in LAYER_SHAPES]
    return ws + [torch.randn(*HEAD, generator=g).to(dtype)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="kernels_cpu")
    args = ap.parse_args()
    if not kernels.available():
        sys.exit(f"plait CPU kernels unavailable: {kernels.unavailable_reason()}")
    rows_out = []
    for name in args.dtypes:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
        ws = weights(dtype, args.layers)
        nbytes = sum(w.numel() * w.element_size() for w in ws)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for r in args.rows:
                xs = {i: torch.randn(r, i).to(dtype) for i in {w.shape[1] for w in ws}}

                def run(fn, xs=xs, ws=ws):  # noqa: ANN001, ANN202
                    with torch.no_grad():
                        for w in ws:
                            fn(xs[w.shape[1]], w)

                t_torch = median_time(lambda: run(F.linear), args.repeats)
                t_kern = median_time(lambda: run(kernels.skinny_linear), args.repeats)
                rows_out.append(
                    {
                        "dtype": name,
                        "threads": threads,
                        "rows": r,
                        "torch_ms": 1000 * t_torch,
                        "kernel_ms": 1000 * t_kern,
                        "speedup": t_torch / t_kern,
                        "kernel_GBps": nbytes / t_kern / 1e9,
                        "weights_MB": nbytes / 1e6,
                    }
                )
                print(
                    f"{name} threads={threads} rows={r}: torch {1000 * t_torch:.1f} ms, "
                    f"kernel {1000 * t_kern:.1f} ms",
                    file=sys.stderr,
                )
    cols = ["dtype", "threads", "rows", "torch_ms", "kernel_ms", "speedup", "kernel_GBps"]
    print(table(rows_out, cols))
    payload = {"benchmark": "skinny_linear", "machine": machine(), "rows": rows_out}
    path = save(args.out, payload)
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
