"""Rendering: structured trajectories -> canonical text / orchestrator-shaped ids; trees -> text.

`render(parts)` writes the canonical text of a response made of plain strings and `BlockSpec`s.
`encode_pieces(fmt, parts)` builds the same response as ids the way the orchestrator assembles it
(model text, inserted thread headers, inserted join newline), with a mask of model-generated
tokens. For a real BPE tokenizer `fmt.encode(render(parts)) == encode_pieces(fmt, parts)[0]`:
the tokenisation round trip the tests check. `describe(tree, fmt)` is a readable outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plait.threads.format import tags as T
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.parser import Block, SegmentTree


@dataclass(slots=True, kw_only=True)
class BlockSpec:
    """One block's content: outline texts and thread bodies, without numbers or wrappers."""

    outlines: list[str]
    threads: list[str]

    def __post_init__(self) -> None:
        if len(self.outlines) != len(self.threads) or not self.threads:
            raise ValueError(
                f"a block needs as many threads as outlines (>= 1), got {len(self.outlines)} "
                f"outlines and {len(self.threads)} threads"
            )


def outlines_text(spec: BlockSpec) -> str:
    """`<Parallel>\\n<Outlines>\\n...</Outlines>`: the model's text up to the fork."""
    items = "".join(
        f"{T.OUTLINE}{i}: {o.strip()}{T.OUTLINE_END}\n" for i, o in enumerate(spec.outlines, 1)
    )
    return f"{T.PARALLEL}\n{T.OUTLINES}\n{items}{T.OUTLINES_END}"


def thread_text(i: int, body: str) -> str:
    return f"{T.THREAD}\n{i}: {body.strip()}\n{T.THREAD_END}"


def render(parts: Sequence[str | BlockSpec]) -> str:
    """Canonical response text. A block is followed by `\\n</Parallel>` (join + closer)."""
    out = []
    for p in parts:
        if isinstance(p, BlockSpec):
            threads = "".join(thread_text(i, b) for i, b in enumerate(p.threads, 1))
            out.append(f"{outlines_text(p)}\n{threads}\n{T.PARALLEL_END}")
        else:
            out.append(p)
    return "".join(out)


def encode_pieces(
    fmt: ThreadFormat, parts: Sequence[str | BlockSpec]
) -> tuple[list[int], list[bool]]:
    """Response ids assembled like the orchestrator does, and the model-generated mask.

    Model text runs from the previous join to `</Outlines>` (one piece, so BPE merges across a
    string/block boundary exactly as in `render`); each thread is an inserted header
    `[\\n]<Thread>\\n{i}:` plus the model's ` body\\n</Thread>`; the join `\\n` is inserted; the
    model then writes `</Parallel>` and what follows.
    """
    ids: list[int] = []
    gen: list[bool] = []
    pending = ""  # model text not yet encoded

    def emit(toks: list[int], generated: bool) -> None:
        ids.extend(toks)
        gen.extend([generated] * len(toks))

    for p in parts:
        if not isinstance(p, BlockSpec):
            pending += p
            continue
        emit(fmt.encode(pending + outlines_text(p)), True)
        for i, body in enumerate(p.threads, 1):
            emit(fmt.thread_header(str(i), leading_newline=i == 1), False)
            emit(fmt.encode(f" {body.strip()}\n{T.THREAD_END}"), True)
        emit(fmt.newline(), False)
        pending = T.PARALLEL_END
    if pending:
        emit(fmt.encode(pending), True)
    return ids, gen


def describe(tree: SegmentTree, fmt: ThreadFormat, width: int = 60) -> str:
    """A few lines per node: kind, span, token counts, and the first characters of text."""

    def clip(a: int, b: int) -> str:
        s = fmt.decode(tree.tokens[a:b]).replace("\n", "\\n")
        return s if len(s) <= width else s[: width - 3] + "..."

    lines = [f"prompt: {tree.prompt_len} tokens; response: {tree.response_len} tokens"]
    for node in tree.nodes:
        if not isinstance(node, Block):
            lines.append(
                f"seq   [{node.start},{node.end}) {len(node)} tok: {clip(node.start, node.end)}"
            )
            continue
        flag = "" if node.closed else " (unclosed)"
        lines.append(f"block [{node.start},{node.end}) {len(node)} tok{flag}")
        for o in node.outlines:
            lines.append(f"  outline {o.number}: {clip(*o.body)}")
        for t in node.threads:
            lines.append(f"  thread {t.number} ({t.body_len} tok): {clip(*t.body)}")
    return "\n".join(lines)
