"""The fast path through a real multi-node Ray cluster on the CI box, started the way a user starts one.

A head raylet with nothing a replica can use (no CPU for tasks, no GPU: a GPU-less head) and one worker node
with its own resources and temp dir, both `ray start` processes running the node setup the lab prints
(``coldstart serve tiny fast --node-setup json``). The lab joins it with ``--ray-address``; the proofs come from
the run's log and the cluster's GCS: the replica ran on the worker node, on a worker that was idle and preloaded
before the request, with fewer vLLM processes started after the request than ``baseline`` through the same
cluster; afterwards the cluster is still up and holds no lab deployment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_cluster_helpers import cluster_state, printed_node_setup
from test_e2e_cpu import lab  # noqa: F401  (the private home with tiny staged, used by name)

from coldstart import paths
from coldstart.analysis.processes import started_after_request
from coldstart.analysis.results import ResultRow, load_rows
from coldstart.fastpath.node_setup import NodeSetup

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("vllm")
pytest.importorskip("ray.serve.llm")

from coldstart.lab.ray_cluster import OneMachineCluster, WorkerNode  # noqa: E402


def _run(args: list[str], env: dict[str, str], timeout_s: float = 1200, code: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert proc.returncode == code, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def cluster(lab: dict[str, str]) -> Iterator[OneMachineCluster]:  # noqa: F811
    with OneMachineCluster(printed_node_setup(lab), [WorkerNode(num_cpus=2)], base_env=lab) as running:
        yield running


def _matrix(env: dict[str, str], cluster: OneMachineCluster, experiment: str) -> ResultRow:
    results = Path(env["COLDSTART_HOME"]) / "results.jsonl"
    campaign = f"e2e-cluster-{experiment}"
    matrix = ["-m", "coldstart", "matrix", "--models", "tiny", "--experiments", experiment, "--repeats", "1"]
    options = ["--campaign", campaign, "--results", str(results), "--client-timeout", "600"]
    service = ["--device", "cpu", "--ray-address", cluster.address, "--proxy-location", "HeadOnly"]
    _run([*matrix, *options, "--", *service], env)
    [row] = [r for r in load_rows(results) if r.campaign == campaign]
    assert row.status == "ok", row.error
    return row


def _node_status(cluster: OneMachineCluster, env: dict[str, str]) -> list[dict]:
    return json.loads(_run(["-m", "coldstart", "node-status", "--address", cluster.address, "--json"], env))


def test_baseline_and_fast_through_a_cluster_the_user_started(lab, cluster):  # noqa: F811
    before = cluster_state(cluster, lab)
    assert before["alive"] == 2
    [worker_node] = before["workers"]  # the head has no CPU for tasks: only the worker node can host a replica
    # The checklist's check (docs/deploy-on-a-cluster.md): node-status shows the worker node's prestarted workers
    # with their imports paid, read from the GCS alone, and nothing on the head, which prestarts none.
    deadline = time.monotonic() + 300
    while True:
        views = {v["node_id"]: v for v in _node_status(cluster, lab)}
        if views[worker_node]["idle_preloaded"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert views[worker_node]["idle_preloaded"] >= 1, views
    assert all(w["import_s"] > 0 for w in views[worker_node]["preloaded"])
    assert [v for v in views.values() if v["is_head"] and v["preloaded"]] == []

    baseline = _matrix(lab, cluster, "baseline")
    fast = _matrix(lab, cluster, "fast")

    for row in (baseline, fast):
        assert row.ray is not None and row.ray.kind == "cluster"
        assert row.ray.driver_node_id != worker_node  # the driver joined the head
        assert row.ray.replicas and row.ray.replicas[-1].node_id == worker_node
    # The fast replica was given a worker the node held idle, imports paid, before the request (by pid).
    served = fast.ray.replicas[-1]
    assert served.worker_preloaded is True and served.prestarted_before_request is True, fast.ray
    # ... and baseline's replica was not (its job runtime_env ships the package: fresh workers after the request).
    assert baseline.ray.replicas[-1].prestarted_before_request is not True
    # The rows store the log paths relative to the lab (COLDSTART_LAB), which holds the logs here.
    after_fast = started_after_request(paths.in_lab(fast.log_path, lab).read_text(errors="replace"))
    after_baseline = started_after_request(paths.in_lab(baseline.log_path, lab).read_text(errors="replace"))
    assert len(after_fast) < len(after_baseline), (after_fast, after_baseline)

    after = cluster_state(cluster, lab)
    assert after["alive"] == 2  # the user's cluster is still up
    assert not any(app.startswith("coldstart-") for app in after["apps"])  # and holds no lab deployment


def test_a_cluster_without_the_node_setup_is_refused_before_anything_is_deployed(lab):  # noqa: F811
    # The head started without the fast path's system config: the lab must say what to change (exit 2) instead
    # of measuring replicas that wait for fresh workers.
    bare = NodeSetup(package="coldstart", env={}, system_config={}, replica_gpus=0, replica_node_cpus=1)
    with OneMachineCluster(bare, [WorkerNode(num_cpus=1)], base_env=lab) as cluster:
        service = ["service.py", "tiny", "fast", "--device", "cpu", "--ray-address", cluster.address]
        proc = subprocess.run(
            [sys.executable, *service, "--proxy-location", "HeadOnly"],
            cwd=REPO,
            env=lab,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "--system-config" in proc.stderr and "preload_python_modules" in proc.stderr
        assert cluster_state(cluster, lab)["apps"] == []  # nothing was deployed
