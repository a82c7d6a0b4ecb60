"""The line lexer: ANSI codes, process prefixes, Ray's dedup suffix, stamps, tqdm redraws."""

from __future__ import annotations

import pytest

from coldstart.analysis.parse import clean_line, parse_line

ESC = "\x1b"


def test_clean_line_strips_ansi_and_repeated_suffix():
    raw = (
        f"{ESC}[36m(RayWorkerWrapper pid=126782){ESC}[0m INFO 10-15 11:56:51 [default_loader.py:314] "
        f"Loading weights took 16.46 seconds{ESC}[32m [repeated 3x across cluster]{ESC}[0m\n"
    )
    assert clean_line(raw) == (
        "(RayWorkerWrapper pid=126782) INFO 10-15 11:56:51 [default_loader.py:314] Loading weights took 16.46 seconds"
    )


def test_clean_line_strips_ray_dedup_hint():
    raw = (
        "(pid=126783) INFO 10-15 11:53:00 [__init__.py:224] Automatically detected platform cuda."
        " [repeated 4x across cluster] (Ray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 to disable)"
    )
    assert clean_line(raw).endswith("detected platform cuda.")


def test_parse_line_nested_prefixes():
    raw = (
        f"{ESC}[36m(ServeReplica:default:LLMServer:llama pid=126216){ESC}[0m "
        f"{ESC}[1;36m(EngineCore_DP0 pid=126656){ESC}[0;0m {ESC}[36m(RayWorkerWrapper pid=126780){ESC}[0m "
        "INFO 10-15 11:58:03 [monitor.py:33] torch.compile takes 60.79 s in total"
        f"{ESC}[32m [repeated 4x across cluster]{ESC}[0m"
    )
    line = parse_line(raw)
    assert line.raw == raw
    assert [p.name for p in line.prefixes] == [
        "ServeReplica:default:LLMServer:llama",
        "EngineCore_DP0",
        "RayWorkerWrapper",
    ]
    assert [p.pid for p in line.prefixes] == [126216, 126656, 126780]
    assert line.process == "RayWorkerWrapper"
    assert line.pid == 126780
    assert line.rank is None
    assert line.level == "INFO"
    assert line.ts == (10, 15, 11, 58, 3.0)
    assert line.year is None
    assert line.repeated == 4
    assert line.where == "monitor.py:33"
    assert line.text == "INFO 10-15 11:58:03 [monitor.py:33] torch.compile takes 60.79 s in total"
    assert line.message == "torch.compile takes 60.79 s in total"


def test_parse_line_worker_rank_pidless_prefix_and_plain_line():
    tp = parse_line("(Worker_TP1 pid=4242) INFO 11-22 18:50:01 [gpu_worker.py:539] Available KV cache memory: 3 GiB")
    assert (tp.process, tp.pid, tp.rank, tp.repeated) == ("Worker_TP1", 4242, 1, 1)
    dp_tp = parse_line("(Worker_DP1_TP3 pid=9) INFO 11-22 18:50:01 [x.py:1] hi")
    assert dp_tp.rank == 3
    pidless = parse_line("(pid=126783) INFO 10-15 11:53:00 [__init__.py:224] Automatically detected platform cuda.")
    assert (pidless.process, pidless.pid) == (None, 126783)
    plain = parse_line("Read throughput is 1.34 GB per second ")
    assert (plain.process, plain.pid, plain.ts, plain.level, plain.prefixes) == (None, None, None, None, ())
    assert plain.message == "Read throughput is 1.34 GB per second"


def test_parse_line_ray_serve_stamp_has_year_and_millis():
    line = parse_line(
        "(ServeController pid=777) INFO 2026-11-22 18:50:01,234 controller 777 -- "
        "Adding 1 replica to Deployment(name='LLMServer:m', app='default')."
    )
    assert line.process == "ServeController"
    assert line.year == 2026
    assert line.ts == (11, 22, 18, 50, pytest.approx(1.234))
    assert line.where == "controller"
    assert line.message == "Adding 1 replica to Deployment(name='LLMServer:m', app='default')."


def test_parse_line_ray_core_and_bracket_stamps():
    core = parse_line("2026-11-22 18:49:58,010\tINFO worker.py:2003 -- Started a local Ray instance.")
    assert (core.year, core.level, core.where) == (2026, "INFO", "worker.py:2003")
    assert core.ts == (11, 22, 18, 49, pytest.approx(58.01))
    assert core.message == "Started a local Ray instance."
    runai = parse_line(
        "(Worker_TP1 pid=20137) [2026-02-15 05:16:38] INFO file_streamer.py:66: "
        "[RunAI Streamer] Overall time to stream 34.3 GiB of all files to cpu: 28.52s, 1.2 GiB/s"
    )
    assert (runai.year, runai.ts, runai.where) == (2026, (2, 15, 5, 16, 38.0), "file_streamer.py:66")
    assert runai.message.startswith("[RunAI Streamer] Overall")


def test_parse_line_keeps_last_tqdm_redraw():
    line = parse_line(
        "(Worker pid=5) Loading safetensors using Runai Model Streamer:   0% Completed | 0/194 [00:00<?, ?it/s]"
        "\rLoading safetensors using Runai Model Streamer: 100% Completed | 194/194 [00:09<00:00, 20.81it/s]"
    )
    assert line.pid == 5
    assert line.message.startswith("Loading safetensors using Runai Model Streamer: 100%")
