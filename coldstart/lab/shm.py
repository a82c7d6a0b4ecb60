"""Shared-memory segments that a run's processes leave in /dev/shm when they die before their own cleanup.

vLLM's message queues (``shm_broadcast.MessageQueue``: ten chunks of 16 or 24 MiB on CPU, named ``psm_<hex>``) and
Python's multiprocessing semaphores (``sem.mp-<id>``) are unlinked by the process that made them when it closes
them, or by Python's resource tracker once that process is gone. An EngineCore killed by SIGKILL does neither, and
when Serve then ends the replica, Ray ends the replica worker's children, the resource tracker with them: the
segment stays in RAM (a tmpfs) until the machine reboots. On the CPU box one EngineCore killed mid-start left
160 MiB and a semaphore behind.

A segment is the run's when it appeared while the run ran (absent from the listing taken at its start), belongs to
this user, has one of multiprocessing's names, and no live process has it mapped or open. One that anybody uses is
never touched, so a second lab running beside this one keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from coldstart.analysis import events

SHM_DIR = Path("/dev/shm")
PROC_DIR = Path("/proc")
# multiprocessing.shared_memory's names ("psm_" + hex) and its named semaphores ("/mp-..." -> "sem.mp-...").
_PYTHON_SEGMENT = re.compile(r"^(?:psm_[0-9a-f]+|sem\.mp-[A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class Segment:
    name: str
    size_bytes: int


def python_segments(shm_dir: Path = SHM_DIR) -> frozenset[str]:
    """This user's segments with multiprocessing's names, as they are now."""
    try:
        entries = list(os.scandir(shm_dir))
    except FileNotFoundError:  # no /dev/shm (not Linux): nothing can leak there
        return frozenset()
    uid = os.getuid()
    found = set()
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if _PYTHON_SEGMENT.match(entry.name) and entry.stat(follow_symlinks=False).st_uid == uid:
                found.add(entry.name)
    return frozenset(found)


def segments_in_use(shm_dir: Path = SHM_DIR, proc_dir: Path = PROC_DIR) -> frozenset[str]:
    """Names under ``shm_dir`` that some live process maps or holds open. Processes this user may not read
    (another user's) cannot use this user's segments, which are mode 0600, unless they are root's."""
    prefix = f"{shm_dir}/"
    used: set[str] = set()
    for pid_dir in proc_dir.iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            for line in (pid_dir / "maps").read_text(errors="replace").splitlines():
                if (at := line.find(prefix)) >= 0:
                    used.add(line[at + len(prefix) :].split()[0])
        with contextlib.suppress(OSError):
            for fd in os.scandir(pid_dir / "fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith(prefix):
                        used.add(target[len(prefix) :].split()[0])
    return frozenset(used)


def remove_unused(names: Iterable[str], shm_dir: Path = SHM_DIR, proc_dir: Path = PROC_DIR) -> tuple[Segment, ...]:
    """Unlink those of ``names`` that still exist and that no live process uses; returns what went."""
    wanted = sorted(set(names) & python_segments(shm_dir))
    if not wanted:
        return ()
    used = segments_in_use(shm_dir, proc_dir)
    removed = []
    for name in wanted:
        if name in used:
            continue
        path = shm_dir / name
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # its owner unlinked it meanwhile: nothing leaked
            continue
        removed.append(Segment(name, size))
    return tuple(removed)


@contextlib.contextmanager
def reclaimed(shm_dir: Path = SHM_DIR, proc_dir: Path = PROC_DIR) -> Iterator[None]:
    """On exit, remove the segments that appeared inside the block and that nothing uses any more (after the
    block stopped every process of the run). Says what it removed (``shm_segments_removed``)."""
    before = python_segments(shm_dir)
    try:
        yield
    finally:
        try:
            removed = remove_unused(python_segments(shm_dir) - before, shm_dir, proc_dir)
        except OSError as exc:  # the run's own outcome is what the caller must see; the leak is said
            events.emit("shm_segments_not_checked", error=f"{type(exc).__name__}: {exc}")
        else:
            if removed:
                events.emit(
                    "shm_segments_removed",
                    names=[s.name for s in removed],
                    size_bytes=sum(s.size_bytes for s in removed),
                )
