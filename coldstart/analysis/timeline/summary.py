"""One service log summarized: the phases as logged, the timeline segments, and the audit flags."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coldstart.analysis.parse import parse_lines, parse_log, to_phase_table
from coldstart.analysis.results import Audit, ClientResult
from coldstart.analysis.serve_log import first_start
from coldstart.analysis.timeline.build import build
from coldstart.analysis.timeline.model import Timeline


@dataclass(frozen=True)
class RunSummary:
    phases: dict[str, float | None]  # parser durations as logged (PHASE_COLUMNS) + seg_* + unattributed_s
    audit: Audit  # the flags the log shows; not yet judged against an experiment (``audit.audit``)
    timeline: Timeline


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
# touch (in the campaign 2026-11-30-h200x2, runs whose workers imported in 17-19 s took 14.5-15.8 s; one at
# 24.5 s took 22.5 s).
PRESTART_IMPORT = "prestart_import_s"


def prestart_import_s(events: Sequence[Mapping[str, Any]]) -> float | None:
    """Median ``import_s`` of the run's ``worker_preloaded`` events; None without prestarted workers."""
    seconds = [float(e["import_s"]) for e in events if e.get("event") == "worker_preloaded" and "import_s" in e]
    return statistics.median(seconds) if seconds else None


def summarize_run(log_text: str, client: ClientResult | None = None) -> RunSummary:
    """Phases as logged + the timeline segments, and the audit flags, of one service log (split into lines
    once: the parser and the timeline read the same lines). A scenario that went back to zero and started
    again is summarized up to its second start: the row's TTFT is the first start's."""
    log_text = first_start(log_text)
    lines = parse_lines(log_text)
    parsed = parse_log(log_text, lines)
    timeline = build(log_text.splitlines(), lines, parsed, client)
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
