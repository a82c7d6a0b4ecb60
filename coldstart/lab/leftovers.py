"""What a service's run leaves on its node, found through its record (``run_record``) and removed.

Two moments: a service that stops cleanly removes what Ray's shutdown left of its run (``RunLedger``), and a
service that starts removes what every dead service left, one that was SIGKILLed included (``clear_dead_runs``):

* processes: those whose environment carries the dead run's mark (Ray's gcs_server, raylet, dashboard and agents,
  its workers, the fast path's forkservers, EngineCore and vLLM's workers); a SIGKILLed service's dashboard and
  runtime-env agents were seen alive half a minute later, its workers for seconds (the proxy holding the HTTP
  port: the next service on it was refused);
* its ready file (when it still names that run), the segments its engines left in /dev/shm (``shm``), a local
  Ray's ``session_dir``, and the temp files its killed processes could not remove: vLLM's IPC sockets and
  multiprocessing's folders (the forkserver's socket).

A file is the run's when it appeared while the run ran and nothing uses it any more (no live process binds the
socket, maps the segment, names the ``session_dir``); a process only by its mark. Never another lab's or a
user's Ray: their processes carry no such mark, and what they use is kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coldstart.lab import shm
from coldstart.lab.run_record import (
    MP_TEMP_DIR,
    PRESTART_BARRIER,
    RUN_MARK_ENV,
    VLLM_IPC_SOCKET,
    RecordError,
    RunRecord,
    TempListing,
    boot_id,
    leftover_shaped,
    new_record,
    records_dir,
    service_alive,
    write_record,
)

PROC_DIR = Path("/proc")
KILL_GRACE_S = 5.0
# A multiprocessing folder or barrier younger than this may belong to a process that is about to bind its socket
# or mark its pid there: left for the next look.
MIN_AGE_S = 5.0

# Report order of process kinds: the daemons first, the engine's processes last.
_KINDS = (
    "gcs_server",
    "raylet",
    "dashboard",
    "Ray daemons",
    "Ray workers",
    "forkservers",
    "forkserver children",
    "EngineCore",
    "vLLM workers",
    "resource trackers",
    "other processes",
)


@dataclass(frozen=True)
class Removed:
    """One kind of leftover and what of it went, one line of the report."""

    kind: str
    items: tuple[str, ...]

    def line(self) -> str:
        return f"{self.kind}: {', '.join(self.items)}"


@dataclass(frozen=True)
class Cleanup:
    record: RunRecord
    removed: tuple[Removed, ...] = ()
    failed: tuple[str, ...] = ()  # what could not be removed, each with its reason

    def lines(self) -> list[str]:
        return [r.line() for r in self.removed] + [f"NOT removed: {f}" for f in self.failed]


@dataclass
class _Report:
    removed: list[Removed] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, kind: str, items: Iterable[str]) -> None:
        items = tuple(items)
        if items:
            self.removed.append(Removed(kind, items))


# ---------------------------------------------------------------- processes


def _environ_has(pid_dir: Path, needle: bytes) -> bool:
    try:
        return needle in (pid_dir / "environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile, or another user's: not this run's
        return False


def marked_processes(mark: str, proc_dir: Path = PROC_DIR) -> list[Any]:
    """Live processes (zombies excepted: they hold nothing but a pid) whose environment carries ``mark``.

    /proc/<pid>/environ is the environment a process was started with, so it keeps the mark whatever the process
    later does to its own environment (the forkserver's children rewrite theirs)."""
    import psutil

    needle = f"{RUN_MARK_ENV}={mark}".encode()
    me = psutil.Process()
    never = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for pid_dir in proc_dir.iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) in never or not _environ_has(pid_dir, needle):
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(int(pid_dir.name))  # remembers its start time: a reused pid is never signalled
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _cmdline(proc: Any) -> list[str]:
    import psutil

    try:
        return list(proc.cmdline()) or [proc.name()]
    except psutil.Error:
        return []


