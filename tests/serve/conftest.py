"""A real `plait serve` on 127.0.0.1 (uvicorn in a thread) over SmolLM2-135M (fp32)."""

from __future__ import annotations

import pytest

from plait.runtime.engine import EngineConfig
from tests.helpers.serve import MODEL, require


@pytest.fixture(scope="session")
def smol():
    require("smollm2-135m")
    from plait.runtime.loading.loader import load_model

    return load_model("smollm2-135m", dtype="fp32")


@pytest.fixture(scope="module")
def served(smol):
    """(state, base_url) of a server shared by a test module."""
    from plait.serve.server import build_state, start_in_thread

    config = EngineConfig(kv_budget_tokens=16384, max_rows=32, step_tokens=256, block_tokens=32)
    state = build_state(smol, config, MODEL, max_n=4)
    server, url = start_in_thread(state)
    yield state, url
    server.should_exit = True
    state.loop.stop(timeout=10)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny random model every Ray replica (and its single-process twin) loads."""
    from tests.helpers.cluster import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


TINY_ENGINE = dict(kv_budget_tokens=4096, max_rows=16, step_tokens=256, block_tokens=16)


@pytest.fixture(scope="module")  # torn down before other modules use Ray (tests/sgc)
def ray_served(tiny_dir):
    """(IngressState, base_url, ClusterConfig, ReplicaSpec) of `plait serve --ray`: two replicas of the tiny
    model on the two nodes of a local Ray cluster, routed by prefix; the cluster is stopped
    (no process left) at the end of the module."""
    pytest.importorskip("ray.serve")
    from plait.serve.cluster.deploy import ClusterConfig, deploy, start_in_thread, undeploy
    from plait.serve.cluster.prefix_index import RouterConfig
    from plait.serve.cluster.replica import ReplicaSpec
    from tests.helpers.cluster import local_cluster

    spec = ReplicaSpec(model=str(tiny_dir), served_name=MODEL, dtype="fp32", max_n=4,
                       engine=TINY_ENGINE)  # fmt: skip
    cfg = ClusterConfig(replicas=2, replica_cpus=0.5, max_replicas_per_node=1,
                        router=RouterConfig(capacity_tokens=4096), timeout_s=60, graceful_s=20,
                        health_period_s=1.0)  # fmt: skip
    with local_cluster(nodes=2, cpus=1):
        state = deploy(spec, cfg)
        server, url = start_in_thread(state)
        try:
            yield state, url, cfg, spec
        finally:
            server.should_exit = True
            undeploy(cfg)


@pytest.fixture(scope="session")
def tiny_served(tiny_dir):
    """(state, base_url) of single-process `plait serve` over the same tiny model and engine."""
    from plait.runtime.loading.loader import load_model
    from plait.serve.server import build_state, start_in_thread

    state = build_state(load_model(str(tiny_dir), dtype="fp32"), EngineConfig(**TINY_ENGINE),
                        MODEL, max_n=4)  # fmt: skip
    server, url = start_in_thread(state)
    yield state, url
    server.should_exit = True
    state.loop.stop(timeout=10)
