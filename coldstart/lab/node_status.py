"""``coldstart node-status``: per node of a Ray cluster, is it ready for a fast cold start?

Read from the cluster's GCS only (nodes, workers, actors, and the preload records the prestarted workers wrote),
so looking changes nothing: no task runs on the nodes, no prestarted worker is taken. ``--deep`` adds what only
the node itself can say (the engine caches on its disk, the weights in its page cache) through one task per
node, with a runtime_env of its own so that it never takes a prestarted worker (it pays a fresh worker instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from coldstart.lab.preload_registry import PreloadRecord


@dataclass(frozen=True)
class WorkerView:
    pid: int
    import_s: float
    forkserver_s: float | None
    preloaded_at_epoch: float
    busy: bool  # an actor lives on it (Serve's controller, a proxy, a replica)


@dataclass(frozen=True)
class NodeView:
    node_id: str
    ip: str
    is_head: bool
    cpus: float
    gpus: float
    preloaded: tuple[WorkerView, ...] = ()
    still_importing: tuple[int, ...] = ()  # live task workers with no preload record yet
    actors: tuple[str, ...] = ()  # class names of the actors on it
    deep: Mapping[str, Any] = field(default_factory=dict)

    @property
    def idle_preloaded(self) -> tuple[WorkerView, ...]:
        return tuple(w for w in self.preloaded if not w.busy)

    def can_host(self, *, gpus: int, cpus: float = 1.0) -> bool:
        """Whether one replica (its GPUs and its bundle's CPU) fits this node's totals."""
        return self.gpus >= gpus and self.cpus >= cpus


@dataclass(frozen=True)
class ClusterFacts:
    """The raw GCS tables ``build_views`` reads (kept apart so it is a pure function, tested without Ray)."""

    nodes: list[dict[str, Any]]  # ray.nodes()
    workers: list[tuple[str, int]]  # (node_id, pid) of live task workers
    actors: list[tuple[str, int, str]]  # (node_id, pid, class name) of live actors
    records: list[PreloadRecord]
    head_node_id: str | None


def build_views(facts: ClusterFacts) -> list[NodeView]:
    views = []
    for node in facts.nodes:
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        live = {pid for nid, pid in facts.workers if nid == node_id}
        busy = {pid for nid, pid, _ in facts.actors if nid == node_id}
        records = {r.pid: r for r in facts.records if r.node_id == node_id and r.pid in live}
        resources = node.get("Resources") or {}
        views.append(
            NodeView(
                node_id=node_id,
                ip=str(node.get("NodeManagerAddress", "")),
                is_head=node_id == facts.head_node_id,
                cpus=float(resources.get("CPU", 0)),
                gpus=float(resources.get("GPU", 0)),
                preloaded=tuple(
                    WorkerView(r.pid, r.import_s, r.forkserver_s, r.preloaded_at_epoch, busy=r.pid in busy)
                    for r in sorted(records.values(), key=lambda r: r.pid)
                ),
                still_importing=tuple(sorted(live - set(records) - busy)),
                actors=tuple(sorted(name for nid, _, name in facts.actors if nid == node_id)),
            )
        )
    return views


def stale_records(facts: ClusterFacts) -> list[str]:
    """Keys of records whose worker is gone (dead node or exited process)."""
    live = set(facts.workers)
    return [r.key for r in facts.records if (r.node_id, r.pid) not in live]


def gather_facts() -> ClusterFacts:
    """The GCS tables of the cluster this driver is connected to (``ray.init`` done)."""
    import ray
    from ray._private.state import state
    from ray.core.generated import common_pb2, gcs_pb2

    from coldstart.lab.preload_registry import read_records

    workers = []
    for raw in state._connect_and_get_accessor().get_worker_table():
        w = gcs_pb2.WorkerTableData.FromString(raw)
        if w.is_alive and w.worker_type == common_pb2.WORKER:
            workers.append((w.worker_address.node_id.hex(), int(w.pid)))
    actors = [
        (a["Address"]["NodeID"], int(a["Pid"]), str(a["ActorClassName"]))
        for a in state.actor_table(None).values()
        if a["State"] == "ALIVE"
    ]
    nodes = ray.nodes()
    head = next((n["NodeID"] for n in nodes if n.get("Alive") and _is_head(n)), None)
    return ClusterFacts(nodes=nodes, workers=workers, actors=actors, records=read_records(), head_node_id=head)


def _is_head(node: Mapping[str, Any]) -> bool:
    resources = node.get("Resources") or {}
    return any(k == "node:__internal_head__" for k in resources) or bool(node.get("IsHeadNode"))


def cluster_views(*, deep: bool = False, weights_path: str | None = None) -> list[NodeView]:
    from coldstart.lab.preload_registry import forget

    facts = gather_facts()
    # A record outlives its worker (SIGKILL, a dead node); its pid may come back as another process.
    forget(stale_records(facts))
    views = build_views(facts)
    if deep:
        views = [_with_deep(v, weights_path) for v in views]
    return views


# ---------------------------------------------------------------- --deep: what only the node can say


def page_cache_resident_bytes(path: str) -> tuple[int, int]:
    """(bytes resident in the page cache, bytes in all) of the files under ``path`` (Linux mincore).

    Each file is mapped read-only through libc itself: mincore needs the mapping's address, which Python's own
    mmap object gives only for a writable map (and a writable map of a read-only weights file is refused)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    map_failed = ctypes.c_void_p(-1).value
    page = mmap.PAGESIZE
    resident = total = 0
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for name in files:
        size = os.path.getsize(name)
        total += size
        if size == 0:
            continue
        with open(name, "rb") as fh:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fh.fileno(), 0)
            if addr in (None, map_failed):
                raise OSError(ctypes.get_errno(), f"mmap failed on {name}")
            try:
                vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
                if libc.mincore(addr, size, vec) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore failed on {name}")
            finally:
                libc.munmap(addr, size)
        resident += min(size, sum(1 for b in vec if b & 1) * page)
    return resident, total


