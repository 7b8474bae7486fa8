"""`plait serve --ray` on a real local two-node Ray cluster, through the real `openai` client:
the same outputs as single-process `plait serve` (greedy, seeded, streamed, n > 1, hogwild,
threads), prefix routing against round-robin, and a replica killed while 16 requests stream."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.helpers.cluster import MODEL, affinity_round, system_prompts

pytestmark = [pytest.mark.ray]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def _router(state):
    from plait.serve.cluster.router import LIVE

    return LIVE[state.deployment]


def _choices(r) -> list[tuple]:
    return [(c.index, getattr(c, "text", None) or c.message.content, c.finish_reason)
            for c in sorted(r.choices, key=lambda c: c.index)]  # fmt: skip


def test_two_replicas_on_two_nodes_answer_as_single_process_serve(ray_served, tiny_served):
    state, url, _, _ = ray_served
    replicas = list(_router(state).curr_replicas.values())
    assert len(replicas) == 2 and len({r.node_id for r in replicas}) == 2
    ray, one = _client(url), _client(tiny_served[1])
    assert [m.id for m in ray.models.list().data] == [MODEL]
    msgs = [{"role": "user", "content": "Name three colours."}]
    calls = [
        lambda c: c.completions.create(model=MODEL, prompt="Hello there", max_tokens=12, temperature=0),
        lambda c: c.completions.create(model=MODEL, prompt=[5, 6, 7, 8], max_tokens=8, temperature=0,
                                       logprobs=2),
        lambda c: c.completions.create(model=MODEL, prompt=["ab", "cd"], max_tokens=6, temperature=0),
        lambda c: c.completions.create(model=MODEL, prompt="seeded", max_tokens=10, n=3,
                                       temperature=1.0, seed=7),
        lambda c: c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0),
    ]  # fmt: skip
    for call in calls:
        a, b = call(ray), call(one)
        assert _choices(a) == _choices(b)
        assert a.usage.completion_tokens == b.usage.completion_tokens > 0
    first = calls[1](ray).choices[0].logprobs
    assert first.tokens == calls[1](one).choices[0].logprobs.tokens
    stream = list(ray.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16,
                                              temperature=0, stream=True))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == calls[4](one).choices[0].message.content
    assert stream[0].choices[0].delta.role == "assistant"


def test_hogwild_and_threads_extensions_go_whole_to_one_replica(ray_served, tiny_served):
    _, url, _, _ = ray_served
    ray, one = _client(url), _client(tiny_served[1])
    msgs = [{"role": "user", "content": "A farmer has 12 cows and buys 5 more. How many?"}]
    spec = {"workers": 2, "budgets": [4, 8], "finisher_max_tokens": 3}
    a, b = (c.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                      extra_body={"hogwild": spec}) for c in (ray, one))  # fmt: skip
    assert a.model_extra["hogwild"] == b.model_extra["hogwild"]
    assert a.choices[0].message.content == b.choices[0].message.content
    chunks = list(ray.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                              stream=True, extra_body={"hogwild": spec}))  # fmt: skip
    tags = [c.model_extra.get("hogwild") for c in chunks if c.model_extra.get("hogwild")]
    assert tags and chunks[-1].choices[0].finish_reason == "stop"
    threads = {"max_total_tokens": 24}
    a, b = (c.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                      extra_body={"threads": threads}) for c in (ray, one))  # fmt: skip
    assert a.choices[0].message.content == b.choices[0].message.content
    for key in ("stop_reason", "response_tokens", "critical_path", "blocks", "calls"):
        assert a.model_extra["threads"][key] == b.model_extra["threads"][key]
    with pytest.raises(openai.BadRequestError, match="unknown hogwild fields"):
        ray.chat.completions.create(model=MODEL, messages=msgs, extra_body={"hogwild": {"x": 1}})
    with pytest.raises(openai.BadRequestError, match="lower n"):
        ray.completions.create(model=MODEL, prompt="x", n=9)


def _deploy(spec, app: str, policy: str, budget: int):
    """Another app on the cluster: two replicas whose KV budget is `budget` tokens."""
    import dataclasses

    from plait.serve.cluster.deploy import ClusterConfig, deploy, start_in_thread
    from plait.serve.cluster.prefix_index import RouterConfig

    spec = dataclasses.replace(spec, engine={**spec.engine, "kv_budget_tokens": budget})
    cfg = ClusterConfig(replicas=2, replica_cpus=0.25, max_replicas_per_node=1, app_name=app,
                        router=RouterConfig(policy=policy, capacity_tokens=budget))  # fmt: skip
    state = deploy(spec, cfg)
    server, url = start_in_thread(state)
    return cfg, server, url


def test_prefix_routing_beats_round_robin_and_a_delete_drains(ray_served):
    """4 system prompts of 512 tokens x 16 requests at once, on replicas whose KV budget (1280
    tokens) holds two prompts' prefixes, not four: prefix routing keeps each prompt on one
    replica, round-robin makes both replicas recompute them."""
    from plait.serve.cluster.deploy import undeploy

    state, url, cfg, spec = ray_served
    prompts = system_prompts(4, 512)
    hits: dict[str, float] = {}
    for policy in ("prefix", "round_robin"):
        app_cfg, server, app_url = _deploy(spec, policy, policy, 1280)
        try:
            affinity_round(app_url, prompts, seed=0)  # warm-up: each prompt computed once
            rounds = [affinity_round(app_url, prompts, seed=s) for s in (1, 2)]
            hits[policy] = sum(r.cached_tokens for r in rounds) / sum(
                r.prompt_tokens for r in rounds
            )
            spread = {len(s) for r in rounds for s in r.replicas.values()}
            if policy == "prefix":  # steady state: a prompt on one replica, never recomputed
                assert spread == {1} and not any(r.computed_on for r in rounds)
                time.sleep(1.5)  # routing stats arrive every second
                text = httpx.get(app_url.removesuffix("/v1") + "/metrics").text
                rates = [float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("plait_replica_prefix_cache_hit_rate{")]  # fmt: skip
                assert len(rates) == 2 and min(rates) > 0.5
                assert text.count("plait_replica_queue_length{") == 2
                continue
            assert spread == {2}
            # graceful: deleting the app while 4 requests stream lets each finish whole
            outs: list[object] = []
            threads = [
                threading.Thread(target=_stream_whole, args=(app_url, i, outs)) for i in range(4)
            ]
            for t in threads:
                t.start()
            time.sleep(0.5)
            undeploy(app_cfg)
            for t in threads:
                t.join(60)
            assert outs == [120] * 4
        finally:
            server.should_exit = True
            undeploy(app_cfg)
    assert hits["prefix"] >= 1.8 * hits["round_robin"], hits


def _stream_whole(url: str, i: int, outs: list[object]) -> None:
    try:
        chunks = list(_client(url).completions.create(
            model=MODEL, prompt=[i + 1] * 30, max_tokens=120, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        ))  # fmt: skip
        outs.append(chunks[-1].usage.completion_tokens)
    except Exception as exc:  # noqa: BLE001 - recorded for the assertion
        outs.append(repr(exc))


def test_a_replica_killed_mid_stream_loses_no_request_and_is_replaced(ray_served):
    """16 streams; the busiest replica is killed once 8 have output: each stream ends whole or
    with a clear error, none hangs; Serve starts a new replica and both serve again."""
    import ray

    state, url, cfg, _ = ray_served
    router = _router(state)
    outs: list[object] = []
    seen = threading.Semaphore(0)
    long = 1000  # tokens per stream: still streaming when the kill lands (400 could finish first)

    def run(i: int) -> None:
        try:
            last = None
            stream = _client(url).completions.create(
                model=MODEL, prompt=[i + 1] * (24 + i), max_tokens=long, temperature=0,
                stream=True, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            for k, chunk in enumerate(stream):
                last = chunk
                if k == 0:
                    seen.release()
            outs.append(last.usage.completion_tokens if last is not None else "empty")
        except openai.APIError as exc:
            outs.append(f"error: {exc.message}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for _ in range(8):
        assert seen.acquire(timeout=60)
    victim = max(
        router.curr_replicas.values(), key=lambda r: router.inflight.get(r.replica_id.unique_id, 0)
    )
    dead = victim.replica_id.unique_id
    assert router.inflight.get(dead, 0) > 0
    ray.kill(ray.get_actor(victim._replica_info.actor_name, namespace="serve"), no_restart=True)
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a request hung"
    errors = [o for o in outs if isinstance(o, str)]
    assert len(outs) == 16 and all(o == long for o in outs if not isinstance(o, str))
    assert errors and all("replica" in e and "retry" in e for e in errors), errors
    deadline = time.monotonic() + 90
    while True:  # Serve replaces the dead replica
        live = {r.replica_id.unique_id for r in router.curr_replicas.values()}
        if len(live) == 2 and dead not in live:
            break
        assert time.monotonic() < deadline, f"no second replica after the kill: {live}"
        time.sleep(0.5)
    served_by = set()
    for i in range(16):  # the survivor holds some of these prefixes; the newcomer gets the rest
        r = httpx.post(url + "/completions", timeout=60, json={
            "model": MODEL, "prompt": [i + 1] * (24 + i), "max_tokens": 4, "temperature": 0})  # fmt: skip
        assert r.status_code == 200, r.text
        served_by.add(r.headers["x-plait-replica"])
    assert served_by == live
