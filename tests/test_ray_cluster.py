"""OneMachineCluster finds what one of its nodes left running after that node was killed, without Ray: a process
that inherited the node's mark from its raylet, whatever its command line says (a Ray worker renames itself
"ray::IDLE"; what it forks names no temp dir either); and its stop removes what a killed node's engines left in
/dev/shm."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from coldstart.fastpath.node_setup import NodeSetup
from coldstart.lab import shm
from coldstart.lab.ray_cluster import NODE_ENV, OneMachineCluster


@pytest.fixture
def cluster() -> Iterator[OneMachineCluster]:
    made = OneMachineCluster(NodeSetup(package="coldstart"), [])  # no node started: only its temp dir
    try:
        yield made
    finally:
        made.stop()


def _orphan(env: dict[str, str]) -> subprocess.Popen:
    # A command line that names nothing of the cluster, as a forked EngineCore's does.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)


def test_a_process_with_a_nodes_mark_is_that_nodes_stray_and_the_clusters(cluster):
    proc = _orphan({NODE_ENV: str(cluster.root / "worker0")})
    try:
        deadline = time.monotonic() + 10
        while proc.pid not in cluster.stray_pids("worker0") and time.monotonic() < deadline:
            time.sleep(0.05)  # until the child has exec'd (its environment is readable from then on)
        assert proc.pid in cluster.stray_pids("worker0")
        assert proc.pid in cluster.stray_pids()
        assert proc.pid not in cluster.stray_pids("worker1")
        assert proc.pid not in cluster.stray_pids("head")
    finally:
        proc.kill()
        proc.wait()


def test_a_process_of_another_cluster_or_of_none_is_no_stray(cluster, tmp_path):
    others = [_orphan({NODE_ENV: f"{cluster.root}0/worker0"}), _orphan({})]  # a cluster whose dir extends ours
    try:
        time.sleep(0.5)
        assert not {p.pid for p in others} & set(cluster.stray_pids())
    finally:
        for proc in others:
            proc.kill()
            proc.wait()


def test_stop_ends_what_a_killed_node_left(cluster):
    proc = _orphan({NODE_ENV: str(cluster.root / "worker0")})
    time.sleep(0.5)
    watched = psutil.Process(proc.pid)
    cluster.stop()
    assert not watched.is_running()  # killed, and waited for (psutil reaps it: Popen then reads no status)
    proc.wait(timeout=10)


def test_stop_removes_the_segments_a_killed_nodes_engines_left_and_keeps_older_ones(tmp_path):
    from test_shm import _killed_maker

    older = _killed_maker()  # left before the cluster started: not the cluster's
    made = OneMachineCluster(NodeSetup(package="coldstart"), [])
    try:
        ours = _killed_maker()  # what a killed node's EngineCore leaves (its message queue)
        made.stop()
        assert not (shm.SHM_DIR / ours).exists()
        assert (shm.SHM_DIR / older).exists()
    finally:
        for name in (older, ours):
            (shm.SHM_DIR / name).unlink(missing_ok=True)
