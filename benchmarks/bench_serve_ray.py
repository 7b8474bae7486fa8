"""`plait serve --ray` costs: TTFT through the Ray ingress vs single-process `plait serve`, the
prefix router's cost per request and its index's memory as replicas grow, and prefix routing's
cache hit rate against round-robin.

1. TTFT at one client, one node: SmolLM2-135M, single-process server and a one-replica Ray
   deployment (the replica reserves both cores, so its torch uses 2 threads like the server), the
   same streaming /v1/completions requests (a distinct ~60-token prompt each, 8 tokens), rounds
   interleaved (A then B each round); medians and the ratio.
2. Router cost: `chain` + `PrefixIndex.choose` + `routed` per request for 2..1000 replicas, each
   replica's tree full (`capacity_tokens` of 512-token prompts), and the index's memory
   (tracemalloc) per (key, replica) entry.
3. Affinity: 4 system prompts of 512 tokens x 16 requests at once on two replicas of a tiny
   random model (KV budget 1280 tokens each), prefix vs round-robin, a warm-up round then two.

    flock /tmp/plait-bench.lock nice .venv/bin/python benchmarks/bench_serve_ray.py
    python benchmarks/bench_serve_ray.py --rounds 5 --skip-affinity  # quick look
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from common import machine, save, table  # noqa: E402

WORDS = ["river", "stone", "cloud", "lamp", "orange", "seven", "quiet", "garden", "number", "circle"]  # fmt: skip


def ttft(url: str, model: str, prompt: str) -> float:
    body = {"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": True,
            "ignore_eos": True}  # fmt: skip
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                return time.perf_counter() - t0
    raise RuntimeError("no token came back")


def stream_time(url: str, model: str, prompt: str, tokens: int) -> float:
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}  # fmt: skip
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/completions", json=body, timeout=300) as r:
        for _ in r.iter_lines():
            pass
    return time.perf_counter() - t0


def bench_ttft(rounds: int) -> dict[str, Any]:
    import ray

    from plait.runtime.engine import EngineConfig
    from plait.runtime.loading.loader import load_model
    from plait.serve.cluster.deploy import ClusterConfig, deploy, start_in_thread, undeploy
    from plait.serve.cluster.replica import ReplicaSpec
    from plait.serve.server import build_state
    from plait.serve.server import start_in_thread as serve_in_thread

    engine = dict(kv_budget_tokens=16384, max_rows=32, step_tokens=512, block_tokens=64)
    state = build_state(load_model("smollm2-135m"), EngineConfig(**engine), "smol")
    server, one_url = serve_in_thread(state)
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    cfg = ClusterConfig(replicas=1, replica_cpus=2)
    ingress = deploy(ReplicaSpec(model="smollm2-135m", served_name="smol", engine=engine), cfg)
    ray_server, ray_url = start_in_thread(ingress)
    rng = random.Random(0)
    times: dict[str, list[float]] = {"single": [], "ray": []}
    streams: dict[str, list[float]] = {"single": [], "ray": []}
    try:
        for r in range(rounds + 2):  # two warm-up rounds
            for name, url in (("single", one_url), ("ray", ray_url)):
                prompt = " ".join(rng.choice(WORDS) for _ in range(60)) + f" {r}"
                t = ttft(url, "smol", prompt)
                if r >= 2:
                    times[name].append(t)
        for r in range(max(3, rounds // 4)):  # one 128-token stream: per-chunk relay cost
            for name, url in (("single", one_url), ("ray", ray_url)):
                streams[name].append(stream_time(url, "smol", f"{r} " + WORDS[r % 10], 128))
    finally:
        ray_server.should_exit = True
        undeploy(cfg)
        ray.shutdown()
        server.should_exit = True
        state.loop.stop(timeout=10)
    med = {k: statistics.median(v) for k, v in times.items()}
    smed = {k: statistics.median(v) for k, v in streams.items()}
    return {"ttft_single_ms": 1e3 * med["single"], "ttft_ray_ms": 1e3 * med["ray"],
            "ratio": med["ray"] / med["single"], "rounds": rounds,
            "stream128_single_s": smed["single"], "stream128_ray_s": smed["ray"],
            "relay_ms_per_chunk": 1e3 * (smed["ray"] - smed["single"]) / 128,
            "ttft_ray_p90_ms": 1e3 * sorted(times["ray"])[int(0.9 * (rounds - 1))]}  # fmt: skip


def bench_router(replicas: list[int], capacity: int, requests: int) -> list[dict[str, Any]]:
    from plait.serve.cluster.prefix_index import PrefixIndex, RouterConfig, chain

    rows = []
    for n in replicas:
        rng = random.Random(n)
        tracemalloc.start()
        index = PrefixIndex(RouterConfig(capacity_tokens=capacity))
        names = [f"replica-{i:04d}" for i in range(n)]
        prompts = [[rng.randrange(50000) for _ in range(512)] for _ in range(64)]
        for name in names:  # fill every tree: capacity / 512 prompts each
            for _ in range(capacity // 512):
                index.insert(name, chain([rng.randrange(50000) for _ in range(512)], 16))
        mem = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        loads = {name: rng.randrange(4) for name in names}
        t0 = time.perf_counter()
        for i in range(requests):
            p = prompts[i % len(prompts)] + [i, i + 1]
            keys = chain(p, 16)
            ranks = index.choose(names, loads, keys)
            index.routed(ranks[0][0], keys)
        per = (time.perf_counter() - t0) / requests
        entries = index.entries()
        rows.append({"replicas": n, "router_us_per_request": round(1e6 * per, 1),
                     "index_entries": entries, "index_mib": round(mem / 2**20, 1),
                     "bytes_per_entry": round(mem / max(entries, 1))})  # fmt: skip
    return rows


def bench_affinity() -> dict[str, Any]:
    from plait.serve.cluster.deploy import ClusterConfig, deploy, start_in_thread, undeploy
    from plait.serve.cluster.prefix_index import RouterConfig
    from plait.serve.cluster.replica import ReplicaSpec
    from tests.helpers.cluster import affinity_round, local_cluster, system_prompts, tiny_model_dir

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, local_cluster(nodes=2, cpus=1):
        engine = dict(kv_budget_tokens=1280, max_rows=16, step_tokens=256, block_tokens=16)
        spec = ReplicaSpec(model=str(tiny_model_dir(Path(tmp) / "tiny")), served_name="smol",
                           dtype="fp32", engine=engine)  # fmt: skip
        prompts = system_prompts(4, 512)
        for policy in ("prefix", "round_robin"):
            cfg = ClusterConfig(replicas=2, replica_cpus=0.5, max_replicas_per_node=1, app_name=policy,
                                router=RouterConfig(policy=policy, capacity_tokens=1280))  # fmt: skip
            server, url = start_in_thread(deploy(spec, cfg))
            affinity_round(url, prompts, seed=0)
            t0 = time.perf_counter()
            rounds = [affinity_round(url, prompts, seed=s) for s in (1, 2)]
            wall = (time.perf_counter() - t0) / 2
            out[policy] = {
                "hit_rate": sum(r.cached_tokens for r in rounds) / sum(r.prompt_tokens for r in rounds),
                "replicas_per_prompt": max(len(s) for r in rounds for s in r.replicas.values()),
                "recomputed_prompts": sum(len(s) for r in rounds for s in r.computed_on.values()),
                "round_s": round(wall, 2),
            }  # fmt: skip
            server.should_exit = True
            undeploy(cfg)
    out["ratio"] = out["prefix"]["hit_rate"] / max(out["round_robin"]["hit_rate"], 1e-9)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--replicas", type=int, nargs="+", default=[2, 10, 100, 1000])
    ap.add_argument("--capacity", type=int, default=32768, help="router tokens per replica")
    ap.add_argument("--skip-affinity", action="store_true")
    ap.add_argument("--skip-ttft", action="store_true")
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    result["router"] = bench_router(args.replicas, args.capacity, 2000)
    print(table(result["router"], list(result["router"][0])))
    if not args.skip_ttft:
        result["ttft"] = bench_ttft(args.rounds)
        print(table([result["ttft"]], list(result["ttft"])))
    if not args.skip_affinity:
        result["affinity"] = bench_affinity()
        rows = [{"policy": k, **v} for k, v in result["affinity"].items() if k != "ratio"]
        print(table(rows, list(rows[0])), f"\nhit-rate ratio {result['affinity']['ratio']:.2f}")
    result["machine"]["load_avg_1m_end"] = round(__import__("os").getloadavg()[0], 2)
    save("serve_ray", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
