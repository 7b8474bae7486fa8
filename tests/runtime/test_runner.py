"""The step runner: fast path vs float64 reference on random views, causal equivalence, memory."""

from __future__ import annotations

import random

import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.attention.registry import BACKENDS
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from tests.helpers.schedules import random_schedule
from tests.helpers.tiny import tiny_model


def runnable(name: str, model) -> str:
    """The backend's name, or a skip where it cannot run (plait's kernels off or unbuilt)."""
    why = BACKENDS[name].unavailable(model.device, model.dtype, model.config.head_dim)
    if why:
        pytest.skip(f"{name}: {why}")
    return name


@pytest.fixture(params=["step_kernel", "segment_kernel", "torch"])
def fast_path(request):
    """The fast backends by name: plait's step kernel (one call per layer; the default for
    decode steps), plait's segment kernel per read + LSE merge (the default for prefill) and
    torch's kernels per read + the same merge (the default without plait's kernels)."""
    return request.param


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("instant", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_fast_equals_reference_on_random_views(family, instant, seed, fast_path):
    model = tiny_model(family, seed=seed)
    fast = random_schedule(model, runnable(fast_path, model), seed, instant)
    ref = random_schedule(model, "reference", seed, instant)
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref):
        assert (a - b).abs().max().item() < 1e-4


def test_instant_switch_changes_what_is_seen():
    model = tiny_model("llama", seed=1)
    logits = {}
    for instant in (True, False):
        store = KVStore(model.config)
        runner = Runner(model, store)
        a, b = store.new_segment(8), store.new_segment(8)
        runner.step([StreamInput([3], [b], b)])
        runner.step([StreamInput([1, 2], [b, a], a)])
        out = runner.step(
            [StreamInput([5], [b, a], a), StreamInput([6], [a, b], b)], instant=instant
        )
        logits[instant] = out
    assert not torch.allclose(logits[True], logits[False])
    # instant=False: stream a sees b only as it was before the step (1 token), a == [b, a] causal
    seq = [3, 1, 2, 5]
    ref = model(torch.tensor(seq), causal_context(model.rope, 4), torch.tensor([3]))
    assert torch.allclose(logits[False][0], ref[0], atol=1e-4)


def test_contiguous_view_equals_plain_causal_decoding():
    model = tiny_model("qwen3", seed=2)
    ids = torch.randint(
        0, model.config.vocab_size, (40,), generator=torch.Generator().manual_seed(0)
    )
    store = KVStore(model.config)
    runner = Runner(model, store)
    segs = [store.new_segment(16) for _ in range(4)]
    logits = []
    # the history is split over four segments filled in order: a view [s0, s1, s2, s3]
    for i, t in enumerate(ids.tolist()):
        k = min(i // 10, 3)
        logits.append(runner.step([StreamInput([t], segs[: k + 1], segs[k])]))
    ref = model(ids, causal_context(model.rope, 40))
    assert (torch.cat(logits) - ref).abs().max().item() < 1e-4


def test_move_equals_tokens_placed_in_history():
    model = tiny_model("llama", seed=4)
    V = model.config.vocab_size
    prompt, step_tokens, future = [3, 9, 27, 4], [11, 12, 13], [50, 51, 52]
    # (a) the step is written to its own segment, then moved into the history with one rotation
    store = KVStore(model.config)
    runner = Runner(model, store)
    hist, cur = store.new_segment(16), store.new_segment(4)
    runner.prefill(hist, prompt)
    runner.step([StreamInput(step_tokens, [hist, cur], cur)])
    store.move(cur, hist)
    assert cur.length == 0 and hist.tokens == prompt + step_tokens
    a = runner.step([StreamInput(future, [hist, cur], cur)], all_logits=True)[0]
    # (b) reference: the same tokens in one causal sequence
    seq = torch.tensor(prompt + step_tokens + future)
    b = model(seq, causal_context(model.rope, len(seq)))[-len(future) :]
    assert (a - b).abs().max().item() < 1e-4
    assert store.stats.moved_tokens == 3 and store.stats.regrowths == 0
    assert max(future) < V


def test_copy_range_equals_tokens_placed_in_history():
    model = tiny_model("qwen2", seed=4)
    prompt, step_tokens, future = [3, 9, 27, 4], [11, 12, 13], [50, 51, 52]
    store = KVStore(model.config)
    runner = Runner(model, store)
    hist, src = store.new_segment(16), store.new_segment(4)
    runner.prefill(hist, prompt)
    runner.step([StreamInput(step_tokens, [hist, src], src)])
    before = (src.k.clone(), src.v.clone())
    # the step's tokens reach two new segments in two pieces: 12, 13 shift to local slots 0, 1
    mid, dst = store.new_segment(2), store.new_segment(8)
    store.copy_range(src, 0, 1, mid)
    store.copy_range(src, 1, 2, dst)
    assert src.tokens == step_tokens and mid.tokens == [11] and dst.tokens == [12, 13]
    assert torch.equal(src.k, before[0]) and torch.equal(src.v, before[1])
    a = runner.step([StreamInput(future, [hist, mid, dst], dst)], all_logits=True)[0]
    seq = torch.tensor(prompt + step_tokens + future)
    b = model(seq, causal_context(model.rope, len(seq)))[-len(future) :]
    assert (a - b).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="cannot copy 2..4"):
        store.copy_range(src, 2, 2, dst)


