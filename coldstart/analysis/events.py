"""Structured harness events: one marked JSON line per point the harness controls.

MLPerf-loadgen style: ``:::COLDSTART {"event": "...", "t": <epoch seconds>, ...}``. The marker makes the
lines greppable inside any log (Ray prefixes, ANSI colour), and the JSON body parses without regex.
Absolute epoch time (not monotonic) so events from different processes and nodes share one clock.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

MARKER = ":::COLDSTART "


def format_event(event: str, t: float | None = None, **fields: Any) -> str:
    body = {"event": event, "t": time.time() if t is None else t, **fields}
    return MARKER + json.dumps(body, sort_keys=False, default=str)


def emit(event: str, *, stream: TextIO | None = None, t: float | None = None, **fields: Any) -> dict:
    """Print one event line (flushed: the log tee must see it before a crash) and return its body."""
    line = format_event(event, t=t, **fields)
    out = stream if stream is not None else sys.stdout
    print(line, file=out, flush=True)
    return json.loads(line[len(MARKER) :])


def iter_events(lines: Iterable[str]) -> Iterator[dict]:
    """Yield event bodies from log lines; anything before the marker (Ray/ANSI prefixes) is ignored.

    A line whose JSON is torn (a process killed mid-write) is skipped, not fatal: a log must stay
    parseable after a crash.
    """
    decoder = json.JSONDecoder()
    for line in lines:
        idx = line.find(MARKER)
        if idx < 0:
            continue
        try:
            body, _ = decoder.raw_decode(line, idx + len(MARKER))
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict) and "event" in body:
            yield body


def read_events(text: str) -> list[dict]:
    return list(iter_events(text.splitlines()))
