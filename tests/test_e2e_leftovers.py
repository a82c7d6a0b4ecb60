"""A service SIGKILLed once ready (no cleanup of its own at all) and the next service on the node: it finds what the
dead one left through its record, removes it and says so, and serves on the same port. Real Ray and vLLM on CPU,
no request: what a kill leaves does not need an engine running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import free_port
from test_e2e_cpu import lab, node_left_as_found  # noqa: F401  (module fixtures, used by name)

from coldstart.lab.run_record import RunRecord

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 900.0
STOP_GRACE_S = 90.0


def _with_sid(sid: int) -> dict[int, str]:
    """Live processes (zombies aside) whose SID is a service's (started with start_new_session): Ray's daemons, its
    workers and what they start keep it, and nothing of another lab or Ray has it."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = " ".join(proc.info["cmdline"] or ())
        except (OSError, psutil.Error):
            continue
    return found


def _start(env: dict[str, str], experiment: str, port: int, ready: Path, err: Path) -> subprocess.Popen[bytes]:
    """service.py, its standard error into ``err`` and its standard output beside it (``.out``)."""
    cmd = [sys.executable, "service.py", "tiny", experiment, "--device", "cpu", "--port", str(port)]
    with open(err, "wb") as said, open(err.with_suffix(".out"), "wb") as out:
        return subprocess.Popen(
            [*cmd, "--ready-file", str(ready)], cwd=REPO, env=env, start_new_session=True, stdout=out, stderr=said
        )


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, err: Path) -> float:
    t0 = time.monotonic()
    while not ready.exists():
        said = err.read_text(errors="replace")[-3000:]
        assert proc.poll() is None, f"service.py exited with {proc.returncode}: {said}"
        assert time.monotonic() - t0 < READY_TIMEOUT_S, f"not ready after {READY_TIMEOUT_S:.0f} s: {said}"
        time.sleep(0.5)
    return time.monotonic() - t0


class ServiceProcesses:
    """Samples the processes with a service's SID (the service and all it started) in the background while in use."""

    def __init__(self, sid: int, every_s: float = 0.2) -> None:
        self.sid, self.every_s = sid, every_s
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pids.update(_with_sid(self.sid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> ServiceProcesses:
        self.pids.update(_with_sid(self.sid))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_next_service_removes_what_a_sigkilled_one_left(lab, tmp_path):  # noqa: F811
    port = free_port()
    records = Path(lab["COLDSTART_HOME"]) / "service-records"
    first_ready, second_ready = tmp_path / "first.json", tmp_path / "second.json"
    first_err, second_err = tmp_path / "first.err", tmp_path / "second.err"

    # The fast path: prestarted workers, each with its EngineCore forkserver, besides Ray's daemons.
    first = _start(lab, "fast", port, first_ready, first_err)
    second = None
    try:
        first_ready_s = _wait_ready(first, first_ready, first_err)
        (record_file,) = records.glob("*.json")
        record = RunRecord.from_json(record_file.read_text())
        assert record.service_pid == first.pid and record.port == port
        left = _with_sid(first.pid)
        titles = set(left.values())
        assert any("multiprocessing.forkserver" in t for t in titles), titles
        assert any(t.startswith("ray::DashboardAgent") for t in titles), titles

        first.send_signal(signal.SIGKILL)  # the service only: what it started is left to itself
        first.wait()
        with ServiceProcesses(first.pid) as seen:  # every process of the killed service's seen from now on
            second = _start(lab, "baseline", port, second_ready, second_err)
            second_ready_s = _wait_ready(second, second_ready, second_err)
        seen.pids.update(left)
        print(f"first ready after {first_ready_s:.0f} s; the next one ready on its port {second_ready_s:.0f} s later")

        said = second_err.read_text(errors="replace")
        lines = [line.removeprefix("coldstart:   ") for line in said.splitlines() if line.startswith("coldstart:")]
        assert f"coldstart: service pid {first.pid} (run {record.run_id}" in said, said
        assert "NOT removed" not in said, said
        print("the next service said:", *lines, sep="\n  ")
        by_kind = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        removed_pids = {int(p) for v in by_kind.values() if v.startswith("pid") for p in v.split()[1:] if p.isdigit()}
        # What it named is the killed service's (seen alive before the kill, or started by it since), never another's.
        assert removed_pids, lines
        assert removed_pids <= seen.pids, (removed_pids - seen.pids, left)
        # Ray's dashboard and runtime-env agents outlive a killed driver the longest (half a minute seen): named by pid
        # where they were still there when the next service looked; on a slow box they may have gone by themselves.
        agents = [pid for pid, t in left.items() if t.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))]
        print("Ray's agents:", {pid: "removed" if pid in removed_pids else "gone by themselves" for pid in agents})
        assert by_kind["ready file"] == str(first_ready)
        assert by_kind["Ray session_dir"].endswith(f"_{first.pid}")
        assert not first_ready.exists() and not record_file.exists()
        assert _with_sid(first.pid) == {}, "a process of the killed service is still alive"
        # The next one serves on the same port, with its own record.
        assert json.loads(second_ready.read_text())["url"] == f"http://127.0.0.1:{port}"
        (second_record,) = records.glob("*.json")
        assert RunRecord.from_json(second_record.read_text()).service_pid == second.pid
    finally:
        # Whatever failed above, nothing of either service outlives the test.
        if first.poll() is None:
            first.kill()
            first.wait()
        for pid in _with_sid(first.pid):
            os.kill(pid, signal.SIGKILL)
        if second is not None:
            t_stop = time.monotonic()
            _stop(second)
            print(f"the next service stopped in {time.monotonic() - t_stop:.1f} s")

    # A clean stop removes what the run made and its record; nothing of it stays alive.
    assert second is not None
    assert second.returncode == 0, second_err.read_text(errors="replace")[-3000:]
    said = second_err.with_suffix(".out").read_text(errors="replace")
    assert "coldstart: removed what this run left:" in said, said[-3000:]
    assert not second_ready.exists() and list(records.glob("*.json")) == []
    assert _with_sid(second.pid) == {}
    print(
        "... and at its own stop:",
        *said[said.rfind("coldstart: removed what this run left:") :].splitlines(),
        sep="\n  ",
    )
