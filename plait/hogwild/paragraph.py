"""The paragraph rule: when a worker's step ends, and the header of the next step.

A step ends at a generated token whose text contains "\\n\\n" when the step text, cut at its last
"\\n\\n", ends a sentence and no code block (``` or ~~~) or display-math block ($$, \\[ \\]) is open.

Where the ending token lands (plait's choice, unlike the original code): it is the LAST token of
the step it ends, both in the KV history and in the transcript. The next step's segment starts with
the header "**Name [k]:** " (plus the interjection when one is due). So the history reads
"...step text.\\n\\n**Bob [2]:** ..." in the cache exactly as in the printed transcript.
"""

from __future__ import annotations

SEP = "\n\n"
# Sentence terminators: Latin, CJK / full-width, Devanagari, Arabic, Armenian, Ethiopic, ellipsis.
TERMINATORS = frozenset(".?!。？！।؟։።…")
# Characters that may close a sentence after its terminator: quotes, brackets, emphasis.
CLOSERS = "\"'”’)]}*_»"


def header(name: str, step: int, interjection: str = "") -> str:
    """The text that opens step `step` (1-based) of worker `name`."""
    if step < 1:
        raise ValueError(f"step numbers start at 1, got {step}")
    return f"**{name} [{step}]:** {interjection}"


def open_blocks(text: str) -> bool:
    """True when a code or display-math block is open at the end of `text`."""
    if text.count("```") % 2 or text.count("~~~") % 2:
        return True
    if text.replace("\\$", "").count("$$") % 2:
        return True
    return text.count("\\[") > text.count("\\]")


def ends_sentence(text: str) -> bool:
    """True when `text` (trailing spaces and closers ignored) ends with a sentence terminator."""
    body = text.rstrip().rstrip(CLOSERS).rstrip()
    return bool(body) and body[-1] in TERMINATORS


def step_ends(step_text: str, token_text: str) -> bool:
    """Does appending `token_text` to `step_text` end the step?

    Args:
        step_text: the step so far (header included), without the new token.
        token_text: the decoded text of the newly generated token.
    """
    if SEP not in token_text:
        return False
    text = step_text + token_text
    before = text[: text.rfind(SEP)]
    return ends_sentence(before) and not open_blocks(before)
