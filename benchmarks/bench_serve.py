"""Serving benchmark: `plait serve` vs llama.cpp's `llama-server --parallel N` (and `transformers
serve` where it runs offline), same model (Qwen2.5-0.5B; llama.cpp on the bundled GGUF).

One async load generator: C concurrent clients (1, 8, 32), each sending `--per-client` streaming
/v1/completions requests one after the other; a prompt is a shared 512-token system prompt + a
64-token user part (different per request); 128 output tokens (ignore_eos). Per level and server:
output tokens/s (all tokens / wave wall time), TTFT p50/p99, inter-token latency p50/p99, and
whether every request got exactly one complete stream. `--modes absent` adds the "no max_tokens"
level (reported as e.g. `8-nomax`): requests as most clients send them, without max_tokens (the
server's budget is then the rest of the context); the client reads `--tokens` tokens and closes
the stream. `--chat` sends /v1/chat/completions instead; `--model smollm2-135m` serves SmolLM2;
`--plait-kv-budgets N ...` runs one plait server per KV budget (e.g. 25% of the worst-case need,
named plait-kvN) next to the default one; `--plait-dtypes gguf bf16` one per weight dtype
(plait-gguf: the GGUF's packed blocks, plait-bf16: dequantised). Servers run side by side (idle when not
measured) and levels interleave servers round by round. `transformers serve` runs only up to
`--transformers-max-clients` (default 1): on this CPU it decodes one request at a time at a few
tokens/s (its `--continuous-batching` took ~5 s per token), so 8 or 32 clients would take hours. Prints a table, writes
benchmarks/results/serve_cpu.json and serve_cpu.png; the last line is the JSON.

    flock /tmp/plait-bench.lock .venv/bin/python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --clients 1 8 --rounds 1 --servers plait  # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, save, table  # noqa: E402

LLAMA_SERVER = Path.home() / ".cache/plait/llama.cpp-0.3.36/build/bin/llama-server"
WORDS = ["river", "stone", "cloud", "lamp", "orange", "seven", "quiet", "garden", "number", "circle", "window", "paper", "bridge", "candle", "winter", "forest", "market", "letter", "silver", "engine"]  # fmt: skip


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    model: str
    env: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"ignore_eos": True})
    max_clients: int = 1 << 30  # levels above this are not run for this server
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, timeout: float = 600) -> None:
        log = open(log_dir / f"serve_{self.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {log.name}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise RuntimeError(f"{self.name} did not come up in {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_prompts(tokenizer: Any, system: int, user: int, count: int) -> list[str]:
    """Text prompts: one shared `system`-token part + a distinct `user`-token part each."""
    filler = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(system * 2))
    sys_ids = tokenizer.encode("System: " + filler, add_special_tokens=False)[:system]
    head = tokenizer.decode(sys_ids)
    out = []
    for k in range(count):
        words = " ".join(WORDS[(k * 13 + i * (k % 5 + 1)) % len(WORDS)] for i in range(user * 2))
        ids = tokenizer.encode(f"\nUser {k}: {words}", add_special_tokens=False)[:user]
        out.append(head + tokenizer.decode(ids))
    return out


MODE = {"absent": False, "chat": False}  # set by main: no max_tokens; chat endpoint


async def one(
    client: httpx.AsyncClient, server: Server, prompt: str, tokens: int
) -> dict[str, Any]:
    body = {"model": server.model, "max_tokens": tokens, "temperature": 0, "stream": True,
            **server.body}  # fmt: skip
    if MODE["absent"]:
        del body["max_tokens"]  # the client stops reading after `tokens` tokens instead
    route = "/v1/chat/completions" if MODE["chat"] else "/v1/completions"
    body |= (
        {"messages": [{"role": "user", "content": prompt}]} if MODE["chat"] else {"prompt": prompt}
    )
    start = time.perf_counter()
    stamps: list[float] = []
    finish, done = None, False
    async with client.stream("POST", server.url + route, json=body) as r:
        if r.status_code != 200:
            return {"ok": False, "error": f"{r.status_code}: {(await r.aread())[:200]!r}"}
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            for c in chunk.get("choices") or []:
                if c.get("text") or (c.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
                finish = c.get("finish_reason") or finish
            if MODE["absent"] and len(stamps) >= tokens:
                finish, done = "client", True  # enough: closing the stream cancels it
                break
    ok = finish is not None and bool(stamps)
    return {"ok": ok, "done_marker": done, "ttft": stamps[0] - start if stamps else None, "tokens": len(stamps),
            "itl": [b - a for a, b in zip(stamps, stamps[1:])], "start": start,
            "end": stamps[-1] if stamps else start}  # fmt: skip


async def wave(
    server: Server, prompts: list[str], clients: int, per_client: int, tokens: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=limits) as client:

        async def worker(c: int) -> list[dict[str, Any]]:
            return [await one(client, server, prompts[(c * per_client + k) % len(prompts)], tokens)
                    for k in range(per_client)]  # fmt: skip

        t0 = time.perf_counter()
        results = [
            r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs
        ]
        wall = time.perf_counter() - t0
    good = [r for r in results if r["ok"]]
    return {"requests": len(results), "complete": len(good), "wall_s": wall,
            "done_markers": sum(bool(r.get("done_marker")) for r in results),
            "tokens": sum(r["tokens"] for r in good), "ttft": [r["ttft"] for r in good],
            "itl": [x for r in good for x in r["itl"]],
            "errors": [r.get("error") for r in results if not r["ok"]][:3]}  # fmt: skip


def plait_idle_kv(server: Server) -> float:
    """plait's KV slots held for requests, read from /metrics once it reports none running."""
    for _ in range(100):
        text = httpx.get(server.url + "/metrics", timeout=10).text
        vals = dict(
            line.split()
            for line in text.splitlines()
            if line.startswith("plait_") and "{" not in line
        )
        if float(vals["plait_requests_running"]) == 0:
            return float(vals["plait_kv_request_tokens"])
        time.sleep(0.1)
    return float("nan")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    tps = [r["tokens"] / r["wall_s"] for r in runs]
    ttft = [x for r in runs for x in r["ttft"]]
    itl = [x for r in runs for x in r["itl"]]
    return {
        "tok_s": statistics.median(tps), "tok_s_rounds": [round(x, 2) for x in tps],
        "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
        "itl_p50_s": pct(itl, 50), "itl_p99_s": pct(itl, 99),
        "requests": sum(r["requests"] for r in runs), "complete": sum(r["complete"] for r in runs),
        "done_markers": sum(r["done_markers"] for r in runs),
        "kv_request_tokens_after": [r["kv_after"] for r in runs if "kv_after" in r] or None,
        "errors": [e for r in runs for e in r["errors"]][:3],
    }  # fmt: skip


