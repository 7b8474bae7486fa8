"""Token trie of a trajectory's (context, completion) units, flattened by depth-first traversal.

Every unit is one root-to-node path (context tokens then completion tokens). Units that share a
prefix share trie nodes, so the shared context is stored (and later run through the model) once.
`TokenTrie.flatten()` linearises the trie in pre-order with children in insertion order: when the
full-trajectory unit is inserted first, the flat sequence starts with the trajectory verbatim.

Per flat node it records the token, its depth (the position id it has in every unit that contains
it), its parent's flat index, and the Euler-tour exit time (last flat index of its subtree; the
entry time is the flat index itself). A node is *trained* when some unit generated it: it is a
model-generated completion token there. Its loss is `-log p(token | ancestors)`, read from the
logits of its parent row, and it counts once however many units contain it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class UnitTokens:
    """One (context, completion) unit as token ids.

    `trained[k]` says whether completion token k is model-generated (supervised); tokens the
    orchestrator inserts (thread headers, the joining newline, forced closers) get False.
    """

    context: list[int]
    completion: list[int]
    trained: list[bool] | None = None  # None = every completion token is model-generated
    name: str = ""

    def __post_init__(self) -> None:
        self.context = [int(t) for t in self.context]
        self.completion = [int(t) for t in self.completion]
        if self.trained is None:
            self.trained = [True] * len(self.completion)
        self.trained = [bool(x) for x in self.trained]
        if len(self.trained) != len(self.completion):
            raise ValueError(
                f"unit {self.name!r}: trained has {len(self.trained)} flags for "
                f"{len(self.completion)} completion tokens; give one flag per completion token"
            )
        if not self.context and any(self.trained[:1]):
            raise ValueError(
                f"unit {self.name!r} has an empty context, so its first completion token has no "
                "row to be predicted from; put at least the prompt's first token in the context"
            )

    @property
    def tokens(self) -> list[int]:
        return self.context + self.completion


def as_unit_tokens(unit: object) -> UnitTokens:
    """Adapt any unit-like object with `context`/`completion` ids (and an optional mask) to UnitTokens.

    Accepted mask attribute names: `trained`, `generated`, `completion_mask`, `loss_mask`.
    """
    if isinstance(unit, UnitTokens):
        return unit
    try:
        context = list(getattr(unit, "context"))  # noqa: B009
        completion = list(getattr(unit, "completion"))  # noqa: B009
    except AttributeError as exc:
        raise TypeError(
            f"{type(unit).__name__} has no context/completion token lists; pass UnitTokens or an "
            "object with `context` and `completion` attributes"
        ) from exc
    mask = None
    for attr in ("trained", "generated", "completion_mask", "loss_mask"):
        if getattr(unit, attr, None) is not None:
            mask = [bool(x) for x in getattr(unit, attr)]
            break
    return UnitTokens(
        context=context, completion=completion, trained=mask, name=str(getattr(unit, "name", ""))
    )


@dataclass(slots=True, kw_only=True)
class FlatTrie:
    """A trie linearised in DFS pre-order (entry time of flat node i is i)."""

    tokens: list[int]  # (N,) token id per node
    depth: list[int]  # (N,) position id = depth (a root child has depth 0)
    parent: list[int]  # (N,) parent's flat index, -1 for a top-level node
    exit: list[int]  # (N,) last flat index inside the node's subtree (>= own index)
    trained: list[bool]  # (N,) supervised exactly once
    unit_paths: list[list[int]]  # per kept unit: flat indices of its context + completion tokens
    unit_context_len: list[int]  # per kept unit: how many of its path nodes are context
    kept: list[int]  # indices (into the input list) of the units inserted
    dropped: list[int]  # indices of units left out because they did not fit the capacity

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(slots=True)
class _Node:
    token: int
    depth: int
    children: dict[int, int] = field(default_factory=dict)  # token -> node id, insertion order
    trained: bool = False


class TokenTrie:
    """Insertion-ordered token trie; node ids are creation order, flat ids are DFS order."""

    def __init__(self) -> None:
        self._nodes: list[_Node] = []
        self._roots: dict[int, int] = {}  # first token -> node id
        self._paths: list[list[int]] = []  # node ids per inserted unit
        self._ctx_len: list[int] = []

    def __len__(self) -> int:
        return len(self._nodes)

    def new_nodes(self, tokens: Sequence[int]) -> int:
        """How many nodes inserting `tokens` would create (the unit's packing cost)."""
        children = self._roots
        for k, tok in enumerate(tokens):
            node = children.get(int(tok))
            if node is None:
                return len(tokens) - k
            children = self._nodes[node].children
        return 0

    def insert(self, unit: UnitTokens) -> list[int]:
        """Insert one unit's path; mark its model-generated completion nodes trained."""
        tokens = unit.tokens
        path: list[int] = []
        children = self._roots
        for depth, tok in enumerate(tokens):
            node = children.get(tok)
            if node is None:
                node = len(self._nodes)
                self._nodes.append(_Node(tok, depth))
                children[tok] = node
            path.append(node)
            children = self._nodes[node].children
        n_ctx = len(unit.context)
        assert unit.trained is not None
        for k, flag in enumerate(unit.trained):
            if flag:
                self._nodes[path[n_ctx + k]].trained = True
        self._paths.append(path)
        self._ctx_len.append(n_ctx)
        return path

    def flatten(self, kept: list[int] | None = None, dropped: list[int] | None = None) -> FlatTrie:
        """Pre-order DFS (iterative: tries can be 40k deep), children in insertion order."""
        n = len(self._nodes)
        flat_of = [-1] * n
        tokens: list[int] = []
        depth: list[int] = []
        parent: list[int] = []
        trained: list[bool] = []
        exit_: list[int] = []
        # stack of (node id, parent flat index, is_exit_marker)
        stack: list[tuple[int, int, bool]] = [
            (r, -1, False) for r in reversed(self._roots.values())
        ]
        while stack:
            node_id, par, is_exit = stack.pop()
            if is_exit:
                exit_[flat_of[node_id]] = len(tokens) - 1
                continue
            node = self._nodes[node_id]
            idx = len(tokens)
            flat_of[node_id] = idx
            tokens.append(node.token)
            depth.append(node.depth)
            parent.append(par)
            trained.append(node.trained)
            exit_.append(idx)
            stack.append((node_id, par, True))
            for child in reversed(node.children.values()):
                stack.append((child, idx, False))
        return FlatTrie(
            tokens=tokens,
            depth=depth,
            parent=parent,
            exit=exit_,
            trained=trained,
            unit_paths=[[flat_of[i] for i in p] for p in self._paths],
            unit_context_len=list(self._ctx_len),
            kept=list(range(len(self._paths))) if kept is None else kept,
            dropped=[] if dropped is None else dropped,
        )


def build_trie(units: Sequence[object], capacity: int | None = None) -> FlatTrie:
    """Insert units in order (put the full-trajectory unit first) and flatten.

    Args:
        units: UnitTokens or unit-like objects (see `as_unit_tokens`).
        capacity: max flat nodes; a unit that would push the trie past it is dropped whole
            (its index is reported in `FlatTrie.dropped`), later smaller units may still fit.

    Returns:
        The flattened trie.
    """
    if capacity is not None and capacity < 1:
        raise ValueError(f"capacity must be >= 1 token (or None for unbounded), got {capacity}")
    trie = TokenTrie()
    kept: list[int] = []
    dropped: list[int] = []
    for i, raw in enumerate(units):
        unit = as_unit_tokens(raw)
        if capacity is not None and len(trie) + trie.new_nodes(unit.tokens) > capacity:
            dropped.append(i)
            continue
        trie.insert(unit)
        kept.append(i)
    return trie.flatten(kept=kept, dropped=dropped)
