"""The engine: greedy equality (generate / alone / batched), prefix sharing, n > 1, admission,
cancel, eviction, chunked prefill next to decode rows, stop rules. Tiny random fp32 models."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.engine import Engine, EngineConfig, EngineRequest, SampleOutput
from plait.runtime.generate import greedy
from plait.runtime.sampling import SamplingParams
from tests.helpers.engine import reference_greedy
from tests.helpers.tiny import tiny_model


def _prompt(n: int, salt: int = 0) -> list[int]:
    return [(i * 37 + salt * 11) % 120 + 3 for i in range(n)]


def _run(engine: Engine) -> list[SampleOutput]:
    outs: list[SampleOutput] = []
    while engine.has_work:
        outs.extend(o for o in engine.step() if isinstance(o, SampleOutput))
    return outs


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_greedy_alone_batched_and_generate_agree(family):
    m = tiny_model(family, seed=3)
    target = _prompt(150)
    ref = reference_greedy(m, target, 24)
    cfg = EngineConfig(block_tokens=16, step_tokens=48, kv_budget_tokens=4096)
    alone = Engine(m, config=cfg).generate([EngineRequest(prompt=target, max_tokens=24)])[0][0]
    # seven others: sharing prefixes of the target (split mid-block) and not, n up to 3
    others = [
        EngineRequest(prompt=target[:k] + [5, 6, 7], max_tokens=8 + k % 9, n=1 + k % 3)
        for k in (7, 16, 33, 64, 100)
    ] + [EngineRequest(prompt=_prompt(40 + 9 * s, salt=s), max_tokens=12) for s in (1, 2)]
    engine = Engine(m, config=cfg)
    batched = engine.generate([others[0], EngineRequest(prompt=target, max_tokens=24), *others[1:]])
    assert alone == ref == greedy(m, target, 24)  # the engine, generate and the bare runner loop
    assert batched[1][0] == ref
    for r, got in zip([others[0], *others[1:]], [batched[0], *batched[2:]]):
        want = reference_greedy(m, r.prompt, r.max_tokens)
        assert all(g == want for g in got), "a batched request changed its greedy output"
    assert engine.request_kv_tokens() == 0 and engine.cache.hit_rate() > 0


def test_prefix_shared_and_prefilled_once():
    m = tiny_model("llama", seed=1)
    cfg = EngineConfig(block_tokens=8, step_tokens=256)
    e = Engine(m, config=cfg)
    base = _prompt(80)
    # arriving together: the shared 80-token path (10 blocks of 8) is computed once
    e.add(EngineRequest(prompt=base + [9], max_tokens=2))
    e.add(EngineRequest(prompt=base + [10, 11], max_tokens=2))
    _run(e)
    assert e.stats.computed_prompt_tokens == 80 + 1 + 2  # path once, then each tail
    # a later request finds the blocks cached
    rid = e.add(EngineRequest(prompt=base + [12], max_tokens=1))
    outs = [o for o in _run(e) if o.request_id == rid]
    assert outs[0].cached_tokens == 80 and outs[0].prompt_tokens == 81


def test_n_samples_share_the_prompt_and_seeds_reproduce():
    m = tiny_model("qwen2", seed=2)
    prompt = _prompt(60)
    e = Engine(m, config=EngineConfig(block_tokens=16))
    greedy3 = e.generate([EngineRequest(prompt=prompt, max_tokens=10, n=3)])[0]
    assert greedy3[0] == greedy3[1] == greedy3[2] == reference_greedy(m, prompt, 10)
    assert e.stats.computed_prompt_tokens == 60  # once for all three samples
    p = SamplingParams(temperature=1.0, top_k=40, seed=5)
    a = e.generate([EngineRequest(prompt=prompt, max_tokens=12, n=3, sampling=p)])[0]
    b = Engine(m).generate([EngineRequest(prompt=prompt, max_tokens=12, n=3, sampling=p)])[0]
    assert a == b and len({tuple(x) for x in a}) == 3


def test_admission_waits_fifo_and_refuses_what_never_fits():
    m = tiny_model("llama")
    e = Engine(m, config=EngineConfig(kv_budget_tokens=200, block_tokens=16, max_rows=4))
    with pytest.raises(ValueError, match="KV budget is 200; lower max_tokens"):
        e.add(EngineRequest(prompt=_prompt(100), max_tokens=120))
    with pytest.raises(ValueError, match="row limit of 4; lower n"):
        e.add(EngineRequest(prompt=_prompt(10), max_tokens=2, n=5))
    ids = [
        e.add(EngineRequest(prompt=_prompt(50, salt=s), max_tokens=60, ignore_eos=True))
        for s in range(3)
    ]
    e.step()
    # KV on demand: 66 slots each now (3 blocks, a 2-token tail, one 16-slot unit for its
    # tokens); two fit under the budget with the watermark, the third waits (FIFO)
    assert e.num_running() == 2 and e.num_waiting() == 1
    order = [o.request_id for o in _run(e) if o.finished]
    assert order == ids and e.request_kv_tokens() == 0
    assert e.store.reserved_slots() <= 200 and e.store.k.shape[2] <= 400


def test_cancel_frees_segments_at_once():
    m = tiny_model("qwen3")
    e = Engine(m, config=EngineConfig(block_tokens=16, step_tokens=32))
    idle = e.store.reserved_slots()
    a = e.add(EngineRequest(prompt=_prompt(90), max_tokens=50, n=2))
    b = e.add(EngineRequest(prompt=_prompt(90), max_tokens=50))
    e.step()  # a is mid-prefill (32-token budget)
    assert e.cancel(a) and e.request_kv_tokens() > 0
    for _ in range(6):
        e.step()
    assert e.cancel(b) and not e.cancel(b)
    assert e.request_kv_tokens() == 0 and not e.has_work
    # only ready cache blocks remain; nothing half-written is kept
    assert all(blk.ready for blk in e.cache.blocks)
    assert e.store.reserved_slots() == idle + e.cache.total_tokens()


def test_lru_eviction_under_the_budget():
    m = tiny_model("llama")
    e = Engine(m, config=EngineConfig(kv_budget_tokens=160, block_tokens=16))
    for s in range(6):  # each prompt leaves 4 cached blocks (64 slots); the budget holds 2
        e.generate([EngineRequest(prompt=_prompt(70, salt=s), max_tokens=4)])
    assert e.cache.total_tokens() <= 160 and e.cache.stats.evicted_blocks >= 8
    assert e.cache.lookup(_prompt(70, salt=5)) and not e.cache.lookup(_prompt(70, salt=0))
    assert e.store.k.shape[2] <= 320  # fragmentation may double the arena once, never creep


def test_chunked_prefill_shares_steps_with_decode_rows():
    m = tiny_model("qwen2")
    e = Engine(m, config=EngineConfig(block_tokens=16, step_tokens=24))
    e.add(EngineRequest(prompt=_prompt(10), max_tokens=30))
    e.step()
    e.add(EngineRequest(prompt=_prompt(100, salt=3), max_tokens=3))
    e.step()  # admits the long one
    plan = e.scheduler.plan()
    kinds = {w.kind for w in plan.work}
    assert kinds == {"decode", "prefill"} and plan.tokens == 24
    _run(e)


def test_stop_rules_and_lengths():
    m = tiny_model("qwen2", seed=1)
    prompt = _prompt(30)
    full = reference_greedy(m, prompt, 16)
    stop = full[5]
    e = Engine(m, eos_token_ids=[full[9]])
    out = e.generate(
        [
            EngineRequest(prompt=prompt, max_tokens=16, stop_token_ids=(stop,)),
            EngineRequest(prompt=prompt, max_tokens=16),
            EngineRequest(prompt=prompt, max_tokens=16, ignore_eos=True),
            EngineRequest(prompt=prompt, max_tokens=3),
        ]
    )
    assert out[0][0] == full[: full.index(stop) + 1]
    assert out[1][0] == full[: full.index(full[9]) + 1]
    assert out[2][0] == full and out[3][0] == full[:3]
    with pytest.raises(ValueError, match="shorten the prompt"):
        e.add(EngineRequest(prompt=[1] * m.config.max_position, max_tokens=1))
    with pytest.raises(ValueError, match="stop strings need an engine with a tokenizer"):
        e.add(EngineRequest(prompt=prompt, stop=("x",)))


def test_logprobs_match_log_softmax():
    m = tiny_model("llama", seed=4)
    prompt = _prompt(20)
    e = Engine(m)
    e.add(EngineRequest(prompt=prompt, max_tokens=1, logprobs=3))
    (o,) = _run(e)
    with torch.inference_mode():
        from plait.runtime.runner import Runner
        from plait.runtime.segments import KVStore

        store = KVStore(m.config, m.dtype, rope=m.rope)
        seg = store.new_segment(32)
        ref = torch.log_softmax(Runner(m, store).prefill(seg, prompt).float(), -1)
    lp = o.logprobs[0]
    assert lp.token == int(ref.argmax()) and abs(lp.logprob - float(ref.max())) < 1e-5
    assert [t for t, _ in lp.top] == ref.topk(3).indices.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_random_arrivals_and_cancels_match_the_twin(seed):
    """Requests arrive at random steps with random shared prefixes, n and budgets; some are
    cancelled mid-way. Every sample that finishes equals the bare runner loop; KV ends idle."""
    import random

    rng = random.Random(seed)
    m = tiny_model("qwen2", seed=seed)
    e = Engine(m, config=EngineConfig(block_tokens=8, step_tokens=20, kv_budget_tokens=900,
                                      max_rows=6))  # fmt: skip
    base = _prompt(60, salt=seed)
    pending = []
    for _ in range(10):
        cut = rng.choice([0, 5, 8, 17, 40, 60])
        prompt = base[:cut] + [rng.randrange(3, 120) for _ in range(rng.randint(1, 20))]
        req = EngineRequest(prompt=prompt, max_tokens=rng.randint(1, 12), n=rng.randint(1, 2))
        pending.append((rng.randint(0, 25), rng.random() < 0.25, req))
    got: dict[str, list[list[int]]] = {}
    done: set[tuple[str, int]] = set()
    cancel_at: dict[str, int] = {}
    for step in range(400):
        for at, cancel, req in pending:
            if at == step:
                e.add(req)
                got[req.request_id] = [[] for _ in range(req.n)]
                if cancel:
                    cancel_at[req.request_id] = step + rng.randint(0, 6)
        for rid, at in cancel_at.items():
            if at == step:
                e.cancel(rid)
        for o in e.step():
            got[o.request_id][o.index] += o.token_ids
            if o.finished:
                done.add((o.request_id, o.index))
        if step > 30 and not e.has_work:
            break
    assert not e.has_work and e.request_kv_tokens() == 0
    checked = 0
    for _, _, req in pending:
        want = reference_greedy(m, req.prompt, req.max_tokens)
        for i in range(req.n):
            if (req.request_id, i) in done:
                assert got[req.request_id][i] == want
                checked += 1
    assert checked >= 5
