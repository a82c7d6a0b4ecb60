"""Replica starts Serve gave up on, read from the controller's own records in a run log: which start failed, why,
in which process, and which start served in the end. The lines are real (a CPU run of tiny on the fast path whose
EngineCore, then replica actor, were killed mid-load, and a cluster run whose worker node was killed), with the
middle of each traceback cut."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from coldstart.analysis.placement import RayPlacement, ray_placement
from coldstart.analysis.results import (
    ClientResult,
    ReplicaSpan,
    RequestGroup,
    RequestRecord,
    ResultRow,
    RunStatus,
    SchemaError,
    StartFailure,
)
from coldstart.analysis.serve_log import ReplicaEventKind, replica_events, replica_spans
from coldstart.analysis.timeline import FAILED_STARTS_SEGMENT, build_timeline
from coldstart.lab.matrix.rows import failure_story, weights_store

_LLM = "deployment='ColdStartLLMServer:tiny', app='coldstart-tiny'"
_DRIVER = "\x1b[36m(ServeController pid=26413)\x1b[0m "
_FOLLOWER = "(ServeController) "

# The first start's EngineCore was killed while its worker loaded the model: the constructor raised.
ENGINE_DIED = [
    f"ERROR 2026-12-07 16:59:29,073 controller 26413 -- Exception in Replica(id='13l1inpi', {_LLM}), the replica "
    "will be stopped.",
    "Traceback (most recent call last):",
    '  File "ray/serve/_private/deployment_state.py", line 1467, in check_ready',
    "    ) = ray.get(self._ready_obj_ref)",
    "ray.exceptions.RayTaskError(RuntimeError): \x1b[36mray::ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny."
    "initialize_and_get_metadata()\x1b[39m (pid=27995, ip=192.0.2.2, actor_id=c53998373c518a170ebe76b001000000, "
    "repr=<ray.serve._private.replica.ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny object at 0x7f>)",
    '  File "ray/serve/_private/replica.py", line 1880, in initialize',
    "    raise RuntimeError(traceback.format_exc()) from None",
    "RuntimeError: Traceback (most recent call last):",
    '  File "vllm/v1/engine/utils.py", line 1146, in wait_for_engine_startup',
    "    raise RuntimeError(",
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': -9}",
    "",
    f"INFO 2026-12-07 16:59:29,285 controller 26413 -- Replica(id='13l1inpi', {_LLM}) is stopped.",
    f"INFO 2026-12-07 16:59:29,286 controller 26413 -- Starting Replica(id='tpits0uw', {_LLM}).",
]
# The second start's replica actor was killed while its engine loaded.
ACTOR_DIED = [
    f"ERROR 2026-12-07 16:59:51,754 controller 26413 -- Exception in Replica(id='tpits0uw', {_LLM}), the replica "
    "will be stopped.",
    "Traceback (most recent call last):",
    '  File "ray/_private/worker.py", line 1052, in get_objects',
    "    raise value",
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.",
    "\tclass_name: ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny",
    "\tactor_id: 65a1323045fd6f351f4a76a901000000",
    "\tpid: 31765",
    "\tname: SERVE_REPLICA::coldstart-tiny#ColdStartLLMServer:tiny#tpits0uw",
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: "
    "Worker unexpectedly exits with a connection error code 2. End of file. Some common causes include: (1) the "
    "process was killed by the OOM killer due to high memory usage",
    f"INFO 2026-12-07 16:59:51,792 controller 26413 -- Replica(id='tpits0uw', {_LLM}) is stopped.",
    f"INFO 2026-12-07 16:59:51,793 controller 26413 -- Starting Replica(id='lic5p1xk', {_LLM}).",
    f"INFO 2026-12-07 17:00:33,523 controller 26413 -- Replica(id='lic5p1xk', {_LLM}) started successfully on node "
    "'1a12' after 41.7s (PID: 307). Replica constructor, reconfigure method, and initial health check took 23.0s.",
]
BEFORE = [
    "INFO 2026-12-07 16:59:27,419 controller 26413 -- Upscaling Deployment(name='ColdStartLLMServer:tiny', "
    "app='coldstart-tiny') from 0 to 1 replicas. Current ongoing requests: 1.00, current running replicas: 0.",
    f"INFO 2026-12-07 16:59:27,526 controller 26413 -- Starting Replica(id='13l1inpi', {_LLM}).",
]
CONTROLLER = BEFORE + ENGINE_DIED + ACTOR_DIED
# Each record comes twice: the lab's follower of the controller's file, and Ray's forwarding to the driver (late,
# in colour); another writer's line can fall between two lines of a traceback.
LOG = "\n".join(
    [_FOLLOWER + line for line in CONTROLLER]
    + [
        _DRIVER + line if i != 8 else "\x1b[33m(raylet)\x1b[0m A worker died or was killed"
        for i, line in enumerate(CONTROLLER)
    ]
)

# A worker node killed mid-start (cluster): the ingress that lived there could not even be placed again.
NODE_DIED = "\n".join(
    _DRIVER + line
    for line in [
        "ERROR 2026-12-07 17:10:19,183 controller 4339 -- Exception when allocating Replica(id='s0y1hsq4', "
        "deployment='OpenAiIngress', app='coldstart-tiny'):",
        "Traceback (most recent call last):",
        "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.",
        "\tclass_name: ServeReplica:coldstart-tiny:OpenAiIngress",
        "The actor died because its node has died. Node Id: f6508089890ebf9faa98ea49f947776e482a7bec6a739cc9a55112f5",
        "\tthe actor's node was terminated unexpectedly: health check failed due to missing too many heartbeats",
        "INFO 2026-12-07 17:10:19,185 controller 4339 -- Replica(id='s0y1hsq4', deployment='OpenAiIngress', "
        "app='coldstart-tiny') is stopped.",
    ]
)


def test_each_failed_start_is_one_event_with_its_exception_reason_and_process():
    failed = [e for e in replica_events(LOG) if e.kind is ReplicaEventKind.START_FAILED]
    assert [(e.replica_id, e.exception, e.pid) for e in failed] == [
        ("13l1inpi", "RuntimeError", 27995),  # the replica's own error, not Ray's wrapper around it
        ("tpits0uw", "ActorDiedError", 31765),
    ]
    engine, actor = failed
    assert engine.reason == "Engine core initialization failed. See root cause above. Failed core proc(s): " + (
        "{'EngineCore': -9}"
    )
    assert actor.reason.startswith("The actor died unexpectedly before finishing this task. The actor is dead ")
    assert "Worker exit type: SYSTEM_ERROR" in actor.reason and "OOM killer" not in actor.reason


def test_a_replica_whose_node_died_before_it_was_placed_failed_with_rays_cause():
    (failed,) = [e for e in replica_events(NODE_DIED) if e.kind is ReplicaEventKind.START_FAILED]
    assert failed.deployment == "OpenAiIngress" and failed.pid is None
    assert failed.exception == "ActorDiedError"
    assert "The actor died because its node has died. Node Id: f6508089" in failed.reason


def test_the_spans_say_which_starts_failed_and_which_served():
    first, second, third = replica_spans(LOG, 0.0)
    assert first.failed and second.failed and not third.failed
    assert (first.pid, second.pid, third.pid) == (27995, 31765, 307)
    assert first.failure.exception == "RuntimeError" and second.failure.exception == "ActorDiedError"
    assert first.t_starting_epoch < first.failure.t_epoch < second.t_starting_epoch < second.failure.t_epoch
    assert third.t_starting_epoch >= second.failure.t_epoch and third.t_running_epoch is not None
    assert first.t_stopped_epoch is not None and first.t_running_epoch is None  # it never ran


def test_a_failed_span_round_trips_and_older_spans_read_back_without_one():
    (first, *_) = replica_spans(LOG, 0.0)
    assert ReplicaSpan.from_dict(first.to_dict()) == first
    assert first.to_dict()["failure"]["exception"] == "RuntimeError"
    old = {"replica_id": "x", "deployment": "d", "t_upscale_epoch": None, "t_starting_epoch": 1.0}
    assert ReplicaSpan.from_dict(old).failure is None and "failure" not in ReplicaSpan.from_dict(old).to_dict()
    with pytest.raises(SchemaError):
        ReplicaSpan.from_dict({**old, "failure": {"exception": "RuntimeError", "reason": "x"}})  # no time
    with pytest.raises(SchemaError):
        StartFailure.from_dict({"t_epoch": 1.0, "exception": None, "reason": None, "signal": 9})


def _row(spans: tuple[ReplicaSpan, ...], served_by: str | None) -> ResultRow:
    client = ClientResult.from_dict({"status": "ok", "ttft_s": 40.0, "t_send_epoch": 1.0})
    return ResultRow(
        run_id="r",
        model="tiny",
        experiment="fast",
        repeat=0,
        status=RunStatus.OK,
        ttft_s=40.0,
        phases={},
        audit=None,
        log_path=None,
        provenance=None,
        config={},
        client=client,
        requests=(RequestRecord(index=0, group=RequestGroup.BURST, client=client, replica_id=served_by),),
        replicas=spans,
    )


def test_the_row_names_the_start_that_served_the_first_token_and_the_failed_ones():
    spans = replica_spans(LOG, 0.0)
    row = _row(spans, "lic5p1xk")
    assert [s.replica_id for s in row.failed_starts] == ["13l1inpi", "tpits0uw"]
    assert row.first_token_replica == spans[2]
    back = ResultRow.from_dict(row.to_dict())
    assert back.failed_starts == row.failed_starts and back.first_token_replica == spans[2]
    assert _row(spans, None).first_token_replica is None  # no access line: not guessed
    assert dataclasses.replace(row, replicas=None).failed_starts == ()


# A real run (CPU, tiny, fast): the first start's EngineCore was SIGKILLed 1.6 s after the request, Serve started a
# second replica on a fresh worker, which served. Driver lines as logged (tracebacks cut to their last lines).
RETRIED = Path(__file__).resolve().parent / "fixtures" / "fault_logs" / "fast-engine-core-killed-mid-start.log"
RETRIED_CLIENT = ClientResult.from_dict(
    {
        "status": "ok",
        "request_id": "2c0619bd-acef-4980-ac84-a977a77c01d7",  # the access line of replica kj5denfx
        "t_send_epoch": 1796662767.300,  # just before the ingress's first line for it (16:59:27,396)
        "ttft_s": 38.1,  # the client saw its first token 17:00:05.4, a moment after the access line
    }
)


def test_the_timeline_gives_the_failed_start_a_segment_and_takes_every_milestone_from_the_start_that_served():
    timeline = build_timeline(RETRIED.read_text(), RETRIED_CLIENT)
    seconds = timeline.segment_seconds()
    # From the failed replica's "Starting Replica" (16:59:27,526) to the served one's (16:59:29,086).
    assert seconds[FAILED_STARTS_SEGMENT] == pytest.approx(1.560, abs=0.002)
    # The served start's own milestones: its replica's first event, its EngineCore's first line (16:59:43), not
    # the killed one's (16:59:27), so the new worker's 14 s of imports are the actor start, not the engine's.
    init = timeline.milestone("replica_node_init_start")
    assert init is not None and init.t_epoch == pytest.approx(1796662783.366, abs=0.01)
    spawn = timeline.milestone("engine_core_start")
    assert spawn is not None and spawn.t_epoch >= 1796662783.0
    assert seconds["seg_engine_process_spawn_s"] < 1.0, seconds
    # Upscale (16:59:27,419) to the served replica's first event, less the failed start carved out of it.
    assert seconds["seg_replica_actor_start_s"] == pytest.approx(1796662783.366 - 1796662767.419 - 1.560, abs=0.01)
    measured = [v for v in seconds.values() if v is not None]
    assert sum(measured) == pytest.approx(38.1, abs=1e-6)  # still adds up to the TTFT


def test_a_run_without_failed_starts_has_no_failed_segment():
    timeline = build_timeline(LOG.replace("Exception in", "Nothing in"), None)
    assert timeline.segment_seconds()[FAILED_STARTS_SEGMENT] is None


# Ray's line when the worker node of a cluster run was killed mid-start (forwarded from the GCS).
NODE_DEAD = (
    "\x1b[33m(raylet)\x1b[0m The node with node id: f6508089890ebf9faa98ea49f947776e482a7bec6a739cc9a55112f5 and "
    "address: 192.0.2.2 and node name: 192.0.2.2 has been marked dead because the detector has missed too many "
    "heartbeats from it. This can happen when a \t(1) raylet crashes unexpectedly (OOM, etc.) "
)
ATTACHED = ':::COLDSTART {"event": "ray_attached", "t": 1.0, "kind": "cluster", "node_id": "aa", "nodes": []}'


def test_the_placement_names_the_nodes_ray_lost_and_old_rows_keep_their_shape():
    placement = ray_placement("\n".join([ATTACHED, NODE_DEAD, NODE_DEAD]))
    assert placement is not None
    assert placement.lost_node_ids == ("f6508089890ebf9faa98ea49f947776e482a7bec6a739cc9a55112f5",)
    assert RayPlacement.from_dict(placement.to_dict()) == placement
    calm = ray_placement(ATTACHED)
    assert calm is not None and calm.lost_node_ids == () and "lost_node_ids" not in calm.to_dict()


def test_a_failed_client_gets_the_story_behind_it_and_a_served_one_keeps_its_own_word():
    placement = ray_placement("\n".join([ATTACHED, NODE_DEAD]))
    spans = replica_spans(LOG, 0.0)
    cut = ClientResult.from_dict({"status": "http_error", "error": "HTTP 500: Internal Server Error"})
    story = failure_story(cut, spans, placement)
    assert story is not None and story.startswith("HTTP 500: Internal Server Error; Ray lost node f6508089")
    assert story.endswith(
        "2 replica start(s) failed, the last (tpits0uw) with ActorDiedError: The actor died unexpectedly before "
        "finishing this task. The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
        "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of file."
    )
    served = ClientResult.from_dict({"status": "ok", "ttft_s": 40.0})
    assert failure_story(served, spans, placement) is None  # the retries are in the replicas, not an error
    assert failure_story(cut, None, None) == "HTTP 500: Internal Server Error"


def test_failed_starts_that_streamed_from_a_store_name_it_and_disk_weights_do_not():
    spans = replica_spans(LOG, 0.0)
    cut = ClientResult.from_dict({"status": "http_error", "error": "HTTP 500: Internal Server Error"})
    streamed = {
        "llm_configs": [
            {
                "model_loading_config": {"model_id": "tiny", "model_source": "s3://lab/coldstart/models/tiny"},
                "runtime_env": {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:5555"}},
            }
        ]
    }
    store = weights_store(streamed)
    assert store == "s3://lab/coldstart/models/tiny at http://127.0.0.1:5555"
    story = failure_story(cut, spans, None, store)
    assert story is not None and story.endswith(
        "; the weights stream from s3://lab/coldstart/models/tiny at http://127.0.0.1:5555"
    )
    on_disk = {"llm_configs": [{"model_loading_config": {"model_id": "tiny", "model_source": "/models/tiny"}}]}
    assert weights_store(on_disk) is None and weights_store({}) is None
    # No failed start, no store in the story: the client's word and what Ray said are the whole of it.
    assert "weights stream" not in (failure_story(cut, None, None, store) or "")
