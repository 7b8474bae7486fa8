"""Argument checks where library calls enter the runtime: wrong types and values raise
TypeError / ValueError naming the argument, before any state changes.

- `count(name, value)`: an int >= 0 (bools, floats, numpy and torch scalars refused).
- `check_owner(seg, uid, what)`: a segment made by the store whose `uid` is given (a segment of
  another store has its K/V in that store's arena: reading or writing it here would touch other
  memory).
- `check_entry(uid, segments, **counts)`: all of a `KVStore` method's checks in one call.
- `check_token_ids(tokens, what)`: a list or tuple of ints (not bools, floats, strings or a
  tensor).
"""

from __future__ import annotations

from typing import Any


def count(name: str, value: object) -> int:
    """`value` if it is an int >= 0; TypeError / ValueError naming `name`."""
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_owner(seg: Any, uid: int, what: str = "segment") -> None:
    """TypeError unless `seg` is a segment; ValueError unless the store `uid` made it."""
    owner = getattr(seg, "owner", None)
    if owner is None or not hasattr(seg, "tokens"):
        raise TypeError(f"{what} must be a Segment, got {type(seg).__name__}")
    if owner != uid:
        raise ValueError(f"{what} {seg.name!r} belongs to another KVStore; use segments made by "
                         "this store's new_segment()")  # fmt: skip


def check_token_ids(tokens: Any, what: str = "tokens") -> None:
    """TypeError unless `tokens` is a list or tuple of ints."""
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"{what} must be a list of token ids, got {type(tokens).__name__}")
    bad = next((t for t in tokens if type(t) is not int), None)
    if bad is not None or (tokens and type(tokens[-1]) is not int):
        raise TypeError(f"{what} must hold int token ids, got {type(bad).__name__} {bad!r}")


def check_entry(uid: int, segments: dict[str, Any], **counts: object) -> None:
    """A `KVStore` method's arguments: its segments made by the store `uid` and not freed (the
    segment's own `check_live`), its counts ints >= 0."""
    for what, seg in segments.items():
        check_owner(seg, uid, what)
    for name, value in counts.items():
        count(name, value)
    for seg in segments.values():
        seg.check_live()
