"""Layouts return the paper's view orders for any W; bad layouts are clear errors."""

from __future__ import annotations

import pytest

from plait.hogwild.config import HogwildConfig
from plait.hogwild.layouts import (
    LAYOUTS,
    MARKER,
    OTHERS_HEADER,
    OWN_HEADER,
    Layout,
    LayoutState,
    check_views,
    get_layout,
)


def state(w: int, layout: str) -> LayoutState:
    shared = {k: k for k, _ in get_layout(layout).shared(w)}
    return LayoutState(history=["H"], current=[f"c{i}" for i in range(w)], shared=shared)


def test_combined_two_workers_matches_paper() -> None:
    views = get_layout("combined").views(state(2, "combined"))
    assert views == [
        ["H", "others", "c1", "marker0", "own", "c0"],
        ["H", "others", "c0", "marker0", "own", "c1"],
    ]


@pytest.mark.parametrize("w", [3, 4, 6])
def test_combined_others_ascending_with_markers(w: int) -> None:
    views = get_layout("combined").views(state(w, "combined"))
    for i, view in enumerate(views):
        others = [j for j in range(w) if j != i]
        expect = ["H", "others"]
        for k, j in enumerate(others):
            expect += [f"c{j}", f"marker{k}"]
        assert view == [*expect, "own", f"c{i}"]
    texts = dict(get_layout("combined").shared(w))
    assert texts["others"] == OTHERS_HEADER and texts["own"] == OWN_HEADER
    assert all(texts[f"marker{k}"] == MARKER == "<...>\n\n" for k in range(w - 1))


def test_interleaved_and_contiguous() -> None:
    assert get_layout("interleaved").views(state(3, "interleaved")) == [
        ["H", "c0"],
        ["H", "c1"],
        ["H", "c2"],
    ]
    views = get_layout("contiguous").views(state(3, "contiguous"))
    assert views[1] == ["H", "c0", "sep0", "c2", "sep1", "c1"]
    assert not get_layout("contiguous").merges_steps and get_layout("combined").merges_steps


def test_reader_view_is_last_workers_view() -> None:
    lay = get_layout("combined")
    st = state(3, "combined")
    assert lay.reader_view(st) == lay.views(st)[-1]


def test_single_worker_combined_is_history_then_own() -> None:
    assert get_layout("combined").views(state(1, "combined")) == [["H", "c0"]]


def test_user_defined_layout_is_accepted_and_checked() -> None:
    mine = Layout(
        name="own-only",
        shared=lambda w: [],
        views=lambda s: [[*s.history, c] for c in s.current],
        merges_steps=True,
    )
    assert get_layout(mine) is mine
    HogwildConfig(layout=mine)  # type: ignore[arg-type]
    st = state(2, "interleaved")
    h, (c0, c1) = st.history[0], st.current
    check_views([[h, c0], [h, c1]], st)
    with pytest.raises(ValueError, match="must end with worker 1"):
        check_views([[h, c0], [h, c0]], st)
    with pytest.raises(ValueError, match="one view per worker"):
        check_views([[h, c0]], st)
    with pytest.raises(ValueError, match="twice"):
        check_views([[h, h, c0], [h, c1]], st)


def test_unknown_layout_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown layout 'zigzag'.*combined"):
        HogwildConfig(layout="zigzag")
    with pytest.raises(ValueError, match="unknown layout"):
        get_layout("zigzag")
    assert set(LAYOUTS) == {"combined", "interleaved", "contiguous"}
