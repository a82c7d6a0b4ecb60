"""Faults during a real cold start on CPU, injected from outside while the lab runs as a user runs it.

``python -m coldstart matrix`` runs ``tiny`` on the fast path; a fault injector in this process follows the run's
log and, at the moment the log names it, SIGKILLs a process of the run by the pid the lab's own events carry:

* the replica's forked EngineCore while its engine loads the model (``engine_core_forked``), then the next
  replica actor while its engine loads (``replica_node_init_start``): Serve retries each start, the third
  serves the first token. The row says which start served and why each of the others failed; the timeline
  carves the failed starts out as a segment of their own; no process of the run and no shared-memory segment
  outlives it.
* on a real two-raylet cluster (a head with nothing to run a replica on, one worker node), the worker node's
  whole raylet while the replica's engine loads: the run ends with a reason within a bound, the head stays up
  with no lab app, and nothing of the dead node is left running.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from e2e_cluster_helpers import cluster_state, printed_node_setup
from test_e2e_cpu import lab  # noqa: F401  (the private home with tiny staged, used by name)

from coldstart.analysis.events import read_events
from coldstart.analysis.results import ResultRow, load_rows
from coldstart.lab.shm import python_segments, segments_in_use

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("vllm")
pytest.importorskip("ray.serve.llm")

from coldstart.lab.ray_cluster import OneMachineCluster, WorkerNode  # noqa: E402

FAULT_WAIT_S = 300.0  # from the run's start to the moment a fault is due (service start, prestart, request)
# The line a worker of vLLM's CPU backend writes as it begins to read the weights: the engine is mid-load.
LOADING = "Starting to load model"
_REPLICA_PID = re.compile(r"\(ServeReplica:\S+ pid=(\d+)\)")


@dataclass
class Injector:
    """Follows the newest run log of one (model, experiment) under the lab's output and kills what it is told
    to, when the log says so. Remembers every process of the run it saw (the matrix's descendants, polled), so
    that afterwards an orphan of the run is found even after its parent died."""

    output: Path  # $COLDSTART_OUTPUT/<model>/<experiment>
    runner: psutil.Process
    t0: float = field(default_factory=time.monotonic)
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    sids: set[int] = field(default_factory=set)  # the service's SID: Ray's and vLLM's children keep it
    killed: list[tuple[str, int, float]] = field(default_factory=list)  # (what, pid, seconds since the run began)
    log: Path | None = None
    error: BaseException | None = None
    earlier: frozenset[Path] = frozenset()  # the logs of earlier runs in the same output folder

    def __post_init__(self) -> None:
        self.earlier = frozenset(self.output.glob("*.log")) if self.output.is_dir() else frozenset()

    def _poll(self) -> str:
        with_children = [self.runner]
        with contextlib.suppress(psutil.Error):  # the runner ended: what it left is what was seen before
            with_children += self.runner.children(recursive=True)
        for proc in with_children:
            self.seen.setdefault(proc.pid, proc)
        if self.log is None:
            logs = set(self.output.glob("*.log")) - self.earlier if self.output.is_dir() else set()
            self.log = max(logs, key=lambda p: p.stat().st_mtime) if logs else None
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def wait_for(self, what: str, found: Callable[[str], int | None], timeout_s: float = FAULT_WAIT_S) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (value := found(self._poll())) is not None:
                return value
            if not self.runner.is_running():
                raise AssertionError(f"the run ended before {what}")
            time.sleep(0.2)
        raise AssertionError(f"no {what} after {timeout_s:.0f} s")

    def kill(self, what: str, pid: int) -> None:
        proc = psutil.Process(pid)
        self.sids.add(os.getsid(pid))
        for child in [proc, *proc.children(recursive=True)]:
            self.seen.setdefault(child.pid, child)
        os.kill(pid, signal.SIGKILL)
        self.killed.append((what, pid, time.monotonic() - self.t0))

    def alive(self) -> list[str]:
        """The run's processes still running: those seen during the run and those that kept its SID."""
        left = {p.pid: p for p in self.seen.values() if p.pid != self.runner.pid and _running(p)}
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) in self.sids:
                    left.setdefault(proc.pid, proc)
            except (OSError, psutil.Error):
                continue
        return sorted(f"{pid} {_cmdline(p)}" for pid, p in left.items())

    @contextlib.contextmanager
    def running(self, plan: Callable[[Injector], None]) -> Iterator[Injector]:
        """``plan`` in a thread while the body runs (the run under test); joined after it, its failure raised."""

        def target() -> None:
            try:
                plan(self)
            except BaseException as exc:  # handed to the test, which fails with it once the run ended
                self.error = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        yield self
        thread.join(timeout=30)
        if self.error is not None:
            raise self.error


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return "?"