def process_kind(cmdline: list[str], parent_cmdline: list[str] | None = None) -> str:
    """Which part of a run a process is, from its command line (Ray's workers and vLLM's processes rename theirs)."""
    first = cmdline[0] if cmdline else ""
    base = os.path.basename(first.split(" ")[0])
    joined = " ".join(cmdline)
    if base == "gcs_server":
        return "gcs_server"
    if base == "raylet":
        return "raylet"
    if first.startswith(("ray-dashboard-", "ray::DashboardAgent")) or "dashboard/dashboard.py" in joined:
        return "dashboard"
    if first.startswith("ray::RuntimeEnvAgent") or any(d in joined for d in ("log_monitor.py", "autoscaler")):
        return "Ray daemons"
    if "EngineCore" in first:
        return "EngineCore"
    if first.startswith("VLLM::"):
        return "vLLM workers"
    if "multiprocessing.forkserver" in joined:
        # A process the forkserver forked keeps the server's command line (the fast path's EngineCore on CPU does).
        forked = parent_cmdline is not None and "multiprocessing.forkserver" in " ".join(parent_cmdline)
        return "forkserver children" if forked else "forkservers"
    if "multiprocessing.resource_tracker" in joined:
        return "resource trackers"
    if first.startswith("ray::") or "default_worker.py" in joined:
        return "Ray workers"
    return "other processes"


def _listens_on(proc: Any, port: int) -> bool:
    import psutil

    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def _kill(procs: list[Any], grace_s: float) -> list[Any]:
    """SIGKILL every one of ``procs``; returns those still alive after ``grace_s`` (uninterruptible sleep)."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                # A killed process whose parent is gone may stay a zombie (under an init that does not reap):
                # it holds no memory, file or port any more.
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _remove_processes(record: RunRecord, report: _Report, grace_s: float) -> None:
    procs = marked_processes(record.mark)
    if not procs:
        return
    cmdlines = {p.pid: _cmdline(p) for p in procs}
    # Told apart before the kill: a forkserver's child is known by its parent, which is gone after it.
    kinds = {p.pid: process_kind(cmdlines[p.pid], cmdlines.get(_ppid(p))) for p in procs}
    holders = [p for p in procs if record.port is not None and _listens_on(p, record.port)]
    survivors = _kill(procs, grace_s)
    by_kind: dict[str, list[str]] = {}
    for proc in sorted(procs, key=lambda p: p.pid):
        if proc in survivors:
            continue
        kind, title = kinds[proc.pid], _title(cmdlines[proc.pid])
        named = kind in ("Ray workers", "other processes") and title
        by_kind.setdefault(kind, []).append(f"{proc.pid} ({title[:60]})" if named else str(proc.pid))
    for kind in _KINDS:
        if labels := by_kind.get(kind):
            report.add(kind, [f"pid{'s' if len(labels) > 1 else ''} {' '.join(labels)}"])
    if holders and not any(p in survivors for p in holders):
        who = ", ".join(f"pid {p.pid} {_title(cmdlines[p.pid])}".strip() for p in holders)
        report.add(f"port {record.port}", [f"freed ({who} listened on it)"])
    for proc in survivors:
        report.failed.append(f"pid {proc.pid} ({' '.join(cmdlines[proc.pid])[:80]}): still alive after SIGKILL")


def _title(cmdline: list[str]) -> str:
    return os.path.basename(cmdline[0]) if cmdline else ""


def _ppid(proc: Any) -> int:
    import psutil

    try:
        return int(proc.ppid())
    except psutil.Error:
        return 0


# ---------------------------------------------------------------- files


def bound_unix_paths(proc_dir: Path = PROC_DIR) -> frozenset[str]:
    """Paths of the Unix sockets some live process has bound (in this network namespace): a socket file not
    among them answers nobody, and no process can bind it again without removing it first."""
    found = set()
    with contextlib.suppress(FileNotFoundError):
        for line in (proc_dir / "net" / "unix").read_text(errors="replace").splitlines()[1:]:
            parts = line.split(None, 7)
            if len(parts) == 8 and parts[7].startswith("/"):
                found.add(parts[7])
    return frozenset(found)


def _dead_socket(path: Path, bound: frozenset[str]) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode) and str(path) not in bound
    except FileNotFoundError:
        return False


def _dead_folder(path: Path, bound: frozenset[str], now: float) -> bool:
    """A multiprocessing folder holding only dead sockets, or a prestart barrier holding only dead pids."""
    import psutil

    try:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or now - st.st_mtime < MIN_AGE_S:
            return False
        entries = list(path.iterdir())
    except FileNotFoundError:
        return False
    if MP_TEMP_DIR.match(path.name):
        return all(_dead_socket(e, bound) for e in entries)
    return all(e.name.isdigit() and not psutil.pid_exists(int(e.name)) for e in entries)


def dead_temp_entries(listing: TempListing, bound: frozenset[str], now: float | None = None) -> list[Path]:
    """Leftover-shaped entries of a watched temp folder that appeared during the run and that nothing uses."""
    now = time.time() if now is None else now
    before = set(listing.names_before)
    try:
        names = sorted(e.name for e in os.scandir(listing.folder))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name in before or not leftover_shaped(name):
            continue
        path = Path(listing.folder) / name
        if VLLM_IPC_SOCKET.match(name):
            if _dead_socket(path, bound):
                found.append(path)
        elif (MP_TEMP_DIR.match(name) or PRESTART_BARRIER.match(name)) and _dead_folder(path, bound, now):
            found.append(path)
    return found


def ray_run_dirs(record: RunRecord) -> list[Path]:
    """The ``session_dir`` of the Ray the run started, in its temp root: Ray names a head's after the pid of the
    process that started it (``session_2026-12-07_17-00-27_219146_<pid>``), the service. One older than the run
    is an earlier process's with the same pid; one still named by a live process's command line is in use."""
    if record.ray_temp_root is None:
        return []
    import psutil

    candidates = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(record.ray_temp_root):
            if not entry.name.endswith(f"_{record.service_pid}"):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_mtime >= record.started_epoch - 1.0:
                    candidates.append(Path(entry.path))
    if not candidates:
        return []
    in_use: set[Path] = set()
    for proc in psutil.process_iter(["cmdline"]):
        joined = " ".join(proc.info["cmdline"] or ())
        in_use.update(c for c in candidates if str(c) in joined)
    return [c for c in candidates if c not in in_use]


def _remove_path(path: Path, report: _Report) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        report.failed.append(f"{path}: {exc.strerror or exc}")
        return False
    return True


def _remove_ready_file(record: RunRecord, report: _Report) -> None:
    """The ready file, when it is still this run's: another service may since have been given the same path."""
    if record.ready_file is None:
        return
    path = Path(record.ready_file)
    try:
        said = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # none, or not one a service wrote (it writes them whole)
        return
    except OSError as exc:
        report.failed.append(f"ready file {path}: {exc.strerror or exc}")
        return
    if isinstance(said, dict) and said.get("run_id") == record.run_id and _remove_path(path, report):
        report.add("ready file", [str(path)])


