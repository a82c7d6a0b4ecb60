"""A service's record of what it starts on this node, kept in the lab's home while it runs.

A service killed by SIGKILL runs no cleanup: a local Ray's daemons and workers, the fast path's forkservers, an
EngineCore mid-start, its HTTP port, its ready file and its temp files stay. The record is what lets the next
service on the node find exactly those and nothing else: every process the service starts inherits its mark
(``RUN_MARK_ENV``, unique per run) through the environment, so a process is the dead service's only when its
environment carries that mark; a user's Ray cluster or another lab's run never does. The record is written before
Ray starts and removed last on a clean exit, so a kill at any moment leaves either nothing or a record.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coldstart import paths

# Set in the service's environment before Ray starts; Ray's daemons, its workers and what they spawn or fork
# (EngineCore, the forkserver and its children) inherit it, and keep it after their parent is gone.
RUN_MARK_ENV = "COLDSTART_SERVICE_RUN"
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

# Temp-folder entries a run's processes leave when killed, by the names their makers give them:
# vLLM's ZMQ IPC sockets ("ipc://<VLLM_RPC_BASE_PATH>/<uuid4>"), multiprocessing's per-process folder (it holds
# the fast path's forkserver listener socket) and the prestart fill's barrier folder.
VLLM_IPC_SOCKET = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MP_TEMP_DIR = re.compile(r"^pymp-[A-Za-z0-9_]+$")
PRESTART_BARRIER = re.compile(r"^coldstart-prestart-[0-9a-f]+$")


class RecordError(ValueError):
    """A record file that does not parse as one (written by something else, or cut short)."""


def records_dir(env: Mapping[str, str] = os.environ) -> Path:
    return paths.coldstart_home(env) / "service-records"


def boot_id() -> str:
    """This boot of this machine: a record of another boot names processes and segments that are gone."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:  # not Linux: the host name and the pid's start time still tell a record apart
        return ""


def leftover_shaped(name: str) -> bool:
    return bool(VLLM_IPC_SOCKET.match(name) or MP_TEMP_DIR.match(name) or PRESTART_BARRIER.match(name))


def ray_temp_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where a Ray started by ``ray.init()`` here puts its ``session_dir``: Ray's own rule
    (``ray._common.utils.get_default_ray_temp_dir``: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp, plus ``ray``),
    read without importing Ray."""
    base = env.get("RAY_TMPDIR") or env.get("TMPDIR") or "/tmp"
    return Path(base) / "ray"


def watched_temp_dirs(env: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """The folders a run's processes put their temp files in: the temp folder they inherit, and vLLM's IPC
    folder where the user moved it."""
    # tempfile.gettempdir()'s precedence, read from the mapping (gettempdir itself keeps its first answer).
    tmp = env.get("TMPDIR") or env.get("TEMP") or env.get("TMP") or tempfile.gettempdir()
    found = [Path(tmp)]
    if env.get("VLLM_RPC_BASE_PATH"):
        found.append(Path(env["VLLM_RPC_BASE_PATH"]))
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class TempListing:
    """One watched temp folder and the leftover-shaped entries it already held when the run started (never
    the run's, so never removed by it)."""

    folder: str
    names_before: tuple[str, ...]

    @classmethod
    def now(cls, folder: Path) -> TempListing:
        try:
            names = sorted(e.name for e in os.scandir(folder) if leftover_shaped(e.name))
        except FileNotFoundError:
            names = []
        return cls(str(folder), tuple(names))


@dataclass(frozen=True)
class RunRecord:
    mark: str  # the value of RUN_MARK_ENV in every process of the run
    service_pid: int
    service_started_epoch: float  # the service process's start: a pid reused by another process has another
    host: str
    boot_id: str
    run_id: str
    started_epoch: float
    local_ray: bool  # the run started its own Ray here (else it joined a cluster: nothing of Ray's is its own)
    port: int | None  # the HTTP port of a local Ray's Serve proxy (None: the run joined a cluster)
    ready_file: str | None
    ray_temp_root: str | None  # where a local Ray started by the run keeps its session_dir (None: a cluster)
    shm_before: tuple[str, ...]  # multiprocessing-named /dev/shm segments there before the run
    temp_before: tuple[TempListing, ...]

    @property
    def file_name(self) -> str:
        return f"{self.mark}.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        try:
            raw = json.loads(text)
            temp = tuple(TempListing(str(t["folder"]), tuple(map(str, t["names_before"]))) for t in raw["temp_before"])
            record = cls(
                mark=_str(raw, "mark"),
                service_pid=int(raw["service_pid"]),
                service_started_epoch=float(raw["service_started_epoch"]),
                host=_str(raw, "host"),
                boot_id=str(raw["boot_id"]),
                run_id=_str(raw, "run_id"),
                started_epoch=float(raw["started_epoch"]),
                local_ray=_bool(raw, "local_ray"),
                port=None if raw["port"] is None else int(raw["port"]),
                ready_file=None if raw["ready_file"] is None else str(raw["ready_file"]),
                ray_temp_root=None if raw["ray_temp_root"] is None else str(raw["ray_temp_root"]),
                shm_before=tuple(map(str, raw["shm_before"])),
                temp_before=temp,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"not a service record ({type(exc).__name__}: {exc})") from None
        if not re.fullmatch(r"[0-9]+-[0-9a-f]+", record.mark):
            # The mark names the record's file and is matched against environments: a hand-edited one is refused.
            raise RecordError(f"not a service record (mark {record.mark!r})")
        return record


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw[key]
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false")
    return value


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} must be a non-empty string")
    return value


def new_record(
    *, run_id: str, port: int | None, ready_file: Path | None, local_ray: bool, shm_before: frozenset[str]
) -> RunRecord:
    """The record of the service running in this process, taken before it starts anything."""
    import psutil

    me = psutil.Process()
    return RunRecord(
        mark=f"{me.pid}-{secrets.token_hex(6)}",
        service_pid=me.pid,
        service_started_epoch=me.create_time(),
        host=socket.gethostname(),
        boot_id=boot_id(),
        run_id=run_id,
        started_epoch=time.time(),
        local_ray=local_ray,
        port=port if local_ray else None,
        ready_file=str(ready_file.absolute()) if ready_file is not None else None,
        ray_temp_root=str(ray_temp_root()) if local_ray else None,
        shm_before=tuple(sorted(shm_before)) if local_ray else (),
        # On a cluster the engines' temp files are on the nodes, and this machine's are not this run's to judge.
        temp_before=tuple(TempListing.now(d) for d in watched_temp_dirs()) if local_ray else (),
    )


def write_record(folder: Path, record: RunRecord) -> Path:
    """Atomically (a kill mid-write leaves the old file or none, never half of one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record.file_name
    tmp = folder / f".{record.file_name}.tmp"
    tmp.write_text(record.to_json())
    os.replace(tmp, path)
    return path


def service_alive(record: RunRecord) -> bool:
    """Whether the service that wrote ``record`` still runs: same boot, same pid, same start time."""
    import psutil

    if record.boot_id != boot_id():
        return False
    try:
        started = psutil.Process(record.service_pid).create_time()
    except psutil.NoSuchProcess:
        return False
    # psutil derives the start time from the boot time and clock ticks: equal for one process, to the tick.
    return abs(started - record.service_started_epoch) < 0.5
