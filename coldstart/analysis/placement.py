"""Which Ray a run ran on, and where its replicas landed: read from the run's own log (pure).

The service says ``ray_attached`` once connected (a local Ray it started, or a cluster it joined, with the
cluster's nodes), the fast path's wait says which idle preloaded workers each replica node held before the
request (``prestart_wait_end``), and the replica callback says, for each replica start, its pid, its node and
whether its worker had the imports paid before Ray assigned it (``replica_node_init_start``). Ray's own line, or the
service's ``node_lost`` (the verdict it waits for before leaving a cluster), says when Ray gave a node up for dead
during the run (its raylet stopped answering).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from coldstart.analysis.events import iter_events


@dataclass(frozen=True)
class ReplicaPlacement:
    pid: int
    node_id: str | None  # None: logs from before the callback said it
    worker_preloaded: bool | None
    # Its worker was among the idle preloaded ones the node held before the request.
    prestarted_before_request: bool | None


@dataclass(frozen=True)
class RayPlacement:
    kind: str  # "local": a Ray the lab started; "cluster": one it joined
    driver_node_id: str | None
    node_ids: tuple[str, ...]  # the cluster's live nodes when the lab joined
    serve_was_running: bool | None
    replicas: tuple[ReplicaPlacement, ...]
    # Nodes Ray marked dead while the run ran, in the order it said so (rows before 2026-12-07 lack it).
    lost_node_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.lost_node_ids:  # the shape rows had before it was recorded
            del out["lost_node_ids"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RayPlacement:
        return cls(
            kind=str(data["kind"]),
            driver_node_id=data.get("driver_node_id"),
            node_ids=tuple(data.get("node_ids") or ()),
            serve_was_running=data.get("serve_was_running"),
            replicas=tuple(ReplicaPlacement(**r) for r in data.get("replicas") or ()),
            lost_node_ids=tuple(str(n) for n in data.get("lost_node_ids") or ()),
        )


# Ray 2.57's driver line (forwarded from the GCS as "(raylet) ...") when a node's raylet stopped answering:
# "The node with node id: f650... and address: 192.0.2.2 and node name: 192.0.2.2 has been marked dead because
# the detector has missed too many heartbeats from it."
_NODE_DEAD = re.compile(r"The node with node id: (?P<node_id>[0-9a-f]+) .*? has been marked dead")


def lost_nodes(log_text: str) -> tuple[str, ...]:
    """The nodes Ray gave up for dead in the log, once each, in the order it said so: its own driver line, or
    the service's ``node_lost`` (the GCS's verdict it waited for on a node whose raylet stopped answering)."""
    said: list[tuple[int, str]] = [(m.start(), m["node_id"]) for m in _NODE_DEAD.finditer(log_text)]
    offset = 0
    for line in log_text.splitlines(keepends=True):
        if "node_lost" in line:
            said.extend((offset, str(e["node_id"])) for e in iter_events([line]) if e.get("event") == "node_lost")
        offset += len(line)
    found: list[str] = []
    for _, node_id in sorted(said, key=lambda s: s[0]):
        if node_id not in found:
            found.append(node_id)
    return tuple(found)


def ray_placement(log_text: str) -> RayPlacement | None:
    """None for a log without ``ray_attached`` (runs from before it was said, other tools' logs)."""
    attached: dict[str, Any] | None = None
    idle_before: set[int] = set()
    waited = False
    replicas: list[ReplicaPlacement] = []
    for event in iter_events(log_text.splitlines()):
        name = event.get("event")
        if name == "ray_attached" and attached is None:
            attached = event
        elif name == "prestart_wait_end":
            waited = True
            for node in event.get("nodes") or ():
                idle_before.update(int(p) for p in node.get("idle_preloaded") or ())
        elif name == "replica_node_init_start" and "pid" in event:
            pid = int(event["pid"])
            replicas.append(
                ReplicaPlacement(
                    pid=pid,
                    node_id=event.get("node_id"),
                    worker_preloaded=event.get("worker_preloaded"),
                    prestarted_before_request=(pid in idle_before) if waited else None,
                )
            )
    if attached is None:
        return None
    return RayPlacement(
        kind=str(attached.get("kind")),
        driver_node_id=attached.get("node_id"),
        node_ids=tuple(str(n["node_id"]) for n in attached.get("nodes") or () if "node_id" in n),
        serve_was_running=attached.get("serve_was_running"),
        replicas=tuple(replicas),
        lost_node_ids=lost_nodes(log_text),
    )
