"""Scenarios' traffic (lab/traffic.py) over fake actions, and Serve's replica lines (analysis/serve_log.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from coldstart.analysis.results import ClientResult, ClientStatus, RequestGroup, RequestRecord, ResultRow
from coldstart.analysis.serve_log import ReplicaEventKind, llm_replicas_alive, replica_events, served_by
from coldstart.lab import traffic
from coldstart.registry import SCENARIOS, Autoscaling, Queueing, Scenario, get_scenario, with_max_replicas


def _result(n: int, status: ClientStatus = ClientStatus.OK) -> ClientResult:
    ok = status is ClientStatus.OK
    return ClientResult(
        schema_version=1,
        url="http://x/v1/chat/completions",
        model="tiny",
        status=status,
        error=None if ok else "boom",
        ttft_s=float(n) if ok else None,
        total_s=float(n) + 1,
        tokens=4 if ok else 0,
        t_send_epoch=1000.0 + n,
        t_first_token_epoch=1000.0 + 2 * n if ok else None,
        t_last_token_epoch=1001.0 + 2 * n if ok else None,
        first_text="hi" if ok else None,
        http_status=200,
        request_id=f"00000000-0000-0000-0000-{n:012d}",
    )


class Actions:
    """Records every action in order; the n-th request gets TTFT n (so each record is traceable)."""

    def __init__(self, fail_first: bool = False, zero_error: Exception | None = None):
        self.log: list[str] = []
        self.sent = 0
        self.lock = threading.Lock()
        self.fail_first = fail_first
        self.zero_error = zero_error
        self.in_flight = 0
        self.max_in_flight = 0

    def send(self) -> ClientResult:
        with self.lock:
            self.sent += 1
            n = self.sent
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.log.append("send")
        time.sleep(0.05)  # long enough for a burst's requests to overlap
        with self.lock:
            self.in_flight -= 1
        return _result(n, ClientStatus.NO_TOKEN if self.fail_first and n == 1 else ClientStatus.OK)

    def control(self, path: str, body: Mapping[str, Any]) -> float:
        self.log.append(f"control {path} {dict(body)}")
        return 2.5

    def wait_until_zero(self) -> float:
        self.log.append("zero")
        if self.zero_error is not None:
            raise self.zero_error
        return 7.0

    def run(self, scenario: Scenario) -> traffic.Traffic:
        return traffic.run_scenario(
            scenario,
            model="tiny",
            send=self.send,
            control=self.control,
            wait_until_zero=self.wait_until_zero,
            sleep=lambda s: None,
        )


def test_single_is_one_request_at_zero_then_one_at_the_running_replica() -> None:
    a = Actions()
    t = a.run(SCENARIOS["single"])
    assert [r.group for r in t.requests] == [RequestGroup.BURST, RequestGroup.AFTER_READY]
    assert [r.index for r in t.requests] == [0, 1]
    assert t.client == t.requests[0].client and t.client.warm_ttft_s == t.requests[1].client.ttft_s
    assert t.errors == ()


def test_a_burst_sends_its_requests_at_once_and_the_tour_runs_every_part_in_order() -> None:
    a = Actions()
    t = a.run(SCENARIOS["tour"])
    groups = [r.group for r in t.requests]
    assert groups == [RequestGroup.BURST] * 8 + [RequestGroup.AFTER_READY] * 8 + [
        RequestGroup.AFTER_READY_CONCURRENT
    ] * 4 + [RequestGroup.RETURN]
    assert a.max_in_flight >= 4  # the burst was concurrent, not one by one
    assert a.log.index("zero") == len(a.log) - 2  # waited for zero replicas right before the return's request
    assert t.requests[-1].cycle == 1 and all(r.cycle == 0 for r in t.requests[:-1])


def test_sleep_wake_sleeps_wakes_then_asks_and_keeps_the_wake_time() -> None:
    a = Actions()
    t = a.run(SCENARIOS["sleep_wake"])
    assert a.log[-3:] == [
        "control /sleep {'model': 'tiny', 'options': {'level': 1}}",
        "control /wakeup {'model': 'tiny', 'options': {}}",
        "send",
    ]
    assert t.requests[-1].group is RequestGroup.WAKE and t.requests[-1].control_s == 2.5


def test_a_first_request_without_a_token_ends_the_scenario_there() -> None:
    a = Actions(fail_first=True)
    t = a.run(SCENARIOS["return"])
    assert a.log == ["send"] and len(t.requests) == 1
    assert t.client.status is ClientStatus.NO_TOKEN and t.client.warm_ttft_s is None


def test_a_later_part_that_fails_is_an_error_of_the_row_not_a_lost_measurement() -> None:
    a = Actions(zero_error=traffic.ScenarioError("did not scale to zero within 60 s"))
    t = a.run(SCENARIOS["return"])
    assert t.client.ok and t.client.ttft_s == 1.0
    assert t.errors == ("ScenarioError: did not scale to zero within 60 s",)
    assert RequestGroup.RETURN not in {r.group for r in t.requests}


def test_a_flood_sends_its_trickle_beside_the_burst_and_keeps_every_request_whatever_its_end() -> None:
    """flood_at_zero: 64 at once and one every 0.5 s for 30 s in flight together, each kept as a record in plan
    order; a request Serve shed or that timed out is a record with its reason, and the scenario goes on."""
    scenario = SCENARIOS["flood_at_zero"]
    a = Actions()
    # By send order, from 1; late ones, so the run's first request (the first thread to send) is answered.
    ends = {100: (ClientStatus.HTTP_ERROR, 503), 120: (ClientStatus.TIMEOUT, None)}

    def send() -> ClientResult:
        result = a.send()  # the n-th send has TTFT n
        status, http = ends.get(int(result.ttft_s or 0), (ClientStatus.OK, 200))
        if status is ClientStatus.OK:
            return result
        return dataclasses.replace(result, status=status, error=f"{status}", ttft_s=None, http_status=http)

    slept: list[float] = []
    t = traffic.run_scenario(
        scenario, model="tiny", send=send, control=a.control, wait_until_zero=a.wait_until_zero, sleep=slept.append
    )
    groups = [r.group for r in t.requests]
    assert groups == [RequestGroup.BURST] * 64 + [RequestGroup.TRICKLE] * 60 + [RequestGroup.AFTER_READY]
    assert [r.index for r in t.requests] == list(range(125))
    assert a.max_in_flight > 64  # the trickle's first requests went out while the burst was still in flight
    # Only the trickle waits, each for what is left of its offset after the common start.
    assert len(slept) == 60
    waits = zip(scenario.trickle_offsets_s(), sorted(slept), strict=True)
    assert all(0.0 <= offset - wait < 0.4 for offset, wait in waits)
    failed = [r.client for r in t.requests if not r.client.ok]
    assert sorted((c.status, c.http_status) for c in failed) == [
        (ClientStatus.HTTP_ERROR, 503),
        (ClientStatus.TIMEOUT, None),
    ]
    assert all(c.error for c in failed)


def test_a_trickle_is_every_interval_up_to_its_end() -> None:
    flood = SCENARIOS["flood_at_zero"]
    offsets = flood.trickle_offsets_s()
    assert (len(offsets), offsets[0], offsets[-1]) == (60, 0.5, 30.0)
    fine = Scenario("x", "x", trickle_every_s=0.1, trickle_s=30.0).trickle_offsets_s()
    assert len(fine) == 300 and fine[-1] == pytest.approx(30.0)  # 0.1 is no binary fraction: the last one stays
    assert Scenario("x", "x").trickle_offsets_s() == []


def test_ramp_spreads_the_burst_evenly() -> None:
    assert traffic.ramp_offsets(1, 10.0) == [0.0]
    assert traffic.ramp_offsets(3, 0.0) == [0.0, 0.0, 0.0]
    assert traffic.ramp_offsets(5, 8.0) == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"burst": 0}, "burst"),
        ({"ramp_s": -1.0}, "ramp_s"),
        ({"returns": 1}, "downscale_delay_s"),
        ({"sleep_wake": True, "sleep_level": 3}, "sleep levels"),
        ({"trickle_s": 5.0}, "both > 0"),
        ({"trickle_every_s": 1.0}, "both > 0"),
        ({"trickle_every_s": 2.0, "trickle_s": 1.0}, "trickle_every_s 2.0 > trickle_s"),
    ],
)
def test_a_scenario_that_cannot_run_is_refused_when_it_is_made(kwargs: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Scenario("x", "x", **kwargs)


def test_autoscaling_gives_serve_only_what_is_set_and_max_replicas_can_be_replaced() -> None:
    assert Autoscaling().serve_config() == {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}
    burst_n = with_max_replicas(get_scenario("burst_replicas"), 4)
    assert burst_n.autoscaling.serve_config() == {
        "min_replicas": 0,
        "initial_replicas": 0,
        "max_replicas": 4,
        "target_ongoing_requests": 1.0,
        "upscale_delay_s": 0.0,
    }
    assert get_scenario("burst_replicas").autoscaling.max_replicas == 2  # the registry's entry is untouched
    with pytest.raises(ValueError, match="max_replicas"):
        Autoscaling(max_replicas=0)


def test_queueing_gives_serve_only_what_is_set() -> None:
    assert Queueing().deployment_options() == {}
    assert Queueing(max_queued_requests=-1).deployment_options() == {"max_queued_requests": -1}
    assert get_scenario("flood_at_zero").queueing.deployment_options() == {
        "max_ongoing_requests": 1_000_000_000,
        "max_queued_requests": -1,
    }
    with pytest.raises(ValueError, match="max_queued_requests"):
        Queueing(max_queued_requests=0)  # Serve: -1 or a positive limit
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        Queueing(max_ongoing_requests=0)


# --- Serve's own lines ------------------------------------------------------------------------------------------

_APP = "app='coldstart-tiny'"
_CTRL = "(ServeController pid=7) INFO 2026-11-29 19:01:{s},000 controller 7 -- "
_FWD = "(ServeController) INFO 2026-11-29 19:01:{s},000 controller 7 -- "  # the follower's copy of the same line


def _replica(rid: str, dep: str = "LLMServer:tiny") -> str:
    return f"Replica(id='{rid}', deployment='{dep}', {_APP})"


def _log(*lines: tuple[int, str]) -> str:
    out = []
    for s, text in lines:
        out += [_CTRL.format(s=f"{s:02d}") + text, _FWD.format(s=f"{s:02d}") + text]  # every line twice
    return "\n".join(out) + "\n"


_TWO_REPLICAS = _log(
    (1, f"Starting {_replica('ingress1', 'OpenAiIngress')}."),
    (2, f"Upscaling Deployment(name='LLMServer:tiny', {_APP}) from 0 to 2 replicas. Current ongoing requests: 8.00"),
    (3, f"Starting {_replica('aaaa1111')}."),
    (3, f"Starting {_replica('bbbb2222')}."),
    (20, f"{_replica('aaaa1111')} started successfully on node 'n' after 17.0s (PID: 9)."),
    (22, f"{_replica('bbbb2222')} started successfully on node 'n' after 19.0s (PID: 10)."),
    (40, f"Downscaling Deployment(name='LLMServer:tiny', {_APP}) from 2 to 0 replicas. Current ongoing requests: 0"),
    (40, f"Stopping {_replica('aaaa1111')} (currently RUNNING)."),
    (41, f"{_replica('aaaa1111')} is stopped."),
)


def test_replica_events_are_read_once_each_though_the_log_has_them_twice() -> None:
    events = replica_events(_TWO_REPLICAS)
    kinds = [(e.kind, e.replica_id) for e in events if e.is_llm]
    assert kinds == [
        (ReplicaEventKind.UPSCALE, None),
        (ReplicaEventKind.STARTING, "aaaa1111"),
        (ReplicaEventKind.STARTING, "bbbb2222"),
        (ReplicaEventKind.RUNNING, "aaaa1111"),
        (ReplicaEventKind.RUNNING, "bbbb2222"),
        (ReplicaEventKind.DOWNSCALE, None),
        (ReplicaEventKind.STOPPING, "aaaa1111"),
        (ReplicaEventKind.STOPPED, "aaaa1111"),
    ]
    assert events[1].to_replicas == 2 and not events[0].is_llm  # the ingress is not the LLM deployment
    assert llm_replicas_alive(_TWO_REPLICAS) == (2, 1)  # bbbb2222 still up
    assert llm_replicas_alive(_TWO_REPLICAS + _log((42, f"{_replica('bbbb2222')} is stopped."))) == (2, 0)
    assert llm_replicas_alive("") == (0, 0)


def test_served_by_names_the_llm_replica_not_the_ingress() -> None:
    # Both lines verbatim in shape from a GPU run (experiment_terminal_output/llama-3-8b/fast/…9d92.log).
    rid = "333ab388-e39a-4214-98b2-2b0f19ba4045"
    text = (
        f"(ServeReplica:coldstart-tiny:OpenAiIngress pid=13347) INFO 2026-11-29 19:01:59,412 "
        f"coldstart-tiny_OpenAiIngress v60gpw42 {rid} -- POST /v1/chat/completions 200 26722.9ms\n"
        f"(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=12012) INFO 2026-11-29 19:01:59,408 "
        f"coldstart-tiny_ColdStartLLMServer:tiny 1jjuggdv {rid} -- CALL chat OK 141.7ms\n"
    )
    assert served_by(text) == {rid: "1jjuggdv"}
    records = traffic.Traffic(
        _result(1),
        (
            RequestRecord(0, RequestGroup.BURST, dataclasses.replace(_result(1), request_id=rid)),
            RequestRecord(1, RequestGroup.AFTER_READY, _result(2)),
        ),
    )
    assert [r.replica_id for r in traffic.with_replicas(records, text).requests] == ["1jjuggdv", None]


def test_log_waiter_returns_once_every_started_replica_stopped_and_gives_up_after_its_limit(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(_TWO_REPLICAS)
    ticks = iter(range(1000))
    wait = traffic.log_waiter(log, timeout_s=3.0, poll_s=0.0, clock=lambda: float(next(ticks)))
    with pytest.raises(traffic.ScenarioError, match=r"1 of 2 replicas still up"):
        wait()
    log.write_text(_TWO_REPLICAS + _log((42, f"{_replica('bbbb2222')} is stopped.")))
    assert wait() == 1.0  # one tick of the fake clock: it returned at the first look
    # Nothing started yet is not "at zero": the first start must have happened before a return.
    log.write_text("")
    with pytest.raises(traffic.ScenarioError):
        wait()


def test_rows_keep_their_scenario_and_requests_through_a_round_trip() -> None:
    t = Actions().run(SCENARIOS["after_ready"])
    row = ResultRow(
        run_id="r",
        model="tiny",
        experiment="baseline",
        repeat=0,
        status="ok",
        ttft_s=t.client.ttft_s,
        phases={},
        audit=None,
        log_path=None,
        provenance=None,
        config={},
        client=t.client,
        scenario="after_ready",
        requests=t.requests,
    )
    back = ResultRow.from_dict(row.to_dict())
    assert back == row and back.requests is not None and len(back.requests) == 13
    assert back.requests[0].client.request_id == "00000000-0000-0000-0000-000000000001"
    old = {k: v for k, v in row.to_dict().items()}
    old["extra"] = {k: v for k, v in old["extra"].items() if k not in ("scenario", "requests")}
    assert ResultRow.from_dict(old).scenario_name == "single"  # rows from before scenarios ran `single`


def test_sleep_wake_is_refused_on_cpu_before_anything_starts_and_asks_for_the_dev_ingress_on_gpu(
    capsys, tmp_path: Path
) -> None:
    import argparse
    import json

    from coldstart.lab import service

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))

    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        service.add_cli_args(parser)
        return service.main(parser.parse_args(["tiny", "baseline", "--dry-run", "--weights", str(tmp_path), *argv]))

    assert run("--scenario", "sleep_wake", "--device", "cpu") == 2
    assert "sleep mode needs CUDA" in capsys.readouterr().err
    assert run("--scenario", "sleep_wake", "--device", "cuda") == 0
    out = capsys.readouterr().out
    assert "import_path: ray.llm._internal.serve.core.ingress.dev_ingress:build_dev_openai_app" in out
    assert "enable_sleep_mode: true" in out
    assert run("--scenario", "burst_replicas", "--max-replicas", "4", "--device", "cpu") == 0
    assert "max_replicas: 4" in capsys.readouterr().out


def test_the_runner_waits_for_the_access_line_of_the_last_request(tmp_path: Path) -> None:
    from coldstart.lab.matrix.service_sut import wait_for_access_lines

    rid = "71483b30-b50b-47d5-8fb8-9e48cbed850b"
    log = tmp_path / "run.log"
    log.write_text("nothing yet\n")
    t = traffic.Traffic(
        _result(1), (RequestRecord(0, RequestGroup.RETURN, dataclasses.replace(_result(1), request_id=rid)),)
    )
    line = (
        "(ServeReplica:a:LLMServer:tiny pid=1) INFO 2026-11-29 22:29:00,000 "
        f"a_LLMServer:tiny zz9kvais {rid} -- CALL chat OK 1.0ms\n"
    )
    timer = threading.Timer(0.3, lambda: log.write_text("nothing yet\n" + line))
    timer.start()
    text = wait_for_access_lines(log, t, timeout_s=10.0, poll_s=0.05)
    timer.join()
    assert traffic.with_replicas(t, text).requests[0].replica_id == "zz9kvais"
    log.write_text("never\n")
    t0 = time.monotonic()
    assert wait_for_access_lines(log, t, timeout_s=0.2, poll_s=0.05) == "never\n"  # gives up: no replica, no hang
    assert time.monotonic() - t0 < 5


def test_a_scenario_run_is_labelled_so_that_rich_prints_its_scenario() -> None:
    import io

    import rich.console

    from coldstart.lab.matrix.plan import RunSpec

    out = io.StringIO()
    rich.console.Console(file=out, width=200).print(f"{RunSpec('tiny', 'fast', 0, scenario='tour').label}: ok")
    assert out.getvalue().strip() == "tiny fast (tour) #0: ok"
    assert RunSpec("tiny", "fast", 0).label == "tiny fast #0"


def test_a_log_that_went_back_to_zero_is_summarized_up_to_its_second_start() -> None:
    from coldstart.analysis.serve_log import first_start

    second = _log((50, f"Upscaling Deployment(name='LLMServer:tiny', {_APP}) from 0 to 1 replicas. Current ongoing"))
    text = _TWO_REPLICAS + "engine line of the first start\n" + second + "engine line of the second start\n"
    cut = first_start(text)
    assert cut.endswith("engine line of the first start\n") and "second start" not in cut
    assert first_start(_TWO_REPLICAS) == _TWO_REPLICAS  # one start from zero (its line twice): whole


@pytest.mark.parametrize("module", ["service", "matrix.cli"])
def test_max_replicas_below_one_is_refused_by_the_parser(module: str, capsys) -> None:
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"coldstart.lab.{module}").add_cli_args(parser)
    argv = ["tiny", "baseline"] if module == "service" else []
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*argv, "--max-replicas", "0"])
    assert exc.value.code == 2 and "--max-replicas" in capsys.readouterr().err
    assert parser.parse_args([*argv, "--max-replicas", "4"]).max_replicas == 4
