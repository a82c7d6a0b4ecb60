"""One clock for a whole cold start, and the phases nobody logs, from the request to the first token.

Sources and their precision:

* Harness events (``:::COLDSTART``) and the client's ``t_send_epoch`` / TTFT: absolute epoch seconds.
* Ray lines (``INFO 2026-11-22 19:04:28,770 controller ...``): local wall time with year and milliseconds.
* vLLM lines (``INFO 11-22 19:06:36 [...]``): local wall time, no year, whole seconds (truncated). A
  milestone taken from one is placed mid-second (``+0.5 s``), so it is good to ±0.5 s and a segment
  between two of them to ±1 s; where an exact neighbour bounds it, the bound is applied (``build``).

The milestones assume one cold start per log (the first scale-up): the first occurrence of a start, the
last of an end. Replica starts Serve gave up on before the one that served are one segment of their own; the
milestones come from the start that served (``build``).

The modules, bottom up: ``segments`` (the chain and its categories), ``clock`` (local time -> epoch),
``model`` (milestones, segments, the timeline and how it is drawn and stored), ``milestones`` (where each
milestone is in a log), ``build`` (the timeline from them), ``summary`` (one log's phases, segments and
audit flags).
"""

from coldstart.analysis.timeline.build import build_timeline
from coldstart.analysis.timeline.clock import EVENT_ERROR_S, RAY_ERROR_S, VLLM_ERROR_S, Clock, detect_clock
from coldstart.analysis.timeline.model import Milestone, Segment, Timeline
from coldstart.analysis.timeline.segments import (
    CATEGORIES,
    CATEGORY,
    CHAIN,
    FAILED_STARTS_SEGMENT,
    RESTORE_SEGMENT,
    SEGMENT_CATEGORY,
    SEGMENT_LABELS,
    SEGMENT_NAMES,
    SEGMENTS,
    UNATTRIBUTED,
    Category,
    SegmentDef,
)
from coldstart.analysis.timeline.summary import PRESTART_IMPORT, RunSummary, prestart_import_s, summarize_run

__all__ = [
    "CATEGORIES",
    "CATEGORY",
    "CHAIN",
    "EVENT_ERROR_S",
    "FAILED_STARTS_SEGMENT",
    "PRESTART_IMPORT",
    "RAY_ERROR_S",
    "RESTORE_SEGMENT",
    "SEGMENTS",
    "SEGMENT_CATEGORY",
    "SEGMENT_LABELS",
    "SEGMENT_NAMES",
    "UNATTRIBUTED",
    "VLLM_ERROR_S",
    "Category",
    "Clock",
    "Milestone",
    "RunSummary",
    "Segment",
    "SegmentDef",
    "Timeline",
    "build_timeline",
    "detect_clock",
    "prestart_import_s",
    "summarize_run",
]
