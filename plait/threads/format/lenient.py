"""Lenient reading: normalise trajectories from other pipelines to plait's canonical format.

plait's validator is strict about whitespace and numbering, which is right for the data plait
generates but rejects data written elsewhere (the release's pipeline, other models). `normalize`
rewrites these variants into the canonical form of `codec.py` and reports each fix:

- whitespace between `</Thread>` and `<Thread>` (dropped: threads touch);
- `<Thread>1: ...</Thread>` without the newlines after `<Thread>` / before `</Thread>`;
- an item number without the space after its colon (`1:plan`), or with space before it;
- other glue whitespace in a block: a blank line after `</Outlines>`, `<Parallel><Outlines>` or
  `</Outline><Outline>` touching, several newlines before `</Parallel>`;
- the legacy `<Conclusion>...</Conclusion>`: inside a block after its threads, its text moves
  after `</Parallel>` (the text that follows the join); elsewhere the tags are dropped.

It works on pieces: the eight tags and EOS ids stay as they are, and only a text run between two
tags that needs a fix is decoded, rewritten and encoded again (unchanged runs keep their ids, so a
canonical trajectory comes back identical). A glue run is only replaced when it is whitespace;
anything else (text where none belongs, unclosed blocks, numbering gaps) is left for the strict
validator to report. Fix positions index the tokens given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from plait.threads.format import tags as T
from plait.threads.format.codec import ThreadFormat

# canonical glue between two adjacent tags of a block
_GLUE = {
    (T.PARALLEL, T.OUTLINES): "\n",
    (T.OUTLINES, T.OUTLINE): "\n",
    (T.OUTLINE_END, T.OUTLINE): "\n",
    (T.OUTLINE_END, T.OUTLINES_END): "\n",
    (T.OUTLINES_END, T.THREAD): "\n",
    (T.THREAD_END, T.THREAD): "",
    (T.THREAD_END, T.PARALLEL_END): "\n",
}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)*)\s*:\s*")
_OUTLINE_OK = re.compile(r"^[0-9]+(?:\.[0-9]+)*: \S")
_THREAD_OK = re.compile(r"^\n[0-9]+(?:\.[0-9]+)*: \S")
_CONCLUSION = re.compile(r"\s*<Conclusion>(.*?)</Conclusion>\s*", re.S)


@dataclass(slots=True, frozen=True, kw_only=True)
class Fix:
    """One rewrite: `pos` is the index (into the tokens given) of the run that was changed."""

    pos: int
    code: str  # "glue", "outline-format", "thread-format" or "conclusion"
    before: str
    after: str


@dataclass(slots=True, kw_only=True)
class Normalized:
    """A trajectory in canonical form and the fixes that made it so."""

    tokens: list[int]
    prompt_len: int
    fixes: list[Fix] = field(default_factory=list)


@dataclass(slots=True)
class _Run:
    """A text run between two boundaries (tags, EOS ids, the ends), with its neighbours."""

    start: int  # index of its first token in the input
    ids: list[int]
    left: str | None  # the tag before it (None: start, or a non-tag boundary)
    right: str | None


def _pieces(tokens: list[int], fmt: ThreadFormat, start: int) -> list[_Run | int]:
    """Tags and EOS ids as ints, text between them as runs (an empty run between adjacent tags)."""
    out: list[_Run | int] = []
    run = _Run(start, [], None, None)
    for k in range(start, len(tokens)):
        tok = tokens[k]
        if fmt.is_tag(tok) or tok in fmt.eos_ids:
            name = fmt.tags.name(tok)
            run.right = name
            out += [run, tok]
            run = _Run(k + 1, [], name, None)
        else:
            run.ids.append(tok)
    out.append(run)
    return out


def _item(text: str, pattern: re.Pattern[str], lead: str) -> str:
    """`N: body` (outlines) / `\\nN: body` (threads) at the start of an item's text."""
    if pattern.match(text):
        return text
    m = _NUMBER.match(text)
    return f"{lead}{m.group(1)}: {text[m.end() :]}" if m else text


def _rewrite(run: _Run, text: str, carry: str) -> tuple[str, str, str]:
    """(new text, fix code, text carried past `</Parallel>`) for one run."""
    pair = (run.left, run.right)
    if pair == (T.OUTLINE, T.OUTLINE_END):
        return _item(text, _OUTLINE_OK, ""), "outline-format", carry
    if pair == (T.THREAD, T.THREAD_END):
        new = _item(text, _THREAD_OK, "\n")
        return (new if new.endswith("\n") else new.rstrip(" \t") + "\n"), "thread-format", carry
    if pair == (T.THREAD_END, T.PARALLEL_END) and _CONCLUSION.search(text):
        inner = "\n".join(m.strip() for m in _CONCLUSION.findall(text))
        rest = _CONCLUSION.sub("", text)
        return (rest if rest.strip() else "\n"), "conclusion", carry + inner
    if run.left == T.PARALLEL_END and carry:
        sep = "" if text[:1].isspace() else "\n"
        return f"\n{carry}{sep}{text}", "conclusion", ""
    if "<Conclusion>" in text or "</Conclusion>" in text:
        return text.replace("<Conclusion>", "").replace("</Conclusion>", ""), "conclusion", carry
    want = _GLUE.get(pair)  # type: ignore[arg-type]
    if want is not None and text != want and not text.strip():
        return want, "glue", carry
    return text, "", carry


def normalize(tokens: list[int], fmt: ThreadFormat, *, prompt_len: int = 0) -> Normalized:
    """The canonical form of `tokens[prompt_len:]` (the prompt is kept as it is)."""
    if not 0 <= prompt_len <= len(tokens):
        raise ValueError(f"prompt_len must be in [0, {len(tokens)}], got {prompt_len}")
    tokens = [int(t) for t in tokens]
    out = tokens[:prompt_len]
    fixes: list[Fix] = []
    carry = ""
    for piece in _pieces(tokens, fmt, prompt_len):
        if isinstance(piece, int):
            out.append(piece)
            continue
        text = fmt.decode(piece.ids) if piece.ids else ""
        new, code, carry = _rewrite(piece, text, carry)
        if new == text:
            out += piece.ids
            continue
        out += fmt.encode(new)
        fixes.append(Fix(pos=piece.start, code=code, before=text, after=new))
    return Normalized(tokens=out, prompt_len=prompt_len, fixes=fixes)
