"""What Serve's own lines in a run log say about replicas: which replica served a request, and when the
controller decided, started and stopped each one. Pure functions over text; the rules are data.

The controller's lines reach a run log twice (Ray's driver forwarding and the lab's controller-log follower),
so events are de-duplicated by (kind, replica, deployment). Line shapes, Ray 2.57.1 (``deployment_state.py``):

    ... controller 12007 -- Upscaling Deployment(name='LLMServer:tiny', app='a') from 0 to 1 replicas. ...
    ... controller 12007 -- Starting Replica(id='1jjuggdv', deployment='LLMServer:tiny', app='a').
    ... controller 12007 -- Replica(id='1jjuggdv', deployment='LLMServer:tiny', app='a') started successfully on
        node '…' after 17.6s (PID: 18464). ...
    ... controller 12007 -- Downscaling Deployment(name='LLMServer:tiny', app='a') from 1 to 0 replicas. ...
    ... controller 12007 -- Stopping Replica(id='1jjuggdv', deployment='LLMServer:tiny', app='a') (currently ...
    ... controller 12007 -- Replica(id='1jjuggdv', deployment='LLMServer:tiny', app='a') is stopped.
    ... a_LLMServer:tiny 1jjuggdv 333ab388-e39a-4214-98b2-2b0f19ba4045 -- CALL chat OK 141.7ms

A start Serve gave up on (its constructor raised, its process or node died) is one controller line followed by the
traceback, each line under the same prefix; the exception that ended the traceback says why:

    ... controller 12007 -- Exception in Replica(id='13l1inpi', deployment='LLMServer:tiny', app='a'), the replica
        will be stopped.
    ... Traceback (most recent call last): ...
    ... RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': -9}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from coldstart.analysis.events import read_events
from coldstart.analysis.results import ReplicaSpan, StartFailure

# The LLM deployment's name holds its server class ("LLMServer:<model>", the fast path's
# "ColdStartLLMServer:<model>"); the ingress ("OpenAiIngress") does not.
LLM_DEPLOYMENT_MARK = "LLMServer"

_STAMP = r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
_REPLICA = r"Replica\(id='(?P<replica>[^']+)', deployment='(?P<deployment>[^']+)', app='(?P<app>[^']*)'\)"
_DEPLOYMENT = r"Deployment\(name='(?P<deployment>[^']+)', app='(?P<app>[^']*)'\)"


class ReplicaEventKind(StrEnum):
    UPSCALE = "upscale"  # the autoscaler decided to add replicas (no replica id yet)
    STARTING = "starting"
    RUNNING = "running"  # "started successfully": the constructor returned, the replica takes requests
    DOWNSCALE = "downscale"
    STOPPING = "stopping"
    STOPPED = "stopped"
    START_FAILED = "start_failed"  # the controller gave up on this start (Serve starts another in its place)


@dataclass(frozen=True)
class ReplicaRule:
    kind: ReplicaEventKind
    pattern: re.Pattern[str]


REPLICA_RULES: tuple[ReplicaRule, ...] = (
    ReplicaRule(
        ReplicaEventKind.UPSCALE,
        re.compile(_STAMP + r".* -- Upscaling " + _DEPLOYMENT + r" from (?P<from_n>\d+) to (?P<to_n>\d+) replicas"),
    ),
    ReplicaRule(ReplicaEventKind.STARTING, re.compile(_STAMP + r".* -- Starting " + _REPLICA)),
    ReplicaRule(
        ReplicaEventKind.RUNNING,
        re.compile(_STAMP + r".* -- " + _REPLICA + r" started successfully(?:.*? \(PID: (?P<pid>\d+)\))?"),
    ),
    ReplicaRule(
        ReplicaEventKind.DOWNSCALE,
        re.compile(_STAMP + r".* -- Downscaling " + _DEPLOYMENT + r" from (?P<from_n>\d+) to (?P<to_n>\d+) replicas"),
    ),
    ReplicaRule(ReplicaEventKind.STOPPING, re.compile(_STAMP + r".* -- Stopping " + _REPLICA)),
    ReplicaRule(ReplicaEventKind.STOPPED, re.compile(_STAMP + r".* -- " + _REPLICA + r" is stopped\.")),
    # ``check_ready``: the constructor raised or the actor died ("Exception in"), or the actor never got a
    # process (its node died first: "Exception when allocating").
    ReplicaRule(
        ReplicaEventKind.START_FAILED,
        re.compile(_STAMP + r".* -- Exception (?:in|when allocating) " + _REPLICA + r"(?:, the replica will| ?:)"),
    ),
)

# Where a traceback line of the controller's record ends its prefix: Ray's forwarded "(ServeController pid=N) "
# or the lab's follower's "(ServeController) ", either with or without colour codes.
_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?(?P<prefix>\((?:ServeController)[^)]*\))(?:\x1b\[[0-9;]*m)?\s?")
_RECORD_START = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d\d-\d\d ")
# "ray.exceptions.ActorDiedError: ...", "RuntimeError: ...", "ray.exceptions.RayTaskError(RuntimeError): ...".
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception))(?:\([\w.]+\))?: (?P<text>.*)$")
# Ray's own sentence on why an actor is gone ("The actor is dead because its worker process has died. ...",
# "The actor died because its node has died. Node Id: ..."), on the lines after ActorDiedError.
_ACTOR_CAUSE = re.compile(r"^The actor (?:is dead|died) because ")
_RAY_HINTS = " Some common causes include:"
# The failed replica's process, where the traceback names it: a task error's "(pid=N, ip=...)", an actor
# error's "\tpid: N".
_FAILED_PID = re.compile(r"\(pid=(?P<pid>\d+), ip=|^\s*pid: (?P<actor_pid>\d+)\s*$")
_TRACEBACK_LINES_MAX = 400
_REASON_CHARS_MAX = 600

# Ray LLM's line when the replica's engine is up, written by the replica's own logger (it names the replica).
_ENGINE_READY = re.compile(_STAMP + r" \S+ (?P<replica>[a-z0-9]{6,16}) -- Started vLLM engine\.")

# Any line of a replica's own logger, as Ray forwards it: the worker's pid, then the replica it hosts.
_OWN_LINE = re.compile(r"\(ServeReplica:\S+ pid=(?P<pid>\d+)\)\S* \w+ " + _STAMP + r" \S+ (?P<replica>[a-z0-9]{6,16}) ")

# "<app>_<deployment> <replica> <request id> -- CALL <method> OK": the replica's access line for a handle call.
_CALL = re.compile(
    r" (?P<component>\S+) (?P<replica>[a-z0-9]{6,16}) (?P<request>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12}) -- CALL (?P<method>\w+) (?P<status>\w+)"
)


@dataclass(frozen=True)
class ReplicaEvent:
    kind: ReplicaEventKind
    deployment: str
    replica_id: str | None  # None for the autoscaler's decisions
    t_local: datetime  # the controller's own clock, as logged (local time, no zone)
    to_replicas: int | None = None  # UPSCALE / DOWNSCALE: the target count
    # RUNNING: the replica actor's process (which Ray worker it was given); START_FAILED: the process that
    # failed, where the traceback names it.
    pid: int | None = None
    exception: str | None = None  # START_FAILED: the class name of the exception that ended the traceback
    reason: str | None = None  # START_FAILED: its message (and Ray's cause of an actor's death)

    @property
    def is_llm(self) -> bool:
        return LLM_DEPLOYMENT_MARK in self.deployment


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def _record_tail(lines: list[str], start: int) -> list[str]:
    """The lines that continue the controller's record on line ``start`` (its traceback): those under the same
    prefix up to the next record of that prefix. Lines of other writers that Ray's forwarding put in between are
    skipped, not taken as the end."""
    head = _PREFIX.match(lines[start])
    prefix = head["prefix"] if head else None
    tail: list[str] = []
    for line in lines[start + 1 : start + 1 + _TRACEBACK_LINES_MAX]:
        m = _PREFIX.match(line)
        if prefix is None or m is None or m["prefix"] != prefix:
            continue
        body = line[m.end() :]
        if _RECORD_START.match(body):
            break
        tail.append(body)
    return tail


@dataclass(frozen=True)
class _Failure:
    exception: str | None
    reason: str | None
    pid: int | None


def _failure(tail: list[str]) -> _Failure:
    """The exception that ended the traceback (the last one: a task error wraps the replica's own), its message,
    Ray's sentence on why an actor died where there is one, and the failed process where it is named."""
    last: int | None = None
    pid: int | None = None
    for i, line in enumerate(tail):
        if _EXCEPTION.match(line.strip()):
            last = i
        if (m := _FAILED_PID.search(line)) is not None:
            pid = int(m["pid"] or m["actor_pid"])
    if last is None:
        return _Failure(None, None, pid)
    m = _EXCEPTION.match(tail[last].strip())
    assert m is not None, "matched above"
    parts = [m["text"].strip()]
    # Ray's sentence, without its list of common causes that follows (the same for every death).
    parts += [line.strip().split(_RAY_HINTS)[0] for line in tail[last + 1 :] if _ACTOR_CAUSE.match(line.strip())][:1]
    return _Failure(m["name"], " ".join(p for p in parts if p)[:_REASON_CHARS_MAX], pid)


def replica_events(log_text: str) -> list[ReplicaEvent]:
    """Every controller decision and replica state change in the log, once each, in log order."""
    seen: set[tuple[ReplicaEventKind, str, str | None, datetime]] = set()
    out: list[ReplicaEvent] = []
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if "controller" not in line:
            continue
        for rule in REPLICA_RULES:
            if not (m := rule.pattern.search(line)):
                continue
            groups = m.groupdict()
            event = ReplicaEvent(
                kind=rule.kind,
                deployment=groups["deployment"],
                replica_id=groups.get("replica"),
                t_local=_stamp(groups["stamp"]),
                to_replicas=int(groups["to_n"]) if groups.get("to_n") is not None else None,
                pid=int(groups["pid"]) if groups.get("pid") is not None else None,
            )
            key = (event.kind, event.deployment, event.replica_id, event.t_local)
            if key not in seen:
                seen.add(key)
                if rule.kind is ReplicaEventKind.START_FAILED:
                    why = _failure(_record_tail(lines, i))
                    event = dataclasses.replace(event, pid=why.pid, exception=why.exception, reason=why.reason)
                out.append(event)
            break
    return out


def llm_replicas_alive(log_text: str) -> tuple[int, int]:
    """(replicas of the LLM deployment started so far, of which not yet stopped)."""
    started: set[str] = set()
    stopped: set[str] = set()
    for e in replica_events(log_text):
        if not e.is_llm or e.replica_id is None:
            continue
        if e.kind is ReplicaEventKind.STARTING:
            started.add(e.replica_id)
        elif e.kind is ReplicaEventKind.STOPPED:
            stopped.add(e.replica_id)
    return len(started), len(started - stopped)


def _epoch(t_local: datetime, utc_offset_s: float) -> float:
    # ``utc_offset_s`` is local minus UTC (``timeline.Clock``): the naive stamp read as UTC, less the offset.
    return t_local.replace(tzinfo=timezone.utc).timestamp() - utc_offset_s


_SPAN_FIELD: Mapping[ReplicaEventKind, str] = {
    ReplicaEventKind.STARTING: "t_starting_epoch",
    ReplicaEventKind.RUNNING: "t_running_epoch",
    ReplicaEventKind.STOPPING: "t_stopping_epoch",
    ReplicaEventKind.STOPPED: "t_stopped_epoch",
}


def replica_spans(log_text: str, utc_offset_s: float) -> tuple[ReplicaSpan, ...]:
    """The LLM deployment's replicas, each from its upscale decision to "is stopped", in order of their first
    event. ``utc_offset_s``: the run timeline's (``StoredTimeline.utc_offset_s``, local minus UTC)."""
    # Time order, not log order: the driver's forwarded copies of the controller's lines arrive late and
    # interleave with the follower's.
    events = sorted((e for e in replica_events(log_text) if e.is_llm), key=lambda e: e.t_local)
    last_upscale: dict[str, datetime] = {}
    spans: dict[str, dict[str, object]] = {}
    for e in events:
        if e.kind is ReplicaEventKind.UPSCALE:
            last_upscale[e.deployment] = e.t_local
            continue
        if e.replica_id is None:
            continue  # a downscale decision names no replica: its replicas' own stops say when they went
        span = spans.setdefault(e.replica_id, {"replica_id": e.replica_id, "deployment": e.deployment})
        if e.kind is ReplicaEventKind.START_FAILED:
            if "failure" not in span:
                failure = StartFailure(t_epoch=_epoch(e.t_local, utc_offset_s), exception=e.exception, reason=e.reason)
                span["failure"] = failure.to_dict()
                if e.pid is not None:
                    span.setdefault("pid", e.pid)
            continue
        if e.kind not in _SPAN_FIELD:
            continue
        name = _SPAN_FIELD[e.kind]
        if name in span:
            continue  # the first of each state counts (a second one is a repeat of the same line)
        span[name] = _epoch(e.t_local, utc_offset_s)
        if e.kind is ReplicaEventKind.STARTING and (decided := last_upscale.get(e.deployment)) is not None:
            span["t_upscale_epoch"] = _epoch(decided, utc_offset_s)
        if e.kind is ReplicaEventKind.RUNNING and e.pid is not None:
            span["pid"] = e.pid
    _add_engine_times(log_text, spans, utc_offset_s)
    return tuple(ReplicaSpan.from_dict(s) for s in spans.values())


def _add_engine_times(log_text: str, spans: Mapping[str, dict[str, object]], utc_offset_s: float) -> None:
    """Each replica's engine start (the lab callback's ``engine_start``, from the replica's process: the pid the
    controller named) and engine ready (Ray LLM's line naming the replica), where the log has them. A replica
    the run ended before Serve marked it running has no pid from the controller (in the campaign
    2026-11-30-h200x2, two replicas started together: the burst was served by the first, the log stopped 0.3 s
    before the second ran); its own lines then name the process."""
    for m in _OWN_LINE.finditer(log_text):
        span = spans.get(m["replica"])
        if span is not None and "pid" not in span:
            span["pid"] = int(m["pid"])
    engine_starts: dict[int, float] = {}
    for event in read_events(log_text):
        if event.get("event") == "engine_start" and isinstance(event.get("pid"), int):
            engine_starts.setdefault(event["pid"], float(event["t"]))
    ready: dict[str, float] = {}
    for m in _ENGINE_READY.finditer(log_text):
        ready.setdefault(m["replica"], _epoch(_stamp(m["stamp"]), utc_offset_s))
    for replica_id, span in spans.items():
        if isinstance(pid := span.get("pid"), int) and pid in engine_starts:
            span["t_engine_start_epoch"] = engine_starts[pid]
        if replica_id in ready:
            span["t_engine_ready_epoch"] = ready[replica_id]


def served_by(log_text: str) -> Mapping[str, str]:
    """request id -> the LLM replica whose access line answered it (the ingress's own lines are skipped)."""
    out: dict[str, str] = {}
    for m in _CALL.finditer(log_text):
        if LLM_DEPLOYMENT_MARK in m["component"]:
            out.setdefault(m["request"], m["replica"])
    return out


def first_start(log_text: str) -> str:
    """The log up to the second time Serve scaled the LLM deployment up from zero (a scenario's return to
    zero and back): the part that holds the cold start the row's first request waited for. A log with one
    start from zero comes back whole."""
    rule = next(r for r in REPLICA_RULES if r.kind is ReplicaEventKind.UPSCALE)
    first_stamp: str | None = None
    offset = 0
    for line in log_text.splitlines(keepends=True):
        m = rule.pattern.search(line) if "controller" in line else None
        if m and m["from_n"] == "0" and LLM_DEPLOYMENT_MARK in m["deployment"]:
            if first_stamp is None:
                first_stamp = m["stamp"]
            elif m["stamp"] != first_stamp:  # the same decision printed twice is not a second start
                return log_text[:offset]
        offset += len(line)
    return log_text
