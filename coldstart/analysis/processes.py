"""Which processes printed vLLM log lines, and which of them began only after the request was sent.

Every process that runs vLLM code after the request costs the cold start its start-up (and, unless it was
forked from a process that had imported vLLM, the ~15-20 s import). The fast path's claim is that it starts
fewer of them than stock Ray Serve LLM; this counts them from the log alone: a process is identified by its
innermost Ray/vLLM prefix (``(EngineCore pid=N)``, ``(pid=N)``), a vLLM line by vLLM's header
(``INFO 11-29 15:44:27 [core.py:114]``), and "after the request" by place in the log (the tee writes lines
in arrival order): after Serve's "Upscaling ... from 0" line, the decision only a request triggers (or the
client's ``client_send`` event where the client shares the log). A prestarted worker that said
``worker_preloaded`` before that point began before the request, whatever it prints later; so did one the
fast path's wait named idle and preloaded before it (``prestart_wait_end``: on a cluster, prestarted workers'
own lines reach no job's log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from coldstart.analysis.events import MARKER, iter_events
from coldstart.analysis.parse import parse_line

_FROM_ZERO_RE = re.compile(r"Upscaling Deployment\(.*\) from 0 to \d+ replicas")
_VLLM_HEADER_RE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d \[[\w./-]+\.py:\d+\]")


@dataclass(frozen=True)
class VllmProcess:
    pid: int
    # The prefix's process name ("EngineCore", "Worker", "ServeReplica:..."; None for "(pid=N)"), or the
    # harness event it was first seen in.
    name: str | None
    first_line_no: int  # 0-based line of its first vLLM line
    after_request: bool  # that first line came after the client sent the request


def vllm_processes(log_text: str) -> list[VllmProcess]:
    """Each process that printed a vLLM line, in order of its first one. In a log without a request marker
    nothing counts as after the request."""
    first: dict[int, VllmProcess] = {}
    preloaded: set[int] = set()
    sent = False
    for no, raw in enumerate(log_text.splitlines()):
        if MARKER in raw:
            for e in iter_events([raw]):
                sent = sent or e.get("event") == "client_send"
                if e.get("event") == "prestart_wait_end" and not sent:
                    # On a cluster the workers a raylet prestarted reach no job's log with their own
                    # ``worker_preloaded``; the wait before the request names them (by pid, per node) instead.
                    for node in e.get("nodes") or ():
                        preloaded.update(p for p in node.get("idle_preloaded") or () if isinstance(p, int))
                pid = e.get("pid")
                if not isinstance(pid, int) or e.get("event") == "client_send":
                    continue
                if e.get("event") == "worker_preloaded" and not sent:
                    preloaded.add(pid)
                # The harness's own events name processes that print no vLLM line (Ray LLM's node-init task).
                if pid not in first:
                    first[pid] = VllmProcess(pid, f"event {e['event']}", no, sent and pid not in preloaded)
            continue
        line = parse_line(raw)
        if not sent and _FROM_ZERO_RE.search(line.message):
            sent = True
        if line.pid is None or line.pid in first or not _VLLM_HEADER_RE.match(line.text):
            continue
        first[line.pid] = VllmProcess(line.pid, line.process, no, sent and line.pid not in preloaded)
    return list(first.values())


def started_after_request(log_text: str) -> list[VllmProcess]:
    return [p for p in vllm_processes(log_text) if p.after_request]
