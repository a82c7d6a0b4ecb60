"""One run's timeline as a Chrome trace-event JSON: ``python -m analysis trace RUN_ID [--out PATH]``.

The format ``ray timeline`` and PyTorch's profiler write, which Perfetto (ui.perfetto.dev, "Open trace file")
and chrome://tracing open: ``{"traceEvents": [...], "displayTimeUnit": "ms"}``. Each timeline segment is a
complete event (``ph: "X"``, ``ts``/``dur`` in microseconds on the epoch clock) on the track of the process
that does that work; each harness ``:::COLDSTART`` event is an instant (``ph: "i"``) on the track of the
process that printed it. The ± of whole-second vLLM stamps goes into each span's ``args`` (``error_s``).

Tracks: one per process the log names, keyed by the innermost Ray/vLLM prefix's pid (a worker's line also
appears echoed through the engine core; the innermost prefix is the writer). A segment's process is a role
(``SEGMENT_ROLE``) resolved from the log; a role the log does not show (a log without prefixes, the fast
path's skipped node-init task) falls back to a track per timeline category, so no span is ever dropped.
Each process also gets an ``alive`` span, its first to last stamped line inside the run, so that every
worker rank is visible even where the timeline's engine-wide milestones sit on rank 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.analysis.events import MARKER, iter_events
from coldstart.analysis.parse import LogLine, parse_lines
from coldstart.analysis.results import ClientResult, ResultRow, load_rows
from coldstart.analysis.timeline import (
    CATEGORY,
    FAILED_STARTS_SEGMENT,
    RESTORE_SEGMENT,
    SEGMENT_LABELS,
    UNATTRIBUTED,
    build_timeline,
    detect_clock,
)

_US_PER_S = 1_000_000.0
# Synthetic pids for tracks that are no OS process (the client, a category fallback): above any Linux pid
# (pid_max is at most 2**22), so they never collide with a real one.
_SYNTHETIC_PID_BASE = 1 << 23

# Who does the work of each segment. "client": the request's sender; "controller": Serve's controller;
# "replica": the LLM replica actor; "node_init": Ray LLM's node-init task (weights fetch, compile-cache
# restore); "engine_core": vLLM's EngineCore process; "worker": rank 0's worker (inside EngineCore with the
# uni executor, so it falls back there).
SEGMENT_ROLE: Mapping[str, str] = {
    "seg_autoscale_reaction_s": "controller",  # the autoscaler notices the queued request
    FAILED_STARTS_SEGMENT: "controller",  # Serve gave up on a start and started another
    "seg_replica_actor_start_s": "replica",  # the actor's process start and imports, to its first event
    "seg_node_task_start_s": "node_init",  # the task is scheduled and imports
    RESTORE_SEGMENT: "node_init",  # overridden by the pid of the restore event (the fast path restores in-replica)
    "seg_weights_fetch_s": "node_init",
    "seg_engine_config_s": "replica",
    "seg_engine_process_spawn_s": "engine_core",  # ends at the new process's first line
    "seg_worker_start_s": "worker",
    "seg_model_load_s": "worker",
    "seg_torch_compile_s": "worker",
    "seg_profiling_s": "worker",
    "seg_kv_cache_s": "engine_core",  # the engine sizes the KV cache from every rank's report
    "seg_cuda_graph_s": "worker",
    "seg_warmup_s": "engine_core",
    "seg_engine_ready_s": "replica",  # the replica's engine client sees the core ready
    "seg_replica_ready_s": "controller",  # the controller's health check marks the replica RUNNING
    "seg_first_token_s": "client",  # routing and the first token, as the client waits for it
}
_ROLE_FALLBACK: Mapping[str, tuple[str, ...]] = {
    "worker": ("worker", "engine_core"),
    "node_init": ("node_init", "replica"),  # the fast path skips the task: the replica does its work
}


@dataclass(frozen=True)
class Track:
    pid: int
    name: str
    sort_index: int
    rank: int | None = None


@dataclass
class _Process:
    key: tuple[str | None, int]  # (ip, pid): what tells two writers apart, as in the parser's rank_key
    names: list[str]
    rank: int | None
    first_s: float | None = None  # epoch of its first and last stamped line (window middles)
    last_s: float | None = None

    @property
    def name(self) -> str:
        # "(RayWorkerProc pid=7) (Worker_TP0 pid=7)": the rank-carrying name says most; else the first seen.
        ranked = [n for n in self.names if "_TP" in n]
        # A bare "(pid=N)" (a prestarted Ray worker before it runs anything) names no process.
        return ranked[0] if ranked else (self.names[0] if self.names else "Ray worker process")


def _processes(lines: Sequence[LogLine], raw_lines: Sequence[str]) -> dict[int, _Process]:
    """pid -> the process the log shows under it, with its name and first/last stamped line."""
    clock = detect_clock(raw_lines, lines)
    out: dict[int, _Process] = {}
    for ln in lines:
        if ln.pid is None:
            continue
        ip = ln.prefixes[-1].ip if ln.prefixes else None
        proc = out.setdefault(ln.pid, _Process((ip, ln.pid), [], ln.rank))
        if ln.process and ln.process not in proc.names:
            proc.names.append(ln.process)
        if ln.rank is not None:
            proc.rank = ln.rank
        if ln.ts is not None and MARKER not in ln.raw and (t := clock.epoch(ln.ts, ln.year)) is not None:
            # vLLM stamps are truncated whole seconds: the line was written in [t, t + 1).
            mid = t if ln.year is not None else t + 0.5
            proc.first_s = mid if proc.first_s is None else min(proc.first_s, mid)
            proc.last_s = mid if proc.last_s is None else max(proc.last_s, mid)
    return out


def _event_pid(events: Sequence[dict], name: str) -> int | None:
    pid = next((e.get("pid") for e in events if e.get("event") == name), None)
    return pid if isinstance(pid, int) else None


def _roles(processes: Mapping[int, _Process], events: Sequence[dict]) -> dict[str, int]:
    """role -> pid, for the roles the log shows."""
    roles: dict[str, int] = {}

    def first(match: Any) -> int | None:
        return next((pid for pid, p in processes.items() if any(match(n) for n in p.names)), None)

    candidates = {
        "controller": first(lambda n: n.startswith("ServeController")),
        "replica": _event_pid(events, "replica_node_init_start")
        or first(lambda n: n.startswith("ServeReplica:") and "LLMServer" in n),
        "node_init": _event_pid(events, "node_fetch_start") or first(lambda n: n == "initialize_remote_node"),
        "engine_core": first(lambda n: n.startswith("EngineCore")),
    }
    workers = sorted(
        (p for p in processes.values() if any("Worker" in n and "EngineCore" not in n for n in p.names)),
        key=lambda p: (p.rank if p.rank is not None else 1 << 30, p.key[1]),
    )
    if workers:
        candidates["worker"] = workers[0].key[1]
    for role, pid in candidates.items():
        if pid is not None and pid in processes:
            roles[role] = pid
    return roles


def _category_label(category: str) -> str:
    return CATEGORY[category].label if category in CATEGORY else category


def trace_events(log_text: str, client: ClientResult | None = None, run_id: str | None = None) -> dict[str, Any]:
    """The Chrome trace of one run's log (``client``: its client result, as for ``build_timeline``)."""
    timeline = build_timeline(log_text, client)
    raw_lines = log_text.splitlines()
    lines = parse_lines(log_text)
    events = [e for raw in raw_lines if MARKER in raw for e in iter_events([raw])]
    processes = _processes(lines, raw_lines)
    roles = _roles(processes, events)

    tracks: dict[str, Track] = {}  # track key -> track; a real process's key is "pid <n>"
    synthetic = iter(range(_SYNTHETIC_PID_BASE, _SYNTHETIC_PID_BASE + 10_000))

    def real_track(pid: int) -> Track:
        key = f"pid {pid}"
        if key not in tracks:
            proc = processes.get(pid)
            name = proc.name if proc is not None else f"pid {pid}"
            tracks[key] = Track(pid, f"{name} (pid {pid})", 10 + len(tracks), proc.rank if proc else None)
        return tracks[key]

    def pseudo_track(key: str, name: str, sort_index: int) -> Track:
        if key not in tracks:
            tracks[key] = Track(next(synthetic), name, sort_index)
        return tracks[key]

    def role_track(role: str, category: str) -> Track:
        if role == "client":
            return pseudo_track("client", "client (request → first token)", 0)
        for r in _ROLE_FALLBACK.get(role, (role,)):
            if r in roles:
                return real_track(roles[r])
        # Not in the log: the category's own track, so the span is still shown (and still sums to TTFT).
        return pseudo_track(f"category {category}", f"{_category_label(category)} (process not in log)", 1000)

    out: list[dict[str, Any]] = []
    t_send = timeline.t_send_epoch
    t_end = None if t_send is None or timeline.ttft_s is None else t_send + timeline.ttft_s
    restore_pid = _event_pid(events, "compile_cache_restore_start")

    for seg in timeline.segments:
        if seg.seconds is None:
            continue
        if seg.name == RESTORE_SEGMENT and restore_pid is not None and restore_pid in processes:
            track = real_track(restore_pid)
        else:
            track = role_track(SEGMENT_ROLE.get(seg.name, seg.category), seg.category)
        for a, b in seg.intervals:
            out.append(_span(seg.label, "segment", track, a, b, seg.name, seg.category, seg.error_s))
    for a, b in timeline.gaps:
        track = pseudo_track("category unattributed", "unattributed (milestone missing from the log)", 1001)
        out.append(_span(SEGMENT_LABELS[UNATTRIBUTED], "segment", track, a, b, UNATTRIBUTED, "unattributed", None))
    if t_send is not None and t_end is not None:
        client_track = pseudo_track("client", "client (request → first token)", 0)
        span = _span("request → first token", "client", client_track, t_send, t_end, "ttft_s", "client", 0.0)
        span["args"]["ttft_s"] = timeline.ttft_s
        out.append(span)

    # Each process's lines inside the run: every process (each worker rank) gets its track.
    for pid, proc in sorted(processes.items()):
        if proc.first_s is None or proc.last_s is None:
            continue
        a, b = proc.first_s, proc.last_s
        if t_send is not None and t_end is not None:
            if b < t_send or a > t_end:
                continue  # this process logged only outside the run (a prestarted worker, the shutdown)
            a, b = max(a, t_send), min(b, t_end)
        span = _span("alive (logging)", "process", real_track(pid), a, b, "alive", "process", None)
        span["args"]["note"] = "first to last stamped line, inside the run; vLLM lines placed mid-second"
        out.append(span)

    for e in events:
        t = e.get("t")
        if not isinstance(t, int | float):
            continue
        event_pid = e.get("pid") if isinstance(e.get("pid"), int) else None
        if str(e.get("event", "")).startswith("client_"):
            track = pseudo_track("client", "client (request → first token)", 0)
        elif event_pid is not None and event_pid in processes:
            track = real_track(event_pid)
        else:
            # Unprefixed events are the service driver's own (service start, deploy, shutdown).
            track = pseudo_track("driver", "service driver (unprefixed lines)", 1)
        args = {k: v for k, v in e.items() if k not in ("event", "t") and isinstance(v, str | int | float | bool)}
        out.append(
            {
                "name": str(e["event"]),
                "cat": "coldstart_event",
                "ph": "i",
                "s": "t",
                "ts": float(t) * _US_PER_S,
                "pid": track.pid,
                "tid": track.pid,
                "args": args,
            }
        )

    meta: list[dict[str, Any]] = []
    for track in tracks.values():
        meta += [
            {"name": "process_name", "ph": "M", "pid": track.pid, "tid": track.pid, "args": {"name": track.name}},
            {"name": "thread_name", "ph": "M", "pid": track.pid, "tid": track.pid, "args": {"name": track.name}},
            {
                "name": "process_sort_index",
                "ph": "M",
                "pid": track.pid,
                "tid": track.pid,
                "args": {"sort_index": track.sort_index},
            },
        ]
    return {
        "traceEvents": meta + sorted(out, key=lambda ev: (ev["ts"], -ev.get("dur", 0.0))),
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": run_id,
            "t_send_epoch": t_send,
            "ttft_s": timeline.ttft_s,
            "unattributed_s": timeline.unattributed_s,
            "notes": list(timeline.notes),
            "clock": "ts in microseconds since the Unix epoch (UTC)",
        },
    }


