"""Trie round trips: units rebuild from parent pointers, flat order, positions, whole-unit drops."""

from __future__ import annotations

import random

import pytest

from plait.threads.data.synthetic import random_trajectory
from plait.threads.training.trie import UnitTokens, build_trie


@pytest.mark.parametrize("seed", range(5))
def test_units_rebuild_from_parent_pointers(seed: int) -> None:
    traj = random_trajectory(random.Random(seed), blocks=3)
    flat = build_trie(traj.units)
    for unit, path in zip(traj.units, flat.unit_paths):
        # following parent pointers from the leaf gives the unit's tokens back
        chain, j = [], path[-1]
        while j >= 0:
            chain.append(flat.tokens[j])
            j = flat.parent[j]
        assert chain[::-1] == unit.tokens
        assert [flat.depth[i] for i in path] == list(range(len(unit.tokens)))


@pytest.mark.parametrize("seed", range(5))
def test_flat_starts_with_full_trajectory_and_has_expected_length(seed: int) -> None:
    traj = random_trajectory(random.Random(seed), blocks=2)
    flat = build_trie(traj.units)
    full = traj.units[0].tokens
    assert flat.tokens[: len(full)] == full
    # each thread i >= 2 adds its number, ":" and its completion (shares "\n<Thread>\n" with F)
    extra = sum(sum(n + 2 for n in lens[1:]) for lens in traj.thread_lengths)
    assert len(flat) == len(full) + extra
    # exit times: subtree intervals are nested or disjoint
    for i, p in enumerate(flat.parent):
        assert flat.exit[i] >= i
        if p >= 0:
            assert p < i <= flat.exit[i] <= flat.exit[p]


def test_trained_nodes_are_generated_completion_tokens_counted_once() -> None:
    traj = random_trajectory(random.Random(7), blocks=2)
    flat = build_trie(traj.units)
    expected = set()
    for unit, path in zip(traj.units, flat.unit_paths):
        n_ctx = len(unit.context)
        expected |= {path[n_ctx + k] for k, f in enumerate(unit.trained) if f}
    assert {i for i, f in enumerate(flat.trained) if f} == expected
    # orchestrator-inserted header tokens of the full path are never trained
    assert sum(traj.generated) < len(traj.response)


def test_overflow_drops_whole_units_and_reports_them() -> None:
    traj = random_trajectory(random.Random(3), blocks=2)
    full_len = len(traj.units[0].tokens)
    flat = build_trie(traj.units, capacity=full_len + 3)
    assert flat.dropped, "some sibling-thread units must not fit"
    assert len(flat) <= full_len + 3
    for i in flat.kept:  # every kept unit is complete
        path = flat.unit_paths[flat.kept.index(i)]
        assert [flat.tokens[j] for j in path] == traj.units[i].tokens
    # nothing fits when even the first unit is too long: everything is dropped, nothing cut
    none = build_trie(traj.units, capacity=2)
    assert none.kept == [] and len(none) == 0


def test_unit_validation_names_the_fix() -> None:
    with pytest.raises(ValueError, match="one flag per completion token"):
        UnitTokens(context=[1], completion=[2, 3], trained=[True])
    with pytest.raises(ValueError, match="empty context"):
        UnitTokens(context=[], completion=[2])
