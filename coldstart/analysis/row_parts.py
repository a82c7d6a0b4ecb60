"""The typed parts of a result row: how a run ended (``RunStatus``), its client result, its cache audit, its
stored timeline, its answer check, its scenario's requests and its replicas.

Each part reads back from JSON as the type it was written as (``from_dict``) and refuses a key it does not
know (``SchemaError``), so nothing a newer writer added vanishes on the next write. ``results`` assembles
them into a ``ResultRow`` and keeps the file I/O; these names are imported from there too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

CLIENT_SCHEMA_VERSION = 1  # of ClientResult, also written alone as <run_id>.client.json


class SchemaError(ValueError):
    """A results file row this code cannot read (newer schema, or not a row)."""


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


def enum_value(kind: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise SchemaError(f"{what} {value!r} is not one of {[m.value for m in kind]}") from None


def asdict_keeping_shape(obj: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """``dataclasses.asdict`` without the ``optional`` keys that are None: fields added after rows were first
    written, so those rows read back and are written again with the shape they had."""
    out = dataclasses.asdict(obj)
    for key in optional:
        if out[key] is None:
            del out[key]
    return out


def fields_of(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
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
        object.__setattr__(self, "status", enum_value(ClientStatus, self.status, "client status"))

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
        return asdict_keeping_shape(self, ("request_id",))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientResult:
        known = fields_of(cls, data, "client result")
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
        return asdict_keeping_shape(self, ("parse_error",))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Audit:
        return cls(**fields_of(cls, data, "audit"))


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
        known = fields_of(cls, data, "timeline")
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
    # tokens in (run fast/20261130T051626Z-1ab9: a burst's request 0 left the baseline's answer at token 10, request 1
    # kept it);
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
        return asdict_keeping_shape(self, ("request_index", "compared"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnswerCheck:
        known = fields_of(cls, data, "answer")
        if known.get("compared") is not None:
            known["compared"] = enum_value(AnswerCompared, known["compared"], "answer compared")
        return cls(**known)


class RequestGroup(StrEnum):
    """Which part of a scenario sent a request (``registry.Scenario``'s parts, in the order they run)."""

    BURST = "burst"  # sent at the deployment at zero replicas (a single request is a burst of one)
    TRICKLE = "trickle"  # sent at a steady rate beside the burst, through the cold start
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
        object.__setattr__(self, "group", enum_value(RequestGroup, self.group, "request group"))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "client": self.client.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestRecord:
        known = fields_of(cls, data, "request")
        if not isinstance(known.get("client"), Mapping):
            raise SchemaError("request without a client result")
        return cls(**{**known, "client": ClientResult.from_dict(known["client"])})


def requests_from_json(data: Any) -> tuple[RequestRecord, ...]:
    if not isinstance(data, list):
        raise SchemaError(f"requests is a {type(data).__name__}, not a list")
    return tuple(RequestRecord.from_dict(r) for r in data)


@dataclass(frozen=True)
class StartFailure:
    """Why Serve gave up on one replica start: the controller's "Exception in Replica(...)" record and the
    exception that ended its traceback. Serve then starts another replica in its place (up to its retry limit)."""

    t_epoch: float  # when the controller gave up on it
    # The exception's class name: RuntimeError (the constructor raised: e.g. the engine process died),
    # ActorDiedError (the replica's process or node died), ActorUnavailableError (it stopped answering). None: the
    # log holds no traceback for it.
    exception: str | None
    reason: str | None  # its message, with Ray's sentence on why an actor died where there is one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StartFailure:
        known = fields_of(cls, data, "replica start failure")
        if not isinstance(known.get("t_epoch"), int | float):
            raise SchemaError(f"replica start failure without a time: {dict(data)!r}")
        return cls(t_epoch=float(known["t_epoch"]), exception=known.get("exception"), reason=known.get("reason"))


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
    # A start Serve gave up on (rows before 2026-12-07 lack it): it never ran; another replica took its place.
    failure: StartFailure | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict_keeping_shape(self, ("pid", "t_engine_start_epoch", "t_engine_ready_epoch", "failure"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaSpan:
        known = fields_of(cls, data, "replica")
        kwargs: dict[str, Any] = {f.name: known.get(f.name) for f in dataclasses.fields(cls)}
        if not isinstance(kwargs["replica_id"], str):
            raise SchemaError(f"replica without an id: {dict(data)!r}")
        if kwargs["failure"] is not None:
            if not isinstance(kwargs["failure"], Mapping):
                raise SchemaError(f"replica {kwargs['replica_id']}: failure is not a mapping")
            kwargs["failure"] = StartFailure.from_dict(kwargs["failure"])
        return cls(**kwargs)


def replicas_from_json(data: Any) -> tuple[ReplicaSpan, ...]:
    if not isinstance(data, list):
        raise SchemaError(f"replicas is a {type(data).__name__}, not a list")
    return tuple(ReplicaSpan.from_dict(r) for r in data)
