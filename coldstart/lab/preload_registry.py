"""Which Ray workers have the fast path's imports paid: one record per worker in the cluster's GCS.

A worker the raylet prestarted imports ``coldstart.lab.fastpath.preload`` before it ever runs a task, and that
module calls ``register_this_worker``: a small JSON record under ``preloaded/<node id>/<pid>`` in the GCS
key-value store (namespace ``coldstart``). Any driver of the cluster reads them back (``read_records``) without
running anything on the nodes, which matters: a probe task would be given one of the very workers it counts,
and a worker that ran a job's task belongs to that job from then on.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass

NAMESPACE = "coldstart"
PREFIX = "preloaded/"


@dataclass(frozen=True)
class PreloadRecord:
    node_id: str
    pid: int
    import_s: float
    forkserver_s: float | None
    preloaded_at_epoch: float

    @property
    def key(self) -> str:
        return record_key(self.node_id, self.pid)

    @classmethod
    def from_json(cls, raw: bytes | str) -> PreloadRecord:
        data = json.loads(raw)
        return cls(
            node_id=str(data["node_id"]),
            pid=int(data["pid"]),
            import_s=float(data["import_s"]),
            forkserver_s=None if data.get("forkserver_s") is None else float(data["forkserver_s"]),
            preloaded_at_epoch=float(data["preloaded_at_epoch"]),
        )


def record_key(node_id: str, pid: int) -> str:
    return f"{PREFIX}{node_id}/{pid}"


def register_this_worker(*, import_s: float, forkserver_s: float | None) -> PreloadRecord | None:
    """Record this worker as preloaded. A failure is said on stderr and costs only the record: the worker
    still serves, and ``node-status`` then counts it as still importing."""
    try:
        import ray
        from ray.experimental import internal_kv

        record = PreloadRecord(
            node_id=ray.get_runtime_context().get_node_id(),
            pid=os.getpid(),
            import_s=round(import_s, 3),
            forkserver_s=None if forkserver_s is None else round(forkserver_s, 3),
            preloaded_at_epoch=time.time(),
        )
        internal_kv._internal_kv_put(record.key, json.dumps(asdict(record)), overwrite=True, namespace=NAMESPACE)
        return record
    except Exception as exc:  # the worker must live; its record is what is lost, and that is said
        print(
            f"coldstart preload: could not record this worker in the GCS: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return None


def read_records() -> list[PreloadRecord]:
    """Every preload record of the cluster this driver is connected to."""
    from ray.experimental import internal_kv

    records = []
    for key in internal_kv._internal_kv_list(PREFIX, namespace=NAMESPACE):
        raw = internal_kv._internal_kv_get(key, namespace=NAMESPACE)
        if raw:
            records.append(PreloadRecord.from_json(raw))
    return records


def forget(keys: list[str]) -> None:
    """Remove the records of workers that are gone (their pids may be reused by other processes)."""
    from ray.experimental import internal_kv

    for key in keys:
        internal_kv._internal_kv_del(key, namespace=NAMESPACE)
