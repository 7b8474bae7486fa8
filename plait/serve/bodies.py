"""Request bodies before the field checks: media type, nesting depth, strict JSON, typed objects.

    check_content_type(request.headers.get("content-type"))   # 415 unless JSON
    body = parse_json(raw)                                     # 400: too deep, not JSON
    check_fields(spec, HogwildConfig, "hogwild")               # 400: a field of the wrong type

The depth is counted on the raw bytes before parsing (`too_deep`: one pass over the brackets
outside strings, no recursion), so a 10,000-level body is a 400, never a RecursionError; NaN and
Infinity are refused (not JSON). `check_fields` checks an extension object's values against the
annotated types of the dataclass it configures (int, float, bool, str, None, tuples/lists,
Literal, unions), so `"x"` for an integer is a clean 400 naming the field, not a TypeError from
inside the constructor; integers must fit 64 bits (seeds, budgets). `off_loop` runs the work
on a large input (parsing, tokenising) on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from plait.serve.protocol import APIError, bad

OFF_LOOP_BYTES = 64 << 10  # bodies and prompts at least this long are handled on a thread
MAX_DEPTH = 64  # OpenAI bodies nest about 5 deep (messages[i].content[j].text)
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote or a bracket


def check_content_type(value: str | None) -> None:
    """415 unless the Content-Type is JSON (application/json or application/*+json)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise APIError(
        415, f"the Content-Type is {value or 'missing'!r:.60}; send the body as JSON with the "
        "header 'Content-Type: application/json'", code="unsupported_media_type",
    )  # fmt: skip


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit` (brackets inside strings
    do not count; escapes are skipped). Linear in the brackets, quotes and escapes."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth, in_string = 0, False
    for m in _TOKENS.finditer(raw):
        c = m.group()
        if len(c) == 2:
            continue  # an escape pair (inside a string in valid JSON)
        if c == b'"':
            in_string = not in_string
        elif in_string:
            continue
        elif c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; send a number")


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a body; APIError 400 if it nests too deep or is not strict JSON."""
    if too_deep(raw, max_depth):
        raise APIError(
            400, f"the body nests deeper than {max_depth} levels of arrays/objects; send a "
            "flatter JSON object", code="too_deep",
        )  # fmt: skip
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise APIError(400, f"the body is not valid JSON ({exc}); send a JSON object") from None


async def off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, on a worker thread when the input is large (`size` bytes or characters), so
    the event loop keeps answering other requests (/health) meanwhile."""
    if size < OFF_LOOP_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def check_fields(spec: dict[str, Any], cls: type, param: str) -> None:
    """400 naming `param.key` for a value that does not match the field's annotated type."""
    hints = typing.get_type_hints(cls)
    for key, value in spec.items():
        want = hints.get(key)
        if want is not None and not _matches(value, want):
            raise bad(
                param, f"'{param}.{key}' must be {_describe(want)}, got "
                f"{type(value).__name__} {value!r:.40}",
            )  # fmt: skip


def _matches(value: Any, tp: Any) -> bool:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return all(_matches(v, args[0]) for v in value) if args else True
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # a type this check does not know: the constructor checks it


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        return f"a list, each {_describe(args[0])}" if args else "a list"
    names = {bool: "a boolean", int: "a 64-bit integer", float: "a finite number",
             str: "a string", type(None): "null"}  # fmt: skip
    return names.get(tp, getattr(tp, "__name__", str(tp)))
