"""The attention seam: the pure step planner, the backend registry and the one path choice."""

from __future__ import annotations

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.attention.plan import StreamInput, plan_step
from plait.runtime.attention.registry import BACKENDS, choose_backend
from plait.runtime.attention.step_kernel import STEP_KERNEL_MAX_ROWS
from plait.runtime.runner import Runner
from plait.runtime.segments import KVStore
from tests.helpers.tiny import tiny_model


def _store_with(lengths: list[int], capacity: int = 16) -> tuple[KVStore, list]:
    model = tiny_model("llama")
    store = KVStore(model.config)
    segs = [store.new_segment(capacity, name=f"s{i}") for i in range(len(lengths))]
    for seg, n in zip(segs, lengths):
        store.advance(seg, list(range(n)))
    return store, segs


@pytest.mark.parametrize("instant", [True, False])
def test_plan_positions_visibility_and_reads(instant):
    """Two streams over a shared prefix: a writes 2 tokens after its 1 stored token, b writes 1;
    a's view holds b's segment after its own, b's view holds a's before its own."""
    store, (pre, a, b) = _store_with([3, 1, 2])
    plan = plan_step(
        [StreamInput([7, 8], [pre, a, b], a), StreamInput([9], [pre, a, b], b)], instant=instant
    )
    assert plan.tokens == [7, 8, 9] and plan.starts == [0, 2] and plan.lengths == [2, 1]
    assert plan.write_starts == [1, 2] and plan.key_positions == [1, 2, 2]
    seen_b = 3 if instant else 2  # b's new token is visible to a only with instant
    seen_a = 3 if instant else 1  # and a's to b
    assert plan.views[0] == [(pre, 3), (a, 3), (b, seen_b)]
    assert plan.views[1] == [(pre, 3), (a, seen_a), (b, 3)]
    # a: after pre (3) and its 1 stored token; b: after pre, a's visible keys, its 2 stored
    assert plan.positions == [4, 5, 3 + seen_a + 2]
    reads = {r.segment.name: r for r in plan.reads}
    assert [r.segment for r in plan.reads] == [pre, a, b]
    # rel: query position minus the segment's offset in the reader's view; limits: last key
    # each query sees (its own position, or the reader's visible keys), None when all see all
    assert reads["s0"].rows == [0, 1, 2] and reads["s0"].rel == [4, 5, 5 + seen_a]
    assert reads["s0"].visible == 3 and reads["s0"].limits is None
    assert reads["s1"].rel == [1, 2, 2 + seen_a]
    assert reads["s1"].visible == 3 and reads["s1"].limits == [1, 2, seen_a - 1]
    assert reads["s2"].rel == [-2, -1, 2] and reads["s2"].limits == [-2, -1, 2]
    assert not plan.single_read
    # pure: nothing reserved, written or advanced
    assert [s.length for s in (pre, a, b)] == [3, 1, 2] and store.stats.regrowths == 0


def test_plan_rejects_a_freed_segment_and_positions_beyond_the_context():
    store, (pre, own) = _store_with([3, 0])
    with pytest.raises(ValueError, match="beyond the model's context of 4 tokens"):
        plan_step([StreamInput([1, 2], [pre, own], own)], max_position=4)
    plan_step([StreamInput([1], [pre, own], own)], max_position=4)
    store.free(pre)
    with pytest.raises(ValueError, match="'s0' was freed"):
        plan_step([StreamInput([1], [pre, own], own)])


def _kernel_reason(model) -> str:  # noqa: ANN001
    return BACKENDS["step_kernel"].unavailable(model.device, model.dtype, model.config.head_dim)


@pytest.fixture
def kernels_off():
    before = kernels.enabled()
    kernels.set_enabled(False)
    yield
    kernels.set_enabled(before)


def test_fast_policy_is_decided_in_one_place(kernels_off):
    cpu, f32 = torch.device("cpu"), torch.float32
    with torch.inference_mode():
        assert choose_backend("fast", 1, cpu, f32, 16).name == "torch"  # kernels off
        assert choose_backend("reference", 1, cpu, f32, 16).name == "reference"
        kernels.set_enabled(True)
        if not kernels.available():
            pytest.skip(f"plait's kernels: {kernels.unavailable_reason()}")
        assert choose_backend("fast", STEP_KERNEL_MAX_ROWS, cpu, f32, 16).name == "step_kernel"
        # batch invariance (the default): long steps too, one softmax order per row
        assert choose_backend("fast", 512, cpu, f32, 16).name == "step_kernel"
        kernels.set_batch_invariant(False)
        try:
            assert choose_backend("fast", STEP_KERNEL_MAX_ROWS + 1, cpu, f32, 16).name == (
                "segment_kernel"
            )
        finally:
            kernels.set_batch_invariant(True)
        assert choose_backend("fast", 1, cpu, f32, 24).name == "torch"  # head dim 24
        assert choose_backend("fast", 1, cpu, torch.float64, 16).name == "torch"
    assert choose_backend("fast", 1, cpu, f32, 16).name == "torch"  # autograd on: no kernels


def test_a_named_backend_that_cannot_run_is_a_clear_error(kernels_off):
    model = tiny_model("llama")
    store = KVStore(model.config)
    for name in ("step_kernel", "segment_kernel"):
        with pytest.raises(ValueError, match=f"attention='{name}' cannot run here: .*=0"):
            Runner(model, store, attention=name)
    Runner(model, store, attention="torch")
    with pytest.raises(ValueError, match="'fast', 'step_kernel', 'segment_kernel', 'torch'"):
        Runner(model, store, attention="fused")


@pytest.mark.parametrize("name", ["step_kernel", "segment_kernel", "torch"])
def test_named_backend_runs_prefill_sized_steps_like_the_reference(name):
    """A backend by name runs every step, also those the fast policy gives another backend
    (here a 70-token prefill through the step kernel, a 1-token step through the segment
    kernel), and equals the float64 reference."""
    model = tiny_model("qwen3", seed=3)
    if name != "torch" and _kernel_reason(model):
        pytest.skip(_kernel_reason(model))
    out = {}
    for attention in (name, "reference"):
        store = KVStore(model.config)
        runner = Runner(model, store, attention=attention)
        pre, own = store.new_segment(80), store.new_segment(4)
        first = runner.prefill(pre, [(7 * i) % 100 for i in range(70)], chunk=70)
        nxt = runner.step([StreamInput([5], [pre, own], own), StreamInput([6], [pre], pre)])
        out[attention] = (first, nxt)
    for a, b in zip(out[name], out["reference"]):
        assert (a - b).abs().max().item() < 1e-4