def _event(text: str, name: str, *, unless: set[int] = frozenset()) -> dict | None:  # type: ignore[assignment]
    return next((e for e in read_events(text) if e["event"] == name and e.get("pid") not in unless), None)


def _loading(text: str, replica_pid: int) -> bool:
    """The replica's engine is reading the weights (its worker's line, forwarded under the replica's prefix)."""
    return any(f"pid={replica_pid})" in line and LOADING in line for line in text.splitlines())


def _matrix(env: dict[str, str], campaign: str, *service_args: str, client_timeout_s: float = 600) -> subprocess.Popen:
    results = Path(env["COLDSTART_HOME"]) / "results.jsonl"
    args = ["-m", "coldstart", "matrix", "--models", "tiny", "--experiments", "fast", "--repeats", "1"]
    args += ["--campaign", campaign, "--results", str(results), "--client-timeout", str(client_timeout_s)]
    args += ["--", "--device", "cpu", *service_args]
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _row(env: dict[str, str], campaign: str, runner: subprocess.Popen, timeout_s: float = 1200) -> ResultRow:
    out, _ = runner.communicate(timeout=timeout_s)
    rows = [r for r in load_rows(Path(env["COLDSTART_HOME"]) / "results.jsonl") if r.campaign == campaign]
    assert len(rows) == 1, f"matrix exited {runner.returncode} without one row:\n{out[-4000:]}"
    return rows[0]


def _output(env: dict[str, str]) -> Path:
    return Path(env["COLDSTART_OUTPUT"]) / "tiny" / "fast"


def test_engine_core_then_replica_killed_mid_load_serve_retries_and_the_run_leaves_nothing(lab):  # noqa: F811
    shm_before = python_segments()
    runner = _matrix(lab, "e2e-faults-replica")
    injector = Injector(_output(lab), psutil.Process(runner.pid))
    pids: dict[str, int] = {}

    def plan(inj: Injector) -> None:
        forked = inj.wait_for("forked EngineCore", lambda t: (e := _event(t, "engine_core_forked")) and e["pid"])
        pids["engine"] = forked
        first = inj.wait_for("first replica", lambda t: (e := _event(t, "replica_node_init_start")) and e["pid"])
        pids["replica1"] = first
        inj.wait_for("first engine loading", lambda t: first if _loading(t, first) else None)
        inj.kill("EngineCore", forked)
        second = inj.wait_for(
            "second replica", lambda t: (e := _event(t, "replica_node_init_start", unless={first})) and e["pid"]
        )
        pids["replica2"] = second
        inj.wait_for("second engine loading", lambda t: second if _loading(t, second) else None)
        inj.kill("replica actor", second)

    with injector.running(plan):
        row = _row(lab, "e2e-faults-replica", runner)
    print("killed (what, pid, s after the run began):", injector.killed)

    assert row.status == "ok", row.error
    assert row.ttft_s is not None and row.ttft_s > 1.0
    # Serve's retry in the row: two starts failed, each with its reason and process; the third served.
    engine_died, actor_died = row.failed_starts
    assert engine_died.pid == pids["replica1"] and engine_died.failure is not None
    assert engine_died.failure.exception == "RuntimeError", engine_died.failure
    assert "Engine core initialization failed" in (engine_died.failure.reason or ""), engine_died.failure
    assert actor_died.pid == pids["replica2"] and actor_died.failure is not None
    assert actor_died.failure.exception == "ActorDiedError", actor_died.failure
    assert "worker process has died" in (actor_died.failure.reason or ""), actor_died.failure
    served = row.first_token_replica
    assert served is not None and not served.failed and served.pid not in (pids["replica1"], pids["replica2"])
    assert served.t_starting_epoch is not None and served.t_starting_epoch >= actor_died.failure.t_epoch - 0.01
    assert [p.pid for p in row.ray.replicas] == [pids["replica1"], pids["replica2"], served.pid], row.ray
    # ... and in the timeline: the failed starts are one segment, the milestones the served start's own.
    phases = row.phases
    assert phases["seg_failed_starts_s"] == pytest.approx(
        served.t_starting_epoch - engine_died.t_starting_epoch, abs=0.1
    )
    segments = [v for k, v in phases.items() if k.startswith("seg_") and v is not None]
    assert sum(segments) + (phases.get("unattributed_s") or 0.0) == pytest.approx(row.ttft_s, abs=0.01)
    spawn = row.timeline.milestones["engine_core_start"].t_epoch if row.timeline else None
    assert spawn is not None and spawn >= served.t_starting_epoch, "a milestone came from a failed start"
    # Nothing of the run outlives it: no process, no shared memory.
    assert injector.alive() == [], "processes of the run outlived it"
    leaked = (python_segments() - shm_before) - segments_in_use()
    assert not leaked, f"/dev/shm segments of the run left behind: {sorted(leaked)}"


