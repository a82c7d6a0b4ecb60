"""Wait, before the request, until every Ray worker of the local node has finished its preload imports.

Ray prestarts workers when the driver connects and each one imports ``preload`` (~17 s apiece on the lent
H200, CPU-bound, all at once). A request sent earlier would find the imports half paid and measure that.
Workers say ``worker_preloaded`` (with their pid) in the run log; Ray renames a worker's process to
``ray::<what it runs>`` once it runs, and a starting one still shows ``default_worker.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from coldstart.analysis import events


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
            events.emit("prestart_wait_timeout", wait_s=round(clock() - t0, 3), preloaded=sorted(done),
                        still_importing=sorted(waiting))
            return done
        sleep(poll_s)
