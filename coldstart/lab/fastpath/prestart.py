"""Before the request: idle Ray workers with the preload imports paid, on every node that can host a replica.

A node's raylet prestarts one worker per logical CPU (``enable_worker_prestart``), each importing ``preload``
(~17 s apiece on the GPU machines, CPU-bound) and then writing a preload record to the GCS. What is watched
here is read from the GCS (``coldstart.lab.node_status``), so it works the same on the lab's own local Ray and
on a cluster the user started: the nodes that can host a replica must each hold ``want_idle`` idle preloaded
workers, with none still importing (a request sent earlier would find the imports half paid and measure that).

The pool is topped up (``fill_idle_pool``) only by the job that owns Serve's controller: replicas are created by
the controller, so they run as its job, and a worker that ran one job's task is never given to another job's.
Where Serve was already running under another job, only workers the raylets prestarted (no job yet) can serve,
and the lab says so instead of taking them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart.analysis import events
from coldstart.lab.node_status import NodeView

IDLE_WORKERS_WANTED = 2  # the replica's, and one spare (a second replica, or a retry after a failed start)
# A local Ray's CPUs (one prestarted worker each): Serve's controller and proxy take two before any request, so a
# node needs a few more for the replica; past a few idle ones, more only delay the moment the node is ready.
MIN_PRESTARTED_WORKERS = 4
MAX_PRESTARTED_WORKERS = 8


def prestart_num_cpus(requested: int | None, cpu_count: int | None) -> int:
    """Logical CPUs of a local Ray that prestarts workers (one per CPU): the request, else the machine's
    cores within [MIN_PRESTARTED_WORKERS, MAX_PRESTARTED_WORKERS]."""
    if requested is not None:
        return requested
    return min(max(cpu_count or 1, MIN_PRESTARTED_WORKERS), MAX_PRESTARTED_WORKERS)


class NodesNotReady(RuntimeError):
    """No node that can host a replica got idle preloaded workers in time; the message says what to change."""


def replica_nodes(views: Sequence[NodeView], *, gpus: int) -> list[NodeView]:
    return [v for v in views if v.can_host(gpus=gpus)]


def pool_shortfall(view: NodeView, want_idle: int) -> int:
    return max(0, want_idle - len(view.idle_preloaded) - len(view.still_importing))


@dataclass(frozen=True)
class ReadyNodes:
    nodes: tuple[NodeView, ...]
    wait_s: float


def _describe(views: Sequence[NodeView]) -> str:
    return "; ".join(
        f"{v.node_id[:8]} ({v.ip}, {v.gpus:g} GPU): {len(v.idle_preloaded)} idle preloaded, "
        f"{len(v.still_importing)} importing"
        for v in views
    )


def wait_for_ready_nodes(
    *,
    gpus: int,
    want_idle: int = IDLE_WORKERS_WANTED,
    timeout_s: float,
    views: Callable[[], list[NodeView]],
    fill: Callable[[NodeView, int], None] | None = None,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReadyNodes:
    """Block until every node that can host a replica holds ``want_idle`` idle preloaded workers and none still
    importing; ``fill`` (the Serve controller's job only) tops a node up. Raises NodesNotReady past the timeout."""
    t0 = clock()
    events.emit("prestart_wait_start", gpus=gpus, want_idle=want_idle)
    filled: set[str] = set()
    while True:
        hosts = replica_nodes(views(), gpus=gpus)
        if fill is not None:
            for node in hosts:
                short = pool_shortfall(node, want_idle)
                if short and node.node_id not in filled:
                    fill(node, want_idle)
                    filled.add(node.node_id)
        ready = [v for v in hosts if len(v.idle_preloaded) >= want_idle and not v.still_importing]
        if hosts and len(ready) == len(hosts):
            wait_s = round(clock() - t0, 3)
            events.emit(
                "prestart_wait_end",
                wait_s=wait_s,
                workers=sum(len(v.idle_preloaded) for v in hosts),
                nodes=[
                    {"node_id": v.node_id, "ip": v.ip, "idle_preloaded": [w.pid for w in v.idle_preloaded]}
                    for v in hosts
                ],
            )
            return ReadyNodes(tuple(hosts), wait_s)
        if clock() - t0 > timeout_s:
            state = _describe(hosts) if hosts else f"no live node has {gpus} GPU(s) and a CPU for a replica"
            events.emit("prestart_wait_timeout", wait_s=round(clock() - t0, 3), state=state)
            raise NodesNotReady(
                f"after {timeout_s:.0f} s no replica node is ready for the fast path: {state}. "
                "Each replica node needs the coldstart package in its Python and the head started with "
                "--system-config (preload_python_modules, enable_worker_prestart): `coldstart serve MODEL fast "
                "--dry-run` prints the node setup; `coldstart node-status` shows each node"
            )
        sleep(poll_s)


# ---------------------------------------------------------------- topping a node's pool up


def _hold_worker(barrier_name: str, count: int, timeout_s: float) -> tuple[int, bool]:
    """A task that keeps its worker until ``count`` such tasks run at once on this node, so each gets its own
    worker. The barrier is a folder on the node itself (every task of one fill is pinned to the same node)."""
    barrier = Path(tempfile.gettempdir(), barrier_name)
    barrier.mkdir(exist_ok=True)
    mine = barrier / str(os.getpid())
    mine.touch()
    deadline = time.monotonic() + timeout_s
    try:
        while len(os.listdir(barrier)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        # Everyone must have seen the count before anyone leaves: wait for the others' marks, then go.
        time.sleep(0.2)
    finally:
        mine.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the others' marks are still there: the last one out removes it
            barrier.rmdir()

    return os.getpid(), "coldstart.lab.fastpath.preload" in sys.modules


def fill_idle_pool(node: NodeView, count: int = IDLE_WORKERS_WANTED, *, timeout_s: float = 600.0) -> list[int]:
    """Have ``count`` workers with an empty runtime_env (the replica's) live at once on ``node``, then give them
    back idle: tasks that find idle preloaded workers take them, the others make the raylet start (and preload)
    new ones, which the node then keeps idle (``num_workers_soft_limit``)."""
    import secrets

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    hold = ray.remote(num_cpus=0, max_retries=0)(_hold_worker).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
    )
    barrier_name = f"coldstart-prestart-{secrets.token_hex(4)}"
    held = ray.get([hold.remote(barrier_name, count, timeout_s) for _ in range(count)])
    events.emit(
        "prestart_pool_filled", node_id=node.node_id, workers=[{"pid": pid, "preloaded": ok} for pid, ok in held]
    )
    return [pid for pid, _ in held]


class PoolKeeper:
    """Keeps every replica node's pool of idle preloaded workers topped up, between cold starts only.

    Only the job that owns Serve's controller can: replicas run as the controller's job, and a worker that ran
    this job's fill task belongs to this job from then on. It fills while no replica is starting (the app runs
    with every deployment healthy), so its imports never compete with a measured cold start."""

    def __init__(
        self,
        app_name: str,
        *,
        gpus: int,
        want_idle: int = IDLE_WORKERS_WANTED,
        views: Callable[[], list[NodeView]] | None = None,
        settled: Callable[[], bool] | None = None,
    ) -> None:
        self.app_name = app_name
        self.gpus = gpus
        self.want_idle = want_idle
        self._owns: bool | None = None
        self._views = views
        self._settled = settled

    def owns_controller(self) -> bool:
        if self._owns is None:
            import ray
            from ray._private.state import state
            from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

            controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            info = state.actor_table(controller._actor_id.hex())
            self._owns = info.get("JobID") == ray.get_runtime_context().get_job_id()
            if not self._owns:
                events.emit(
                    "prestart_pool_not_refilled",
                    reason="Serve's controller belongs to another job: only workers the raylets prestarted serve",
                )
        return self._owns

    def fill(self, node: NodeView, count: int) -> None:
        fill_idle_pool(node, count)

    def app_is_settled(self) -> bool:
        if self._settled is not None:
            return self._settled()
        from ray import serve

        from coldstart.lab.serve import app_settled

        return app_settled(serve.status(), self.app_name)

    def views(self) -> list[NodeView]:
        if self._views is not None:
            return self._views()
        from coldstart.lab.node_status import cluster_views

        return cluster_views()

    def tick(self) -> None:
        """One look: top up the nodes that lost idle workers, if the app is quiet."""
        if not self.owns_controller() or not self.app_is_settled():
            return
        for node in replica_nodes(self.views(), gpus=self.gpus):
            if pool_shortfall(node, self.want_idle):
                self.fill(node, self.want_idle)