def node_facts(weights_path: str | None) -> dict[str, Any]:
    """Runs ON the node: its engine-cache root and marker, and how much of the weights is in its page cache."""
    from coldstart import paths
    from coldstart.compile_cache import ENGINE_MARKER

    root = paths.engine_cache_env()["VLLM_CACHE_ROOT"]
    marker = os.path.join(root, ENGINE_MARKER)
    facts: dict[str, Any] = {"vllm_cache_root": root, "engine_marker": None}
    if os.path.exists(marker):
        with open(marker) as fh:
            body = json.load(fh)
        facts["engine_marker"] = {k: body.get(k) for k in ("model_name", "experiment", "run_id")}
    if weights_path:
        if os.path.exists(weights_path):
            resident, total = page_cache_resident_bytes(weights_path)
            facts["weights"] = {"path": weights_path, "resident_bytes": resident, "total_bytes": total}
        else:
            facts["weights"] = {"path": weights_path, "missing": True}
    return facts


def _with_deep(view: NodeView, weights_path: str | None) -> NodeView:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(node_facts).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(view.node_id, soft=False),
        # Its own runtime_env: never given a prestarted worker (that worker would then belong to this job).
        runtime_env={"env_vars": {"COLDSTART_NODE_PROBE": "1"}},
    )
    return dataclasses.replace(view, deep=ray.get(probe.remote(weights_path), timeout=600))


# ---------------------------------------------------------------- the tool


def render(views: Iterable[NodeView]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="coldstart node-status")
    for col in ("node", "ip", "role", "CPU", "GPU", "idle preloaded (pid: import s)", "importing", "actors", "deep"):
        table.add_column(col)
    for v in views:
        idle = ", ".join(f"{w.pid}: {w.import_s:.1f}" for w in v.idle_preloaded) or "-"
        table.add_row(
            v.node_id[:8],
            v.ip,
            "head" if v.is_head else "worker",
            f"{v.cpus:g}",
            f"{v.gpus:g}",
            idle,
            str(len(v.still_importing)),
            ", ".join(sorted(set(v.actors))) or "-",
            json.dumps(dict(v.deep)) if v.deep else "",
        )
    console = Console(width=200, record=True)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"), help="the Ray cluster")
    parser.add_argument("--deep", action="store_true", help="also ask each node (one task per node)")
    parser.add_argument("--weights", default=None, help="with --deep: how much of this folder is in page cache")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    import ray

    try:
        ray.init(address=args.address, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        print(f"error: no Ray cluster at {args.address!r}: {exc}", file=sys.stderr)
        return 2
    try:
        views = cluster_views(deep=args.deep, weights_path=args.weights)
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps([{**asdict(v), "idle_preloaded": len(v.idle_preloaded)} for v in views], indent=1))
    else:
        print(render(views), end="")
    return 0
