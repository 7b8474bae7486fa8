"""Trie packing: mask memory at 40k tokens, and packed vs per-unit training tokens and time.

Part 1 builds one synthetic trajectory whose packed trie fills a 40,960-token row and reports the
mask state: entry/exit vectors (what the CPU `chunked` and FlexAttention paths keep), the
FlexAttention BlockMask tables (`--block-mask`), versus the dense N x N bool mask and the
release's (1, 1, N, N) float32 additive mask. It also runs one no-grad forward of a tiny model
over the 40k row with the chunked backend (peak RSS reported).
Part 2 trains a tiny model on synthetic trajectories two ways: packed trie rows (one forward per
row) vs one causal forward per unit (the release's layout), same loss tokens; reports tokens run
through the model and median step time.

    flock /tmp/plait-bench.lock python benchmarks/bench_threads_packing.py

Last stdout line: JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from plait.threads.data.synthetic import random_trajectory, small_model
from plait.threads.training.context import TrieContext, packed_loss
from plait.threads.training.mask import ancestor_block_mask, block_mask_nbytes
from plait.threads.training.packing import pack_rows
from plait.threads.training.reference import unit_token_logprobs
from plait.threads.training.trie import build_trie


def tiny_model(vocab: int, device: str):  # noqa: ANN201
    return small_model(vocab, max_position=65536, device=device)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_mask(n_target: int, block_mask: bool, device: str, forward: bool) -> dict:
    rng = random.Random(0)
    t = random_trajectory(rng, vocab=512, blocks=24, threads=(2, 4), body=(250, 650))
    rows, report = pack_rows([t.units], n_target, pad_to_length=False)
    row = rows[0]
    n = row.length
    out = {
        "tokens": n,
        "full_trajectory_tokens": len(t.units[0].tokens),
        "units": len(t.units),
        "dropped_units": report.n_dropped_units,
        "entry_exit_bytes_int64": 2 * 8 * n,
        "entry_exit_bytes_int32": 2 * 4 * n,
        "dense_bool_bytes": n * n,
        "release_float32_bytes": 4 * n * n,
    }
    if block_mask:
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        bm = ancestor_block_mask(row.entry.to(device), row.exit.to(device))
        out["block_mask_bytes"] = block_mask_nbytes(bm)
        out["block_mask_build_s"] = round(time.perf_counter() - start, 2)
        if cuda:
            out["block_mask_build_peak_cuda_mb"] = round(
                (torch.cuda.max_memory_allocated() - base) / 2**20, 1
            )
    if forward:
        model = tiny_model(512, device)
        before = rss_mb()
        start = time.perf_counter()
        with torch.no_grad():
            ctx = TrieContext.for_row(model.rope, row, device, backend="chunked", chunk=256)
            model(row.input_ids.to(device), ctx, logit_rows=row.loss_rows[:8].to(device))
        out["forward_40k_chunked_s"] = round(time.perf_counter() - start, 2)
        out["forward_peak_rss_growth_mb"] = round(rss_mb() - before, 1)
    return out


def part_flex_train(n_target: int, device: str) -> dict:
    """CUDA: one forward+backward over the 40k row with FlexAttention; agreement with chunked."""
    from plait.threads.training.context import packed_token_logprobs

    t = random_trajectory(random.Random(0), vocab=512, blocks=24, threads=(2, 4), body=(250, 650))
    row = pack_rows([t.units], n_target, pad_to_length=False)[0][0]
    model = tiny_model(512, device)
    out = {}
    for attempt in ("compile", "timed"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        lp = packed_token_logprobs(model, row, backend="flex")
        (-lp.sum()).backward()
        torch.cuda.synchronize()
        out[f"flex_fwd_bwd_{attempt}_s"] = round(time.perf_counter() - start, 3)
    out["flex_peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    with torch.no_grad():
        ref = packed_token_logprobs(model, row, backend="chunked", chunk=512)
    out["flex_vs_chunked_max_abs_logprob_diff"] = float((lp.detach() - ref).abs().max())
    out["tokens"], out["trained_tokens"] = row.length, int(row.loss_rows.numel())
    return out


def part_train(n_traj: int, repeats: int, device: str) -> dict:
    rng = random.Random(1)
    trajs = [
        random_trajectory(rng, vocab=512, blocks=3, threads=(2, 4), body=(20, 80)).units
        for _ in range(n_traj)
    ]
    rows, report = pack_rows(trajs, row_length=2048, pad_to_length=False)
    model = tiny_model(512, device)
    unit_tokens = sum(len(u.tokens) for t in trajs for u in t)

    def packed_step() -> None:
        model.zero_grad(set_to_none=True)
        sum(packed_loss(model, r) for r in rows).backward()

    def per_unit_step() -> None:
        model.zero_grad(set_to_none=True)
        total = sum(-unit_token_logprobs(model, u)[0].sum() for t in trajs for u in t)
        total.backward()  # type: ignore[union-attr]

    def timed(fn) -> float:  # noqa: ANN001
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    packed_step(), per_unit_step()  # warm-up
    tp = [timed(packed_step) for _ in range(repeats)]
    tu = [timed(per_unit_step) for _ in range(repeats)]
    return {
        "trajectories": n_traj,
        "units": sum(len(t) for t in trajs),
        "packed_tokens": report.tokens,
        "per_unit_tokens": unit_tokens,
        "token_ratio": round(unit_tokens / report.tokens, 3),
        "rows": report.rows,
        "trie_sizes": [len(build_trie(t)) for t in trajs][:4],
        "packed_step_s": round(statistics.median(tp), 3),
        "per_unit_step_s": round(statistics.median(tu), 3),
        "time_ratio": round(statistics.median(tu) / statistics.median(tp), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=40960)
    ap.add_argument(
        "--block-mask",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the FlexAttention BlockMask (default: only on cuda; slow on CPU)",
    )
    ap.add_argument("--forward", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    want_bm = args.device.startswith("cuda") if args.block_mask is None else args.block_mask
    mask = part_mask(args.tokens, want_bm, args.device, args.forward)
    train = part_train(args.trajectories, args.repeats, args.device)
    flex = part_flex_train(args.tokens, args.device) if args.device.startswith("cuda") else None
    mb = 1 / 2**20
    print(f"| mask form (N = {mask['tokens']}) | MiB |\n|---|---|")
    print(
        f"| entry/exit int64 (chunked, flex mask_mod) | {mask['entry_exit_bytes_int64'] * mb:.2f} |"
    )
    if "block_mask_bytes" in mask:
        print(f"| FlexAttention BlockMask tables | {mask['block_mask_bytes'] * mb:.2f} |")
    print(f"| dense N x N bool | {mask['dense_bool_bytes'] * mb:.0f} |")
    print(f"| release (1,1,N,N) float32 | {mask['release_float32_bytes'] * mb:.0f} |")
    print(
        f"\npacked vs per-unit: {train['packed_tokens']} vs {train['per_unit_tokens']} tokens "
        f"({train['token_ratio']}x), step {train['packed_step_s']}s vs "
        f"{train['per_unit_step_s']}s ({train['time_ratio']}x)"
    )
    state = mask["entry_exit_bytes_int64"] + mask.get("block_mask_bytes", 0)
    out = {
        "bench": "threads_packing",
        "device": args.device,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": args.torch_threads,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mask": mask,
        "mask_state_bytes": state,
        "goal_mask_state_bytes": 10_000_000,
        "train": train,
        "flex_train_40k": flex,
    }
    if flex:
        print(
            f"flex fwd+bwd over {flex['tokens']} tokens: {flex['flex_fwd_bwd_timed_s']}s, peak "
            f"{flex['flex_peak_cuda_mb']} MiB, max |flex - chunked| log-prob "
            f"{flex['flex_vs_chunked_max_abs_logprob_diff']:.2e}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
