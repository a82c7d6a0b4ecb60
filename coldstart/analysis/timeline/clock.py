"""Local log time -> epoch: the log's offset to UTC and the year of stamps that print none.

Ray and vLLM print local time. The offset to UTC is computed, not assumed: each harness event (and each
ISO ``...Z`` stamp some libraries print) is paired with the nearest stamped log line, and the difference,
rounded to the 15 minutes every real time zone is a multiple of, is the offset (median over pairs). The
year of a vLLM stamp is the one that puts it nearest those references (a log may cross New Year).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from coldstart.analysis.events import MARKER, iter_events
from coldstart.analysis.parse import LogLine, Stamp

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
class Clock:
    """Local log time -> epoch. ``utc_offset_s`` is local minus UTC (0 on the lab's machines)."""

    utc_offset_s: float
    offset_detected: bool  # False: no reference in the log, local time taken as UTC
    reference_epoch: float | None  # anchors the year of year-less stamps
    default_year: int  # a year printed in the log, used when there is no reference epoch
    year_known: bool  # False: no year anywhere in the log; epochs are only good relative to each other

    def epoch(self, stamp: Stamp, year: int | None = None) -> float | None:
        if year is not None:
            naive = naive_epoch(stamp, year)  # None: Feb 29 printed with a year that has none
            return None if naive is None else naive - self.utc_offset_s
        if (reference := self.reference_epoch) is not None:
            ref_year = datetime.fromtimestamp(reference, timezone.utc).year
            candidates = [
                e - self.utc_offset_s
                for y in (ref_year - 1, ref_year, ref_year + 1)
                if (e := naive_epoch(stamp, y)) is not None
            ]
            return min(candidates, key=lambda e: abs(e - reference)) if candidates else None
        naive = naive_epoch(stamp, self.default_year)
        return None if naive is None else naive - self.utc_offset_s


# ---------------------------------------------------------------------------------------------------------
# The clock

_ISO_Z_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)Z")


def naive_epoch(stamp: Stamp, year: int) -> float | None:
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
            if (e := naive_epoch(stamp, int(y))) is not None:
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
        diffs = [e - t for y in near_years if (e := naive_epoch(near.ts, y)) is not None]
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
