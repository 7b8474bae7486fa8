"""Library guards of the KV store and the runner: bounds-checked writes, freed segments, stale
slots, token ids outside the vocabulary: each a clear ValueError, nothing dropped silently."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from tests.helpers.tiny import tiny_model


@pytest.fixture
def setup():
    model = tiny_model("llama")
    store = KVStore(model.config, slots=64)
    return model, store, Runner(model, store)


def _kv(store: KVStore, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = store.config
    k = torch.randn(cfg.num_kv_heads, n, cfg.head_dim)  # (Hkv, n, D)
    return k, torch.randn_like(k)


def test_write_past_capacity_or_beyond_the_length_raises(setup):
    _, store, _ = setup
    seg = store.new_segment(4, name="w")
    store.write(seg, 0, 0, *_kv(store, 4))  # fills the capacity: fine
    with pytest.raises(ValueError, match="cannot write 5 tokens at slot 0 of 'w': capacity 4"):
        store.write(seg, 0, 0, *_kv(store, 5))
    with pytest.raises(ValueError, match="cannot write at slot 2 of 'w': it holds 0 tokens"):
        store.write(seg, 0, 2, *_kv(store, 1))
    store.advance(seg, [1, 2])
    k, v = _kv(store, 2)
    store.write(seg, 1, 2, k, v)  # right after the stored tokens
    assert torch.equal(seg.keys(1, 4)[:, 2:], k)
    with pytest.raises(ValueError, match="cannot advance 'w' by 3 tokens: 2 of 4"):
        store.advance(seg, [1, 2, 3])


def test_arena_slots_are_checked_and_go_stale_when_a_segment_moves(setup):
    _, store, _ = setup
    a, b = store.new_segment(2, name="a"), store.new_segment(2, name="b")
    with pytest.raises(ValueError, match="capacity 2; call store.reserve"):
        store.arena_slots([(a, 0, 3)])
    with pytest.raises(ValueError, match="slot 1 of 'b': it holds 0"):
        store.arena_slots([(a, 0, 1), (b, 1, 1)])
    slots = store.arena_slots([(a, 0, 2), (b, 0, 1)])
    assert store.slot_index(slots).tolist() == [a.base, a.base + 1, b.base]
    cfg = store.config
    k = torch.randn(3, cfg.num_kv_heads, cfg.head_dim)  # (T, Hkv, D)
    store.write_slots(0, slots, k, k)
    assert torch.equal(a.keys(0, 2).transpose(0, 1), k[:2])
    with pytest.raises(ValueError, match="3 slots for 2 keys"):
        store.write_slots(0, slots, k[:2], k[:2])
    store.reserve(a, 3)  # a moves to a larger range: the slots would write its old place
    with pytest.raises(ValueError, match="stale"):
        store.write_slots(0, slots, k, k)


def test_a_freed_segment_raises_on_any_use(setup):
    _, store, runner = setup
    keep, seg = store.new_segment(4), store.new_segment(4, name="gone")
    runner.step([StreamInput([1, 2], [seg], seg)])
    store.free(seg)
    uses = {
        "read": lambda: seg.keys(0),
        "values": lambda: seg.values(0),
        "write": lambda: store.write(seg, 0, 0, *_kv(store, 1)),
        "free again": lambda: store.free(seg),
        "reserve": lambda: store.reserve(seg, 1),
        "truncate": lambda: store.truncate(seg, 0),
        "move from": lambda: store.move(seg, keep),
        "move into": lambda: store.move(keep, seg),
        "step view": lambda: runner.step([StreamInput([1], [seg, keep], keep)]),
        "step write": lambda: runner.step([StreamInput([1], [seg], seg)]),
        "prefill": lambda: runner.prefill(seg, [1, 2]),
    }
    for use, call in uses.items():
        with pytest.raises(ValueError, match="'gone' was freed"):
            call()
        assert seg.length == 0, use
    assert store.top == 4 and keep.length == 0  # the store is unchanged


@pytest.mark.parametrize("bad", [-1, 128, 10**6])
def test_token_ids_outside_the_vocabulary_are_a_clear_error(setup, bad):
    model, store, runner = setup
    seg = store.new_segment(8, name="s")
    message = rf"token id {bad} is outside the model's vocabulary \(0\.\.127\)"
    with pytest.raises(ValueError, match=message):
        runner.step([StreamInput([1, bad], [seg], seg)])
    with pytest.raises(ValueError, match=message):
        runner.prefill(seg, [3] * 5 + [bad], chunk=2)  # checked before the first chunk
    assert seg.length == 0 and seg.tokens == []
    runner.step([StreamInput([0, model.config.vocab_size - 1], [seg], seg)])  # both ends fine
    assert seg.length == 2


# --- issue 22: library arguments checked where they enter, before any state changes ---


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda s, seg: s.new_segment(capacity=2.5), TypeError, "capacity must be an int"),
        (lambda s, seg: s.new_segment(capacity=True), TypeError, "capacity must be an int"),
        (lambda s, seg: s.new_segment(capacity="8"), TypeError, "capacity must be an int"),
        (lambda s, seg: s.new_segment(capacity=-1), ValueError, "capacity must be >= 0"),
        (lambda s, seg: s.truncate(seg, 1.5), TypeError, "n must be an int"),
        (lambda s, seg: s.truncate(seg, -1), ValueError, "n must be >= 0"),
        (lambda s, seg: s.reserve(seg, 2.0), TypeError, "extra must be an int"),
        (lambda s, seg: s.copy_range(seg, 0.0, 1, seg), TypeError, "start must be an int"),
        (lambda s, seg: s.truncate("seg", 1), TypeError, "segment must be a Segment"),
        (lambda s, seg: s.free(None), TypeError, "segment must be a Segment"),
    ],
)
def test_store_arguments_are_checked_before_any_change(setup, call, error, words):
    _, store, runner = setup
    seg = store.new_segment(8, name="a")
    runner.step([StreamInput([1, 2, 3], [seg], seg)])
    before = (store.top, store.layout, len(store.segments), seg.length, list(seg.tokens))
    with pytest.raises(error, match=words):
        call(store, seg)
    assert (store.top, store.layout, len(store.segments), seg.length, list(seg.tokens)) == before
    store.new_segment(4)  # still usable
    runner.step([StreamInput([4], [seg], seg)])
    assert seg.tokens == [1, 2, 3, 4]


def test_a_segment_of_another_store_is_refused(setup):
    model, store, runner = setup
    other = KVStore(model.config, slots=64)
    mine, theirs = store.new_segment(8, name="mine"), other.new_segment(8, name="theirs")
    Runner(model, other).step([StreamInput([5, 6], [theirs], theirs)])
    for inputs in (
        [StreamInput([1], [theirs, mine], mine)],  # read through a view
        [StreamInput([1], [theirs], theirs)],  # written
    ):
        with pytest.raises(ValueError, match="'theirs' belongs to another KVStore"):
            runner.step(inputs)
    for call in (
        lambda: store.truncate(theirs, 1),
        lambda: store.copy_range(theirs, 0, 1, mine),
        lambda: store.move(mine, theirs),
        lambda: store.free(theirs),
        lambda: store.arena_slots([(theirs, 0, 1)]),
    ):
        with pytest.raises(ValueError, match="belongs to another KVStore"):
            call()
    assert theirs.tokens == [5, 6] and mine.length == 0 and store.top == 8


@pytest.mark.parametrize("tokens", [[1.0, 2.0], [True], ["1"], torch.tensor([1, 2]), (1, None), 7])
def test_step_tokens_must_be_int_ids(setup, tokens):
    _, store, runner = setup
    seg = store.new_segment(8)
    with pytest.raises(TypeError, match="tokens"):
        runner.step([StreamInput(tokens, [seg], seg)])
    with pytest.raises(TypeError, match="tokens"):
        runner.prefill(seg, tokens)
    assert seg.length == 0 and store.layout == 0