def _span(
    label: str,
    cat: str,
    track: Track,
    start_epoch: float,
    end_epoch: float,
    name: str,
    category: str,
    error_s: float | None,
) -> dict[str, Any]:
    return {
        "name": label,
        "cat": cat,
        "ph": "X",
        "ts": start_epoch * _US_PER_S,
        "dur": max(0.0, end_epoch - start_epoch) * _US_PER_S,
        "pid": track.pid,
        "tid": track.pid,
        "args": {"segment": name, "category": category, "seconds": end_epoch - start_epoch, "error_s": error_s},
    }


# ---------------------------------------------------------------------------------------------------------
# Finding a run's log


def find_log(run_id: str, rows: Sequence[ResultRow], logs_root: Path, lab: Path | None = None) -> Path | None:
    """The run's log: its row's ``log_path`` (a relative one is in ``lab``, default the lab's folder), else
    ``<logs_root>/<model>/<experiment>/<run_id>.log``."""
    row = next((r for r in rows if r.run_id == run_id), None)
    if row is not None and row.log_path and (stored := (lab or paths.lab_dir()) / row.log_path).is_file():
        return stored
    if row is not None and (p := logs_root / row.model / row.experiment / f"{run_id}.log").is_file():
        return p
    return next(iter(sorted(logs_root.glob(f"*/*/{run_id}.log"))), None) if logs_root.is_dir() else None


