"""The Chrome trace export: one committed GPU run of each kind (the fast path, stock Ray Serve LLM), read back
as JSON the way Perfetto reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coldstart.analysis.events import read_events
from coldstart.analysis.results import load_rows
from coldstart.analysis.timeline import build_timeline
from coldstart.analysis.trace import client_of, find_log, trace_events, write_trace

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "results.jsonl"
FAST = "20261129T185203Z-484a"  # llama-3-8b fast, H200: uni executor, the worker inside EngineCore
BASELINE = "20261129T190225Z-2141"  # llama-3-8b baseline, H200: node-init task, Ray executor, a worker process


def _run(run_id: str) -> tuple[dict, dict]:
    rows = load_rows(RESULTS)
    row = next(r for r in rows if r.run_id == run_id)
    log = find_log(run_id, rows, REPO / "experiment_terminal_output")
    assert log is not None and log.name == f"{run_id}.log"
    text = log.read_text(errors="replace")
    client = client_of(log, row)
    timeline = build_timeline(text, client).to_dict()
    return trace_events(text, client, run_id), timeline


def _names(trace: dict) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}


@pytest.mark.parametrize("run_id", [FAST, BASELINE])
def test_spans_lie_inside_the_run_and_segments_sum_to_ttft(run_id: str) -> None:
    trace, timeline = _run(run_id)
    json.loads(json.dumps(trace))  # plain JSON, as Perfetto reads it
    assert trace["displayTimeUnit"] == "ms"
    send_us, ttft_s = timeline["t_send_epoch"] * 1e6, timeline["ttft_s"]
    worst_error_s = max(v for v in timeline["segment_error_s"].values() if v is not None)
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert spans
    for e in spans:
        slack_us = ((e["args"]["error_s"] or 0.0) + 1e-3) * 1e6
        assert e["ts"] >= send_us - slack_us, e
        assert e["ts"] + e["dur"] <= send_us + ttft_s * 1e6 + slack_us, e
    segments = [e for e in spans if e["cat"] == "segment"]
    # Every segment the timeline measured (and every gap) is a span; together they are the TTFT.
    measured = {k for k, v in timeline["segments"].items() if v is not None and v > 0}
    assert measured <= {e["args"]["segment"] for e in segments}
    total_s = sum(e["dur"] for e in segments) / 1e6
    assert total_s == pytest.approx(sum(v for v in timeline["segments"].values() if v is not None), abs=1e-3)
    # The segments telescope, so the sum is the TTFT itself, far inside the ± the timeline states.
    stated_error_s = sum(v for v in timeline["segment_error_s"].values() if v is not None)
    assert abs(total_s - ttft_s) <= min(1e-3, stated_error_s + 1e-3)
    # The ± of whole-second vLLM stamps travels with the spans it applies to.
    assert max(e["args"]["error_s"] or 0.0 for e in segments) == pytest.approx(worst_error_s)


@pytest.mark.parametrize("run_id", [FAST, BASELINE])
def test_one_track_per_process_and_instants_for_every_harness_event(run_id: str) -> None:
    trace, _ = _run(run_id)
    names = _names(trace)
    assert len(names) > 1
    # One track per process: no pid twice, and a process named once.
    meta = [e["pid"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    assert len(meta) == len(set(meta))
    used = {e["pid"] for e in trace["traceEvents"] if e["ph"] != "M"}
    assert used <= set(names)
    joined = " ".join(names.values())
    assert "ServeController" in joined and "EngineCore" in joined and "client" in joined
    log = next(p for p in (REPO / "experiment_terminal_output").glob(f"*/*/{run_id}.log"))
    events = read_events(log.read_text(errors="replace"))
    instants = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    assert sorted(e["name"] for e in instants) == sorted(e["event"] for e in events)
    assert all(e["cat"] == "coldstart_event" for e in instants)


def test_baseline_puts_the_node_init_task_and_the_worker_on_their_own_tracks() -> None:
    trace, _ = _run(BASELINE)
    names = _names(trace)
    by_segment = {e["args"]["segment"]: names[e["pid"]] for e in trace["traceEvents"] if e.get("cat") == "segment"}
    assert by_segment["seg_weights_fetch_s"].startswith("initialize_remote_node")
    assert by_segment["seg_model_load_s"].startswith(("Worker", "RayWorkerProc"))
    assert by_segment["seg_engine_process_spawn_s"].startswith("EngineCore")
    assert by_segment["seg_autoscale_reaction_s"].startswith("ServeController")


def test_fast_path_restores_in_the_replica() -> None:
    trace, _ = _run(FAST)
    names = _names(trace)
    by_segment = {e["args"]["segment"]: names[e["pid"]] for e in trace["traceEvents"] if e.get("cat") == "segment"}
    assert "LLMServer" in by_segment["seg_compile_cache_restore_s"]
    assert by_segment["seg_model_load_s"].startswith("EngineCore")  # uni executor: no worker process


def test_write_trace_and_cli(tmp_path: Path) -> None:
    out = tmp_path / "x.trace.json"
    proc = subprocess.run(
        # The checkout's rows: a row's relative log path is found in the lab that holds its results file.
        [sys.executable, "-m", "analysis", "trace", FAST, "--out", str(out), "--results", str(RESULTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["otherData"]["run_id"] == FAST
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "trace", "no-such-run", "--out", str(tmp_path / "y.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "no log" in proc.stderr
    log = REPO / "experiment_terminal_output" / "llama-3-8b" / "fast" / f"{FAST}.log"
    assert write_trace(log, tmp_path / "sub" / "t.json", None, FAST).is_file()  # no client: the log's own events


def test_each_tensor_parallel_rank_has_its_own_track() -> None:
    log = REPO / "experiment_terminal_output" / "llama-3-8b-tp2" / "baseline" / "20261123T020504Z-1cf6.log"
    trace = trace_events(log.read_text(errors="replace"), client_of(log, None), log.stem)
    names = " ".join(_names(trace).values())
    assert "Worker_TP0" in names and "Worker_TP1" in names
