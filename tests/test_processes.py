"""Which processes started vLLM after the request, from a run's log (the fast path's claim, counted)."""

from __future__ import annotations

import time
from pathlib import Path

from coldstart.analysis.events import format_event
from coldstart.analysis.processes import started_after_request
from coldstart.lab.serve import ControllerLogFollower

UPSCALE = (
    "(ServeController) INFO 2026-12-07 16:46:49,973 controller 9 -- "
    "Upscaling Deployment(name='S:tiny', app='a') from 0 to 1 replicas."
)


def _vllm(pid: int, prefix: str = "") -> str:
    return f"{prefix}(pid={pid}) INFO 12-07 16:45:27 [importing.py:53] Triton is installed"


def test_a_worker_the_wait_named_idle_and_preloaded_did_not_start_after_the_request():
    wait_end = format_event("prestart_wait_end", nodes=[{"node_id": "n", "idle_preloaded": [41]}])
    log = "\n".join(
        [
            f"(pid=1) {wait_end}",
            UPSCALE,
            _vllm(41),  # the replica's worker: its own worker_preloaded never reached this job's log
            _vllm(77),  # a fresh process after the request
        ]
    )
    assert [p.pid for p in started_after_request(log)] == [77]
    without_wait = "\n".join([UPSCALE, _vllm(41), _vllm(77)])
    assert [p.pid for p in started_after_request(without_wait)] == [41, 77]


def test_the_controller_log_follower_echoes_only_lines_written_after_it_started(tmp_path: Path, capsys):
    logs = tmp_path / "logs" / "serve"
    logs.mkdir(parents=True)
    old = logs / "controller_1.log"
    old.write_text("an earlier run's decision: from 0 to 1\n")  # a cluster's session_latest folder outlives each run
    with ControllerLogFollower(str(tmp_path), poll_s=0.05):
        with old.open("a") as f:
            f.write("this run's line\n")
        (logs / "controller_2.log").write_text("a new controller's first line\n")
        time.sleep(0.3)
    out = capsys.readouterr().out
    assert "this run's line" in out and "a new controller's first line" in out
    assert "an earlier run's decision" not in out