def test_shared_prefix_is_stored_once():
    model = tiny_model("qwen2", seed=0)
    store = KVStore(model.config)
    runner = Runner(model, store)
    prefix = store.new_segment(100)
    runner.prefill(prefix, list(range(100)), chunk=32)
    per_token = 2 * model.config.num_layers * model.config.num_kv_heads * model.config.head_dim * 4
    assert store.nbytes() == 100 * per_token
    W = 4
    own = [store.new_segment(10) for _ in range(W)]
    for _ in range(10):
        runner.step([StreamInput([7], [prefix, s], s) for s in own])
    assert store.nbytes() == (100 + W * 10) * per_token  # the prefix is held once, not W times
    assert store.stats.regrowths == 0


def test_fork_streams_match_single_stream_decoding():
    model = tiny_model("qwen3", seed=5)
    store = KVStore(model.config)
    runner = Runner(model, store)
    prefix = store.new_segment(20)
    runner.prefill(prefix, list(range(20)))
    own = [store.new_segment(4) for _ in range(3)]
    out = runner.step([StreamInput([30 + i] * (i + 1), [prefix, s], s) for i, s in enumerate(own)])
    for i in range(3):
        seq = torch.tensor(list(range(20)) + [30 + i] * (i + 1))
        ref = model(seq, causal_context(model.rope, len(seq)), torch.tensor([len(seq) - 1]))
        assert torch.allclose(out[i], ref[0], atol=1e-4)


def test_bad_step_inputs_are_clear_errors():
    model = tiny_model("llama")
    store = KVStore(model.config)
    runner = Runner(model, store)
    a, b = store.new_segment(4), store.new_segment(4)
    with pytest.raises(ValueError, match="must be part of its view"):
        runner.step([StreamInput([1], [a], b)])
    with pytest.raises(ValueError, match="both write to"):
        runner.step([StreamInput([1], [a], a), StreamInput([2], [b, a], a)])
    with pytest.raises(ValueError, match="no new tokens"):
        runner.step([StreamInput([], [a], a)])
    with pytest.raises(ValueError, match="beyond the model's context"):
        runner.prefill(a, [1] * (model.config.max_position + 1), chunk=4096)
    with pytest.raises(ValueError, match="attention must be"):
        Runner(model, store, attention="flash")  # type: ignore[arg-type]


def test_arena_and_segment_growth_keep_results():
    """A tiny arena that must grow, and segments that outgrow their capacity, give the same logits."""
    model = tiny_model("qwen2", seed=6)
    ids = list(range(3, 40))

    def run(slots: int, capacity: int):
        store = KVStore(model.config, slots=slots)
        runner = Runner(model, store)
        pre = store.new_segment(capacity)
        runner.prefill(pre, ids[:20], chunk=6)
        own = [store.new_segment(capacity) for _ in range(3)]
        out = [
            runner.step([StreamInput([t + i], [pre, s], s) for i, s in enumerate(own)])
            for t in ids[20:]
        ]
        return torch.cat(out), store

    big, s_big = run(4096, 64)
    small, s_small = run(8, 2)
    assert torch.allclose(big, small, atol=1e-5)
    assert s_big.stats.regrowths == 0 and s_big.stats.arena_growths == 0
    assert s_small.stats.regrowths > 0 and s_small.stats.arena_growths > 0


