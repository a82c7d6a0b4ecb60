"""What a lab's runs may leave on a node between two looks: multiprocessing-named /dev/shm segments nobody uses,
entries of the lab's temp folder, live processes started with the lab's home. The e2e modules look once before
their first cold start and once after their last (``node_left_as_found``): a long-lived node running run after
run must end where it began."""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from coldstart.lab import shm

# Entries of the temp folder that one run makes and the next reuses, so that they never pile up: Ray's temp root
# (its per-root files: the metrics discovery file, the session_latest link), Inductor's default cache root (the
# precompiled header, ~120 MB once, reused by every run; `coldstart clear-cache` clears it).
_REUSED = ("ray", "ray/prom_metrics_service_discovery.json", "ray/session_latest", f"torchinductor_{getpass.getuser()}")


@dataclass(frozen=True)
class NodeState:
    segments: frozenset[str]
    temp_entries: frozenset[str]  # relative to the lab's temp folder: its entries and those of Ray's temp root
    processes: frozenset[tuple[int, str]]  # (pid, command line) of live processes started with the lab's home


def _temp_entries(tmp: Path) -> frozenset[str]:
    found = set()
    for folder in (tmp, tmp / "ray"):
        with contextlib.suppress(FileNotFoundError):
            found.update(str((folder / name).relative_to(tmp)) for name in os.listdir(folder))
    return frozenset(found)


def _lab_processes(home: str) -> frozenset[tuple[int, str]]:
    needle = f"COLDSTART_HOME={home}".encode()
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.status() == psutil.STATUS_ZOMBIE:  # holds nothing but its pid
                continue
            if needle in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                found.add((proc.pid, " ".join(proc.info["cmdline"] or ())[:160]))
    return frozenset(found)


def look(env: Mapping[str, str]) -> NodeState:
    return NodeState(
        segments=shm.python_segments(),
        temp_entries=_temp_entries(Path(env["TMPDIR"])),
        processes=_lab_processes(env["COLDSTART_HOME"]),
    )


def left_since(before: NodeState, after: NodeState) -> list[str]:
    """What is there now and was not before, that one more run would add to: each as one line."""
    problems = []
    new_segments = after.segments - before.segments
    if new_segments:
        # A segment some live process maps is in use (another program's on a shared machine), not a leak.
        used = shm.segments_in_use()
        problems += [f"/dev/shm/{name} left" for name in sorted(new_segments - used)]
    problems += [f"temp entry {name} left" for name in sorted(after.temp_entries - before.temp_entries - set(_REUSED))]
    problems += [f"process {pid} alive: {cmd}" for pid, cmd in sorted(after.processes - before.processes)]
    return problems
