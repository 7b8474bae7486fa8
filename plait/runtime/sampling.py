"""Token sampling: greedy, temperature, top-k, top-p, suppressed tokens, per-stream seeds.

`Sampler` holds one `SamplingParams` per stream. The random draw for a stream's token at output
position t comes from a generator seeded with `draw_seed(seed, t)` alone: it depends on nothing
else (not on other streams, on the batch, on how many draws came before, on forced tokens or on
a preemption that recomputes the stream). `temperature == 0` means greedy (argmax; ties go to
the lowest id).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import lru_cache

import torch


def _int(name: str, value: object) -> int:
    """`value` as an int: Python and numpy integers pass; bools, floats and strings do not."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None


@dataclass(slots=True, kw_only=True)
class SamplingParams:
    """How to pick the next token of one stream."""

    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # keep the smallest set with cumulative probability >= top_p (1 = off)
    suppress_tokens: tuple[int, ...] = field(default_factory=tuple)  # never sampled
    seed: int | None = None  # per-stream seed (None: 0)

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(v).__name__} {v!r}")
        for name in ("top_k", "seed"):
            v = getattr(self, name)
            if v is not None or name == "top_k":
                setattr(self, name, _int(name, v))
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN
            raise ValueError(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}"
            )
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if isinstance(self.suppress_tokens, (str, bytes)):
            raise TypeError(f"suppress_tokens must be token ids, got {self.suppress_tokens!r}")
        self.suppress_tokens = tuple(_int("suppress_tokens", t) for t in self.suppress_tokens)
        if any(t < 0 for t in self.suppress_tokens):
            raise ValueError(f"suppress_tokens must be token ids >= 0, got {self.suppress_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@lru_cache(maxsize=64)
def _suppress_index(ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Suppressed token ids as an index tensor, built once per (ids, device): a decode loop
    samples every step with the same list."""
    return torch.tensor(ids, dtype=torch.long, device=device)


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Apply suppression, temperature, top-k and top-p to one row of logits (V,) -> (V,)."""
    x = logits.float()
    x = x.clone() if x is logits else x  # a float32 copy either way; the input is untouched
    if params.suppress_tokens:
        x.index_fill_(0, _suppress_index(params.suppress_tokens, x.device), -torch.inf)
    if params.greedy:
        return x
    x = x / params.temperature
    if params.top_k and params.top_k < x.shape[-1]:
        kth = torch.topk(x, params.top_k).values[-1]
        x = torch.where(x < kth, torch.full_like(x, -torch.inf), x)
    if params.top_p < 1.0:
        sorted_x, order = torch.sort(x, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        # drop a token if the mass before it already reaches top_p (the top token always stays)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        sorted_x = sorted_x.masked_fill(drop, -torch.inf)
        x = torch.empty_like(x).scatter_(0, order, sorted_x)
    return x


ARGMAX_CHUNK = 1024
_MASK64 = (1 << 64) - 1


def draw_seed(seed: int, position: int) -> int:
    """The generator seed of the draw at output `position` of a stream seeded `seed`: a
    splitmix64 mix of both (distinct pairs give unrelated streams; a 63-bit result)."""
    z = (seed * 0x9E3779B97F4A7C15 + (position + 1) * 0xD1B54A32D192ED03) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def greedy_argmax(x: torch.Tensor) -> int:
    """`int(torch.argmax(x))` for a 1-D float tensor (first index of the maximum), faster on CPU.

    torch's 1-D argmax is not vectorised on CPU (~130 us for a 152k vocabulary on the dev box);
    row maxima of a (V/1024, 1024) view are (~10 us). The first chunk holding the maximum holds
    its first occurrence; the argmax inside that chunk finds it. Twin: torch.argmax
    (tests/runtime/test_generate.py)."""
    n = x.shape[0] // ARGMAX_CHUNK * ARGMAX_CHUNK
    if x.device.type != "cpu" or x.dim() != 1 or n == 0 or bool(torch.isnan(x).any()):
        return int(torch.argmax(x))
    peaks = x[:n].view(-1, ARGMAX_CHUNK).amax(dim=1)  # (V // chunk,)
    c = int(torch.argmax(peaks))
    tail = x[n:]
    if tail.numel() and bool(tail.max() > peaks[c]):  # strictly greater: ties keep the lower id
        return n + int(torch.argmax(tail))
    return c * ARGMAX_CHUNK + int(torch.argmax(x[c * ARGMAX_CHUNK : (c + 1) * ARGMAX_CHUNK]))


class Sampler:
    """Samples one token per stream from logits (S, V); see the module docstring for the
    random streams. Stream i's seed is its params' seed (None: i)."""

    def __init__(
        self, params: list[SamplingParams] | SamplingParams, streams: int | None = None
    ) -> None:
        if isinstance(params, SamplingParams):
            params = [params] * (streams or 1)
        self.params = list(params)
        self.seeds = [p.seed if p.seed is not None else i for i, p in enumerate(self.params)]
        self.drawn = [0] * len(self.params)  # calls per stream: the default output position
        self._generator = torch.Generator()  # CPU: sampling draws on CPU whatever the device

    def __call__(
        self,
        logits: torch.Tensor,
        streams: list[int] | None = None,
        positions: list[int] | None = None,
    ) -> torch.Tensor:
        """Pick tokens (S,) for logits (S, V); `streams` maps rows to stream indices (default
        0..S-1); `positions` gives each row's output position (default: the stream's count of
        earlier calls, so a stream sampled once per token needs none)."""
        streams = list(range(logits.shape[0])) if streams is None else streams
        if len(streams) != logits.shape[0]:
            raise ValueError(f"got {logits.shape[0]} logit rows for {len(streams)} streams")
        if positions is not None and len(positions) != len(streams):
            raise ValueError(f"got {len(positions)} positions for {len(streams)} logit rows")
        out = []
        for i, (row, s) in enumerate(zip(logits, streams)):
            p = self.params[s]
            pos = self.drawn[s] if positions is None else positions[i]
            self.drawn[s] = pos + 1
            x = filter_logits(row, p)
            if p.greedy:
                out.append(greedy_argmax(x))
            else:
                probs = torch.softmax(x, dim=-1)
                g = self._generator.manual_seed(draw_seed(self.seeds[s], pos))
                out.append(int(torch.multinomial(probs.cpu(), 1, generator=g)))
        return torch.tensor(out, dtype=torch.long)