def client_of(log: Path, row: ResultRow | None) -> ClientResult | None:
    """The run's client result: its sidecar beside the log, else its row's (as ``collect.collect`` does)."""
    sidecar = log.with_suffix(".client.json")
    if sidecar.is_file():
        return ClientResult.from_dict(json.loads(sidecar.read_text()))
    return row.client if row is not None else None


def write_trace(log: Path, out: Path, client: ClientResult | None, run_id: str) -> Path:
    trace = trace_events(log.read_text(errors="replace"), client, run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(trace, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (results.jsonl run_id, or a log's file stem)")
    # graphs/*.trace.json is gitignored: regenerated, like the timeline PNGs.
    parser.add_argument("--out", type=Path, default=None, help=f"default: {paths.graphs_dir()}/<run_id>.trace.json")
    parser.add_argument("--results", type=Path, default=paths.results_file(), help="default: %(default)s")
    parser.add_argument(
        "--logs",
        type=Path,
        default=paths.output_root(),
        help="run tree: <model>/<experiment>/<run>.log (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    rows = load_rows(args.results)
    # A row's relative log path is relative to the lab that holds its results file (results/results.jsonl).
    log = find_log(args.run_id, rows, args.logs, lab=args.results.parent.parent)
    if log is None:
        print(f"error: no log for run {args.run_id} (not in {args.results}, nor under {args.logs})", file=sys.stderr)
        return 2
    row = next((r for r in rows if r.run_id == args.run_id), None)
    out = args.out or paths.graphs_dir() / f"{args.run_id}.trace.json"
    write_trace(log, out, client_of(log, row), args.run_id)
    print(f"wrote {out} (open it in https://ui.perfetto.dev or chrome://tracing)")
    return 0
