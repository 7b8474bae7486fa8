"""Helpers of the `plait serve --ray` tests and benchmark: a tiny random model on disk, a real
local multi-node Ray cluster (started and stopped here, no process left behind), and the
prefix-affinity workload (shared system prompts, sent concurrently)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MODEL = "smol"  # the name the tiny model is served under (the single-process tests' name)


def tiny_model_dir(path: Path) -> Path:
    """A random 2-layer Llama (byte-level tokenizer, chat template, 8192 positions) saved in
    HF format: every replica loads it from this path."""
    from tests.helpers.checkpoints import save_hf_dir, tiny_tokenizer
    from tests.helpers.tiny import tiny_hf

    if not (path / "config.json").exists():
        model = tiny_hf("llama", 0, vocab=260, tie=True, intermediate=128, max_position=8192,
                        rope_theta=10000.0, bos=257, eos=259)  # fmt: skip
        save_hf_dir(model, tiny_tokenizer(), path)
    return path


@contextmanager
def local_cluster(nodes: int = 2, cpus: float = 1) -> Iterator[str]:
    """A Ray cluster of `nodes` nodes on this machine (`ray.cluster_utils.Cluster`), this process
    connected to it; on exit Ray is shut down and every process the cluster started is gone."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus)
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster.address
    finally:
        pids = _cluster_pids(cluster)
        ray.shutdown()
        cluster.shutdown()
        _reap(pids)


def _cluster_pids(cluster: object) -> list[int]:
    pids = []
    for node in [getattr(cluster, "head_node", None), *getattr(cluster, "worker_nodes", [])]:
        for infos in (getattr(node, "all_processes", None) or {}).values():
            pids += [i.process.pid for i in infos if getattr(i, "process", None) is not None]
    return pids


def _reap(pids: list[int], timeout: float = 20.0) -> None:
    """Wait for the cluster's processes to exit; kill (by pid) any that did not."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.2)
    for p in alive:
        os.kill(p, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@dataclass(slots=True)
class AffinityRound:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    replicas: dict[int, set[str]] = field(default_factory=dict)  # prompt -> replicas serving it
    computed_on: dict[int, set[str]] = field(default_factory=dict)  # prompt -> replicas that
    # computed (part of) its shared prefix in this round

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def system_prompts(count: int = 4, length: int = 512, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(256) for _ in range(length)] for _ in range(count)]


async def _affinity_round(url: str, prompts: list[list[int]], per_prompt: int, seed: int,
                          shared: int) -> AffinityRound:  # fmt: skip
    rng = random.Random(seed)
    jobs = [(p, prompts[p] + [rng.randrange(256) for _ in range(8)])
            for p in range(len(prompts)) for _ in range(per_prompt)]  # fmt: skip
    rng.shuffle(jobs)
    out = AffinityRound()
    limits = httpx.Limits(max_connections=len(jobs))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(p: int, ids: list[int]) -> None:
            r = await client.post("/completions", json={"model": MODEL, "prompt": ids,
                                                        "max_tokens": 4, "temperature": 0})  # fmt: skip
            r.raise_for_status()
            usage = r.json()["usage"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            out.prompt_tokens += usage["prompt_tokens"]
            out.cached_tokens += cached
            replica = r.headers.get("x-plait-replica", "local")
            out.replicas.setdefault(p, set()).add(replica)
            if cached < shared:
                out.computed_on.setdefault(p, set()).add(replica)

        await asyncio.gather(*(one(p, ids) for p, ids in jobs))
    return out


def affinity_round(url: str, prompts: list[list[int]], per_prompt: int = 16, seed: int = 0,
                   shared: int = 496) -> AffinityRound:  # fmt: skip
    """All `len(prompts) x per_prompt` requests at once (prompt = a system prompt + 8 own
    tokens, in random order); `shared`: cached tokens below which the prefix was computed."""
    return asyncio.run(_affinity_round(url, prompts, per_prompt, seed, shared))
