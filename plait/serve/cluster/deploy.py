"""Start the engine replicas as a Ray Serve deployment, serve the ingress, stop with a drain.

`deploy` connects to a cluster (`ray.init(address=...)`; none: a local Ray), starts Serve without
its HTTP proxies (the ingress is plait's own server), runs `EngineReplica` x `replicas` with the
prefix router (plait.serve.cluster.router) and returns the ingress state. `serve` runs the
ingress with uvicorn until SIGTERM/SIGINT: new requests get 503, requests in flight finish (up to
`graceful_s`), then `undeploy` deletes the application, which Serve does gracefully: each
replica finishes its in-flight requests before it stops (`graceful_shutdown_timeout_s`).
`start_in_thread` serves the ingress from a thread (tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from plait.serve.cluster.ingress import IngressState, create_ingress
from plait.serve.cluster.prefix_index import RouterConfig
from plait.serve.cluster.replica import EngineReplica, ReplicaSpec
from plait.serve.cluster.router import live_key
from plait.serve.server import DrainingServer, free_port, http_server, serve_in_thread

DEPLOYMENT = "plait-engine"


@dataclass(slots=True, kw_only=True)
class ClusterConfig:
    """Where and how the replicas run."""

    address: str | None = None  # ray.init's address ("auto", "ray://host:10001"); None: local
    replicas: int = 2
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    max_replicas_per_node: int | None = None  # 1: one replica per node
    max_ongoing: int = 256  # requests a replica takes at once (the engine queues the rest)
    router: RouterConfig = field(default_factory=RouterConfig)
    app_name: str = "plait"
    graceful_s: float = 30.0
    stats_period_s: float = 1.0  # how often replicas report queue length and hit rate
    health_period_s: float = 2.0
    max_retries: int = 3
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.replica_cpus < 0 or self.replica_gpus < 0:
            raise ValueError("replica_cpus and replica_gpus must be >= 0")


def deploy(spec: ReplicaSpec, cfg: ClusterConfig) -> IngressState:
    """Run the replicas (see the module docstring); returns the ingress state."""
    # Ray is imported here, lazily: plait serve without --ray must not load it
    import ray
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from plait.serve.cluster.router import router_class

    if not ray.is_initialized():
        ray.init(address=cfg.address, log_to_driver=False, include_dashboard=False)
    serve.start(proxy_location="Disabled")
    router_settings: dict[str, Any] = dict(
        request_router_class=router_class(), request_router_kwargs=asdict(cfg.router),
        request_routing_stats_period_s=cfg.stats_period_s,
        request_routing_stats_timeout_s=max(5.0, 5 * cfg.stats_period_s),
    )  # fmt: skip
    routing = RequestRouterConfig(**router_settings)
    options: dict[str, Any] = dict(
        name=DEPLOYMENT, num_replicas=cfg.replicas, max_ongoing_requests=cfg.max_ongoing,
        ray_actor_options={"num_cpus": cfg.replica_cpus, "num_gpus": cfg.replica_gpus},
        request_router_config=routing, graceful_shutdown_timeout_s=cfg.graceful_s,
        graceful_shutdown_wait_loop_s=0.5, health_check_period_s=cfg.health_period_s,
        health_check_timeout_s=max(10.0, 3 * cfg.health_period_s),
    )  # fmt: skip
    if cfg.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = cfg.max_replicas_per_node
    deployment: Any = serve.deployment(EngineReplica)
    app = deployment.options(**options).bind(spec)
    handle = serve.run(app, name=cfg.app_name, route_prefix=None)
    info = handle.describe.remote().result()
    return IngressState(
        handle=handle, deployment=live_key(cfg.app_name, DEPLOYMENT), model_name=info["model"], context=info["context"],
        tokenizer=info["tokenizer"], block_tokens=cfg.router.block_tokens,
        max_retries=cfg.max_retries, timeout_s=cfg.timeout_s,
    )  # fmt: skip


def undeploy(cfg: ClusterConfig) -> None:
    """Delete the application; Serve drains every replica first."""
    import ray  # lazily, as in deploy
    from ray import serve

    if ray.is_initialized():  # else the cluster is gone already (serve.delete would start one)
        serve.delete(cfg.app_name)


def _server(state: IngressState, host: str, port: int, graceful_s: float) -> DrainingServer:
    return http_server(create_ingress(state), state, host, port, graceful_s)


def serve_forever(
    state: IngressState, cfg: ClusterConfig, host: str, port: int, shutdown_ray: bool
) -> None:
    """Serve the ingress until a signal, then drain it and the replicas."""
    try:
        _server(state, host, port, cfg.graceful_s).run()
    finally:
        state.draining = True
        undeploy(cfg)
        if shutdown_ray:  # our own local Ray: stop Serve's controller first, then Ray
            import ray  # lazily, as in deploy
            from ray import serve

            serve.shutdown()
            ray.shutdown()


def start_in_thread(state: IngressState, host: str = "127.0.0.1") -> tuple[DrainingServer, str]:
    """Serve the ingress from a daemon thread on a free port; returns (server, base URL)."""
    port = free_port(host)
    server = _server(state, host, port, 10.0)
    return server, serve_in_thread(server, host, port, "plait-ingress")
