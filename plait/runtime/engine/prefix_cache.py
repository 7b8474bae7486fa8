"""Prefix cache: a radix tree of KV segments, one fixed-size block of prompt tokens per edge.

A prompt's first `floor((len - 1) / B)` full blocks of B tokens are a path in the tree (a node per
block, keyed by its tokens under its parent); each node owns one `Segment` of capacity B with the
block's K/V at segment-local positions. A request's view is [its path's segments..., private
segments], so prompts that share a prefix read the same stored K/V, and the view's structure
depends on the prompt alone (never on what else is cached or running): the same prompt runs the
same reads alone or in any batch. (An edge is a block rather than an arbitrary run, as in
SGLang's RadixAttention, so that splitting a node never re-rotates stored keys.)

A node is *ready* when its segment holds all B tokens. Nodes are created by `acquire` for a
request's whole path, before their K/V exist; any request holding a not-ready node may prefill
it (requests that arrive together share one prefill). `refs` counts the requests that hold a
node; a ready node with no refs stays cached until evicted, least recently used first (leaves
first: a request holding a node holds its ancestors). A not-ready node whose last holder lets go
is freed at once. `keep` adds a finished sequence's full blocks below its prompt's path, their K/V
copied from the request's tail and sample segments (re-rotated to block-local positions), so a
later prompt that continues the sequence finds them cached. The sequence's last tokens, too few
for a block, are kept as a `Partial` of the node they follow (a few per node): a new block or a
request's tail below that node that starts with (part of) them gets their K/V copied in (`reuse`,
the same block-local slots) and prefills only the rest. The view stays what the prompt fixes;
only how many of its tokens are computed changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from plait.runtime.segments import KVStore, Segment


@dataclass(eq=False, slots=True)
class CacheBlock:
    """One node of the tree: B prompt tokens and the segment holding their K/V."""

    tokens: tuple[int, ...]
    segment: Segment
    parent: CacheBlock | None
    children: dict[tuple[int, ...], CacheBlock] = field(default_factory=dict)
    refs: int = 0
    last_used: int = 0

    @property
    def ready(self) -> bool:
        return self.segment.length == len(self.tokens)


@dataclass(slots=True)
class CacheStats:
    queried_tokens: int = 0  # prompt tokens looked up (full blocks of admitted prompts)
    hit_tokens: int = 0  # of those, tokens of blocks that existed (cached or being filled)
    evicted_blocks: int = 0
    copied_tokens: int = 0  # prompt tokens whose K/V `reuse` copied from a kept partial block


@dataclass(eq=False, slots=True)
class Partial:
    """Tokens after a kept sequence's last full block (fewer than B), K/V at block-local slots."""

    tokens: tuple[int, ...]
    segment: Segment


PARTIALS_PER_NODE = 4


