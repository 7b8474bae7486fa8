"""The `--ray` options of `plait serve`: the same server, its engine replicated on a Ray cluster.

`plait serve --ray` rather than a separate command: the API, the model and engine flags and the
defaults stay the ones users already run; `--ray` only adds where the replicas run
(`--address`, `--replicas`, `--replica-cpus`, `--replica-gpus`, `--replicas-per-node`) and how
requests are routed (`--route-policy`, `--route-imbalance`). Nothing here imports Ray.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

RAY_EPILOG = """
scale out (Ray Serve; pip install -e '.[ray]'):
  ray start --head --num-cpus 4                     # on the head; `ray start --address HEAD:6379` on others
  plait serve --ray --address auto --replicas 4 --model smollm2-135m
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replicas on Ray Serve (--ray)")
    g.add_argument("--ray", action="store_true",
                   help="serve N engine replicas as a Ray Serve deployment, routed by prefix")  # fmt: skip
    g.add_argument("--address", default=None,
                   help="Ray cluster to join (ray.init address, e.g. auto); default: a local Ray")  # fmt: skip
    g.add_argument("--replicas", type=int, default=2, help="engine replicas")
    g.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per replica")
    g.add_argument("--replica-gpus", type=float, default=0.0, help="GPUs reserved per replica")
    g.add_argument("--replicas-per-node", type=int, default=None,
                   help="at most this many replicas on one node (1: spread over nodes)")  # fmt: skip
    g.add_argument("--route-policy", default="prefix", choices=["prefix", "round_robin"],
                   help="prefix: the replica caching the longest prefix; round_robin: ignore prefixes")  # fmt: skip
    g.add_argument("--route-imbalance", type=int, default=16,
                   help="in-flight difference between replicas beyond which load wins over prefix")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """`plait serve --ray` (the model/engine flags are `plait serve`'s, checked by its command,
    the port too)."""
    from plait.errors import UsageError

    try:
        import ray.serve  # noqa: F401 - only to name a missing install before anything starts
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"plait serve --ray needs {exc.name}; install it with pip install -e '.[ray]'"
        ) from None
    from plait.serve.cluster.deploy import ClusterConfig, deploy, serve_forever
    from plait.serve.cluster.prefix_index import RouterConfig
    from plait.serve.cluster.replica import ReplicaSpec

    try:
        cfg = ClusterConfig(
            address=args.address, replicas=args.replicas, replica_cpus=args.replica_cpus,
            replica_gpus=args.replica_gpus, max_replicas_per_node=args.replicas_per_node,
            router=RouterConfig(policy=args.route_policy, imbalance=args.route_imbalance,
                                capacity_tokens=args.kv_budget_tokens),
            graceful_s=args.graceful_s,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(f"bad --ray settings: {exc}") from None
    spec = ReplicaSpec(
        model=args.model, served_name=args.served_model_name or args.model, dtype=args.dtype,
        device=args.device, max_n=args.max_n, max_waiting=args.max_waiting,
        engine=dict(kv_budget_tokens=args.kv_budget_tokens, max_rows=args.max_rows,
                    step_tokens=args.step_tokens, block_tokens=args.block_tokens),
    )  # fmt: skip
    state = deploy(spec, cfg)
    _say(f"plait serve --ray: {state.model_name} x {cfg.replicas} replicas on "
         f"http://{args.host}:{args.port}/v1 (routing: {cfg.router.policy})")  # fmt: skip
    serve_forever(state, cfg, args.host, args.port, shutdown_ray=args.address is None)
    return 0


def _say(line: Any) -> None:
    print(line, file=sys.stderr, flush=True)
