"""Shared-memory segments a killed process leaves in /dev/shm: found by name, kept while anybody uses them, removed
by the run that made them once its processes are gone. Real segments and real processes, no Ray or vLLM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coldstart.analysis.events import read_events
from coldstart.lab import shm

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs Linux's /dev/shm")

# A child that makes a segment the way vLLM's message queue does (multiprocessing.shared_memory), says its name,
# and then waits to be killed. Its resource tracker is told to forget the segment: what Ray does to the tracker
# (it ends the replica worker's children) when a killed EngineCore's replica goes.
_MAKER = textwrap.dedent(
    """
    import sys, time
    from multiprocessing import resource_tracker, shared_memory
    seg = shared_memory.SharedMemory(create=True, size=1 << 20)
    resource_tracker.unregister(seg._name, "shared_memory")
    print(seg.name, flush=True)
    time.sleep(600)
    """
)
# A reader that maps a segment by name and holds it (another lab's engine, still running).
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from multiprocessing import resource_tracker, shared_memory
    seg = shared_memory.SharedMemory(name=sys.argv[1])
    resource_tracker.unregister(seg._name, "shared_memory")
    print("mapped", flush=True)
    time.sleep(600)
    """
)


def _killed_maker() -> str:
    """The name of a segment whose maker was SIGKILLed: nothing will ever unlink it."""
    proc = subprocess.Popen([sys.executable, "-c", _MAKER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return name.lstrip("/")


@pytest.fixture
def leaked():
    names: list[str] = []
    yield names
    for name in names:  # whatever a failing test left
        (shm.SHM_DIR / name).unlink(missing_ok=True)


def test_a_segment_whose_maker_was_killed_stays_and_is_found_by_its_name(leaked):
    name = _killed_maker()
    leaked.append(name)
    assert (shm.SHM_DIR / name).exists()  # the leak this module is about: the kernel never frees it
    assert name in shm.python_segments()
    assert name not in shm.segments_in_use()


def test_the_run_removes_the_segments_it_leaked_and_says_so(leaked, capsys):
    with shm.reclaimed():
        name = _killed_maker()
        leaked.append(name)
    assert not (shm.SHM_DIR / name).exists()
    [said] = [e for e in read_events(capsys.readouterr().out) if e["event"] == "shm_segments_removed"]
    assert name in said["names"] and said["size_bytes"] >= 1 << 20


def test_a_segment_still_mapped_by_a_live_process_is_kept(leaked):
    with shm.reclaimed():
        name = _killed_maker()
        leaked.append(name)
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, name], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mapped"
    try:
        assert (shm.SHM_DIR / name).exists(), "a segment in use was removed"
        assert name in shm.segments_in_use()
    finally:
        holder.kill()
        holder.wait()


def test_segments_that_were_there_before_the_run_are_not_its_own(leaked):
    name = _killed_maker()
    leaked.append(name)
    with shm.reclaimed():
        pass
    assert (shm.SHM_DIR / name).exists()  # an earlier run's leak: not this run's to judge


def test_only_multiprocessing_names_are_touched(tmp_path):
    shm_dir, proc_dir = tmp_path / "shm", tmp_path / "proc"
    shm_dir.mkdir()
    proc_dir.mkdir()
    for name in ("psm_0db7f2d9", "sem.mp-najzt98b", "plasma-store", "my-own-cache"):
        (shm_dir / name).write_bytes(b"x" * 3)
    assert shm.python_segments(shm_dir) == {"psm_0db7f2d9", "sem.mp-najzt98b"}
    removed = shm.remove_unused({"psm_0db7f2d9", "sem.mp-najzt98b", "my-own-cache"}, shm_dir, proc_dir)
    assert {s.name for s in removed} == {"psm_0db7f2d9", "sem.mp-najzt98b"}
    assert sorted(os.listdir(shm_dir)) == ["my-own-cache", "plasma-store"]


def test_a_process_that_holds_a_segment_open_or_mapped_keeps_it(tmp_path):
    shm_dir, proc_dir = tmp_path / "shm", tmp_path / "proc"
    shm_dir.mkdir()
    for name in ("psm_aa", "psm_bb", "psm_cc"):
        (shm_dir / name).write_bytes(b"")
    (proc_dir / "12" / "fd").mkdir(parents=True)
    (proc_dir / "12" / "maps").write_text(f"7f00-7f10 rw-s 00000000 00:1a 9 {shm_dir}/psm_aa (deleted)\n")
    (proc_dir / "12" / "fd" / "3").symlink_to(shm_dir / "psm_bb")
    (proc_dir / "self").mkdir()  # not a pid: skipped
    assert shm.segments_in_use(shm_dir, proc_dir) == {"psm_aa", "psm_bb"}
    assert [s.name for s in shm.remove_unused({"psm_aa", "psm_bb", "psm_cc"}, shm_dir, proc_dir)] == ["psm_cc"]
