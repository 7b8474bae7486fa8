"""Static HTML view: well-formed, side-by-side threads, critical path marked, text escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.format.view import render_html

VOID = {"meta", "br", "img", "hr", "link", "input"}


class _Balance(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.classes: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.classes += [v for k, v in attrs if k == "class" and v]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def test_html_view(char_fmt):
    f = char_fmt
    prompt = f.encode("Q <script>\n")
    ids, gen = encode_pieces(
        f, ["a & b\n", BlockSpec(outlines=["p", "q", "r"], threads=["x", "yyyyyy", "z"]), "\nend"]
    )
    doc = render_html(
        prompt + ids, f, prompt_len=len(prompt), inserted=[not g for g in gen], title="t"
    )
    p = _Balance()
    p.feed(doc)
    p.close()
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    assert p.classes.count("seg thread critical") == 1 and p.classes.count("seg thread") == 2
    assert "thread 2: 11 tokens (critical path)" in doc  # "\n2: yyyyyy\n" is the longest body
    assert "<script>" not in doc.split("</style>")[1] and "&amp;" in doc  # escaped
    assert p.classes.count("ins") >= 4  # inserted header/join runs are marked
    assert "self-parallelism" in doc
