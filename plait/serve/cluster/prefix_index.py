"""The router's view of every replica's prefix cache, and the routing policy over it.

A prompt (token ids) is cut into full blocks of B tokens; block i's key is a hash of block i's
tokens and block i-1's key, so equal keys mean equal prefixes (a block-hash prefix tree stored as
one dict, as in vLLM's prefix caching). For each replica (a *tenant*) the index keeps the keys it
was sent, least recently used first, up to `capacity_tokens` (about the replica's KV budget):
what the replica's own prefix cache most likely still holds. A chain is inserted leaf first, so
the root ends most recently used and eviction drops leaves before the blocks they extend: a
tenant's keys always form whole prefixes.

`choose` ranks replicas for one request (Ray Serve's contract: a list of ranks, the first
preferred; Serve picks the least loaded of a rank):

- load imbalanced (most - least in-flight requests > `imbalance`): least loaded first;
- else the replicas holding the longest cached prefix (at least one block) first;
- no prefix anywhere: the replica with the smallest tree first (new prefixes spread out),
  ties by load.

After the preferred replica(s) come at most `FALLBACK` others, one per rank, in the same order
(O(replicas) per request, no full sort; Serve probes only what it is given).
`policy="round_robin"` ignores prefixes (the baseline of the affinity test and benchmark).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

FALLBACK = 2  # replicas ranked after the preferred one(s)


def _but(items: Sequence[str], one: str) -> list[str]:
    return [c for c in items if c != one]


@dataclass(slots=True, kw_only=True)
class RouterConfig:
    """Settings of the prefix router (`request_router_kwargs`)."""

    policy: str = "prefix"  # "prefix" or "round_robin"
    block_tokens: int = 16  # tokens per key (finer than the engine's blocks: any hit counts)
    capacity_tokens: int = 32768  # per replica: about its KV budget
    imbalance: int = 16  # in-flight difference beyond which load wins over prefix

    def __post_init__(self) -> None:
        if self.policy not in ("prefix", "round_robin"):
            raise ValueError(f"policy must be 'prefix' or 'round_robin', got {self.policy!r}")
        for name in ("block_tokens", "capacity_tokens", "imbalance"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def chain(tokens: Sequence[int], block: int) -> list[int]:
    """Keys of the full blocks of `tokens` (each depends on every token before it)."""
    keys, h = [], 0
    for i in range(0, len(tokens) - block + 1, block):
        h = hash((h, tuple(tokens[i : i + block])))
        keys.append(h)
    return keys


@dataclass(slots=True)
class _Tenant:
    keys: OrderedDict[int, None] = field(default_factory=OrderedDict)  # LRU first
    routed: int = 0
    matched_tokens: int = 0  # prompt tokens found in this tenant's tree when routed here
    prompt_tokens: int = 0  # routed prompt tokens (the denominator of its hit estimate)


class PrefixIndex:
    """Block-hash prefix trees of all replicas (see the module docstring)."""

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()
        self.tenants: dict[str, _Tenant] = {}
        self._owners: dict[int, set[str]] = {}  # key -> tenants holding it
        self._turn = itertools.count()

    # ------------------------------------------------------------------ the trees

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """Blocks of `keys`' longest prefix each tenant holds (tenants with none left out)."""
        depth: dict[str, int] = {}
        alive: set[str] | None = None
        for i, k in enumerate(keys):
            owners = self._owners.get(k)
            alive = set(owners or ()) if alive is None else alive & (owners or set())
            if not alive:
                break
            for t in alive:
                depth[t] = i + 1
        return depth

    def insert(self, tenant: str, keys: Sequence[int]) -> None:
        """Record that `tenant` was sent this prefix; evicts its least recently used leaves."""
        t = self.tenants.setdefault(tenant, _Tenant())
        for k in reversed(keys):  # leaf first: the root ends most recently used
            if k in t.keys:
                t.keys.move_to_end(k)
            else:
                t.keys[k] = None
                self._owners.setdefault(k, set()).add(tenant)
        cap = max(1, self.config.capacity_tokens // self.config.block_tokens)
        while len(t.keys) > cap:
            k, _ = t.keys.popitem(last=False)
            self._forget(k, tenant)

    def remove(self, tenant: str) -> None:
        """Drop a replica (dead or gone) and everything it held."""
        t = self.tenants.pop(tenant, None)
        for k in t.keys if t else ():
            self._forget(k, tenant)

    def _forget(self, key: int, tenant: str) -> None:
        owners = self._owners.get(key)
        if owners is not None:
            owners.discard(tenant)
            if not owners:
                del self._owners[key]

    def tokens(self, tenant: str) -> int:
        t = self.tenants.get(tenant)
        return len(t.keys) * self.config.block_tokens if t else 0

    def entries(self) -> int:
        """(key, tenant) pairs held: what the index's memory grows with."""
        return sum(len(t.keys) for t in self.tenants.values())

    # ------------------------------------------------------------------ the policy

    def choose(
        self, candidates: Sequence[str], loads: dict[str, int], keys: Sequence[int]
    ) -> list[list[str]]:
        """Ranks of `candidates` for a request whose prompt has these block `keys`: the
        preferred replica(s), then at most `FALLBACK` others, one per rank (Serve tries them
        in turn when a rank's replicas are full; a short list keeps its probing cheap)."""
        if not candidates:
            return []

        def load(c: str) -> tuple[int, str]:
            return loads.get(c, 0), c

        if self.config.policy == "round_robin":
            first = sorted(candidates)[next(self._turn) % len(candidates)]
            return [
                [first],
                *([c] for c in heapq.nsmallest(FALLBACK, _but(candidates, first), key=load)),
            ]
        counts = [loads.get(c, 0) for c in candidates]
        if max(counts) - min(counts) > self.config.imbalance or not keys:
            return [[c] for c in heapq.nsmallest(FALLBACK + 1, candidates, key=load)]
        depth = self.match(keys)
        best = max((depth.get(c, 0) for c in candidates), default=0)
        if best > 0:
            top = sorted((c for c in candidates if depth.get(c, 0) == best), key=load)
            rest = heapq.nsmallest(FALLBACK, (c for c in candidates if depth.get(c, 0) < best),
                                   key=lambda c: (-depth.get(c, 0), *load(c)))  # fmt: skip
            return [top, *([c] for c in rest)]
        fresh = heapq.nsmallest(FALLBACK + 1, candidates, key=lambda c: (self.tokens(c), *load(c)))
        return [[c] for c in fresh]

    def routed(self, tenant: str, keys: Sequence[int]) -> None:
        """Account a request sent to `tenant` (its match before insertion) and insert it."""
        t = self.tenants.setdefault(tenant, _Tenant())
        t.routed += 1
        t.prompt_tokens += len(keys) * self.config.block_tokens
        t.matched_tokens += self.match(keys).get(tenant, 0) * self.config.block_tokens
        self.insert(tenant, keys)