def servers(args: argparse.Namespace, lm: Any, max_clients: int) -> list[Server]:
    ctx = args.system + args.user + args.tokens + 64
    out = []
    default = 32768 if args.default_budget else max(32768, 2 * max_clients * ctx)
    runs = [(default, d) for d in args.plait_dtypes] * ("plait" in args.servers)
    for budget, dtype in runs + [(b, args.plait_dtypes[0]) for b in args.plait_kv_budgets]:
        port = free_port()
        cmd = [sys.executable, "-m", "plait.cli", "serve", "--model", args.model, "--port",
               str(port), "--kv-budget-tokens", str(budget), "--dtype", dtype,
               "--max-rows", str(max_clients), "--step-tokens", str(args.step_tokens)]  # fmt: skip
        name = "plait" if budget == default else f"plait-kv{budget}"
        if budget == default and len(args.plait_dtypes) > 1:
            name = f"plait-{dtype}"
        out.append(Server(name, cmd, port, args.model))
    if "llama.cpp" in args.servers:
        from plait.runtime.loading.bundled import BUNDLED, resolve_gguf

        if not LLAMA_SERVER.is_file():
            raise SystemExit(f"{LLAMA_SERVER} is missing; build it with `make llama-server`")
        gguf = resolve_gguf(BUNDLED["qwen2.5-0.5b"])
        port = free_port()
        cmd = [str(LLAMA_SERVER), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "-np", str(max_clients), "-c", str(max_clients * ctx), "-t", "2", "-tb", "2",
               "-b", "512", "-ub", "512"]  # fmt: skip
        out.append(Server("llama.cpp", cmd, port, "qwen2.5-0.5b"))
    if "transformers" in args.servers:
        port = free_port()
        cmd = [str(Path(sys.executable).parent / "transformers"), "serve", str(lm.path), "--port",
               str(port), "--host", "127.0.0.1", "--device", "cpu", "--dtype", "bfloat16"]  # fmt: skip
        # no ignore_eos (it refuses unknown fields); continuous batching on CPU ran at ~5 s per
        # token here, so the default mode; too slow for the larger levels (see the docstring)
        out.append(Server("transformers", cmd, port, str(lm.path), env={"HF_HUB_OFFLINE": "1"},
                          body={}, max_clients=args.transformers_max_clients))  # fmt: skip
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for name, levels in result["servers"].items():
        cs = sorted(int(c) for c in levels if c.isdigit())
        for ax, key, label in zip(axes, ("tok_s", "ttft_p50_s", "itl_p50_s"),
                                  ("output tokens/s", "TTFT p50 (s)", "ITL p50 (s)")):  # fmt: skip
            ax.plot(cs, [levels[str(c)][key] for c in cs], marker="o", label=name)
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(label)
            ax.set_xscale("log", base=2)
    axes[0].legend()
    fig.suptitle(f"Qwen2.5-0.5B, {result['settings']['system']}+{result['settings']['user']}-token "
                 f"prompts (shared system part), {result['settings']['tokens']} output tokens; CPU")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", nargs="+", default=["plait", "llama.cpp", "transformers"])
    p.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--per-client", type=int, default=2, help="requests per client per wave")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--system", type=int, default=512)
    p.add_argument("--user", type=int, default=64)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--step-tokens", type=int, default=512)
    p.add_argument("--tag", default="serve_cpu")
    p.add_argument("--model", default="qwen2.5-0.5b", help="plait's model (llama.cpp: qwen)")
    p.add_argument("--modes", nargs="+", default=["set"], choices=["set", "absent"],
                   help="absent: the 'no max_tokens' level")  # fmt: skip
    p.add_argument("--chat", action="store_true", help="/v1/chat/completions requests")
    p.add_argument(
        "--default-budget",
        action="store_true",
        help="plait's default KV budget (32768) instead of 2 x clients x context",
    )
    p.add_argument("--plait-kv-budgets", nargs="*", type=int, default=[],
                   help="more plait servers, one per KV budget (e.g. 25%% of the worst case)")  # fmt: skip
    p.add_argument("--plait-dtypes", nargs="+", default=["auto"],
                   choices=["auto", "gguf", "bf16", "fp32"],
                   help="one plait server per weight dtype (e.g. gguf bf16: packed vs bf16)")  # fmt: skip
    p.add_argument("--transformers-max-clients", type=int, default=1,
                   help="largest level run on transformers serve (slow on CPU)")  # fmt: skip
    args = p.parse_args()
    from plait.runtime.loading.loader import load_model

    MODE["chat"] = args.chat
    lm = load_model(args.model)
    prompts = build_prompts(
        lm.tokenizer, args.system, args.user, max(args.clients) * args.per_client
    )
    started: list[Server] = []
    skipped: dict[str, str] = {}
    try:
        for s in servers(args, lm, max(args.clients)):
            try:
                s.start(Path(tempfile.gettempdir()))  # server logs: <tmp>/serve_<name>.log
                asyncio.run(wave(s, prompts[:1], 1, 1, 4))  # warm-up
                started.append(s)
            except (RuntimeError, OSError) as exc:
                skipped[s.name] = str(exc)
                s.stop()
                print(f"skipping {s.name}: {exc}", file=sys.stderr)
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: {} for s in started}
        partial = (
            RESULTS / f"{args.tag}_partial.json"
        )  # every wave so far (a stopped run keeps them)
        levels = [(c, m) for c in args.clients for m in args.modes]
        for r in range(args.rounds):
            for c, mode in levels if r % 2 == 0 else levels[::-1]:
                order = started if r % 2 == 0 else started[::-1]
                MODE["absent"] = mode == "absent"
                for s in order:
                    if c > s.max_clients:
                        continue
                    res = asyncio.run(wave(s, prompts, c, args.per_client, args.tokens))
                    if s.name.startswith("plait"):  # nothing held once the wave is over
                        res["kv_after"] = plait_idle_kv(s)
                    runs[s.name].setdefault(f"{c}-nomax" if MODE["absent"] else c, []).append(res)
                    partial.write_text(json.dumps({"settings": vars(args), "runs": runs}) + "\n")
                    print(f"round {r} {s.name:12s} clients={c:3d} {res['tokens'] / res['wall_s']:.1f} tok/s "
                          f"complete {res['complete']}/{res['requests']}", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        for s in started:
            s.stop()
    result = {
        "machine": machine(), "settings": vars(args), "skipped": skipped,
        "servers": {n: {str(c): summarize(rs) for c, rs in lv.items()} for n, lv in runs.items()},
    }  # fmt: skip
    others = [n for n in result["servers"] if not n.startswith("plait")]
    if "plait" in result["servers"] and others:
        ratios = {}
        for c in args.clients:
            measured = [o for o in others if str(c) in result["servers"][o]]
            if not measured:
                continue
            best_tps = max(result["servers"][o][str(c)]["tok_s"] for o in measured)
            best_ttft = min(result["servers"][o][str(c)]["ttft_p50_s"] or 1e9 for o in measured)
            mine = result["servers"]["plait"][str(c)]
            ratios[str(c)] = {"throughput_x": mine["tok_s"] / best_tps,
                              "ttft_p50_ratio": (mine["ttft_p50_s"] or 1e9) / best_ttft}  # fmt: skip
        result["plait_vs_best_other"] = ratios
    plain = result["servers"].get("plait", {})
    result["plait_memory"] = {  # no max_tokens vs max_tokens; a smaller KV budget vs the default
        "ttft_p50_nomax_over_set": {c: plain[f"{c}-nomax"]["ttft_p50_s"] / plain[str(c)]["ttft_p50_s"]
                                    for c in args.clients if f"{c}-nomax" in plain and str(c) in plain},
        "tok_s_over_default": {n: {c: m["tok_s"] / plain[c]["tok_s"] for c, m in lv.items() if c in plain}
                               for n, lv in result["servers"].items() if n.startswith("plait-kv")},
    }  # fmt: skip
    rows = [{"server": n, "clients": c, **{k: v for k, v in m.items() if k in
             ("tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s", "complete", "requests")}}
            for n, lv in result["servers"].items() for c, m in lv.items()]  # fmt: skip
    print(table(rows, ["server", "clients", "tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s",
                       "itl_p99_s", "complete", "requests"]))  # fmt: skip
    save(args.tag, result)
    (RESULTS / f"{args.tag}_partial.json").unlink(missing_ok=True)  # the full result replaces it
    plot(result, RESULTS / f"{args.tag}.png")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
