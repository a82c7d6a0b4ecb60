"""A timeline built: the milestones tightened against each other, the segments between them, the gaps.

Segments are consecutive, between milestones in ``CHAIN`` order, so they telescope: with every milestone
present they sum to the client's TTFT exactly (the last one absorbs float rounding). A milestone missing
from the log makes both segments that touch it ``None``, and the time between the present milestones on
either side is reported as ``unattributed_s``: never silently 0. The compile-cache restore happens inside
the weights-fetch task; it is carved out of whatever interval holds it.

Replica starts that Serve gave up on before the one that served the first token (their constructor raised, their
process or node died) are carved out the same way, as one segment from the first of them to the start that served;
their processes' lines and events are left out of the milestones, which then all come from the start that served.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coldstart.analysis.events import iter_events
from coldstart.analysis.parse import LogLine, ParsedLog, parse_lines, parse_log
from coldstart.analysis.results import ClientResult, ReplicaSpan
from coldstart.analysis.serve_log import first_start, replica_spans, served_by
from coldstart.analysis.timeline.clock import EVENT_ERROR_S, RAY_ERROR_S, VLLM_ERROR_S, Clock, detect_clock
from coldstart.analysis.timeline.milestones import client_times, find_milestones, line_window
from coldstart.analysis.timeline.model import Milestone, Segment, Timeline
from coldstart.analysis.timeline.segments import (
    CHAIN,
    CHAIN_SEGMENTS,
    FAILED_STARTS_SEGMENT,
    RESTORE_SEGMENT,
    SEGMENTS,
)


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


def _restore_interval(
    events: Sequence[dict], before: float | None = None, after: float | None = None
) -> tuple[float, float] | None:
    """Wall-clock span during which some node restored the compile cache (nodes restore in parallel).
    ``before``: only restores that began by then (the first token): a scenario's later replica starts restore
    again, and the span from the first restore to the last would swallow the whole first start. ``after``: only
    restores that began from then on (the start that served, after failed ones that restored too)."""
    starts = [
        float(e["t"])
        for e in events
        if e.get("event") == "compile_cache_restore_start"
        and (before is None or float(e["t"]) <= before)
        and (after is None or float(e["t"]) >= after)
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


@dataclass(frozen=True)
class _Retried:
    """Replica starts Serve gave up on before the start that served: when, and which processes were theirs."""

    interval: tuple[float, float]  # epoch: the first failed start's "Starting Replica" -> the served start's
    pids: frozenset[int]  # the failed replicas' processes (their lines and events are not the served start's)


def _retried(
    log_text: str, events: Sequence[dict], clock: Clock, client: ClientResult | None, first_token: float | None
) -> _Retried | None:
    spans = replica_spans(log_text, clock.utc_offset_s)
    failed = [
        s
        for s in spans
        if s.failure is not None
        and s.t_starting_epoch is not None
        and (first_token is None or s.failure.t_epoch <= first_token)
    ]
    if not failed:
        return None
    # The start that served: the replica whose access line answered the request, else the first start after the
    # last failure (a log without access lines). Only the failures before it are its retry.
    request_id = client.request_id if client is not None else None
    served_id = served_by(log_text).get(request_id) if request_id else None
    last_failure = max(s.failure.t_epoch for s in failed if s.failure is not None)
    after = [
        s
        for s in spans
        if s.failure is None and s.t_starting_epoch is not None and s.t_starting_epoch >= last_failure - RAY_ERROR_S
    ]
    served = next((s for s in spans if s.replica_id == served_id), None) or min(
        after, key=lambda s: s.t_starting_epoch or 0.0, default=None
    )
    end = served.t_starting_epoch if served is not None else None
    if end is not None:
        failed = [s for s in failed if s.t_starting_epoch is not None and s.t_starting_epoch <= end]
        if not failed:
            return None
    begin = min(s.t_starting_epoch for s in failed if s.t_starting_epoch is not None)
    if end is None:  # no start served: the failures are the whole story
        end = max(s.failure.t_epoch for s in failed if s.failure is not None)
    return _Retried((begin, end), frozenset(_failed_pids(failed, events)))


def _failed_pids(failed: Sequence[ReplicaSpan], events: Sequence[dict]) -> set[int]:
    """The failed replicas' processes: as the controller named them, else the replica whose callback said it began
    (``replica_node_init_start``) between that start and its failure."""
    pids: set[int] = set()
    for span in failed:
        if span.pid is not None:
            pids.add(span.pid)
            continue
        assert span.failure is not None and span.t_starting_epoch is not None, "failed spans only"
        pids.update(
            int(e["pid"])
            for e in events
            if e.get("event") == "replica_node_init_start"
            and isinstance(e.get("pid"), int)
            and span.t_starting_epoch - RAY_ERROR_S <= float(e["t"]) <= span.failure.t_epoch + RAY_ERROR_S
        )
    return pids


def _without(lines: Sequence[LogLine], parsed: ParsedLog, pids: frozenset[int]) -> tuple[list[LogLine], ParsedLog]:
    """The lines and events that no failed replica's process wrote (its engine's lines come through it too)."""
    kept = [ln for ln in lines if not any(p.pid in pids for p in ln.prefixes if p.name and "ServeReplica" in p.name)]
    events: list[dict] = []
    for body in iter_events(ln.raw for ln in kept):
        if body not in events:  # as parse_log: one event echoed through a parent's stdout is one event
            events.append(body)
    return kept, dataclasses.replace(parsed, events=tuple(events))


def build(
    raw_lines: Sequence[str], lines: Sequence[LogLine], parsed: ParsedLog, client: ClientResult | None
) -> Timeline:
    clock = detect_clock(raw_lines, lines)
    t_send, ttft_s = client_times(client, parsed.events)
    first_token = t_send + ttft_s if t_send is not None and ttft_s is not None else None
    retried = _retried("\n".join(raw_lines), parsed.events, clock, client, first_token)
    if retried is not None:
        lines, parsed = _without(lines, parsed, retried.pids)
    found = find_milestones(lines, parsed, clock, t_send, ttft_s)
    chain, notes = _tighten([found[name] for name in CHAIN if name in found])
    at = {m.name: m for m in chain}

    intervals: dict[str, list[tuple[float, float]]] = {}
    errors: dict[str, float] = {}
    gaps: list[tuple[float, float]] = []
    present = [name for name in CHAIN if name in at]
    for prev, nxt in itertools.pairwise(present):
        span = (at[prev].t_epoch, at[nxt].t_epoch)
        if CHAIN.index(nxt) == CHAIN.index(prev) + 1:
            seg = next(s for s in CHAIN_SEGMENTS if s.end == nxt)
            intervals[seg.name] = [span]
            errors[seg.name] = at[prev].error_s + at[nxt].error_s
        else:
            gaps.append(span)

    if retried is not None:
        # Before the restore: a restore of the start that served begins after the failed ones ended.
        for name, ivs in intervals.items():
            intervals[name] = _carve(ivs, retried.interval)
        gaps = _carve(gaps, retried.interval)
        intervals[FAILED_STARTS_SEGMENT] = [retried.interval]
        errors[FAILED_STARTS_SEGMENT] = 2 * RAY_ERROR_S
    restore = _restore_interval(
        parsed.events, before=first_token, after=retried.interval[1] if retried is not None else None
    )
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
        starts = [(w[0] + w[1]) / 2 for ln in (replica or lines) if (w := line_window(ln, clock)) is not None]
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
    log_text = first_start(log_text)
    lines = parse_lines(log_text)
    return build(log_text.splitlines(), lines, parse_log(log_text, lines), client)