def test_store_mutations_work_after_the_arena_grew_inside_a_step():
    """Regression (GSM8K run, W=4 x 8 problems): the arena grew inside `Runner.step` (inference
    mode), then the Hogwild workspace moved a finished step outside it: in-place updates of
    inference tensors outside inference mode used to raise."""
    model = tiny_model("llama", seed=3)
    store = KVStore(model.config, slots=4)
    runner = Runner(model, store)
    hist, step = store.new_segment(2), store.new_segment(2)
    runner.prefill(hist, [5, 6, 7], chunk=2)
    for t in (8, 9, 10, 11, 12):  # grows the arena and `step` inside runner.step
        runner.step([StreamInput([t], [hist, step], step)])
    assert store.stats.arena_growths > 0 and store.stats.regrowths > 0
    assert not torch.is_inference_mode_enabled()
    store.move(step, hist)  # outside inference mode
    store.reserve(hist, 64)
    extra = store.new_segment(4)
    store.write(extra, 0, 0, *(torch.zeros(2, 1, 16),) * 2)
    assert hist.length == 8 and step.length == 0
    logits = runner.step([StreamInput([13], [hist, extra], extra)])
    assert torch.isfinite(logits).all()


def test_freeing_in_any_order_returns_the_space():
    """Regression (GSM8K run OOM-killed at 24 GB): segments freed out of allocation order were
    never reclaimed, so every solve bumped the allocator and the arena doubled again and again."""
    model = tiny_model("llama")
    store = KVStore(model.config, slots=64)
    for _ in range(20):  # 20 "solves", each allocating 48 slots and freeing in another order
        segs = [store.new_segment(16) for _ in range(3)]
        for seg in (segs[0], segs[2], segs[1]):
            store.free(seg)
        assert store.top == 0
    assert store.stats.arena_growths == 0 and store.k.shape[2] == 64
    a, b, c = (store.new_segment(8) for _ in range(3))
    store.free(b)
    assert store.top == 24  # c is still live above the hole
    store.free(c)
    assert store.top == 8 and store.new_segment(8).base == 8


def test_freed_top_segment_is_reused():
    model = tiny_model("llama")
    store = KVStore(model.config, slots=64)
    a = store.new_segment(16)
    b = store.new_segment(16)
    store.free(b)
    c = store.new_segment(16)
    assert c.base == b.base and store.top == 32 and a.base == 0


def test_truncate_then_continue_equals_fresh_decode():
    model = tiny_model("qwen3", seed=7)
    store = KVStore(model.config)
    runner = Runner(model, store)
    seg = store.new_segment(32)
    runner.prefill(seg, [5, 6, 7, 8, 9, 10])
    store.truncate(seg, 4)
    assert seg.tokens == [5, 6, 7, 8]
    a = runner.step([StreamInput([42, 43], [seg], seg)])
    seq = torch.tensor([5, 6, 7, 8, 42, 43])
    b = model(seq, causal_context(model.rope, 6), torch.tensor([5]))
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="cannot truncate"):
        store.truncate(seg, 99)


@pytest.mark.parametrize("per_read", ["segment_kernel", "torch"])
@pytest.mark.parametrize("instant", [True, False])
@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_batched_reads_of_evenly_spaced_segments_equal_reference(family, instant, per_read):
    """Equal-capacity segments allocated back to back are attended in one strided call (the
    per-read backends); with ragged lengths, limits and rows that see nothing, it must still
    equal the float64 reference."""
    model = tiny_model(family, seed=8)
    per_read = runnable(per_read, model)

    def run(attention: str):
        rng = random.Random(0)
        store = KVStore(model.config, model.dtype)
        runner = Runner(model, store, attention=attention)
        prefix = store.new_segment(32)
        runner.prefill(prefix, [rng.randrange(100) for _ in range(9)])
        own = [store.new_segment(12) for _ in range(5)]  # evenly spaced: batchable
        for i, seg in enumerate(own):  # ragged stored lengths
            runner.step(
                [StreamInput([rng.randrange(100) for _ in range(i + 1)], [prefix, seg], seg)]
            )
        out, batches = [], 0
        for _ in range(3):
            # every stream reads all own segments; its own sits first for even i: later segments
            # are then beyond its queries (rows that see nothing of them)
            inputs = []
            for i, seg in enumerate(own):
                others = [o for o in own if o is not seg]
                view = [seg, prefix, *others] if i % 2 == 0 else [prefix, *others, seg]
                inputs.append(StreamInput([rng.randrange(100), rng.randrange(100)], view, seg))
            if attention != "reference":
                with torch.inference_mode():  # as in `step`
                    _, ctx = runner.attention_context(inputs, instant)
                batches += sum(bt.count > 1 for bt in ctx.batches)  # type: ignore[attr-defined]
            out.extend(runner.step(inputs, instant=instant, all_logits=True))
        return out, batches

    fast, n_batches = run(per_read)
    ref, _ = run("reference")
    assert n_batches > 0
    for a, b in zip(fast, ref):
        assert (a - b).abs().max().item() < 1e-4
