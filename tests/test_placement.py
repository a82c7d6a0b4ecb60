"""Which Ray a run ran on and where its replicas landed, read from the run's log."""

from __future__ import annotations

from coldstart.analysis.events import format_event
from coldstart.analysis.placement import RayPlacement, ray_placement
from coldstart.analysis.results import ResultRow, RunStatus


def _log(*events: tuple[str, dict]) -> str:
    return "\n".join(f"(pid=1) {format_event(name, **fields)}" for name, fields in events)


ATTACHED = (
    "ray_attached",
    {
        "kind": "cluster",
        "node_id": "head",
        "serve_was_running": False,
        "nodes": [{"node_id": "head"}, {"node_id": "gpu1"}],
    },
)


def test_a_replica_on_a_worker_node_that_was_idle_and_preloaded_before_the_request():
    text = _log(
        ATTACHED,
        ("prestart_wait_end", {"nodes": [{"node_id": "gpu1", "idle_preloaded": [41, 42]}]}),
        ("replica_node_init_start", {"pid": 41, "node_id": "gpu1", "worker_preloaded": True}),
        ("replica_node_init_start", {"pid": 77, "node_id": "gpu1", "worker_preloaded": True}),  # a retry's fresh one
    )
    placement = ray_placement(text)
    assert placement is not None and placement.kind == "cluster" and placement.node_ids == ("head", "gpu1")
    first, retry = placement.replicas
    assert (first.node_id, first.worker_preloaded, first.prestarted_before_request) == ("gpu1", True, True)
    assert retry.prestarted_before_request is False
    assert RayPlacement.from_dict(placement.to_dict()) == placement


def test_without_a_prestart_wait_nobody_claims_a_prestarted_worker_and_old_logs_have_no_placement():
    text = _log(
        ("ray_attached", {"kind": "local", "node_id": "n", "nodes": []}),
        ("replica_node_init_start", {"pid": 9, "worker_preloaded": False}),
    )
    placement = ray_placement(text)
    assert placement is not None and placement.replicas[0].prestarted_before_request is None
    assert ray_placement(_log(("service_start", {}))) is None


def test_a_row_keeps_its_placement_through_json():
    placement = ray_placement(_log(ATTACHED))
    row = ResultRow(
        run_id="r",
        model="tiny",
        experiment="fast",
        repeat=0,
        status=RunStatus.OK,
        ttft_s=1.0,
        phases={},
        audit=None,
        log_path=None,
        provenance=None,
        config={},
        ray=placement,
    )
    again = ResultRow.from_dict(row.to_dict())
    assert again.ray == placement and again.ray is not None and again.ray.kind == "cluster"


def test_a_node_the_service_waited_to_see_marked_dead_is_lost_once_in_the_order_said():
    ray_line = (
        "(raylet) The node with node id: aa11 and address: 10.0.0.2 and node name: 10.0.0.2 has been marked dead "
        "because the detector has missed too many heartbeats from it."
    )
    text = "\n".join(
        [
            _log(ATTACHED),
            _log(("node_lost", {"node_id": "bb22", "ip": "10.0.0.3", "waited_s": 14.0})),
            ray_line,
            _log(("node_lost", {"node_id": "aa11", "ip": "10.0.0.2", "waited_s": 15.5})),  # Ray said it too
        ]
    )
    placement = ray_placement(text)
    assert placement is not None and placement.lost_node_ids == ("bb22", "aa11")
