"""What a killed service leaves, found through its record and removed by the next one; what a cleanly stopped run
leaves, removed by itself. Real processes shaped like Ray's and vLLM's (their command lines, a listening port, a
mapped segment, bound Unix sockets), real files; no Ray or vLLM."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from conftest import free_port

from coldstart.lab import leftovers, shm
from coldstart.lab.run_record import (
    RUN_MARK_ENV,
    RunRecord,
    TempListing,
    boot_id,
    new_record,
    records_dir,
    service_alive,
    write_record,
)

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs Linux's /proc and /dev/shm")

# Each dummy says "up" once it holds what it holds, then waits to be killed.
_SLEEP = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
_LISTEN = "import socket, sys\ns = socket.socket()\ns.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\n" + _SLEEP
_BIND_UNIX = "import socket, sys\nu = socket.socket(socket.AF_UNIX)\nu.bind(sys.argv[1])\nu.listen()\n" + _SLEEP
# The fast path's forkserver: its command line names multiprocessing.forkserver, it binds its listener socket in a
# pymp- folder, and the child it forks (EngineCore, same command line) makes a segment the way vLLM's message
# queue does, its resource tracker told to forget it (what Ray does to the tracker).
_FORKSERVER = textwrap.dedent(
    """
    # from multiprocessing.forkserver import main
    import os, socket, sys, time
    from multiprocessing import resource_tracker, shared_memory
    u = socket.socket(socket.AF_UNIX)
    u.bind(sys.argv[1])
    u.listen()
    r, w = os.pipe()
    if os.fork() == 0:
        seg = shared_memory.SharedMemory(create=True, size=1 << 20)
        resource_tracker.unregister(seg._name, "shared_memory")
        os.write(w, (seg.name.lstrip("/") + "\\n").encode())
        time.sleep(600)
    print(os.read(r, 200).decode().strip(), flush=True)
    time.sleep(600)
    """
)
# Another lab's engine: maps a segment of its own and holds it.
_MAPPER = textwrap.dedent(
    """
    import time
    from multiprocessing import resource_tracker, shared_memory
    seg = shared_memory.SharedMemory(create=True, size=1 << 20)
    resource_tracker.unregister(seg._name, "shared_memory")
    print(seg.name.lstrip("/"), flush=True)
    time.sleep(600)
    """
)


class Dummies:
    """Started processes, each killed and waited for at the end whatever the test did."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv0: str, code: str, *args: str, mark: str | None = None) -> tuple[subprocess.Popen[str], str]:
        env = {k: v for k, v in os.environ.items() if k != RUN_MARK_ENV}
        if mark is not None:
            env[RUN_MARK_ENV] = mark
        proc = subprocess.Popen(
            [argv0, "-c", code, *args], executable=sys.executable, env=env, stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        said = proc.stdout.readline().strip()
        assert said, f"{argv0} ended before it was up"
        return proc, said

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def dummies() -> Iterator[Dummies]:
    started = Dummies()
    try:
        yield started
    finally:
        started.stop()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _dead_socket(path: Path) -> None:
    """A socket file whose process is gone (bound, then closed without removing it)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def _aged(path: Path, seconds: float = 60.0) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _killed(proc: subprocess.Popen[str]) -> bool:
    try:
        return proc.wait(timeout=10) == -signal.SIGKILL
    except subprocess.TimeoutExpired:
        return False


def _record(tmp: Path, *, pid: int, started: float, mark: str, port: int, ready: Path) -> RunRecord:
    return RunRecord(
        mark=mark,
        service_pid=pid,
        service_started_epoch=started,
        host=socket.gethostname(),
        boot_id=boot_id(),
        run_id=f"run-{mark}",
        started_epoch=time.time() - 5.0,
        local_ray=True,
        port=port,
        ready_file=str(ready),
        ray_temp_root=str(tmp / "ray"),
        shm_before=tuple(sorted(shm.python_segments())),
        temp_before=(TempListing.now(tmp),),
    )


def test_a_killed_services_leftovers_go_and_nothing_else(tmp_path, dummies):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # Someone's garbage from before the dead run started: not the run's, so kept.
    older = tmp / str(uuid.uuid4())
    _dead_socket(older)
    folder = tmp_path / "records"
    port = free_port()
    ready = tmp_path / "ready.json"
    dead = _record(tmp, pid=_dead_pid(), started=time.time() - 60, mark="111-dead", port=port, ready=ready)
    write_record(folder, dead)
    me = psutil.Process()
    live = _record(tmp, pid=me.pid, started=me.create_time(), mark="222-beef", port=port + 1, ready=ready)
    write_record(folder, live)
    ready.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "run_id": dead.run_id}))

    # The dead run's processes, as a SIGKILL of its service leaves them (their parent gone).
    gcs, _ = dummies.start("/opt/ray/core/src/ray/gcs/gcs_server", _SLEEP, mark=dead.mark)
    raylet, _ = dummies.start("/opt/ray/core/src/ray/raylet/raylet", _SLEEP, mark=dead.mark)
    proxy, _ = dummies.start("ray::ProxyActor", _LISTEN, str(port), mark=dead.mark)
    pymp = tmp / "pymp-abc123"
    pymp.mkdir()
    forkserver, segment = dummies.start(sys.executable, _FORKSERVER, str(pymp / "listener-1"), mark=dead.mark)
    _aged(pymp)
    ipc = tmp / str(uuid.uuid4())
    engine, _ = dummies.start("VLLM::EngineCore", _BIND_UNIX, str(ipc), mark=dead.mark)
    # What the dead run's Ray and prestart fill left on disk.
    session_dir = tmp / "ray" / f"session_2026-12-07_17-00-27_219146_{dead.service_pid}"
    (session_dir / "logs").mkdir(parents=True)
    (tmp / "ray" / "session_latest").symlink_to(session_dir)
    barrier = tmp / "coldstart-prestart-0123abcd"
    barrier.mkdir()
    (barrier / str(_dead_pid())).touch()
    _aged(barrier)

    # A user's Ray (no mark) and another lab that runs (its service alive): their processes, socket and segment.
    users_raylet, _ = dummies.start("/usr/lib/ray/raylet", _SLEEP)
    live_raylet, _ = dummies.start("/opt/ray/raylet", _SLEEP, mark=live.mark)
    live_ipc = tmp / str(uuid.uuid4())
    live_engine, _ = dummies.start("VLLM::EngineCore", _BIND_UNIX, str(live_ipc), mark=live.mark)
    live_mapper, live_segment = dummies.start(sys.executable, _MAPPER, mark=live.mark)

    out = io.StringIO()
    t0 = time.monotonic()
    done = leftovers.clear_dead_runs(folder, out=out)
    took_s = time.monotonic() - t0

    said = out.getvalue()
    assert [c.record.mark for c in done] == [dead.mark], said
    lines = dict(line.removeprefix("coldstart:   ").split(": ", 1) for line in said.splitlines()[1:])
    assert lines["gcs_server"] == f"pid {gcs.pid}"
    assert lines["raylet"] == f"pid {raylet.pid}"
    assert lines["Ray workers"] == f"pid {proxy.pid} (ray::ProxyActor)"
    assert lines["forkservers"] == f"pid {forkserver.pid}"
    assert lines["forkserver children"].startswith("pid ")
    assert lines["EngineCore"] == f"pid {engine.pid}"
    assert lines[f"port {port}"] == f"freed (pid {proxy.pid} ray::ProxyActor listened on it)"
    assert lines["ready file"] == str(ready)
    assert lines["/dev/shm"] == f"{segment} (1 MiB)"
    assert lines["Ray session_dir"] == str(session_dir)
    assert set(lines["temp sockets and folders"].split(", ")) == {str(ipc), str(pymp), str(barrier)}
    assert "NOT removed" not in said
    assert said.splitlines()[0].startswith(f"coldstart: service pid {dead.service_pid} (run {dead.run_id}")

    for proc in (gcs, raylet, proxy, forkserver, engine):
        assert _killed(proc), proc.args[0]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    for gone in (ready, session_dir, tmp / "ray" / "session_latest", pymp, ipc, barrier, Path("/dev/shm") / segment):
        assert not os.path.lexists(gone), gone
    assert not (folder / dead.file_name).exists()
    # Nothing of the user's Ray or of the live lab was touched, nor what was there before the dead run.
    for proc in (users_raylet, live_raylet, live_engine, live_mapper):
        assert proc.poll() is None, proc.args[0]
    assert (folder / live.file_name).exists()
    assert live_ipc.exists() and older.exists()
    assert (Path("/dev/shm") / live_segment).exists()
    assert took_s < 10.0, f"cleanup took {took_s:.1f} s"
    (Path("/dev/shm") / live_segment).unlink()

    # Once done, a second service start finds nothing left to do.
    again = io.StringIO()
    assert leftovers.clear_dead_runs(folder, out=again) == [] and again.getvalue() == ""


def test_a_cleanly_stopped_run_removes_what_its_processes_left(tmp_path, dummies):
    folder = tmp_path / "records"
    ready = tmp_path / "ready.json"
    tmp = Path(os.environ["TMPDIR"])
    out = io.StringIO()
    with leftovers.RunLedger(run_id="r1", port=free_port(), ready_file=ready, local_ray=True, folder=folder, out=out):
        mark = os.environ[RUN_MARK_ENV]
        record_file = folder / f"{mark}.json"
        assert RunRecord.from_json(record_file.read_text()).service_pid == os.getpid()
        ready.write_text(json.dumps({"run_id": "r1"}))
        # An engine that outlived Ray's shutdown (inherits the mark from this process's environment), and the
        # IPC socket of one that was killed.
        ipc = tmp / str(uuid.uuid4())
        env = dict(os.environ)
        stray = subprocess.Popen(
            ["VLLM::EngineCore", "-c", _SLEEP], executable=sys.executable, env=env, stdout=subprocess.PIPE, text=True
        )
        dummies.procs.append(stray)
        assert stray.stdout is not None and stray.stdout.readline()
        _dead_socket(ipc)
    assert RUN_MARK_ENV not in os.environ
    assert _killed(stray)
    said = out.getvalue()
    assert f"EngineCore: pid {stray.pid}" in said, said
    assert f"ready file: {ready}" in said and str(ipc) in said
    assert not ready.exists() and not ipc.exists() and not record_file.exists()


def test_records_of_live_services_other_hosts_and_other_boots(tmp_path):
    folder = tmp_path / "records"
    ready = tmp_path / "ready.json"
    me = psutil.Process()
    base = _record(tmp_path, pid=me.pid, started=me.create_time(), mark="1-a", port=1, ready=ready)
    assert service_alive(base)
    # The same pid started at another moment is another process: its service is gone.
    assert not service_alive(replace(base, service_started_epoch=base.service_started_epoch - 100))
    other_host = replace(base, mark="2-b", host="another-node", service_pid=_dead_pid())
    other_boot = replace(base, mark="3-c", boot_id="an-earlier-boot", service_pid=_dead_pid(), run_id="old")
    for record in (base, other_host, other_boot):
        write_record(folder, record)
    ready.write_text(json.dumps({"run_id": "old"}))
    (folder / "9-bad.json").write_text("{not json")
    out = io.StringIO()
    done = leftovers.clear_dead_runs(folder, out=out)
    # The earlier boot's service is gone: only its ready file could have outlived the reboot.
    assert [(c.record.mark, c.lines()) for c in done] == [("3-c", [f"ready file: {ready}"])]
    assert not ready.exists()
    assert sorted(p.name for p in folder.glob("*.json")) == ["1-a.json", "2-b.json", "9-bad.json"]
    assert "9-bad.json: not a service record" in out.getvalue() and "left as it is" in out.getvalue()


def test_a_ready_file_another_run_wrote_since_is_kept(tmp_path):
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"run_id": "the-next-run"}))
    # Its own Ray's leftovers aside (none here): a run that joined a cluster.
    record = replace(_record(tmp_path, pid=_dead_pid(), started=0.0, mark="1-a", port=1, ready=ready), local_ray=False)
    assert leftovers.remove_leftovers(record).lines() == []
    assert ready.exists()


def test_a_record_that_is_not_one_is_refused():
    good = new_record(run_id="r", port=8000, ready_file=None, local_ray=True, shm_before=frozenset())
    assert RunRecord.from_json(good.to_json()) == good
    for bad in ("[]", "{}", good.to_json().replace(good.mark, "../../etc"), '{"mark": 1}'):
        with pytest.raises(ValueError, match="not a service record"):
            RunRecord.from_json(bad)


def test_records_live_in_the_labs_home(monkeypatch, tmp_path):
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    assert records_dir() == tmp_path / "home" / "service-records"


@pytest.mark.parametrize(
    ("cmdline", "parent", "kind"),
    [
        (["/v/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server", "--log_dir=/x"], None, "gcs_server"),
        (["/v/site-packages/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=/x"], None, "raylet"),
        (["/v/bin/python", "-u", "/v/site-packages/ray/dashboard/dashboard.py", "--host=127.0.0.1"], None, "dashboard"),
        (
            ["ray-dashboard-JobHead-0 (/v/bin/python -c from multiprocessing.spawn import spawn_main)"],
            None,
            "dashboard",
        ),
        (["ray::DashboardAgent"], None, "dashboard"),
        (["ray::RuntimeEnvAgent"], None, "Ray daemons"),
        (["/v/bin/python", "-u", "/v/site-packages/ray/_private/log_monitor.py"], None, "Ray daemons"),
        (["ray::ServeReplica:coldstart-tiny:LLMServer:tiny"], None, "Ray workers"),
        (["ray::IDLE"], None, "Ray workers"),
        (["VLLM::EngineCore"], None, "EngineCore"),
        (["VLLM::Worker"], None, "vLLM workers"),
        (
            ["/v/bin/python", "-B", "-c", "from multiprocessing.forkserver import main; main(35)"],
            ["ray::IDLE"],
            "forkservers",
        ),
        (
            ["/v/bin/python", "-B", "-c", "from multiprocessing.forkserver import main; main(35)"],
            ["/v/bin/python", "-B", "-c", "from multiprocessing.forkserver import main; main(35)"],
            "forkserver children",
        ),
        (
            ["/v/bin/python", "-B", "-c", "from multiprocessing.resource_tracker import main;main(86)"],
            None,
            "resource trackers",
        ),
        (["/bin/sleep", "600"], None, "other processes"),
    ],
)
def test_process_kinds(cmdline, parent, kind):
    assert leftovers.process_kind(cmdline, parent) == kind
