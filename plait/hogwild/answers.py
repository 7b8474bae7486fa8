"""Final answers: \\boxed{...} with balanced braces (math) and the last compiling code block (code).

The original parser cut `\\boxed{\\frac{1}{2}}` at the first "}"; here braces are matched, and
escaped braces (`\\{`, `\\}`) do not count.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_CODE = re.compile(r"```[ \t]*(python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def match_brace(text: str, open_idx: int) -> int:
    """Index of the "}" that closes the "{" at `open_idx`, or -1 if it never closes."""
    if text[open_idx] != "{":
        raise ValueError(f"text[{open_idx}] is {text[open_idx]!r}, not '{{'")
    depth, i = 0, open_idx
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete \\boxed{...} in `text`, left to right (nested braces kept)."""
    out = []
    for m in _BOXED.finditer(text):
        end = match_brace(text, m.end() - 1)
        if end >= 0:
            out.append(text[m.end() : end].strip())
    return out


def last_boxed(text: str, valid: Callable[[str], bool] | None = None) -> str | None:
    """The right-most complete \\boxed{} content that is non-empty and passes `valid`."""
    for content in reversed(boxed_contents(text)):
        if content and (valid is None or valid(content)):
            return content
    return None


def compiles(source: str) -> bool:
    try:
        compile(source, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def last_code_block(text: str) -> str | None:
    """The last complete ```python (or bare ```) block whose source compiles."""
    for m in reversed(list(_CODE.finditer(text))):
        source = m.group(2)
        if source.strip() and compiles(source):
            return source
    return None


_STATED = re.compile(r"answer is '?(\w+)", re.IGNORECASE)


def placeholders(prompt: str) -> frozenset[str]:
    """Answers the prompt shows as placeholders: box contents without a digit ("N" in "write
    \\boxed{N}", "answer") and the word of "the answer is N". A worker that boxes one of them
    (copying the instructions) has not answered."""
    shown = boxed_contents(prompt) + _STATED.findall(prompt)
    return frozenset(c for c in shown if not any(ch.isdigit() for ch in c))


def final_answer(text: str, task: str = "math", skip: frozenset[str] = frozenset()) -> str | None:
    """The final answer in `text` for a task kind ('math' -> the last box whose content is not in
    `skip`, 'code' -> the last compiling code block)."""
    if task == "math":
        return last_boxed(text, lambda c: c not in skip)
    if task == "code":
        return last_code_block(text)
    raise ValueError(f"task must be 'math' or 'code', got {task!r}")
