"""One clock for a whole cold start, and the phases nobody logs, from the request to the first token.

Sources and their precision:

* Harness events (``:::COLDSTART``) and the client's ``t_send_epoch`` / TTFT: absolute epoch seconds.
* Ray lines (``INFO 2026-11-22 19:04:28,770 controller ...``): local wall time with year and milliseconds.
* vLLM lines (``INFO 11-22 19:06:36 [...]``): local wall time, no year, whole seconds (truncated). A
  milestone taken from one is placed mid-second (``+0.5 s``), so it is good to ±0.5 s and a segment
  between two of them to ±1 s; where an exact neighbour bounds it, the bound is applied (see
  ``_tighten``).

Ray and vLLM print local time. The offset to UTC is computed, not assumed: each harness event (and each
ISO ``...Z`` stamp some libraries print) is paired with the nearest stamped log line, and the difference,
rounded to the 15 minutes every real time zone is a multiple of, is the offset (median over pairs). The
year of a vLLM stamp is the one that puts it nearest those references (a log may cross New Year).

Segments are consecutive, between milestones in ``CHAIN`` order, so they telescope: with every milestone
present they sum to the client's TTFT exactly (the last one absorbs float rounding). A milestone missing
from the log makes both segments that touch it ``None``, and the time between the present milestones on
either side is reported as ``unattributed_s``: never silently 0. The compile-cache restore happens inside
the weights-fetch task; it is carved out of whatever interval holds it.

The milestones assume one cold start per log (the first scale-up): the first occurrence of a start, the
last of an end.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from coldstart.analysis.events import MARKER, iter_events
from coldstart.analysis.parse import LogLine, ParsedLog, Span, Stamp, parse_lines, parse_log, to_phase_table
from coldstart.analysis.results import Audit, ClientResult, StoredTimeline

# Half-widths of the window a milestone's true time lies in: harness events and the client are exact; Ray
# prints milliseconds; vLLM whole seconds, truncated, so its stamp s means somewhere in [s, s+1).
EVENT_ERROR_S = 0.0
RAY_ERROR_S = 0.0005
VLLM_ERROR_S = 0.5
# Every time zone in use is a whole multiple of 15 minutes away from UTC.
_TZ_STEP_S = 900.0
# A log with no year anywhere (older vLLM-only captures) still gets a timeline, relative only; a leap year
# so that a Feb 29 stamp exists.
_PLACEHOLDER_YEAR = 2000
# How far (in lines) to look for a stamped neighbour of a reference line.
_NEIGHBOUR_LINES = 40


@dataclass(frozen=True)
class SegmentDef:
    name: str
    label: str
    category: str
    end: str  # the milestone that ends it; it starts at the previous milestone in CHAIN


# Milestones in causal order: each one cannot happen before the previous one.
CHAIN: tuple[str, ...] = (
    "client_send",
    "upscale",
    "replica_node_init_start",
    "node_fetch_start",
    "engine_start",
    "engine_config_done",
    "engine_core_start",
    "workers_start",
    "model_loaded",
    "torch_compile_done",
    "profiling_done",
    "kv_cache_ready",
    "cuda_graphs_done",
    "engine_init_done",
    "engine_ready",
    "replica_ready",
    "first_token",
)

RESTORE_SEGMENT = "seg_compile_cache_restore_s"
UNATTRIBUTED = "unattributed_s"


@dataclass(frozen=True)
class Category:
    """One slice of a stacked bar: every table, legend and colour of a category comes from here."""

    name: str  # key in rows and tables (``cat_<name>_s``)
    label: str  # legend text
    short: str  # column heading of the Markdown / terminal tables
    colour: str  # fill of its bar slice and Gantt row (Tableau 10)


# The categories a stacked bar shows, bottom up: the ancestor's (weights download, model load, torch.compile,
# CUDA graphs, KV cache/profiling) plus what this lab measures instead of a constant overhead.
CATEGORIES: tuple[Category, ...] = (
    Category("ray_serve", "Ray/Serve overhead (measured)", "Ray/Serve", "#4e79a7"),
    Category("engine_startup", "vLLM engine start (config, processes, imports)", "engine start", "#a0cbe8"),
    Category("weights_download", "weights download", "weights", "#f28e2b"),
    Category("compile_cache_restore", "compile-cache restore", "cc restore", "#ffbe7d"),
    Category("model_load", "model load", "load", "#59a14f"),
    Category("torch_compile", "torch.compile", "compile", "#e15759"),
    Category("kv_cache_profiling", "KV cache / profiling", "KV/prof.", "#b07aa1"),
    Category("cuda_graphs", "CUDA graphs", "graphs", "#edc948"),
    Category("warmup_ready", "warmup + engine ready (unlogged)", "warmup", "#9c755f"),
    Category("unattributed", "unattributed / not measured", "unattr.", "#d4d0cc"),
)
CATEGORY: Mapping[str, Category] = {c.name: c for c in CATEGORIES}

# The segments, in chain order; the restore is carved out of the weights fetch (it runs inside that task).
SEGMENTS: tuple[SegmentDef, ...] = (
    SegmentDef("seg_autoscale_reaction_s", "autoscaler reaction (request → upscale)", "ray_serve", "upscale"),
    SegmentDef(
        "seg_replica_actor_start_s",
        "replica actor start (placement, process, imports)",
        "ray_serve",
        "replica_node_init_start",
    ),
    SegmentDef("seg_node_task_start_s", "node-init task start (Ray task, imports)", "ray_serve", "node_fetch_start"),
    SegmentDef(RESTORE_SEGMENT, "compile-cache restore", "compile_cache_restore", "engine_start"),
    SegmentDef("seg_weights_fetch_s", "weights fetch (node init)", "weights_download", "engine_start"),
    SegmentDef("seg_engine_config_s", "engine config (→ executor chosen)", "engine_startup", "engine_config_done"),
    SegmentDef("seg_engine_process_spawn_s", "engine-core process spawn", "engine_startup", "engine_core_start"),
    SegmentDef("seg_worker_start_s", "worker start (spawn, imports, dist. init)", "engine_startup", "workers_start"),
    SegmentDef("seg_model_load_s", "model load", "model_load", "model_loaded"),
    SegmentDef("seg_torch_compile_s", "torch.compile (or cache load)", "torch_compile", "torch_compile_done"),
    SegmentDef("seg_profiling_s", "profiling run", "kv_cache_profiling", "profiling_done"),
    SegmentDef("seg_kv_cache_s", "KV cache sizing", "kv_cache_profiling", "kv_cache_ready"),
    SegmentDef("seg_cuda_graph_s", "CUDA graph capture", "cuda_graphs", "cuda_graphs_done"),
    SegmentDef("seg_warmup_s", "warmup after capture (unlogged)", "warmup_ready", "engine_init_done"),
    SegmentDef("seg_engine_ready_s", "engine init done → engine ready", "warmup_ready", "engine_ready"),
    SegmentDef("seg_replica_ready_s", "engine ready → replica RUNNING", "ray_serve", "replica_ready"),
    SegmentDef("seg_first_token_s", "routing + first token", "ray_serve", "first_token"),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(s.name for s in SEGMENTS)
SEGMENT_LABELS: Mapping[str, str] = {**{s.name: s.label for s in SEGMENTS}, UNATTRIBUTED: "unattributed"}
SEGMENT_CATEGORY: Mapping[str, str] = {**{s.name: s.category for s in SEGMENTS}, UNATTRIBUTED: "unattributed"}
_CHAIN_SEGMENTS = tuple(s for s in SEGMENTS if s.name != RESTORE_SEGMENT)


@dataclass(frozen=True)
class Milestone:
    name: str
    t_epoch: float  # best estimate: the middle of the window it is known to lie in
    error_s: float  # half-width of that window
    source: str  # which event or log line it came from


@dataclass(frozen=True)
class Segment:
    name: str
    label: str
    category: str
    seconds: float | None
    error_s: float | None = None  # ± from the precision of its two endpoints
    intervals: tuple[tuple[float, float], ...] = ()  # epoch (start, end); more than one when carved


@dataclass(frozen=True)
class Clock:
    """Local log time -> epoch. ``utc_offset_s`` is local minus UTC (0 on the lab's machines)."""

    utc_offset_s: float
    offset_detected: bool  # False: no reference in the log, local time taken as UTC
    reference_epoch: float | None  # anchors the year of year-less stamps
    default_year: int  # a year printed in the log, used when there is no reference epoch
    year_known: bool  # False: no year anywhere in the log; epochs are only good relative to each other

    def epoch(self, stamp: Stamp, year: int | None = None) -> float | None:
        if year is not None:
            naive = _naive_epoch(stamp, year)  # None: Feb 29 printed with a year that has none
            return None if naive is None else naive - self.utc_offset_s
        if (reference := self.reference_epoch) is not None:
            ref_year = datetime.fromtimestamp(reference, timezone.utc).year
            candidates = [
                e - self.utc_offset_s
                for y in (ref_year - 1, ref_year, ref_year + 1)
                if (e := _naive_epoch(stamp, y)) is not None
            ]
            return min(candidates, key=lambda e: abs(e - reference)) if candidates else None
        naive = _naive_epoch(stamp, self.default_year)
        return None if naive is None else naive - self.utc_offset_s


@dataclass(frozen=True)
class Timeline:
    clock: Clock
    milestones: tuple[Milestone, ...]  # chain order; only those found
    segments: tuple[Segment, ...]  # every SEGMENTS entry, in order; seconds None where not measurable
    gaps: tuple[tuple[float, float], ...]  # epoch intervals between present milestones that skip a missing one
    unattributed_s: float | None  # None when there is no request-to-token total to attribute
    t_send_epoch: float | None
    ttft_s: float | None
    startup_span_s: float | None  # logs without a request: the LLM replica's first line -> engine ready
    notes: tuple[str, ...]

    def milestone(self, name: str) -> Milestone | None:
        return next((m for m in self.milestones if m.name == name), None)

    def segment_seconds(self) -> dict[str, float | None]:
        """``seg_*`` seconds plus ``unattributed_s``; with a TTFT they sum to it."""
        out: dict[str, float | None] = {s.name: s.seconds for s in self.segments}
        out[UNATTRIBUTED] = self.unattributed_s
        return out

    def spans(self) -> list[dict[str, Any]]:
        """Gantt rows, seconds since the request (or the first milestone without one), in time order."""
        origin = (
            self.t_send_epoch
            if self.t_send_epoch is not None
            else (self.milestones[0].t_epoch if self.milestones else None)
        )
        if origin is None:
            return []
        rows = [
            {
                "name": s.name,
                "label": s.label,
                "category": s.category,
                "start_s": a - origin,
                "end_s": b - origin,
                "error_s": s.error_s,
            }
            for s in self.segments
            if s.seconds is not None
            for a, b in s.intervals
        ]
        rows += [
            {
                "name": UNATTRIBUTED,
                "label": SEGMENT_LABELS[UNATTRIBUTED],
                "category": "unattributed",
                "start_s": a - origin,
                "end_s": b - origin,
                "error_s": None,
            }
            for a, b in self.gaps
        ]
        return sorted(rows, key=lambda r: (r["start_s"], r["end_s"]))

    def stored(self) -> StoredTimeline:
        """What a result row keeps of it (``ResultRow.timeline``)."""
        return StoredTimeline.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, the shape of a result row's ``extra["timeline"]``: what the Gantt plot reads."""
        return {
            "segments": self.segment_seconds(),
            "spans": self.spans(),
            "ttft_s": self.ttft_s,
            "t_send_epoch": self.t_send_epoch,
            "startup_span_s": self.startup_span_s,
            "utc_offset_s": self.clock.utc_offset_s,
            "utc_offset_detected": self.clock.offset_detected,
            "segment_error_s": {s.name: s.error_s for s in self.segments if s.seconds is not None},
            "milestones": {
                m.name: {"t_epoch": m.t_epoch, "error_s": m.error_s, "source": m.source} for m in self.milestones
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunSummary:
    phases: dict[str, float | None]  # parser durations as logged (PHASE_COLUMNS) + seg_* + unattributed_s
    audit: Audit  # the flags the log shows; not yet judged against an experiment (``audit.audit``)
    timeline: Timeline


# ---------------------------------------------------------------------------------------------------------
# The clock

_ISO_Z_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)Z")


def _naive_epoch(stamp: Stamp, year: int) -> float | None:
    """The stamp read as if it were UTC; None for a date that does not exist in that year (Feb 29)."""
    mo, d, h, mi, s = stamp
    try:
        base = datetime(year, mo, d, h, mi, tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
    return base + s


def _references(raw_lines: Sequence[str], lines: Sequence[LogLine]) -> list[tuple[int, float]]:
    """(line index, true epoch) of every line that carries an absolute time: harness events, ISO ``Z`` stamps."""
    refs: list[tuple[int, float]] = []
    for i, raw in enumerate(raw_lines):
        if MARKER in raw:
            for body in iter_events([raw]):
                if isinstance(body.get("t"), (int, float)):
                    refs.append((i, float(body["t"])))
        elif lines[i].ts is None and (m := _ISO_Z_RE.search(lines[i].text)):
            y, mo, d, h, mi, s = m.groups()
            stamp = (int(mo), int(d), int(h), int(mi), float(s))
            if (e := _naive_epoch(stamp, int(y))) is not None:
                refs.append((i, e))
    return refs


def _nearest_stamped(lines: Sequence[LogLine], i: int) -> LogLine | None:
    for k in range(1, _NEIGHBOUR_LINES + 1):
        for j in (i - k, i + k):
            if 0 <= j < len(lines) and lines[j].ts is not None:
                return lines[j]
    return None


def detect_clock(raw_lines: Sequence[str], lines: Sequence[LogLine]) -> Clock:
    """The log's local-time offset to UTC, from each absolute reference and its nearest stamped line."""
    refs = _references(raw_lines, lines)
    offsets: list[float] = []
    for i, t in refs:
        near = _nearest_stamped(lines, i)
        if near is None or near.ts is None:
            continue
        ref_year = datetime.fromtimestamp(t, timezone.utc).year
        near_years = (near.year,) if near.year is not None else (ref_year - 1, ref_year, ref_year + 1)
        diffs = [e - t for y in near_years if (e := _naive_epoch(near.ts, y)) is not None]
        if diffs:
            diff = min(diffs, key=abs)
            offsets.append(round(diff / _TZ_STEP_S) * _TZ_STEP_S)
    years = [ln.year for ln in lines if ln.year is not None]
    reference = refs[0][1] if refs else None
    year_known = bool(years) or reference is not None
    default_year = years[0] if years else _PLACEHOLDER_YEAR
    if not offsets:
        return Clock(0.0, False, reference, default_year, year_known)
    offset = round(statistics.median(offsets) / _TZ_STEP_S) * _TZ_STEP_S
    return Clock(float(offset), True, reference, default_year, year_known)


# ---------------------------------------------------------------------------------------------------------
# Milestones

_EXECUTOR_RE = re.compile(r"Using executor class")
_KV_RE = re.compile(r"GPU KV cache size: |Available KV cache memory: ")
_AOT_RE = re.compile(r"saved AOT compiled function to |Directly load AOT compilation from path ")
_WORKER_RE = re.compile(r"Worker")
_LOAD_START_RE = re.compile(r"Starting to load model|Loading model from scratch")  # V1 and V2 model runners


def _line_window(line: LogLine, clock: Clock) -> tuple[float, float] | None:
    """(earliest, latest) epoch the line can have been written at."""
    if line.ts is None or (t := clock.epoch(line.ts, line.year)) is None:
        return None
    if line.year is not None:  # Ray's formats: milliseconds
        return (t - RAY_ERROR_S, t + RAY_ERROR_S)
    return (t, t + 2 * VLLM_ERROR_S)


def _window_milestone(name: str, window: tuple[float, float], source: str) -> Milestone:
    lo, hi = window
    return Milestone(name, (lo + hi) / 2, (hi - lo) / 2, source)


def _pick_first(name: str, lines: Iterable[LogLine], clock: Clock) -> Milestone | None:
    """The first line any of these processes wrote. A process's own lines are in order in the log, so its
    first one is its earliest; a later exact line of the same process bounds a whole-second first line."""
    first: dict[object, tuple[LogLine, tuple[float, float]]] = {}
    bound: dict[object, float] = {}
    for ln in lines:
        if (w := _line_window(ln, clock)) is None:
            continue
        key = ln.rank_key
        if key not in first:
            first[key] = (ln, w)
        elif ln.year is not None and key not in bound:
            bound[key] = w[1]
    found = []
    for rank, (ln, (lo, hi)) in first.items():
        if rank in bound and lo <= bound[rank] < hi:
            hi = bound[rank]
        found.append(_window_milestone(name, (lo, hi), ln.text[:160]))
    return min(found, key=lambda m: m.t_epoch) if found else None


def _pick_last(name: str, lines: Iterable[LogLine], clock: Clock) -> Milestone | None:
    found = [(w, ln) for ln in lines if (w := _line_window(ln, clock)) is not None]
    if not found:
        return None
    w, ln = max(found, key=lambda f: f[0][1])
    return _window_milestone(name, w, ln.text[:160])


def _span_milestone(name: str, span: Span | None, clock: Clock, source: str) -> Milestone | None:
    """The END of a phase: the last stamp of its lines, over all ranks (the engine waits for the slowest)."""
    if span is None or (t := clock.epoch(span.last, span.year)) is None:
        return None
    window = (t - RAY_ERROR_S, t + RAY_ERROR_S) if span.year is not None else (t, t + 2 * VLLM_ERROR_S)
    return _window_milestone(name, window, source)


def _stamp_milestone(name: str, stamp: Stamp | None, year: int | None, clock: Clock, source: str) -> Milestone | None:
    return _span_milestone(name, None if stamp is None else Span(stamp, stamp, year), clock, source)


def _event_milestone(name: str, events: Sequence[dict], event: str, *, last: bool = False) -> Milestone | None:
    ts = [float(e["t"]) for e in events if e.get("event") == event and isinstance(e.get("t"), (int, float))]
    if not ts:
        return None
    return Milestone(name, max(ts) if last else min(ts), EVENT_ERROR_S, f"event {event}")


def _client_times(client: ClientResult | None, events: Sequence[dict]) -> tuple[float | None, float | None]:
    """(send epoch, TTFT) from the client's result, else the client events in the log."""
    if client is not None and client.t_send_epoch is not None:
        return float(client.t_send_epoch), (None if client.ttft_s is None else float(client.ttft_s))
    send = next((e for e in events if e.get("event") == "client_send"), None)
    first = next((e for e in events if e.get("event") == "client_first_token"), None)
    if send is None:
        return None, None
    ttft = first.get("ttft_s") if first else None
    if ttft is None and first is not None:
        ttft = float(first["t"]) - float(send["t"])
    return float(send["t"]), (None if ttft is None else float(ttft))


def _first_of(*candidates: Milestone | None) -> Milestone | None:
    return next((c for c in candidates if c is not None), None)


def _find_milestones(
    lines: Sequence[LogLine], parsed: ParsedLog, clock: Clock, t_send: float | None, ttft_s: float | None
) -> dict[str, Milestone]:
    ev, ray, spans = parsed.events, parsed.ray, parsed.spans
    found: dict[str, Milestone | None] = {
        "client_send": None if t_send is None else Milestone("client_send", t_send, EVENT_ERROR_S, "client"),
        "upscale": _first_of(
            _stamp_milestone("upscale", ray.upscale_ts, ray.year, clock, "Serve: Upscaling"),
            _stamp_milestone("upscale", ray.replica_add_ts, ray.year, clock, "Serve: Adding replica"),
        ),
        "replica_node_init_start": _event_milestone("replica_node_init_start", ev, "replica_node_init_start"),
        # The replica waits for every node's task: the slowest node reaching its fetch gates the rest.
        "node_fetch_start": _first_of(
            _event_milestone("node_fetch_start", ev, "node_fetch_start", last=True),
            # Fast path: no node-init task; the replica restores the compile cache itself from here on.
            _event_milestone("node_fetch_start", ev, "node_init_skipped"),
        ),
        "engine_start": _first_of(
            _event_milestone("engine_start", ev, "engine_start"),
            _event_milestone("engine_start", ev, "replica_node_init_end"),
        ),
        "engine_config_done": _first_of(
            _pick_first("engine_config_done", (ln for ln in lines if _EXECUTOR_RE.search(ln.message)), clock),
            # Fast path: the config is built in the replica, which says when it is done.
            _event_milestone("engine_config_done", ev, "engine_config_end"),
        ),
        "engine_core_start": _pick_first(
            "engine_core_start", (ln for ln in lines if ln.process and ln.process.startswith("EngineCore")), clock
        ),
        "workers_start": _first_of(
            _pick_first(
                "workers_start",
                (ln for ln in lines if ln.process and _WORKER_RE.search(ln.process) and "EngineCore" not in ln.process),
                clock,
            ),
            # The uni executor runs the worker inside EngineCore: it starts when that process starts loading.
            _pick_first(
                "workers_start",
                (
                    ln
                    for ln in lines
                    if ln.process and ln.process.startswith("EngineCore") and _LOAD_START_RE.search(ln.message)
                ),
                clock,
            ),
        ),
        "model_loaded": _first_of(
            _span_milestone("model_loaded", spans.get("model_load_s"), clock, "vLLM: Model loading took"),
            _span_milestone("model_loaded", spans.get("weights_load_s"), clock, "vLLM: Loading weights took"),
            _span_milestone("model_loaded", spans.get("runai_stream_s"), clock, "vLLM: RunAI streamer done"),
        ),
        "torch_compile_done": _first_of(
            _span_milestone("torch_compile_done", spans.get("torch_compile_s"), clock, "vLLM: torch.compile took"),
            _span_milestone("torch_compile_done", spans.get("compile_cache_load_s"), clock, "vLLM: cache load"),
            _pick_last("torch_compile_done", (ln for ln in lines if _AOT_RE.search(ln.message)), clock),
        ),
        "profiling_done": _span_milestone(
            "profiling_done", spans.get("profiling_s"), clock, "vLLM: Initial profiling/warmup run took"
        ),
        "kv_cache_ready": _pick_last("kv_cache_ready", (ln for ln in lines if _KV_RE.search(ln.message)), clock),
        "cuda_graphs_done": _span_milestone(
            "cuda_graphs_done", spans.get("cuda_graph_s"), clock, "vLLM: Graph capturing finished"
        ),
        "engine_init_done": _span_milestone(
            "engine_init_done", spans.get("engine_init_s"), clock, "vLLM: init engine took"
        ),
        "engine_ready": _stamp_milestone(
            "engine_ready", ray.engine_started_ts, ray.year, clock, "Ray LLM: Started vLLM engine"
        ),
        "replica_ready": _stamp_milestone(
            "replica_ready", ray.replica_started_ts, ray.year, clock, "Serve: Replica started successfully"
        ),
        "first_token": None
        if t_send is None or ttft_s is None
        else Milestone("first_token", t_send + ttft_s, EVENT_ERROR_S, "client"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _tighten(chain: list[Milestone]) -> tuple[list[Milestone], list[str]]:
    """Narrow each milestone's window to what its neighbours allow (the chain is causal: a milestone is not
    before the previous one), then take the middle. Milestones out of order beyond their windows are kept as
    they are and reported."""
    lo = [m.t_epoch - m.error_s for m in chain]
    hi = [m.t_epoch + m.error_s for m in chain]
    notes: list[str] = []
    for i in range(1, len(chain)):
        if lo[i - 1] <= hi[i]:
            lo[i] = max(lo[i], lo[i - 1])
        else:
            notes.append(f"{chain[i].name} is {lo[i - 1] - hi[i]:.3f} s before {chain[i - 1].name}: out of order")
    for i in range(len(chain) - 2, -1, -1):
        if hi[i + 1] >= lo[i]:
            hi[i] = min(hi[i], hi[i + 1])
    return [Milestone(m.name, (lo[i] + hi[i]) / 2, (hi[i] - lo[i]) / 2, m.source) for i, m in enumerate(chain)], notes


def _carve(intervals: list[tuple[float, float]], cut: tuple[float, float]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in intervals:
        if cut[1] <= a or cut[0] >= b:
            out.append((a, b))
            continue
        if cut[0] > a:
            out.append((a, cut[0]))
        if cut[1] < b:
            out.append((cut[1], b))
    return out


def _restore_interval(events: Sequence[dict], before: float | None = None) -> tuple[float, float] | None:
    """Wall-clock span during which some node restored the compile cache (nodes restore in parallel).
    ``before``: only restores that began by then (the first token): a scenario's later replica starts restore
    again, and the span from the first restore to the last would swallow the whole first start."""
    starts = [
        float(e["t"])
        for e in events
        if e.get("event") == "compile_cache_restore_start" and (before is None or float(e["t"]) <= before)
    ]
    ends = [
        float(e["t"])
        for e in events
        if e.get("event") == "compile_cache_restore_end" and (not starts or float(e["t"]) >= min(starts))
    ]
    if starts and before is not None:
        # The restores of this start end before anything of a later one begins.
        ends = [t for t in ends if t <= before] or ends[:1]
    if not starts or not ends or max(ends) < min(starts):
        return None
    return (min(starts), max(ends))


def _total(intervals: Iterable[tuple[float, float]]) -> float:
    return sum((b - a for a, b in intervals), 0.0)


def _build(
    raw_lines: Sequence[str], lines: Sequence[LogLine], parsed: ParsedLog, client: ClientResult | None
) -> Timeline:
    clock = detect_clock(raw_lines, lines)
    t_send, ttft_s = _client_times(client, parsed.events)
    found = _find_milestones(lines, parsed, clock, t_send, ttft_s)
    chain, notes = _tighten([found[name] for name in CHAIN if name in found])
    at = {m.name: m for m in chain}

    intervals: dict[str, list[tuple[float, float]]] = {}
    errors: dict[str, float] = {}
    gaps: list[tuple[float, float]] = []
    present = [name for name in CHAIN if name in at]
    for prev, nxt in itertools.pairwise(present):
        span = (at[prev].t_epoch, at[nxt].t_epoch)
        if CHAIN.index(nxt) == CHAIN.index(prev) + 1:
            seg = next(s for s in _CHAIN_SEGMENTS if s.end == nxt)
            intervals[seg.name] = [span]
            errors[seg.name] = at[prev].error_s + at[nxt].error_s
        else:
            gaps.append(span)

    first_token = t_send + ttft_s if t_send is not None and ttft_s is not None else None
    restore = _restore_interval(parsed.events, before=first_token)
    if restore is not None:
        # Carve the restore out of whatever holds it (the weights fetch, or a gap when a milestone is missing).
        for name, ivs in intervals.items():
            intervals[name] = _carve(ivs, restore)
        gaps = _carve(gaps, restore)
        intervals[RESTORE_SEGMENT] = [restore]
        errors[RESTORE_SEGMENT] = EVENT_ERROR_S

    segments = [
        Segment(s.name, s.label, s.category, _total(intervals[s.name]), errors[s.name], tuple(intervals[s.name]))
        if s.name in intervals
        else Segment(s.name, s.label, s.category, None)
        for s in SEGMENTS
    ]
    unattributed = _total(gaps) if "client_send" in at and "first_token" in at else None
    if unattributed is not None and ttft_s is not None:
        # Float rounding of epoch differences (~1e-7 s): the piece that ends last absorbs it, so the sum is TTFT.
        residual = ttft_s - (sum(s.seconds for s in segments if s.seconds is not None) + unattributed)
        measured = [s for s in segments if s.seconds is not None and s.intervals]
        last_seg = max(measured, key=lambda s: s.intervals[-1][1]) if measured else None
        if gaps and (last_seg is None or gaps[-1][1] >= last_seg.intervals[-1][1]):
            unattributed += residual
        elif last_seg is not None:
            i = segments.index(last_seg)
            assert last_seg.seconds is not None, "picked from the measured segments"
            segments[i] = dataclasses.replace(last_seg, seconds=last_seg.seconds + residual)

    if clock.offset_detected:
        notes.append(f"local time = UTC{clock.utc_offset_s / 3600:+g} h, from the harness events/UTC stamps")
    else:
        notes.append("no absolute reference in the log: local time taken as UTC")
    if not clock.year_known:
        notes.append("no year in the log: epoch values are relative only")
    if any(m.error_s >= VLLM_ERROR_S / 2 for m in chain):
        notes.append(
            "vLLM stamps are whole seconds: those milestones are placed mid-second (±0.5 s), "
            "a segment between two of them is ±1 s (Segment.error_s)"
        )
    missing = [name for name in CHAIN if name not in at]
    if missing and t_send is not None:
        notes.append("missing milestones: " + ", ".join(missing))

    startup_span = None
    if t_send is None:
        # A deploy-time capture (no request): from the LLM replica's first line, not the driver's, whose
        # cluster and Serve start-up is no part of a replica's cold start.
        replica = [ln for ln in lines if any(p.name and "LLMServer" in p.name for p in ln.prefixes)]
        starts = [(w[0] + w[1]) / 2 for ln in (replica or lines) if (w := _line_window(ln, clock)) is not None]
        end = at.get("engine_ready") or at.get("engine_init_done")
        if starts and end is not None:
            startup_span = end.t_epoch - min(starts)
    return Timeline(
        clock=clock,
        milestones=tuple(chain),
        segments=tuple(segments),
        gaps=tuple(gaps),
        unattributed_s=unattributed,
        t_send_epoch=t_send,
        ttft_s=ttft_s,
        startup_span_s=startup_span,
        notes=tuple(notes),
    )


def build_timeline(log_text: str, client: ClientResult | None = None) -> Timeline:
    """Every milestone of one cold start on the epoch clock, and the segments between them.

    ``client``: the client's result (``<run_id>.client.json``, a row's ``client``); without it, the
    ``client_send``/``client_first_token`` events in the log are used.
    """
    from coldstart.analysis.serve_log import first_start

    log_text = first_start(log_text)
    lines = parse_lines(log_text)
    return _build(log_text.splitlines(), lines, parse_log(log_text, lines), client)


def _restore_audit(events: Sequence[dict]) -> dict[str, Any]:
    ends = [e for e in events if e.get("event") == "compile_cache_restore_end"]
    if not ends:
        return {"compile_cache_restore_status": None, "compile_cache_restore_s": None}
    statuses = sorted({str(e.get("status")) for e in ends})
    seconds = [float(e["restore_s"]) for e in ends if isinstance(e.get("restore_s"), (int, float))]
    return {
        # Several nodes: one status when they agree, else all of them (a partial restore is not a hit).
        "compile_cache_restore_status": statuses[0] if len(statuses) == 1 else "/".join(statuses),
        "compile_cache_restore_s": max(seconds) if seconds else None,
    }


# Not a phase of the wait: the median seconds the run's prestarted Ray workers took to import vLLM, before the
# request and in the same conditions. A speed probe of the host at that moment, which the measurement does not
# touch (s9: runs whose workers imported in 17-19 s took 14.5-15.8 s; one at 24.5 s took 22.5 s).
PRESTART_IMPORT = "prestart_import_s"


def prestart_import_s(events: Sequence[Mapping[str, Any]]) -> float | None:
    """Median ``import_s`` of the run's ``worker_preloaded`` events; None without prestarted workers."""
    seconds = [float(e["import_s"]) for e in events if e.get("event") == "worker_preloaded" and "import_s" in e]
    return statistics.median(seconds) if seconds else None


def summarize_run(log_text: str, client: ClientResult | None = None) -> RunSummary:
    """Phases as logged + the timeline segments, and the audit flags, of one service log (split into lines
    once: the parser and the timeline read the same lines). A scenario that went back to zero and started
    again is summarized up to its second start: the row's TTFT is the first start's."""
    from coldstart.analysis.serve_log import first_start

    log_text = first_start(log_text)
    lines = parse_lines(log_text)
    parsed = parse_log(log_text, lines)
    timeline = _build(log_text.splitlines(), lines, parsed, client)
    phases: dict[str, float | None] = {
        **to_phase_table(parsed),
        **timeline.segment_seconds(),
        PRESTART_IMPORT: prestart_import_s(parsed.events),
    }
    audit = Audit(
        compile_cache_hit=parsed.vllm.compile_cache_hit,
        aot_cache_hit=parsed.vllm.aot_cache_hit,
        **_restore_audit(parsed.events),
    )
    return RunSummary(phases=phases, audit=audit, timeline=timeline)
