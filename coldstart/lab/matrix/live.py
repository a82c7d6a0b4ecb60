"""The live phase line: while a cold start runs (minutes), the seconds since the request and the phase read
from the service's log as it grows."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from coldstart.analysis import events


@contextlib.contextmanager
def live_status(log_path: Path, on_status: Callable[[str], None] | None, poll_s: float = 0.5) -> Iterator[None]:
    """While the body runs (the request, for minutes of a cold start), call ``on_status`` every ``poll_s``
    with the seconds since the request and the phase read from the service's log as it grows."""
    if on_status is None:
        yield
        return
    from coldstart.analysis.live import PhaseTracker

    tracker = PhaseTracker()
    t_request = time.monotonic()
    offset, partial, started = 0, "", False
    stop = threading.Event()

    def follow() -> None:
        nonlocal offset, partial, started
        try:
            with open(log_path, errors="replace") as log:
                log.seek(offset)
                chunk = log.read()
                offset = log.tell()
        except OSError:
            chunk = ""  # no log yet: the phase stays what it was
        lines = (partial + chunk).split("\n")
        partial = lines.pop()
        for line in lines:
            tracker.feed(line)
        if not started:
            # What the log said before the request is history; the request itself is the next milestone.
            tracker.feed(events.format_event("client_send"))
            started = True
        on_status(f"{time.monotonic() - t_request:.0f} s since the request: {tracker.phase}")

    def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # a status line must never fail the measurement
                follow()
            if stop.wait(poll_s):
                return

    thread = threading.Thread(target=loop, name="coldstart-live-status", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5.0)