def _remove_files(record: RunRecord, report: _Report) -> None:
    session_dirs = [s for s in ray_run_dirs(record) if _remove_path(s, report)]
    report.add("Ray session_dir", map(str, session_dirs))
    if session_dirs and record.ray_temp_root is not None:
        latest = Path(record.ray_temp_root) / "session_latest"
        # Ray points it at the newest session_dir; once that is gone it points nowhere.
        with contextlib.suppress(OSError):
            if latest.is_symlink() and Path(os.readlink(latest)).name in {s.name for s in session_dirs}:
                latest.unlink()
    bound = bound_unix_paths()
    temp = [p for listing in record.temp_before for p in dead_temp_entries(listing, bound) if _remove_path(p, report)]
    report.add("temp sockets and folders", map(str, temp))
    if record.local_ray:
        try:
            segments = shm.remove_unused(shm.python_segments() - set(record.shm_before))
        except OSError as exc:
            report.failed.append(f"/dev/shm: {exc}")
        else:
            report.add("/dev/shm", [f"{s.name} ({s.size_bytes / 2**20:.0f} MiB)" for s in segments])


def remove_leftovers(record: RunRecord, *, grace_s: float = KILL_GRACE_S) -> Cleanup:
    """Remove what the run of ``record`` left: its processes first (they hold the port, the segments and the
    sockets), then its files. The record file itself is the caller's."""
    report = _Report()
    if record.boot_id == boot_id():
        _remove_processes(record, report, grace_s)
        _remove_ready_file(record, report)
        _remove_files(record, report)
    else:
        # Another boot: its processes, segments and sockets went with it; only its ready file may have stayed.
        _remove_ready_file(record, report)
    return Cleanup(record, tuple(report.removed), tuple(report.failed))


