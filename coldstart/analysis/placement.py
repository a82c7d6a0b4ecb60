"""Which Ray a run ran on, and where its replicas landed: read from the run's own log (pure).

The service says ``ray_attached`` once connected (a local Ray it started, or a cluster it joined, with the
cluster's nodes), the fast path's wait says which idle preloaded workers each replica node held before the
request (``prestart_wait_end``), and the replica callback says, for each replica start, its pid, its node and
whether its worker had the imports paid before the lease (``replica_node_init_start``).
"""

from __future__ import annotations

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RayPlacement:
        return cls(
            kind=str(data["kind"]),
            driver_node_id=data.get("driver_node_id"),
            node_ids=tuple(data.get("node_ids") or ()),
            serve_was_running=data.get("serve_was_running"),
            replicas=tuple(ReplicaPlacement(**r) for r in data.get("replicas") or ()),
        )


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
    )
