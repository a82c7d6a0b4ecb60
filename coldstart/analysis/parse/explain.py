"""``--explain LOG``: which rule read which line, and the timing-looking lines no rule read."""

from __future__ import annotations

import re
from dataclasses import fields

from coldstart.analysis.parse.engine import engine_start, served_index, split_starts
from coldstart.analysis.parse.lines import PROGRESS_RE, clean_line, parse_lines
from coldstart.analysis.parse.log import SPAN_SOURCES

# A number with a time unit, or "took"/"takes"/"finished in": what explain lists when no rule read it
# (tqdm bars, which time themselves, are left out by PROGRESS_RE).
_TIMING_RE = re.compile(r"\b(?:took|takes|finished in|elapsed)\b|\d(?:\.\d+)?\s*(?:s|secs?|seconds|ms)\b")


def _fmt(value: object) -> str:
    return "None" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def explain(text: str, max_unmatched: int = 200) -> str:
    """Each engine start's phases with the line(s) each came from, then the timing-looking lines no rule read.

    The report is for a person checking a parse against the log: line numbers are 1-based, as an editor
    shows them.
    """
    lines = parse_lines(text)
    matched: set[int] = set()
    built = [engine_start(i, part, matched)[0] for i, part in enumerate(split_starts(lines))]
    served = served_index(built)
    out: list[str] = []
    for start in built:
        tag = " (served)" if start.index == served else " (did not serve)"
        version = f" vLLM {start.vllm_version}" if start.vllm_version else ""
        out.append(
            f"engine start {start.index + 1}/{len(built)}{tag}: line {start.line_number}{version},"
            f" {len(start.ranks)} rank(s) logged phases"
        )
        for model, phases in start.models.items():
            out.append(f"  model {model}:")
            for f in fields(phases):
                value = getattr(phases, f.name)
                if value is None:
                    continue
                out.append(f"    {f.name} = {_fmt(value)}")
                for ev in start.evidence:
                    if ev.model == model and (ev.quantity == f.name or SPAN_SOURCES.get(f.name, ()).count(ev.quantity)):
                        out.append(f"      line {ev.line_number}: {clean_line(ev.text)}")
        if len(start.models) > 1:
            # The phase table's figures: each model's lines added up per rank (the lines are listed above).
            out.append(f"  engine ({' + '.join(start.models)}):")
            out += [
                f"    {f.name} = {_fmt(value)}"
                for f in fields(start.total)
                if f.name.endswith("_s") and (value := getattr(start.total, f.name)) is not None
            ]
    unmatched = [
        line
        for line in lines
        if line.number not in matched and _TIMING_RE.search(line.message) and not PROGRESS_RE.search(line.message)
    ]
    out.append(f"timing-looking lines no rule read: {len(unmatched)}")
    for line in unmatched[:max_unmatched]:
        out.append(f"  line {line.number}: {clean_line(line.raw)}")
    if len(unmatched) > max_unmatched:
        out.append(f"  ... {len(unmatched) - max_unmatched} more")
    return "\n".join(out)