def test_a_worker_node_lost_mid_start_ends_the_run_with_a_reason_and_the_head_stays_clean(lab):  # noqa: F811
    with OneMachineCluster(printed_node_setup(lab), [WorkerNode(num_cpus=2)], base_env=lab) as cluster:
        service = ["--ray-address", cluster.address, "--proxy-location", "HeadOnly"]
        # Once the worker node is gone no live node can take the retried replica (the head has no CPU): Serve waits
        # for one without end, and so would the request. The service's own bound ends it (short here).
        service += ["--give-up-unschedulable-after-s", "10"]
        runner = _matrix(lab, "e2e-faults-node", *service, client_timeout_s=300)
        injector = Injector(_output(lab), psutil.Process(runner.pid))
        node: list[psutil.Process] = []
        described: list[str] = []  # their command lines, read while they ran
        killed_at: list[float] = []

        def plan(inj: Injector) -> None:
            replica = inj.wait_for("replica", lambda t: (e := _event(t, "replica_node_init_start")) and e["pid"])
            inj.wait_for("engine loading", lambda t: replica if _loading(t, replica) else None)
            node.extend(psutil.Process(pid) for pid in cluster.stray_pids("worker0"))
            described.extend(_cmdline(proc) for proc in node)
            inj.sids.add(os.getsid(replica))  # the worker raylet's: its processes keep it
            cluster.kill_node("worker0")
            killed_at.append(time.monotonic())
            inj.killed.append(("worker raylet", replica, killed_at[0] - inj.t0))

        with injector.running(plan):
            row = _row(lab, "e2e-faults-node", runner)
        after_kill_s = time.monotonic() - killed_at[0]
        print("killed (what, replica pid, s after the run began):", injector.killed)
        print(f"row after {after_kill_s:.0f} s: {row.status}: {row.error}")
        # Found by the node's mark: the raylet, and the Ray workers that renamed themselves (the replica among them).
        assert any("ray::" in line for line in described), described

        assert row.status != "ok" and row.error, row
        # The reason, not just the symptom (an HTTP 500 where the ingress lived on that node, else Serve's
        # "no node can take a replica"): the node Ray lost, the replica it held.
        assert row.ray is not None and row.ray.replicas, row.ray
        worker_node = row.ray.replicas[0].node_id
        assert worker_node is not None, row.ray
        # Whichever ended the run first (the client's HTTP 500 where the ingress died with the node, seen 9 s after
        # the kill; Serve's "no node can take the replica"), the service waited for Ray's verdict on the silent
        # raylet before it let go of the cluster: the row names the node Ray lost.
        assert row.ray.lost_node_ids == (worker_node,), row.ray
        assert f"Ray lost node {worker_node}" in row.error, row.error
        # Bounded: Ray marks the node dead after its missed heartbeats, Serve says after 30 s that no node fits
        # (every 30 s), the service gives up 10 s later and shuts down (Serve's 20 s grace for the unplaced replica).
        assert after_kill_s < 180, f"the run took {after_kill_s:.0f} s after the node died: a timeout, not a verdict"

        after = cluster_state(cluster, lab)
        assert after["alive"] == 1  # the head is still up
        assert not any(app.startswith("coldstart-") for app in after["apps"]), after
        assert injector.alive() == [], "processes of the run or of the dead node outlived it"
        left = [p for p in node if _running(p)] + [psutil.Process(p) for p in cluster.stray_pids("worker0")]
        assert not left, [f"{p.pid} {_cmdline(p)}" for p in left]