# ---------------------------------------------------------------- the two moments


@contextlib.contextmanager
def _records_lock(folder: Path) -> Iterator[None]:
    """One cleaner at a time: two services starting together must not both remove one dead run's leftovers."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def clear_dead_runs(folder: Path | None = None, out: IO[str] | None = None) -> list[Cleanup]:
    """Remove what each service that is gone without its cleanup left on this node, and say it, one line per
    kind. Records of live services (another lab on this node) and of other hosts (a home shared between nodes)
    are left alone; an unreadable record is said and kept."""
    import socket

    folder = records_dir() if folder is None else folder
    out = sys.stderr if out is None else out
    if not folder.is_dir():
        return []
    done = []
    host = socket.gethostname()
    with _records_lock(folder):
        for path in sorted(folder.glob("*.json")):
            try:
                record = RunRecord.from_json(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, RecordError) as exc:
                print(f"coldstart: warning: {path}: {exc}; left as it is", file=out, flush=True)
                continue
            if record.host != host or service_alive(record):
                continue
            t0 = time.monotonic()
            cleanup = remove_leftovers(record)
            path.unlink(missing_ok=True)
            took_s = time.monotonic() - t0
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_epoch))
            head = f"service pid {record.service_pid} (run {record.run_id}, started {started}) is gone"
            lines = cleanup.lines()
            what = f"removed what it left in {took_s:.1f} s:" if lines else "it left nothing"
            print(f"coldstart: {head}; {what}", file=out)
            for line in lines:
                print(f"coldstart:   {line}", file=out)
            out.flush()
            done.append(cleanup)
    return done


class RunLedger:
    """The run's record, from before Ray starts to after it stopped.

    On enter: the mark goes into this process's environment (every process it starts from then on inherits it)
    and the record is written. On exit (the run's processes already stopped): whatever of the run is still there
    is removed and said, then the record goes. A SIGKILL in between leaves the record for the next service.
    """

    def __init__(
        self,
        *,
        run_id: str,
        port: int | None,
        ready_file: Path | None,
        local_ray: bool,
        folder: Path | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.port = port
        self.ready_file = ready_file
        self.local_ray = local_ray
        self.folder = records_dir() if folder is None else folder
        # Standard output, like the service's own "serving ..." line: a runner takes the last line of standard
        # error as the reason a service ended, and this report comes after that reason.
        self.out = sys.stdout if out is None else out
        self.record: RunRecord | None = None
        self.cleanup: Cleanup | None = None
        self._path: Path | None = None
        self._mark_before: str | None = None

    def __enter__(self) -> RunLedger:
        record = new_record(
            run_id=self.run_id,
            port=self.port,
            ready_file=self.ready_file,
            local_ray=self.local_ray,
            shm_before=shm.python_segments() if self.local_ray else frozenset(),
        )
        self._path = write_record(self.folder, record)
        self.record = record
        self._mark_before = os.environ.get(RUN_MARK_ENV)
        os.environ[RUN_MARK_ENV] = record.mark
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.record is not None and self._path is not None, "exit without enter"
        # A second SIGTERM (an impatient supervisor) must not cut this short; were it cut, the record stays.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.cleanup = remove_leftovers(self.record)
            self._path.unlink(missing_ok=True)
            lines = self.cleanup.lines()
            if lines:
                print("coldstart: removed what this run left:", file=self.out)
                for line in lines:
                    print(f"coldstart:   {line}", file=self.out)
                self.out.flush()
        finally:
            if self._mark_before is None:
                os.environ.pop(RUN_MARK_ENV, None)
            else:
                os.environ[RUN_MARK_ENV] = self._mark_before
            for sig, handler in old.items():
                signal.signal(sig, handler)
