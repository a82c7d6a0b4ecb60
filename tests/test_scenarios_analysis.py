"""Scenario runs in the analysis: replica spans from Serve's controller lines, the per-row scenario summary, its
medians over runs, the scenario tables and graphs, and the ladder kept to single-request rows."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

from coldstart.analysis import scenarios
from coldstart.analysis.results import (
    Audit,
    ClientResult,
    ReplicaSpan,
    RequestGroup,
    RequestRecord,
    ResultRow,
    RunStatus,
)
from coldstart.analysis.serve_log import ReplicaEventKind, replica_events, replica_spans

# The first send of every hand-built run: just before the upscale decision of CONTROLLER_LOG below.
T0 = datetime(2026, 11, 29, 19, 1, 32, 700000, tzinfo=timezone.utc).timestamp()

# Real line shapes (experiment_terminal_output/llama-3-8b/fast/20261129T185950Z-9d92.log): each controller line
# comes twice, once forwarded by Ray's driver (colour prefix, printed late) and once from the follower. Two
# replicas start for one upscale decision; one goes when Serve downscales; the ingress's lines are not the LLM's.
_APP = "app='coldstart-tiny'"
_LLM = f"deployment='ColdStartLLMServer:tiny', {_APP}"
_DRIVER = "\x1b[36m(ServeController pid=12007)\x1b[0m INFO 2026-11-29 "
_FOLLOWER = "(ServeController) INFO 2026-11-29 "
_CONTROLLER_LINES = [
    f"19:00:55,283 controller 12007 -- Starting Replica(id='v60gpw42', deployment='OpenAiIngress', {_APP}).",
    f"19:01:32,126 controller 12007 -- Replica(id='v60gpw42', deployment='OpenAiIngress', {_APP}) started "
    "successfully on node 'be82' after 36.8s (PID: 13347). Replica constructor, reconfigure method, and initial "
    "health check took 0.0s.",
    f"19:01:32,753 controller 12007 -- Upscaling Deployment(name='ColdStartLLMServer:tiny', {_APP}) from 0 to 2 "
    "replicas. Current ongoing requests: 8.00, current running replicas: 0.",
    f"19:01:32,861 controller 12007 -- Adding 2 replicas to Deployment(name='ColdStartLLMServer:tiny', {_APP}).",
    f"19:01:32,861 controller 12007 -- Starting Replica(id='1jjuggdv', {_LLM}).",
    f"19:01:32,862 controller 12007 -- Starting Replica(id='2kkvhhew', {_LLM}).",
    f"19:01:59,253 controller 12007 -- Replica(id='1jjuggdv', {_LLM}) started successfully on node 'be82' after "
    "26.4s (PID: 12012). Replica constructor, reconfigure method, and initial health check took 25.7s.",
    f"19:02:04,500 controller 12007 -- Replica(id='2kkvhhew', {_LLM}) started successfully on node 'be82' after "
    "31.6s (PID: 12013). Replica constructor, reconfigure method, and initial health check took 30.9s.",
    f"19:03:10,000 controller 12007 -- Downscaling Deployment(name='ColdStartLLMServer:tiny', {_APP}) from 2 to 1 "
    "replicas. Current ongoing requests: 0.00, current running replicas: 2.",
    f"19:03:10,001 controller 12007 -- Stopping Replica(id='2kkvhhew', {_LLM}) (currently RUNNING).",
    f"19:03:12,250 controller 12007 -- Replica(id='2kkvhhew', {_LLM}) is stopped.",
]
CONTROLLER_LOG = "\n".join(
    [_FOLLOWER + line for line in _CONTROLLER_LINES]
    + [_DRIVER + line for line in _CONTROLLER_LINES]  # the driver's copies, late and out of order
    + [
        "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=12012)\x1b[0m INFO 2026-11-29 "
        "19:01:59,408 coldstart-tiny_ColdStartLLMServer:tiny 1jjuggdv 333ab388-e39a-4214-98b2-2b0f19ba4045 -- "
        "CALL chat OK 141.7ms"
    ]
)


def _epoch(stamp: str, utc_offset_s: float = 0.0) -> float:
    naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc)
    return naive.timestamp() - utc_offset_s


def test_replica_spans_of_the_llm_deployment_once_each_from_decision_to_stop():
    spans = replica_spans(CONTROLLER_LOG, 0.0)
    assert [s.replica_id for s in spans] == ["1jjuggdv", "2kkvhhew"]  # the ingress's replica is not the LLM's
    first, second = spans
    assert first.deployment == "ColdStartLLMServer:tiny"
    # One upscale decision started both: it is each one's t_upscale.
    assert first.t_upscale_epoch == second.t_upscale_epoch == _epoch("2026-11-29 19:01:32,753")
    assert first.t_starting_epoch == _epoch("2026-11-29 19:01:32,861")
    assert first.t_running_epoch == _epoch("2026-11-29 19:01:59,253")
    assert first.t_stopping_epoch is None and first.t_stopped_epoch is None  # still up when the log ends
    assert second.t_running_epoch == _epoch("2026-11-29 19:02:04,500")
    assert second.t_stopping_epoch == _epoch("2026-11-29 19:03:10,001")
    assert second.t_stopped_epoch == _epoch("2026-11-29 19:03:12,250")


def test_a_started_replica_names_the_process_it_runs_in():
    # Which Ray worker a replica was given: the fast path proves a prestarted one by this pid.
    running = [e for e in replica_events(CONTROLLER_LOG) if e.kind is ReplicaEventKind.RUNNING]
    assert [(e.deployment, e.replica_id, e.pid) for e in running] == [
        ("OpenAiIngress", "v60gpw42", 13347),
        ("ColdStartLLMServer:tiny", "1jjuggdv", 12012),
        ("ColdStartLLMServer:tiny", "2kkvhhew", 12013),
    ]
    no_pid = _FOLLOWER + _CONTROLLER_LINES[6].split(" on node")[0] + "."
    (event,) = replica_events(no_pid)
    assert event.kind is ReplicaEventKind.RUNNING and event.pid is None


def test_each_replica_span_holds_its_own_engine_start_and_ready():
    # Real shapes (tiny/fast, CPU e2e): the callback's event from the replica's process, Ray LLM's line from its
    # logger. The second replica (pid 12013) said neither: its engine times stay None, never another's.
    engine_lines = [
        "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=12012)\x1b[0m :::COLDSTART "
        + json.dumps({"event": "engine_start", "t": T0 + 4.0, "pid": 12012}),
        "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=12012)\x1b[0m INFO 2026-11-29 "
        "19:01:58,900 coldstart-tiny_ColdStartLLMServer:tiny 1jjuggdv -- Started vLLM engine.",
    ]
    first, second = replica_spans(CONTROLLER_LOG + "\n" + "\n".join(engine_lines), 0.0)
    assert (first.pid, second.pid) == (12012, 12013)
    assert first.t_engine_start_epoch == T0 + 4.0
    assert first.t_engine_ready_epoch == _epoch("2026-11-29 19:01:58,900")
    assert first.t_starting_epoch < first.t_engine_start_epoch < first.t_engine_ready_epoch < first.t_running_epoch
    assert second.t_engine_start_epoch is None and second.t_engine_ready_epoch is None
    # A row written before these fields reads back with them unknown.
    old = ReplicaSpan.from_dict({"replica_id": "x", "deployment": "d", "t_running_epoch": 1.0})
    assert old.pid is None and old.t_engine_ready_epoch is None
    assert "pid" not in old.to_dict() and "t_engine_start_epoch" not in old.to_dict()  # written back as it was
    assert ReplicaSpan.from_dict(first.to_dict()) == first


def test_a_replica_never_marked_running_is_found_by_its_own_lines():
    # Real lines (llama-3-8b/fast/20261130T084613Z-88c9, two replicas started together): the run ended before
    # the controller said 02ar21jh "started successfully", so only the replica's own lines name its pid.
    log = "\n".join(
        [
            _FOLLOWER + f"19:01:32,861 controller 12007 -- Starting Replica(id='02ar21jh', {_LLM}).",
            "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=9940)\x1b[0m :::COLDSTART "
            + json.dumps({"event": "engine_start", "t": T0 + 4.0, "pid": 9940}),
            "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=9941)\x1b[0m :::COLDSTART "
            + json.dumps({"event": "engine_start", "t": T0 + 3.0, "pid": 9941}),
            "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=9940)\x1b[0m INFO 2026-11-29 "
            "19:01:33,498 coldstart-tiny_ColdStartLLMServer:tiny 02ar21jh -- Clearing the current platform cache ...",
            "\x1b[36m(ServeReplica:coldstart-tiny:ColdStartLLMServer:tiny pid=9940)\x1b[0m INFO 2026-11-29 "
            "19:01:50,136 coldstart-tiny_ColdStartLLMServer:tiny 02ar21jh -- Started vLLM engine.",
        ]
    )
    (span,) = replica_spans(log, 0.0)
    assert span.t_running_epoch is None
    assert (span.pid, span.t_engine_start_epoch) == (9940, T0 + 4.0)  # its own process's, not 9941's
    assert span.t_engine_ready_epoch == _epoch("2026-11-29 19:01:50,136")
    # The controller's pid, when it gave one, is kept over anything else.
    (first, _) = replica_spans(CONTROLLER_LOG + "\n" + log.replace("02ar21jh", "1jjuggdv").split("\n", 1)[1], 0.0)
    assert first.pid == 12012


def test_replica_spans_move_local_stamps_to_epoch_by_the_timelines_offset():
    # UTC+2 (local minus UTC = +7200 s): a local 19:01 is 17:01 UTC.
    (first, _) = replica_spans(CONTROLLER_LOG, 7200.0)
    assert first.t_running_epoch == _epoch("2026-11-29 19:01:59,253") - 7200.0
    assert first.t_running_epoch == datetime(2026, 11, 29, 17, 1, 59, 253000, tzinfo=timezone.utc).timestamp()


def test_replica_span_started_but_never_stopped_and_a_log_without_replicas():
    only_start = _FOLLOWER + _CONTROLLER_LINES[4]
    (span,) = replica_spans(only_start, 0.0)
    assert span.t_upscale_epoch is None  # no decision in the log
    assert span.t_starting_epoch is not None and span.t_running_epoch is None
    assert replica_spans("no serve lines here\n", 0.0) == ()


# ---------------------------------------------------------------------------------------------------------
# Hand-built scenario rows


def _client(
    send_s: float,
    ttft_s: float | None,
    *,
    tokens: int | None = 11,
    decode_s: float | None = 2.0,
    status: str = "ok",
) -> ClientResult:
    first = None if ttft_s is None else T0 + send_s + ttft_s
    last = None if first is None or decode_s is None else first + decode_s
    return ClientResult(
        schema_version=1,
        url="http://127.0.0.1:8000/v1/chat/completions",
        model="tiny",
        status=status,  # type: ignore[arg-type]  # the str is turned into the enum by __post_init__
        error=None if status == "ok" else status,
        ttft_s=ttft_s,
        total_s=None if ttft_s is None else ttft_s + (decode_s or 0.0),
        tokens=tokens if status == "ok" else None,
        t_send_epoch=T0 + send_s,
        t_first_token_epoch=first,
        t_last_token_epoch=last,
        first_text=None,
        http_status=200 if status == "ok" else None,
        request_id=None,
    )


def _records(*parts: tuple[RequestGroup, ClientResult, dict]) -> tuple[RequestRecord, ...]:
    return tuple(RequestRecord(i, group, client, **kw) for i, (group, client, kw) in enumerate(parts))


def _row(
    run_id: str,
    scenario: str | None,
    records: tuple[RequestRecord, ...],
    *,
    experiment: str = "fast",
    replicas: tuple[ReplicaSpan, ...] | None = None,
    status: RunStatus = RunStatus.OK,
) -> ResultRow:
    first = records[0].client
    return ResultRow(
        run_id=run_id,
        model="tiny",
        experiment=experiment,
        repeat=0,
        status=status,
        ttft_s=first.ttft_s,
        phases={"ttft_s": first.ttft_s} if first.ttft_s is not None else {},
        # The cache audit passes: a fast-path run hit its compile cache, a baseline did not look for one.
        audit=Audit(compile_cache_hit=experiment != "baseline"),
        log_path=None,
        provenance=None,
        config={},
        device="cuda",
        client=first,
        scenario=scenario,
        requests=records,
        replicas=replicas,
    )


B, AR, ARC, RET, WAKE = (
    RequestGroup.BURST,
    RequestGroup.AFTER_READY,
    RequestGroup.AFTER_READY_CONCURRENT,
    RequestGroup.RETURN,
    RequestGroup.WAKE,
)


def burst_row(run_id: str = "burst-1", experiment: str = "fast", scale: float = 1.0) -> ResultRow:
    """8 at zero over two replicas: r1 serves the first five, r2 (up later) the last two; one times out."""
    ttfts = [30.0, 30.5, 31.0, 31.5, 32.0, 40.0, 41.0]
    parts = [(B, _client(0.0, t * scale), {"replica_id": "r1" if i < 5 else "r2"}) for i, t in enumerate(ttfts)]
    parts.append((B, _client(0.0, None, status="timeout"), {}))
    parts.append((AR, _client(60.0, 0.2), {"replica_id": "r1"}))
    return _row(run_id, "burst_replicas", _records(*parts), experiment=experiment)


def test_burst_summary_percentiles_failures_and_time_until_each_replica_serves():
    s = scenarios.summarize(burst_row())
    assert s is not None and s.scenario == "burst_replicas"
    burst = s.group(B)
    assert burst is not None
    assert (burst.n, burst.failed, burst.timed_out) == (8, 1, 1)
    assert burst.ttft_p50_s == 31.5  # the 4th of 7 that got a token
    assert burst.ttft_p90_s == pytest.approx(40.0 + 0.4 * (41.0 - 40.0))  # 0.9 * 6 = rank 5.4: 6th to 7th
    assert burst.ttft_max_s == 41.0
    assert burst.tokens_per_s == pytest.approx(10 / 2.0)  # 11 tokens: 10 after the first, over 2 s
    assert s.first_ttft_s == 30.0
    # r1's first token at 30 s after the first send; r2's at 40 s.
    assert s.time_to_replicas_s == pytest.approx((30.0, 40.0))
    assert s.replicas_source == "requests"
    assert s.metrics()["to_2_replicas_s"] == pytest.approx(40.0)


def test_time_to_replicas_falls_back_to_the_controllers_started_lines_without_replica_ids():
    row = burst_row()
    row = dataclasses.replace(
        row,
        requests=tuple(dataclasses.replace(r, replica_id=None) for r in row.requests or ()),
        replicas=(
            ReplicaSpan("r1", "LLMServer:tiny", T0 + 1, T0 + 1.1, T0 + 28.0, None, None),
            ReplicaSpan("r2", "LLMServer:tiny", T0 + 1, T0 + 1.1, T0 + 35.0, None, None),
            ReplicaSpan("r3", "LLMServer:tiny", T0 + 1, T0 + 1.1, None, None, None),  # never ran
        ),
    )
    s = scenarios.summarize(row)
    assert s is not None
    assert s.time_to_replicas_s == pytest.approx((28.0, 35.0))
    assert s.replicas_source == "replica_spans"


def test_after_ready_first_request_against_the_rest():
    parts = [(B, _client(0.0, 25.0), {})]
    parts += [(AR, _client(30.0 + i, t), {}) for i, t in enumerate((9.0, 0.3, 0.2, 0.4, 0.25))]
    parts += [(ARC, _client(40.0, t), {}) for t in (0.5, 0.6, 0.7, 0.8)]
    s = scenarios.summarize(_row("ar-1", "after_ready", _records(*parts)))
    assert s is not None
    assert s.after_ready_first_ttft_s == 9.0
    assert s.after_ready_rest_p50_s == pytest.approx(0.275)  # median of 0.3, 0.2, 0.4, 0.25
    concurrent = s.group(ARC)
    assert concurrent is not None and concurrent.n == 4 and concurrent.ttft_p50_s == pytest.approx(0.65)
    assert s.return_ttfts_s == () and s.return_ttft_s is None and s.wake_s is None


def test_return_puts_the_second_cold_start_beside_the_first():
    parts = [
        (B, _client(0.0, 30.0), {"replica_id": "r1"}),
        (AR, _client(31.0, 0.2), {"replica_id": "r1"}),
        (RET, _client(90.0, 12.0), {"replica_id": "r2", "cycle": 1}),
    ]
    s = scenarios.summarize(_row("ret-1", "return", _records(*parts)))
    assert s is not None
    assert (s.first_ttft_s, s.return_ttft_s) == (30.0, 12.0)
    # The return's new replica is not a second replica of the first start.
    assert s.time_to_replicas_s == pytest.approx((30.0,))


def test_sleep_wake_gives_the_wake_call_and_the_ttft_after_it():
    parts = [
        (B, _client(0.0, 30.0), {}),
        (AR, _client(31.0, 0.2), {}),
        (WAKE, _client(50.0, 0.4, tokens=None), {"control_s": 3.5}),
    ]
    s = scenarios.summarize(_row("sw-1", "sleep_wake", _records(*parts)))
    assert s is not None
    assert (s.wake_s, s.wake_ttft_s) == (3.5, 0.4)
    wake = s.group(WAKE)
    assert wake is not None and wake.tokens_per_s is None  # no token count: no speed, not 0


def test_tokens_per_s_is_none_where_it_cannot_be_computed():
    assert scenarios.tokens_per_s(_client(0.0, 1.0, tokens=1)) is None
    assert scenarios.tokens_per_s(_client(0.0, 1.0, decode_s=None)) is None
    assert scenarios.tokens_per_s(_client(0.0, 1.0, decode_s=0.0)) is None
    assert scenarios.tokens_per_s(_client(0.0, 1.0, tokens=21, decode_s=4.0)) == pytest.approx(5.0)


def test_a_row_without_requests_has_no_summary():
    row = dataclasses.replace(burst_row(), requests=None)
    assert scenarios.summarize(row) is None


def test_medians_over_runs_group_by_model_experiment_scenario_device():
    rows = [burst_row("b1"), burst_row("b2", scale=2.0), burst_row("b3", experiment="baseline")]
    summaries = [s for r in rows if (s := scenarios.summarize(r, device="cuda:H200 x1")) is not None]
    fast, baseline = scenarios.medians(summaries)
    assert (fast.experiment, fast.scenario, fast.device, fast.n) == ("fast", "burst_replicas", "cuda:H200 x1", 2)
    assert fast.run_ids == ("b1", "b2")
    assert fast.metrics["first_ttft_s"] == pytest.approx(45.0)  # median of 30 and 60
    assert fast.metrics["burst_n"] == 16 and fast.metrics["burst_timed_out"] == 2  # counts add up over runs
    assert fast.n_of["return_ttft_s"] == 0 and fast.metrics["return_ttft_s"] is None
    assert baseline.n == 1


def test_replica_spans_round_trip_in_the_row_and_old_rows_keep_their_shape():
    row = burst_row()
    spans = replica_spans(CONTROLLER_LOG, 0.0)
    with_spans = dataclasses.replace(row, replicas=spans)
    back = ResultRow.from_dict(json.loads(with_spans.to_json()))
    assert back.replicas == spans
    assert back.to_json() == with_spans.to_json()
    assert "replicas" not in json.loads(row.to_json())["extra"]  # None is not written: older rows stay as they were


# ---------------------------------------------------------------------------------------------------------
# In `python -m analysis`: tables, graphs, and the ladder kept to single-request rows

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from coldstart.analysis import collect, scenario_report, tables  # noqa: E402


def single_row(run_id: str, experiment: str, ttft_s: float) -> ResultRow:
    parts = [(B, _client(0.0, ttft_s), {}), (AR, _client(ttft_s + 1, 0.2), {})]
    return _row(run_id, None, _records(*parts), experiment=experiment)  # None: a row from before scenarios


def _runs(rows):
    return [collect.Run(r, collect.Source.RESULTS) for r in rows]


def scenario_rows() -> list[ResultRow]:
    spans = replica_spans(CONTROLLER_LOG, 0.0)
    return [
        single_row("s1", "fast", 40.0),
        single_row("s2", "fast", 44.0),
        single_row("s3", "baseline", 190.0),
        single_row("s4", "compile_cache", 140.0),
        dataclasses.replace(burst_row("b1"), replicas=spans),
        dataclasses.replace(burst_row("b2", scale=3.0), replicas=spans),  # a slow burst: 90 s first TTFT
        burst_row("b3", experiment="baseline", scale=6.0),
        _row(
            "ar1",
            "after_ready",
            _records((B, _client(0.0, 20.0), {}), *((AR, _client(30.0 + i, t), {}) for i, t in enumerate((9, 1, 2)))),
        ),
        _row("sw1", "sleep_wake", _records((B, _client(0.0, 35.0), {}), (WAKE, _client(50, 0.4), {"control_s": 3.0}))),
    ]


def test_scenario_rows_never_reach_the_phase_or_ladder_medians():
    rows = scenario_rows()
    table = tables.run_table(_runs(rows))
    assert table.set_index("run_id").loc["b1", "scenario"] == "burst_replicas"
    assert table.set_index("run_id").loc["s1", "scenario"] == "single"  # scenario None: a single run
    medians = tables.median_table(table)
    fast = medians[medians["experiment"] == "fast"].iloc[0]
    # 40 and 44 only: with the scenario rows' first TTFTs (the bursts' 30 and 90, after ready's 20, sleep/wake's
    # 35) it would be n=6 over 20..90.
    assert (fast["n"], fast["total_s"], fast["total_min_s"], fast["total_max_s"]) == (2, 42.0, 40.0, 44.0)
    baseline = medians[medians["experiment"] == "baseline"].iloc[0]
    assert (baseline["n"], baseline["total_s"]) == (1, 190.0)
    (ladder,) = tables.ladders(medians)
    data = tables.ladder_data(medians, *ladder)
    assert data["total_s"].tolist() == [190.0, 140.0, 42.0]
    assert set(tables.ttft_spread(table)["n"]) <= {1, 2}
    # Nor are they "left out" runs under the graphs: they have tables of their own.
    assert tables.excluded_runs(table) == []


def test_scenario_tables_per_run_and_medians(tmp_path):
    rows = scenario_rows()
    table = tables.run_table(_runs(rows))
    summaries = scenario_report.scenario_summaries(table, rows)
    assert [s.run_id for s in summaries] == ["b1", "b2", "b3", "ar1", "sw1"]  # single rows are not scenario rows
    written = scenario_report.write_scenario_tables(summaries, tmp_path)
    assert [p.name for p in written] == ["scenarios.csv", "scenarios_summary.csv", "scenarios.md"]
    per_run = pd.read_csv(tmp_path / "scenarios.csv").set_index("run_id")
    assert per_run.loc["b2", "burst_ttft_max_s"] == pytest.approx(123.0)
    assert per_run.loc["sw1", "wake_s"] == 3.0
    summary = pd.read_csv(tmp_path / "scenarios_summary.csv")
    fast_burst = summary[(summary["experiment"] == "fast") & (summary["scenario"] == "burst_replicas")].iloc[0]
    assert fast_burst["n"] == 2 and fast_burst["first_ttft_s"] == pytest.approx(60.0)
    md = (tmp_path / "scenarios.md").read_text()
    assert "| tiny | fast | burst_replicas | GPU | 2 |" in md
    assert "2 replicas serve s" in md and "TTFT after wake s" in md


def test_scenario_graphs_are_drawn_for_scenario_rows_only(tmp_path):
    rows = scenario_rows()
    table = tables.run_table(_runs(rows))
    written = scenario_report.render_scenarios(table, rows, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"scenario_{kind}_tiny_GPU.{ext}" for kind in ("burst", "replicas", "after_ready") for ext in ("png", "svg")
    )
    assert all(p.stat().st_size > 0 for p in written)
    singles = [r for r in rows if r.scenario is None]
    assert scenario_report.render_scenarios(tables.run_table(_runs(singles)), singles, tmp_path / "none") == []


def test_burst_graph_has_a_series_per_run_and_marks_missing_tokens():
    rows = [burst_row("b1"), burst_row("b2", experiment="baseline")]
    fig = scenario_report.render_scenario_burst(rows, "t")
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    assert [len(line.get_xdata()) for line in ax.lines] == [7, 7]  # the timed-out request is no TTFT of 0
    assert ax.collections and len(ax.collections[0].get_offsets()) == 2  # one x per run's timeout


def test_replicas_graph_steps_up_and_down_with_the_spans():
    row = dataclasses.replace(burst_row(), replicas=replica_spans(CONTROLLER_LOG, 0.0))
    fig = scenario_report.render_scenario_replicas([row] * 8, "t")
    assert len(fig.axes) == 6  # capped; the rest are named under it
    started = fig.axes[0].lines[0]
    assert max(started.get_ydata()) == 2 and list(started.get_ydata())[-1] == 1  # one of two stopped


def test_report_has_a_scenarios_section_with_the_tables_and_graphs(tmp_path):
    from coldstart.analysis.report import build_report

    rows = scenario_rows()
    graphs = tmp_path / "graphs"
    scenario_report.render_scenarios(tables.run_table(_runs(rows)), rows, graphs)
    page = build_report(tmp_path / "report", _runs(rows), graphs_dir=graphs).read_text()
    assert "<h2>Scenarios</h2>" in page
    assert '<table class="scenarios">' in page and '<table class="scenario-groups">' in page
    for kind in ("burst", "replicas", "after_ready"):
        assert f'<img src="../graphs/scenario_{kind}_tiny_GPU.png"' in page
    assert "<td>sleep_wake</td>" in page
    singles = [r for r in rows if r.scenario is None]
    page = build_report(tmp_path / "single", _runs(singles), graphs_dir=graphs).read_text()
    assert "<h2>Scenarios</h2>" not in page


# ---------------------------------------------------------------------------------------------------------
# flood_at_zero: 64 at once and a trickle through the cold start

TR = RequestGroup.TRICKLE
RUNNING_S = 40.0  # the replica ran 40 s after the first send


def flood_row(run_id: str = "flood-1") -> ResultRow:
    """64 at zero (60 answered when the replica ran at 40 s; two shed with 503, one timed out, one stream broke),
    60 trickled every 0.5 s to 30 s (all waited for the replica), then one after ready."""
    ends = {5: "http_error", 6: "http_error", 7: "timeout", 8: "stream_error"}
    parts = []
    for i in range(64):
        status = ends.get(i, "ok")
        client = _client(0.0, RUNNING_S + 0.01 * i if status == "ok" else None, status=status)
        if status == "http_error":
            client = dataclasses.replace(client, http_status=503)
        parts.append((B, client, {"replica_id": "r1"} if status == "ok" else {}))
    parts += [(TR, _client(0.5 * k, RUNNING_S + 0.1 - 0.5 * k), {"replica_id": "r1"}) for k in range(1, 61)]
    parts.append((AR, _client(60.0, 0.2), {"replica_id": "r1"}))
    spans = (ReplicaSpan("r1", "LLMServer:tiny", T0 + 0.1, T0 + 0.2, T0 + RUNNING_S, None, None),)
    return _row(run_id, "flood_at_zero", _records(*parts), experiment="baseline", replicas=spans)


def test_flood_every_request_is_answered_or_failed_by_a_reason_with_its_ttft_distribution():
    s = scenarios.summarize(flood_row())
    assert s is not None
    burst, trickle = s.group(B), s.group(TR)
    assert burst is not None and trickle is not None
    assert (burst.n, burst.answered, burst.failed, burst.timed_out) == (64, 60, 4, 1)
    by_reason = [(reason.label, n) for reason, n in burst.failed_by]
    assert by_reason == [("http_503", 2), ("stream_error", 1), ("timeout", 1)]
    ok = sorted(RUNNING_S + 0.01 * i for i in range(64) if i not in (5, 6, 7, 8))
    assert burst.ttft_p99_s == pytest.approx(scenarios.quantile(ok, 0.99))
    assert burst.ttft_p90_s <= burst.ttft_p99_s <= burst.ttft_max_s == pytest.approx(RUNNING_S + 0.63)
    # The trickle waited for the same replica: the later it was sent, the shorter its wait.
    assert (trickle.n, trickle.answered, trickle.failed, trickle.failed_by) == (60, 60, 0, ())
    assert trickle.ttft_max_s == pytest.approx(RUNNING_S - 0.4) and trickle.ttft_p50_s < trickle.ttft_p90_s
    m = s.metrics()
    assert (m["burst_failed_http_503"], m["burst_failed_timeout"], m["trickle_n"]) == (2.0, 1.0, 60.0)
    assert "trickle_failed_http_503" not in m  # a reason no request failed for is no column of zeros


def test_flood_failures_by_reason_add_up_over_runs_and_show_in_the_group_table():
    summaries = [s for r in (flood_row("f1"), flood_row("f2")) if (s := scenarios.summarize(r)) is not None]
    (med,) = scenarios.medians(summaries)
    assert med.metrics["burst_failed_http_503"] == 4 and med.metrics["burst_answered"] == 120
    head, rows = scenarios.group_table([med])
    burst = dict(zip(head, next(r for r in rows if r[head.index("group")] == "burst"), strict=True))
    assert (burst["requests"], burst["answered"], burst["failed"]) == ("128", "120", "8")
    assert burst["failed by reason"] == "http_503: 4, stream_error: 2, timeout: 2"
    trickle = dict(zip(head, next(r for r in rows if r[head.index("group")] == "trickle"), strict=True))
    assert trickle["failed by reason"] == "—" and trickle["TTFT p99 s"] != "—"


def test_flood_graph_puts_each_request_at_its_send_time_and_failures_on_the_axis(tmp_path):
    row = flood_row()
    fig = scenario_report.render_scenario_by_send_time([row], "t")
    (ax,) = fig.axes
    labels = [c.get_label() for c in ax.collections]
    assert labels == [
        "burst at zero (60)",
        "trickle (60)",
        "after ready (1)",
        "failed: http_503 (2)",
        "failed: stream_error (1)",
        "failed: timeout (1)",
    ]
    trickle = ax.collections[1].get_offsets()
    assert trickle[0][0] == pytest.approx(0.5) and trickle[-1][0] == pytest.approx(30.0)  # x: when it was sent
    assert [line.get_xdata()[0] for line in ax.lines if line.get_label() == "first replica running"] == [RUNNING_S]
    table = tables.run_table(_runs([row]))
    names = sorted(p.name for p in scenario_report.render_scenarios(table, [row], tmp_path))
    assert "scenario_by_send_time_tiny_GPU.png" in names
    others = [r for r in scenario_rows() if r.scenario is not None]
    written = scenario_report.render_scenarios(tables.run_table(_runs(others)), others, tmp_path / "no-trickle")
    assert not [p for p in written if "by_send_time" in p.name]  # drawn only for runs with a trickle
