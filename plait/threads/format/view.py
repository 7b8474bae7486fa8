"""A static, self-contained HTML view of one trajectory.

Sequential text spans the page; each block shows its outlines, then its threads side by side
(one column each). Everything on the critical path is highlighted: sequential tokens, block
wrappers and the longest thread of each block; shorter threads are dimmed. Tokens inserted by the
orchestrator (thread headers, the join newline, forced closers) are shown in italics.
"""

from __future__ import annotations

import html

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.metrics import trajectory_stats
from plait.threads.format.parser import Block, parse

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.2em} table.stats td{padding:0 1em 0 0} .mono{font-family:ui-monospace,monospace}
.seg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px;padding:.4em .6em;
 border-radius:4px;margin:.3em 0}
.prompt{background:#eee;color:#555} .seq{background:#fff3c4;border-left:4px solid #e0a800}
.block{border:1px solid #99b;border-radius:6px;padding:.5em;margin:.6em 0;background:#f4f6ff}
.outlines{background:#fff3c4;border-left:4px solid #e0a800}
.threads{display:flex;gap:.5em;align-items:flex-start}
.thread{flex:1;min-width:0;background:#fff;border:1px solid #ccd;opacity:.7}
.thread.critical{background:#fff3c4;border:2px solid #e0a800;opacity:1}
.label{font-size:11px;color:#557;margin-bottom:.2em}
.ins{font-style:italic;color:#a33;background:#fde}
"""


class _Writer:
    def __init__(
        self, tokens: list[int], fmt: ThreadFormat, inserted: list[bool] | None, base: int
    ):
        self.tokens, self.fmt, self.ins, self.base = tokens, fmt, inserted, base

    def text(self, a: int, b: int) -> str:
        """Escaped text of [a, b), orchestrator-inserted runs wrapped in <span class=ins>."""
        if self.ins is None or a < self.base:
            return html.escape(self.fmt.decode(self.tokens[a:b]))
        out, k = [], a
        while k < b:
            flag = self.ins[k - self.base]
            j = k
            while j < b and self.ins[j - self.base] == flag:
                j += 1
            piece = html.escape(self.fmt.decode(self.tokens[k:j]))
            out.append(f'<span class="ins">{piece}</span>' if flag else piece)
            k = j
        return "".join(out)


def _block_html(w: _Writer, b: Block, index: int) -> str:
    longest = max(range(len(b.threads)), key=lambda i: b.threads[i].body_len, default=-1)
    first = b.threads[0].start if b.threads else b.end
    parts = [f'<div class="block"><div class="label">block {index}: {len(b.threads)} threads, '
             f"{len(b)} tokens{'' if b.closed else ' (unclosed)'}</div>",
             f'<div class="seg outlines">{w.text(b.start, first)}</div><div class="threads">']  # fmt: skip
    for i, t in enumerate(b.threads):
        cls = "thread critical" if i == longest else "thread"
        parts.append(
            f'<div class="seg {cls}"><div class="label">thread {html.escape(str(t.number))}: '
            f"{t.body_len} tokens{' (critical path)' if i == longest else ''}</div>"
            f"{w.text(t.start, t.end)}</div>"
        )
    parts.append("</div>")
    if b.threads and b.threads[-1].end < b.end:
        parts.append(f'<div class="seg outlines">{w.text(b.threads[-1].end, b.end)}</div>')
    parts.append("</div>")
    return "".join(parts)


def render_html(
    tokens: list[int],
    fmt: ThreadFormat,
    *,
    prompt_len: int = 0,
    inserted: list[bool] | None = None,
    title: str = "ThreadWeaver trajectory",
) -> str:
    """A complete HTML document for one trajectory."""
    tree = parse(tokens, fmt, prompt_len=prompt_len)
    st = trajectory_stats(tree, inserted)
    w = _Writer(tree.tokens, fmt, inserted, prompt_len)
    rows = [("total tokens", st.total_tokens), ("critical path", st.critical_path),
            ("self-parallelism", f"{st.self_parallelism:.3f}x"), ("acceleration eta", f"{st.acceleration:.3f}"),
            ("parallel ratio", f"{st.parallel_ratio:.3f}"), ("blocks / threads", f"{st.blocks} / {st.threads}")]  # fmt: skip
    body = [f"<h1>{html.escape(title)}</h1><table class=stats>"]
    body += [f"<tr><td>{k}</td><td class=mono>{v}</td></tr>" for k, v in rows]
    body.append("</table>")
    if prompt_len:
        body.append(f'<div class="seg prompt">{w.text(0, prompt_len)}</div>')
    blocks = 0
    for node in tree.nodes:
        if isinstance(node, Block):
            body.append(_block_html(w, node, blocks))
            blocks += 1
        else:
            body.append(f'<div class="seg seq">{w.text(node.start, node.end)}</div>')
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
