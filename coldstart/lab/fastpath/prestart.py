"""Before the request: idle Ray workers with the preload imports paid, on the local node.

Ray prestarts one worker per logical CPU when the driver connects (at most as many at once as the machine
has cores), and each one imports ``preload`` (~17 s apiece on the lent H200, CPU-bound). Serve's controller
and proxy lease the first ones, so ``fill_idle_pool`` makes sure a few stay idle for the replica, and
``wait_for_preloaded_workers`` waits until every worker finished importing: a request sent earlier would
find the imports half paid and measure that. Workers say ``worker_preloaded`` (with their pid) in the run
log; Ray renames a worker's process to ``ray::<what it runs>``, and a starting one shows ``default_worker.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from coldstart.analysis import events

IDLE_WORKERS_WANTED = 2  # the replica's, and one spare (a second replica, or a retry after a failed start)


def _hold_worker(barrier_dir: str, count: int, timeout_s: float) -> tuple[int, bool]:
    """A task that keeps its worker until ``count`` such tasks run at once, so each gets its own worker."""
    Path(barrier_dir, str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(barrier_dir)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid(), "coldstart.lab.fastpath.preload" in sys.modules


def fill_idle_pool(count: int = IDLE_WORKERS_WANTED, *, timeout_s: float = 600.0) -> list[tuple[int, bool]]:
    """Have ``count`` workers with an empty runtime_env (the replica's) live at once, then give them back idle.

    Tasks with the job's (empty) runtime_env and no CPU run on idle prestarted workers where there are some
    and make Ray start (and preload) new ones where there are not; the node keeps them idle afterwards
    (``num_workers_soft_limit`` in ``ray_system_config``). Local Ray only: the barrier is a local folder.
    """
    import ray

    hold = ray.remote(num_cpus=0, max_retries=0)(_hold_worker)
    with tempfile.TemporaryDirectory(prefix="coldstart-prestart-") as barrier:
        held = ray.get([hold.remote(barrier, count, timeout_s) for _ in range(count)])
    events.emit("prestart_pool_filled", workers=[{"pid": pid, "preloaded": ok} for pid, ok in held])
    return held


def preloaded_pids(log_text: str) -> set[int]:
    return {int(e["pid"]) for e in events.iter_events(log_text.splitlines()) if e.get("event") == "worker_preloaded"}


# Ray prestarts one worker per logical CPU and Serve's controller and proxy lease two of them before any
# request: a node needs a few more for the replica (and on a cluster, for every replica it may host).
MIN_PRESTARTED_WORKERS = 4
# Each prestarted worker (and its forkserver) imports vLLM, ~17 s of CPU apiece: past a few idle ones, more
# only delay the moment the node is ready.
MAX_PRESTARTED_WORKERS = 8


def prestart_num_cpus(requested: int | None, cpu_count: int | None) -> int:
    """Logical CPUs of a local Ray that prestarts workers (one per CPU): the request, else the machine's
    cores within [MIN_PRESTARTED_WORKERS, MAX_PRESTARTED_WORKERS]."""
    if requested is not None:
        return requested
    return min(max(cpu_count or 1, MIN_PRESTARTED_WORKERS), MAX_PRESTARTED_WORKERS)


# Processes Ray names ``ray::...`` that are no task workers and never preload: the node's agents and the
# spill/restore IO workers.
_NOT_TASK_WORKERS = ("DashboardAgent", "RuntimeEnvAgent", "SPILL", "RESTORE")


def is_task_worker(cmdline: Iterable[str]) -> bool:
    """A Ray worker that runs tasks and actors (the ones that preload)."""
    parts = list(cmdline)
    if not parts or any(word in parts[0] for word in _NOT_TASK_WORKERS):
        return False
    return parts[0].startswith("ray::") or any(p.endswith("default_worker.py") for p in parts)


def ray_worker_pids() -> set[int]:
    """Task workers of the Ray this process started (the raylet is its child, the workers the raylet's)."""
    import psutil

    pids = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if is_task_worker(proc.cmdline()):
                pids.add(proc.pid)
        except psutil.Error:  # gone or not ours to read: not a worker to wait for
            continue
    return pids


def wait_for_preloaded_workers(
    log_path: Path,
    *,
    timeout_s: float,
    poll_s: float = 0.5,
    worker_pids: Callable[[], set[int]] = ray_worker_pids,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> set[int]:
    """Block until at least one worker preloaded and every live worker has; returns the preloaded pids.
    Past ``timeout_s`` it says which workers are still importing and returns (the run's log shows the rest)."""
    t0 = clock()
    events.emit("prestart_wait_start")
    while True:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        done = preloaded_pids(text)
        waiting = worker_pids() - done
        if done and not waiting:
            events.emit("prestart_wait_end", wait_s=round(clock() - t0, 3), workers=len(done))
            return done
        if clock() - t0 > timeout_s:
            events.emit(
                "prestart_wait_timeout",
                wait_s=round(clock() - t0, 3),
                preloaded=sorted(done),
                still_importing=sorted(waiting),
            )
            return done
        sleep(poll_s)