class PrefixCache:
    """The tree (see the module docstring).

    Args:
        store: where block segments live.
        block_tokens: B, tokens per block (>= 1).
    """

    def __init__(self, store: KVStore, block_tokens: int = 64) -> None:
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
        self.store, self.block = store, block_tokens
        self.root: dict[tuple[int, ...], CacheBlock] = {}
        self.blocks: list[CacheBlock] = []  # every node
        self.stats = CacheStats()
        self.partials: dict[int, list[Partial]] = {}  # by id(node) they follow, 0 for the root
        self._clock = itertools.count(1)

    def cached_blocks(self, prompt: Sequence[int]) -> int:
        """Blocks of a prompt's path: full blocks that leave at least one token after them."""
        return max(len(prompt) - 1, 0) // self.block

    def lookup(self, prompt: Sequence[int]) -> list[CacheBlock]:
        """The existing nodes of a prompt's path (a prefix of it), changing nothing."""
        out: list[CacheBlock] = []
        level = self.root
        for i in range(self.cached_blocks(prompt)):
            node = level.get(tuple(prompt[i * self.block : (i + 1) * self.block]))
            if node is None:
                break
            out.append(node)
            level = node.children
        return out

    def acquire(self, prompt: Sequence[int]) -> list[CacheBlock]:
        """Hold the prompt's whole path, creating missing nodes (empty segments of B slots)."""
        path: list[CacheBlock] = []
        level, parent = self.root, None
        tick = next(self._clock)
        for i in range(self.cached_blocks(prompt)):
            key = tuple(prompt[i * self.block : (i + 1) * self.block])
            node = level.get(key)
            if node is None:
                seg = self.store.new_segment(self.block, name=f"block{len(self.blocks)}")
                node = level[key] = CacheBlock(key, seg, parent)
                self.blocks.append(node)
            else:  # cached, or being prefilled by another request: computed once either way
                self.stats.hit_tokens += self.block
            self.stats.queried_tokens += self.block
            node.refs += 1
            node.last_used = tick
            path.append(node)
            level, parent = node.children, node
        return path

    def keep(
        self,
        path: Sequence[CacheBlock],
        tokens: Sequence[int],
        sources: Sequence[tuple[int, Segment]],
        limit: int,
    ) -> int:
        """Add the full blocks of `tokens` below `path` (the first blocks of `tokens`, held) that
        the tree lacks, then the rest as a `Partial`: at most `limit` new segments of B slots,
        unheld; `sources` are (position of its first token in `tokens`, segment) covering the
        tokens after the path. Returns the tokens kept."""
        b, tick, added, kept = self.block, next(self._clock), 0, 0
        parent = path[-1] if path else None
        level = parent.children if parent is not None else self.root
        for i in range(len(path), len(tokens) // b):
            key = tuple(tokens[i * b : (i + 1) * b])
            node = level.get(key)
            if node is None:
                seg = self._filled(i * b, (i + 1) * b, sources) if added < limit else None
                if seg is None:
                    return kept
                node = level[key] = CacheBlock(key, seg, parent, last_used=tick)
                self.blocks.append(node)
                added, kept = added + 1, kept + b
            level, parent = node.children, node
        first = len(tokens) // b * b
        if first < len(tokens) and added < limit:
            seg = self._filled(first, len(tokens), sources)
            if seg is not None:
                self._stash(parent, Partial(tuple(tokens[first:]), seg))
                kept += len(tokens) - first
        return kept

    def _filled(self, lo: int, hi: int, sources: Sequence[tuple[int, Segment]]) -> Segment | None:
        """A new B-slot segment holding positions lo..hi-1 (block-local), or None if the
        sources do not cover them."""
        seg = self.store.new_segment(self.block, name=f"block{len(self.blocks)}")
        for first, src in sources:  # the piece of [lo, hi) each source holds
            a, z = max(lo, first), min(hi, first + src.length)
            if a < z:
                self.store.copy_range(src, a - first, z - a, seg)
        if seg.length != hi - lo:
            self.store.free(seg)
            return None
        return seg

    def _stash(self, node: CacheBlock | None, part: Partial) -> None:
        parts = self.partials.setdefault(id(node) if node is not None else 0, [])
        for old in [p for p in parts if p.tokens[: len(part.tokens)] == part.tokens]:
            parts.remove(old)  # a newer partial covers it
            self.store.free(old.segment)
        parts.append(part)
        if len(parts) > PARTIALS_PER_NODE:
            self.store.free(parts.pop(0).segment)

    def reuse(self, node: CacheBlock | None, seg: Segment, tokens: Sequence[int], most: int) -> int:
        """Copy into the empty `seg` (a new block or tail after `node`, to hold `tokens`) the K/V
        of the kept partial that shares the longest prefix with them, at most `most` tokens;
        returns the tokens copied."""
        if seg.length or most <= 0:
            return 0
        best, n = None, 0
        for part in self.partials.get(id(node) if node is not None else 0, []):
            k = 0
            for x, y in zip(part.tokens[:most], tokens):
                if x != y:
                    break
                k += 1
            if k > n:
                best, n = part, k
        if best is not None:
            self.store.copy_range(best.segment, 0, n, seg)
            self.stats.copied_tokens += n
        return n

    def release(self, path: Sequence[CacheBlock]) -> None:
        """Let go of a path; not-ready nodes nobody holds are freed (deepest first)."""
        tick = next(self._clock)
        for node in reversed(path):
            node.refs -= 1
            node.last_used = tick
            if node.refs == 0 and not node.ready and not node.children:
                self._drop(node)

    def _drop(self, node: CacheBlock) -> None:
        level = node.parent.children if node.parent is not None else self.root
        del level[node.tokens]
        self.blocks.remove(node)
        self.store.free(node.segment)
        for part in self.partials.pop(id(node), []):
            self.store.free(part.segment)

    def evictable_tokens(self, keep: Sequence[CacheBlock] = ()) -> int:
        """Slots that eviction could free (nodes nobody holds), not counting `keep`."""
        kept = {id(b) for b in keep}
        free = sum(self.block for b in self.blocks if b.refs == 0 and id(b) not in kept)
        return free + self._partial_tokens()

    def _partial_tokens(self) -> int:
        return self.block * sum(len(parts) for parts in self.partials.values())

    def evict(self, tokens: int) -> int:
        """Free least recently used unheld leaves until `tokens` slots are freed; returns slots
        freed (less if not enough is evictable)."""
        freed = 0
        while freed < tokens and self.partials:  # partials first: the cheapest to lose
            _, parts = self.partials.popitem()
            for part in parts:
                self.store.free(part.segment)
                freed += self.block
        while freed < tokens:
            leaves = [b for b in self.blocks if b.refs == 0 and not b.children]
            if not leaves:
                break
            victim = min(leaves, key=lambda b: b.last_used)
            self._drop(victim)
            self.stats.evicted_blocks += 1
            freed += self.block
        return freed

    def held_tokens(self) -> int:
        """Slots of nodes some request holds."""
        return sum(self.block for b in self.blocks if b.refs > 0)

    def total_tokens(self) -> int:
        """Slots of every node (held or only cached) and kept partial."""
        return self.block * len(self.blocks) + self._partial_tokens()

    def hit_rate(self) -> float:
        s = self.stats
        return s.hit_tokens / s.queried_tokens if s.queried_tokens else 0.0
