"""Ray's verdict on a node that stopped answering during a run, waited for before the run leaves the cluster.

A worker node lost mid-start cuts the client off within seconds (an HTTP 500 where the ingress lived there, a
dropped stream), while the GCS marks the node dead only after it missed its health checks (period x threshold +
timeout: about 25 s with Ray's defaults). A run that ended first would leave a row that says "HTTP 500" and a
cluster that still lists the node alive. So before the lab lets go of a cluster it knocks on each live node's
raylet port; where one does not answer, it waits (bounded by that window) for the GCS to say the node is dead
and records it as a ``node_lost`` event, which the row's ``ray.lost_node_ids`` reads. A healthy run pays one TCP
connect per node.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coldstart.analysis import events

# Beyond Ray's own window: the GCS checks on its period, and the check that fails last needs its timeout.
VERDICT_SLACK_S = 5.0


@dataclass(frozen=True)
class SilentNode:
    node_id: str
    ip: str
    port: int


def raylet_answers(ip: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts a TCP connection on the raylet's port (refused or unreachable: it does not)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def silent_nodes(
    nodes: Sequence[Mapping[str, Any]], answers: Callable[[str, int], bool] = raylet_answers
) -> list[SilentNode]:
    """The nodes the GCS still lists alive whose raylet does not answer (``nodes``: ``ray.nodes()``'s dicts)."""
    silent = []
    for node in nodes:
        ip, port = node.get("NodeManagerAddress"), node.get("NodeManagerPort")
        if node.get("Alive") and ip and port and not answers(str(ip), int(port)):
            silent.append(SilentNode(node_id=str(node["NodeID"]), ip=str(ip), port=int(port)))
    return silent


def health_check_window_s() -> float:
    """How long the connected cluster's GCS takes at most to mark a silent node dead (its own settings: a
    driver's RayConfig is the head's)."""
    from ray._raylet import Config

    worst_ms = Config.health_check_period_ms() * Config.health_check_failure_threshold()
    return (worst_ms + Config.health_check_timeout_ms()) / 1000.0


def await_node_verdicts(
    nodes: Callable[[], Sequence[Mapping[str, Any]]],
    *,
    window_s: float,
    answers: Callable[[str, int], bool] = raylet_answers,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, ...]:
    """Wait until the GCS marks dead every live-listed node whose raylet does not answer, or the window ends.

    Returns the node ids found dead, in the order the GCS said so; says each as a ``node_lost`` event, and a
    node still listed alive at the end as ``node_verdict_timeout`` (its raylet may be back, or slow to answer).
    """
    waiting = {n.node_id: n for n in silent_nodes(nodes(), answers)}
    if not waiting:
        return ()
    t0 = clock()
    deadline = t0 + window_s + VERDICT_SLACK_S
    events.emit("node_verdict_wait", node_ids=sorted(waiting), window_s=round(window_s, 1))
    lost: list[str] = []
    while waiting:
        for node in nodes():
            node_id = str(node.get("NodeID"))
            if node_id in waiting and not node.get("Alive"):
                silent = waiting.pop(node_id)
                events.emit("node_lost", node_id=node_id, ip=silent.ip, waited_s=round(clock() - t0, 1))
                lost.append(node_id)
        if not waiting or clock() >= deadline:
            break
        sleep(poll_s)
    if waiting:
        events.emit("node_verdict_timeout", node_ids=sorted(waiting), waited_s=round(clock() - t0, 1))
    return tuple(lost)
