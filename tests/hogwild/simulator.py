"""A brute-force Hogwild simulator: every token's K and V as written, explicit views, fp64 attention.

It shares nothing with the engine's KV store, runner or layouts: it keeps, per token, the pre-RoPE
K and V of every layer computed when the token was written (through the model's own projections,
in float64), rebuilds each worker's view as an explicit token list from its own symbolic state
(history, current steps, shared headers), rotates queries and keys at their view positions with a
float64 RoPE and runs one softmax per query. Driven by the engine's feeds, it must reproduce the
engine's logits for every stream of every pass.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class Tok:
    id: int
    k: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (Hkv, D) pre-RoPE
    v: dict[int, torch.Tensor] = field(default_factory=dict)


def _rope(
    x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor, factor: float
) -> torch.Tensor:
    """x (N, H, D) rotated at positions pos (N,) with rotate-half pairs, float64."""
    r = inv_freq.shape[0] * 2
    ang = pos.double()[:, None] * inv_freq.double()[None]  # (N, R/2)
    ang = torch.cat([ang, ang], -1)[:, None, :]  # (N, 1, R)
    cos, sin = ang.cos() * factor, ang.sin() * factor
    rot, rest = x[..., :r], x[..., r:]
    half = r // 2
    rh = torch.cat([-rot[..., half:], rot[..., :half]], -1)
    return torch.cat([rot * cos + rh * sin, rest], -1)


@dataclass
class SimStream:
    new: list[Tok]  # this stream's new tokens (in order)
    view: list[Tok]  # the explicit view, new tokens included where they sit


class _Ctx:
    def __init__(self, sim: Simulator, streams: list[SimStream]) -> None:
        self.sim, self.streams = sim, streams
        self.rows = [(s, t) for s in streams for t in s.new]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, Hq, D = q.shape
        for (_, tok), kk, vv in zip(self.rows, k, v):  # 1) write every new token's K/V
            tok.k[layer], tok.v[layer] = kk.double(), vv.double()
        out = torch.zeros(T, Hq, D, dtype=torch.float64)
        g = Hq // k.shape[1]
        row = 0
        for stream in self.streams:  # 2) explicit view, one softmax per query
            where = {id(t): i for i, t in enumerate(stream.view)}
            keys = torch.stack([t.k[layer] for t in stream.view])  # (P, Hkv, D)
            vals = torch.stack([t.v[layer] for t in stream.view])
            keys = _rope(keys, torch.arange(len(stream.view)), self.sim.inv_freq, self.sim.factor)
            keys, vals = keys.repeat_interleave(g, 1), vals.repeat_interleave(g, 1)  # (P, Hq, D)
            for tok in stream.new:
                pos = where[id(tok)]
                qr = _rope(
                    q[row : row + 1].double(),
                    torch.tensor([pos]),
                    self.sim.inv_freq,
                    self.sim.factor,
                )[0]
                scores = torch.einsum("hd,phd->hp", qr, keys[: pos + 1]) / D**0.5  # (Hq, P)
                out[row] = torch.einsum("hp,phd->hd", scores.softmax(-1), vals[: pos + 1])
                row += 1
        return out.reshape(T, Hq * D).to(q.dtype)


class Simulator:
    """Symbolic Hogwild state + brute-force forward. `layout` in {combined, interleaved, contiguous}."""

    def __init__(self, model, layout: str, workers: int, instant: bool) -> None:  # noqa: ANN001
        self.model = copy.deepcopy(model).double()
        self.inv_freq = model.rope.inv_freq
        self.factor = float(model.rope.attention_factor)
        self.layout, self.w, self.instant = layout, workers, instant
        self.history: list[Tok] = []
        self.cur: list[list[Tok]] = [[] for _ in range(workers)]
        self.shared: dict[str, list[Tok]] = {}

    # ------------------------------------------------------------------ views

    def view(self, i: int, history: list[Tok], cur: list[list[Tok]]) -> list[Tok]:
        others = [j for j in range(self.w) if j != i]
        if self.layout == "interleaved" or (self.layout == "combined" and self.w == 1):
            return [*history, *cur[i]]
        if self.layout == "combined":
            v = [*history, *self.shared["others"]]
            for k, j in enumerate(others):
                v += [*cur[j], *self.shared[f"marker{k}"]]
            return [*v, *self.shared["own"], *cur[i]]
        v = list(history)
        for k, j in enumerate(others):
            v += [*cur[j], *self.shared[f"sep{k}"]]
        return [*v, *cur[i]]

    # ------------------------------------------------------------------ forward

    def forward(self, streams: list[SimStream]) -> torch.Tensor:
        ids = torch.tensor([t.id for s in streams for t in s.new])
        rows, n = [], 0
        for s in streams:
            n += len(s.new)
            rows.append(n - 1)
        with torch.no_grad():
            return self.model(ids, _Ctx(self, streams), torch.tensor(rows))

    def prefill(self, prompt: list[int], shared: list[tuple[str, list[int]]]) -> None:
        self.history = [Tok(t) for t in prompt]
        self.forward([SimStream(self.history, list(self.history))])
        before = list(self.history)
        for key, ids in shared:
            toks = [Tok(t) for t in ids]
            self.shared[key] = toks
            before = [*before, *toks]
            self.forward([SimStream(toks, list(before))])

    def step(self, feeds: list) -> torch.Tensor:  # noqa: ANN001 - engine Feed objects
        """One pass: returns logits (S, V) in the engine's stream order."""
        merging = self.layout != "contiguous"
        entries: list[tuple[int, list[Tok], str]] = []  # (worker, new tokens, role)
        nxt: dict[int, list[Tok]] = {}
        for i, f in enumerate(feeds):
            if f is None:
                continue
            if f.switch and not merging:
                toks = [Tok(t) for t in [*f.cur, *f.nxt]]
                self.cur[i] += toks
                entries.append((i, toks, "cur"))
                continue
            if f.cur:
                toks = [Tok(t) for t in f.cur]
                self.cur[i] += toks
                entries.append((i, toks, "cur"))
            if f.switch and f.nxt and self.instant:
                nxt[i] = [Tok(t) for t in f.nxt]
                entries.append((i, nxt[i], "nxt"))
        switching = [i for i, f in enumerate(feeds) if f is not None and f.switch and merging]
        hist_after = [*self.history, *(t for i in switching for t in self.cur[i])]
        cur_after = [nxt.get(i, []) if i in switching else c for i, c in enumerate(self.cur)]
        new_ids = {id(t) for _, toks, _ in entries for t in toks}
        streams = []
        for i, toks, role in entries:
            view = (
                self.view(i, hist_after, cur_after)
                if role == "nxt"
                else self.view(i, self.history, self.cur)
            )
            if not self.instant:  # others' same-pass tokens are not visible
                own = {id(t) for t in toks}
                view = [t for t in view if id(t) not in new_ids or id(t) in own]
            streams.append(SimStream(toks, view))
        logits = self.forward(streams)
        self.history, self.cur = hist_after, cur_after
        return logits
