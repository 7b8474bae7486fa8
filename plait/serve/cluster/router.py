"""The Ray Serve request router of the engine replicas: `PrefixIndex` behind Serve's API.

Serve runs one router per deployment handle, in the process holding the handle (the ingress):
`choose_replicas` ranks the live replicas for a pending request from the block keys the ingress
put in its `route` keyword (`PrefixIndex.choose`) and counts the request on its first choice at
once (its keys inserted, its in-flight count raised: the requests of a burst are all chosen
before Serve routes any); Serve probes the first rank's queue lengths and sends the request to
a replica that accepts it; `on_request_routed` moves the count if that replica is another one,
`on_request_completed` lowers its in-flight count, and a
replica that died or left is dropped from the index (its cache died with it). Each replica's
own counters (queue length, prefix-cache hit rate) arrive every `request_routing_stats_period_s`
through Serve's routing stats (`EngineReplica.record_routing_stats`) and are read by /metrics.

The class subclasses Ray's `RequestRouter`, so it is built on first use by `router_class()`
(Ray is imported there, not at module level: `plait serve` without `--ray` never loads Ray);
Serve finds it by its import path, `plait.serve.cluster.router.PlaitPrefixRouter`, which the
module's `__getattr__` answers with `router_class()`. The
live routers of this process register in `LIVE` ("app/deployment" -> router) for /metrics.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

from plait.serve.cluster.prefix_index import PrefixIndex, RouterConfig

_MAX_PENDING = 65536  # first choices remembered until routed
LIVE: dict[str, Any] = {}  # "app/deployment" -> its router in this process (for /metrics)


def live_key(app: str, deployment: str) -> str:
    return f"{app}/{deployment}"


def route_keys(pending_request: Any) -> list[int]:
    """The block keys the ingress attached to a request (none: route by load alone)."""
    if pending_request is None:
        return []
    keys = pending_request.kwargs.get("route")
    return list(keys) if keys else []


@functools.cache
def router_class() -> type:
    """The `RequestRouter` subclass (built once; imports Ray, see the module docstring)."""
    # Ray is imported here, lazily: the single-process server must not pay for it
    from ray.serve.request_router import RequestRouter

    class PlaitPrefixRouter(RequestRouter):
        """Prefix-affinity routing over plait engine replicas (see plait.serve.cluster.router)."""

        def initialize_state(self, **kwargs: Any) -> None:
            import plait.serve.cluster.router as here  # the real module (this class is pickled)

            self.index = PrefixIndex(RouterConfig(**kwargs))
            self.inflight: dict[str, int] = {}
            self.chosen: OrderedDict[str, str] = OrderedDict()  # request id -> first choice
            here.LIVE[live_key(self._deployment_id.app_name, self._deployment_id.name)] = self

        async def choose_replicas(
            self, candidate_replicas: list[Any], pending_request: Any = None
        ) -> list[list[Any]]:
            by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
            keys = route_keys(pending_request)
            ranks = self.index.choose(list(by_id), self.inflight, keys)
            if ranks and pending_request is not None:
                # count the first choice at once: requests of a burst are chosen before any is
                # routed (Serve probes queue lengths in between), and must see each other
                self._count(pending_request.metadata.internal_request_id, ranks[0][0], keys)
            return [[by_id[c] for c in rank] for rank in ranks]

        def _count(self, request_id: str, tenant: str, keys: list[int]) -> None:
            previous = self.chosen.pop(request_id, None)
            if previous == tenant:
                self.chosen[request_id] = tenant
                return
            if previous is not None and self.inflight.get(previous, 0) > 0:
                self.inflight[previous] -= 1
            self.chosen[request_id] = tenant
            while len(self.chosen) > _MAX_PENDING:  # choices never routed (cancelled)
                self.chosen.popitem(last=False)
            self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
            self.index.routed(tenant, keys)

        def on_request_routed(self, pending_request: Any, replica_id: Any, result: Any) -> None:
            request_id = pending_request.metadata.internal_request_id
            self._count(request_id, replica_id.unique_id, route_keys(pending_request))
            self.chosen.pop(request_id, None)

        def on_request_completed(self, replica_id: Any, internal_request_id: str) -> None:
            tenant = replica_id.unique_id
            if self.inflight.get(tenant, 0) > 0:
                self.inflight[tenant] -= 1

        def on_replica_actor_died(self, replica_id: Any) -> None:
            super().on_replica_actor_died(replica_id)
            self._drop(replica_id.unique_id)

        def update_replicas(self, replicas: list[Any]) -> None:
            super().update_replicas(replicas)
            live = {r.replica_id.unique_id for r in replicas}
            for tenant in [t for t in self.index.tenants if t not in live]:
                self._drop(tenant)

        def _drop(self, tenant: str) -> None:
            self.index.remove(tenant)
            self.inflight.pop(tenant, None)

    PlaitPrefixRouter.__module__ = __name__
    PlaitPrefixRouter.__qualname__ = "PlaitPrefixRouter"
    return PlaitPrefixRouter


def replica_stats(router: Any) -> dict[str, dict[str, float]]:
    """Per live replica of `router`: the router's view and the replica's last routing stats."""
    out: dict[str, dict[str, float]] = {}
    for rid, replica in list(router.curr_replicas.items()):
        tenant = rid.unique_id
        t = router.index.tenants.get(tenant)
        stats = dict(getattr(replica, "routing_stats", None) or {})
        out[tenant] = {
            **{k: float(v) for k, v in stats.items() if isinstance(v, int | float)},
            "inflight": float(router.inflight.get(tenant, 0)),
            "tree_tokens": float(router.index.tokens(tenant)),
            "routed": float(t.routed if t else 0),
            "routed_match_rate": t.matched_tokens / t.prompt_tokens if t and t.prompt_tokens else 0.0,
        }  # fmt: skip
    return out


def __getattr__(name: str) -> Any:
    """`plait.serve.cluster.router.PlaitPrefixRouter` (how Serve finds the class) builds it."""
    if name == "PlaitPrefixRouter":
        return router_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
