"""What a timeline is: its milestones and segments, and how it is drawn and stored (Gantt rows, JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coldstart.analysis.results import StoredTimeline
from coldstart.analysis.timeline.clock import Clock
from coldstart.analysis.timeline.segments import SEGMENT_LABELS, UNATTRIBUTED


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
