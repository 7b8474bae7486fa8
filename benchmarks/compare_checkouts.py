"""Before / after a change in one run: a benchmark measured in two checkouts, paired.

Two worker processes, one per checkout (each imports its own plait through PYTHONPATH and its
own copy of the benchmark module), set up once and then measure on command, taking turns: every
configuration is measured by both within seconds of each other, before-after in one round and
after-before in the next, so the drift of a shared machine hits both alike. Kinds:
  step_attention  bench_step_attention.one_step: median microseconds per layer of one decode
                  step's attention, per backend (the before side's names for them are mapped);
  hogwild         bench_hogwild.measure: the full engine's median (and mean) ms per pass;
  engine_decode   the continuous-batching engine (plait.runtime.engine) decoding `workers`
                  greedy requests of a `context`-token prompt for `passes` tokens each on
                  SmolLM2-135M bf16: median and mean ms per decode step (prefill steps left out;
                  the mean includes the steps where a segment grows or moves);
  threads_decode  bench_threads_decode.run_sequential / run_threaded: seconds of the sequential
                  and threaded replay of one synthetic trajectory (built by the driver's
                  `padded_trajectory`, so both sides replay the same tokens);
  decode          Qwen2.5-0.5B bf16: `generate` (one request, text out: seconds for up to
                  `--passes` tokens after a prompt of about `context` tokens) and the engine decoding `workers` requests
                  together (ms per step), greedy, EOS ignored, the same tokens on both sides;
  prefill         `--model` bf16 (default smollm2-135m): seconds from adding one request of
                  `context` prompt tokens to a fresh engine (512-token steps) to its first token;
  serve           `plait serve` in-process (Qwen2.5-0.5B bf16): `workers` concurrent streaming
                  chat requests of `--passes` tokens each (EOS ignored): wall seconds of the
                  wave and median time to first token.
The table gives per configuration and metric the median of each side and the median over rounds
of the paired ratio after / before (a time: > 1 means the change is slower).

    git worktree add --detach /tmp/plait-before <commit before the change>
    (or one checkout, two settings: --before . --before-env PLAIT_BATCH_INVARIANT=0)
    flock /tmp/plait-bench.lock python benchmarks/compare_checkouts.py step_attention \
        --before /tmp/plait-before --rounds 5 --out step_attention_before_after
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
BACKENDS = ("step_kernel", "segment_kernel", "torch")
OLD_NAMES = {"step_kernel": "fused", "segment_kernel": "per-read", "torch": "torch"}


# ---------------------------------------------------------------- worker (runs in a checkout)


def _step_attention_worker(bench: Any) -> Any:
    import torch

    models: dict[str, Any] = {}

    def measure(cmd: dict) -> dict:
        torch.set_num_threads(cmd["threads"])
        shape = cmd["shape"]
        model = models.setdefault(shape, bench.attention_model(bench.SHAPES[shape]))
        name = cmd["backend"] if cmd["backend"] in bench.VARIANTS else OLD_NAMES[cmd["backend"]]
        run = bench.one_step(model, cmd["workers"], cmd["context"], cmd["own"], name)[0]
        times = []
        for rep in range(cmd["repeats"] + 2):
            t = time.perf_counter()
            run()
            if rep >= 2:
                times.append(time.perf_counter() - t)
        return {"us_per_layer": 1e6 * statistics.median(times) / model.config.num_layers}

    return measure


def _hogwild_worker(bench: Any) -> Any:
    import torch

    from plait.runtime import load_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    lm = load_model("qwen2.5-0.5b", dtype="bf16")

    def measure(cmd: dict) -> dict:
        r = bench.measure(
            lm.model, lm.tokenizer, cmd["workers"], cmd["context"], cmd["passes"], False
        )
        return {k: r[k] for k in ("ms_per_pass", "ms_per_pass_mean", "context")}

    return measure


def _engine_decode_worker(bench: Any) -> Any:
    import torch

    from plait.runtime import load_model
    from plait.runtime.engine import Engine, EngineConfig, EngineRequest

    torch.set_num_threads(1)
    lm = load_model("smollm2-135m", dtype="bf16")

    def measure(cmd: dict) -> dict:
        e = Engine(lm.model, config=EngineConfig())
        for i in range(cmd["workers"]):
            prompt = [(37 * k + 11 * i) % 9000 + 100 for k in range(cmd["context"])]
            e.add(EngineRequest(prompt=prompt, max_tokens=cmd["passes"], ignore_eos=True))
        times = []
        while e.has_work:
            before = e.stats.computed_prompt_tokens
            t = time.perf_counter()
            e.step()
            if e.stats.computed_prompt_tokens == before:  # a decode-only step
                times.append(time.perf_counter() - t)
        return {"ms_per_step": 1e3 * statistics.median(times),
                "ms_per_step_mean": 1e3 * statistics.mean(times)}  # fmt: skip

    return measure


def _threads_decode_worker(bench: Any) -> Any:
    import importlib.util

    import torch

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location(
        "driver_bench", HERE.parent / "bench_threads_decode.py"
    )
    assert spec is not None and spec.loader is not None
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    models: dict[str, Any] = {}

    def measure(cmd: dict) -> dict:
        model = models.get(cmd["model"])
        if model is None:
            model = models[cmd["model"]] = bench.load(cmd["model"], "cpu", "float32")
        t = driver.padded_trajectory(
            cmd["rep"], model.config.vocab_size, 2, (3, 3), (40, 60), cmd["context"]
        )
        thr, _ = bench.run_threaded(model, t)
        return {"seq_s": bench.run_sequential(model, t), "thr_s": thr}

    return measure


def _decode_worker(bench: Any) -> Any:
    import torch

    from plait.runtime import load_model
    from plait.runtime.engine import Engine, EngineConfig, EngineRequest
    from plait.runtime.generate import generate

    torch.set_num_threads(1)
    lm = load_model("qwen2.5-0.5b", dtype="bf16")

    def measure(cmd: dict) -> dict:
        prompt = [100 + (7 * i) % 900 for i in range(cmd["context"])]
        words = " ".join(["apple", "pear", "plum"] * (cmd["context"] // 3))
        t = time.perf_counter()
        text = "".join(
            generate(lm, f"{words}\nCount to fifty: 1, 2, 3,", cmd["passes"], chat=False)
        )
        gen_s = time.perf_counter() - t
        engine = Engine(lm.model, lm.tokenizer, EngineConfig(max_rows=cmd["workers"]))
        for w in range(cmd["workers"]):
            engine.add(EngineRequest(prompt=[*prompt, 200 + w], max_tokens=cmd["passes"],
                                     ignore_eos=True))  # fmt: skip
        steps = []
        while engine.has_work:
            t = time.perf_counter()
            engine.step()
            steps.append(time.perf_counter() - t)
        decode = steps[2:]  # the first steps prefill
        return {"generate_s": gen_s, "engine_ms_per_step": 1000 * statistics.median(decode),
                "chars": len(text)}  # fmt: skip

    return measure


def _prefill_worker(model: str) -> Any:
    import torch

    from plait.runtime import load_model
    from plait.runtime.engine import Engine, EngineConfig, EngineRequest

    torch.set_num_threads(1)
    lm = load_model(model, dtype="bf16")

    def measure(cmd: dict) -> dict:
        prompt = [100 + (7 * i) % 900 for i in range(cmd["context"])]
        engine = Engine(lm.model, lm.tokenizer, EngineConfig(step_tokens=512))
        t = time.perf_counter()
        engine.add(EngineRequest(prompt=prompt, max_tokens=1, ignore_eos=True))
        while engine.has_work:
            engine.step()
        return {"prefill_s": time.perf_counter() - t}

    return measure


def _serve_worker(bench: Any) -> Any:
    import asyncio

    import httpx
    import torch

    from plait.runtime import load_model
    from plait.serve.server import build_state, start_in_thread

    torch.set_num_threads(1)
    lm = load_model("qwen2.5-0.5b", dtype="bf16")
    server, url = start_in_thread(build_state(lm, model_name="m"))

    async def one(client: httpx.AsyncClient, cmd: dict, i: int) -> float:
        body = {"model": "m", "stream": True, "max_tokens": cmd["passes"], "ignore_eos": True,
                "temperature": 0, "messages": [{"role": "user", "content": f"Count to {i}."}]}  # fmt: skip
        t, first = time.perf_counter(), None
        async with client.stream("POST", f"{url}/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if first is None and line.startswith("data:"):
                    first = time.perf_counter() - t
        return first or 0.0

    async def wave(cmd: dict) -> dict:
        async with httpx.AsyncClient(timeout=600) as client:
            t = time.perf_counter()
            ttft = await asyncio.gather(*(one(client, cmd, i) for i in range(cmd["workers"])))
            return {"wave_s": time.perf_counter() - t, "ttft_s": statistics.median(ttft)}

    def measure(cmd: dict) -> dict:
        return asyncio.run(wave(cmd))

    return measure


def worker(kind: str) -> None:
    """Serve measurements: one JSON command per stdin line, one JSON result per stdout line."""
    sys.path.insert(0, str(Path.cwd() / "benchmarks"))  # this checkout's benchmark modules
    if kind == "step_attention":
        import bench_step_attention

        measure = _step_attention_worker(bench_step_attention)
    elif kind == "threads_decode":
        import bench_threads_decode

        measure = _threads_decode_worker(bench_threads_decode)
    elif kind == "engine_decode":
        measure = _engine_decode_worker(None)
    elif kind == "decode":
        measure = _decode_worker(None)
    elif kind == "serve":
        measure = _serve_worker(None)
    elif kind.startswith("prefill:"):
        measure = _prefill_worker(kind.split(":", 1)[1])
    else:
        import bench_hogwild

        measure = _hogwild_worker(bench_hogwild)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(measure(json.loads(line))), flush=True)


# ---------------------------------------------------------------- driver


class Side:
    """A worker process in one checkout."""

    def __init__(self, checkout: Path, kind: str, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(checkout), **(extra_env or {}))
        cmd = [sys.executable, str(HERE), "--worker", kind]
        self.proc = subprocess.Popen(
            cmd, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if self.proc.stdin is None or self.proc.stdout is None:
            raise RuntimeError("no pipes to the worker")
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.checkout, self.env = checkout, extra_env or {}
        self._read()

    def _read(self) -> dict:
        line = self.stdout.readline()
        if not line:
            raise SystemExit(f"the worker in {self.checkout} died (its stderr is above)")
        return json.loads(line)

    def measure(self, cmd: dict) -> dict:
        self.stdin.write(json.dumps(cmd) + "\n")
        self.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=60)


def configs(args: argparse.Namespace) -> list[dict]:
    if args.kind == "step_attention":
        grid = itertools.product(args.shapes, args.threads, args.contexts, args.workers, BACKENDS)
        keys = ("shape", "threads", "context", "workers", "backend")
        fixed = {"own": 24, "repeats": args.repeats}
    elif args.kind == "threads_decode":  # context = prompt pad tokens, workers = trajectory
        grid = itertools.product(args.contexts, args.workers)
        keys, fixed = ("context", "rep"), {"model": args.model}
    else:
        grid = itertools.product(args.contexts, args.workers)
        keys, fixed = ("context", "workers"), {"passes": args.passes}
    return [dict(zip(keys, values)) | fixed for values in grid]


def run_pairs(sides: dict[str, Side], cmds: list[dict], rounds: int) -> list[dict]:
    rows = []
    for cmd in cmds:
        got: dict[str, list[dict]] = {"before": [], "after": []}
        for r in range(rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                got[side].append(sides[side].measure(cmd))
        for metric in got["after"][0]:
            if metric in ("context", "chars"):
                continue
            pairs = [(b[metric], a[metric]) for b, a in zip(got["before"], got["after"])]
            ratios = [a / b for b, a in pairs]
            rows.append(
                {k: v for k, v in cmd.items() if k not in ("own", "repeats", "passes", "model")}
                | {"context": got["after"][0].get("context", cmd.get("context"))}
                | {
                    "metric": metric,
                    "before": statistics.median(b for b, _ in pairs),
                    "after": statistics.median(a for _, a in pairs),
                    "ratio": statistics.median(ratios),
                    "ratios": [round(x, 4) for x in ratios],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def _git(checkout: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def _env(pairs: list[str]) -> dict[str, str]:
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"--before-env/--after-env take KEY=VALUE, got {bad[0]!r}")
    return dict(p.split("=", 1) for p in pairs)


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "kind",
        choices=[
            "step_attention",
            "hogwild",
            "threads_decode",
            "decode",
            "serve",
            "prefill",
            "engine_decode",
        ],
    )
    ap.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    ap.add_argument("--after", type=Path, default=HERE.parents[1], help="checkout of the new code")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="step_attention only")
    ap.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-7b(8 layers)"])
    ap.add_argument("--repeats", type=int, default=9, help="step_attention: timed calls")
    ap.add_argument("--passes", type=int, default=16,
                    help="hogwild: timed passes; decode, serve: tokens per request")  # fmt: skip
    ap.add_argument("--model", default="smollm2-135m", help="threads_decode, prefill: the model")
    ap.add_argument("--out", required=True, help="result name under benchmarks/results/")
    ap.add_argument("--before-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="environment of the before side, e.g. PLAIT_BATCH_INVARIANT=0 "
                    "(with --before = --after: one checkout, two settings)")  # fmt: skip
    ap.add_argument("--after-env", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from common import machine, save, table

    kind = f"prefill:{args.model}" if args.kind == "prefill" else args.kind
    sides = {
        "before": Side(args.before.resolve(), kind, _env(args.before_env)),
        "after": Side(args.after, kind, _env(args.after_env)),
    }
    try:
        rows = run_pairs(sides, configs(args), args.rounds)
    finally:
        for side in sides.values():
            side.close()
    keys = ["context", "rep" if args.kind == "threads_decode" else "workers"]
    if args.kind == "step_attention":
        keys = ["shape", "threads", *keys, "backend"]
    print(table(rows, [*keys, "metric", "before", "after", "ratio"]))
    payload = {
        "benchmark": f"before_after_{args.kind}",
        "machine": machine(),
        "checkouts": {
            s: {"path": str(side.checkout), "git": _git(side.checkout), "env": side.env}
            for s, side in sides.items()
        },
        "rounds": args.rounds,
        "metrics": "ratio = median over rounds of the paired after/before (a time: > 1 is slower)",
        "rows": rows,
    }
    save(args.out, payload)
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
