"""node-status's view of a cluster, built from the GCS tables alone (pure: no Ray needed)."""

from __future__ import annotations

import os

from coldstart.lab.node_status import ClusterFacts, build_views, page_cache_resident_bytes, render, stale_records
from coldstart.lab.preload_registry import PreloadRecord


def _record(node: str, pid: int) -> PreloadRecord:
    return PreloadRecord(node_id=node, pid=pid, import_s=17.5, forkserver_s=3.0, preloaded_at_epoch=1.0)


FACTS = ClusterFacts(
    nodes=[
        {"NodeID": "head", "Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"node:__internal_head__": 1}},
        {"NodeID": "gpu1", "Alive": True, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 8, "GPU": 1}},
        {"NodeID": "gone", "Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 8, "GPU": 1}},
    ],
    # Live task workers: 11 and 12 preloaded (12 now hosts an actor), 13 still importing, 5 the controller's.
    workers=[("gpu1", 11), ("gpu1", 12), ("gpu1", 13), ("head", 5)],
    actors=[("gpu1", 12, "ServeReplica:app:ColdStartLLMServer"), ("head", 5, "ServeController")],
    records=[_record("gpu1", 11), _record("gpu1", 12), _record("gpu1", 99)],  # 99 exited since
    head_node_id="head",
)


def test_idle_preloaded_workers_are_the_recorded_live_ones_no_actor_holds():
    views = {v.node_id: v for v in build_views(FACTS)}
    assert set(views) == {"head", "gpu1"}  # a dead node is not listed
    gpu = views["gpu1"]
    assert [w.pid for w in gpu.idle_preloaded] == [11]
    assert [w.pid for w in gpu.preloaded] == [11, 12] and gpu.preloaded[1].busy
    assert gpu.still_importing == (13,)
    assert gpu.can_host(gpus=1) and not views["head"].can_host(gpus=0)  # the head has no CPU for a replica
    assert views["head"].is_head and views["head"].still_importing == ()  # the controller's worker is busy


def test_records_of_exited_workers_are_stale_and_the_table_names_each_node():
    assert stale_records(FACTS) == ["preloaded/gpu1/99"]
    table = render(build_views(FACTS))
    assert "11: 17.5" in table and "ServeController" in table


def test_page_cache_residency_of_read_only_weights(tmp_path):
    # Weights are often read-only (a shared store, a container layer): mincore must work on a read-only map.
    folder = tmp_path / "weights"
    folder.mkdir()
    shard = folder / "model.safetensors"
    shard.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    (folder / "empty.json").write_bytes(b"")
    shard.chmod(0o444)
    assert shard.read_bytes()  # read once: its pages are in the page cache now
    resident, total = page_cache_resident_bytes(str(folder))
    assert total == 3 * 1024 * 1024 + 123
    assert resident == total  # every page, the partial last one counted to the file's end only
    assert page_cache_resident_bytes(str(shard)) == (resident, total)
