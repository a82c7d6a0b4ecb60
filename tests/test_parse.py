"""Parsers over real ancestor logs (older vLLM, 8xH100) and over vLLM 0.25.1 / Ray 2.57.1 wordings.

The synthetic lines below are built from the format strings in the vLLM 0.25.1 and Ray 2.57.1 wheels
(file and line numbers in the ``[file.py:N]`` headers are theirs), so a wording change upstream shows
up here as a failing test rather than as a silent ``None`` in a results table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from coldstart.analysis.events import format_event
from coldstart.analysis.parse import (
    PHASE_COLUMNS,
    clean_line,
    parse_line,
    parse_log,
    parse_ray,
    parse_vllm,
    to_phase_table,
)

ANCESTOR_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ancestor-logs"

# Golden phase tables, read off the logs by hand: for each phase the largest value among the ranks the
# log shows (the engine waits for its slowest rank). Absent phases are None.
_NONE = dict.fromkeys(PHASE_COLUMNS)
GOLDEN: dict[str, dict[str, float | None]] = {
    "llama70b-base.txt": {
        **_NONE,
        "weights_download_s": 196.465363,
        "weights_load_s": 16.46,
        # rank pid 126780 logged 212.733378 s / 60.79 s; the slowest rank (pid 126782) 213.541107 / 61.84.
        "model_load_s": 213.541107,
        "dynamo_s": 12.38,
        "inductor_s": 49.91,
        "torch_compile_s": 61.84,
        "cuda_graph_s": 16.0,
        "engine_init_s": 91.82,
    },
    "llama70B-compile-cache.txt": {
        **_NONE,
        "weights_download_s": 216.434652,
        "weights_load_s": 16.19,
        "model_load_s": 233.078827,
        "dynamo_s": 12.25,
        "compile_cache_load_s": 3.87,
        "torch_compile_s": 16.12,
        "cuda_graph_s": 16.0,
        "engine_init_s": 44.59,
    },
    "llama70b-s3-runai.txt": {
        **_NONE,
        "runai_stream_s": 91.22,
        "model_load_s": 92.096867,
        "dynamo_s": 12.70,
        "inductor_s": 49.95,
        "torch_compile_s": 61.94,
        "cuda_graph_s": 16.0,
        "engine_init_s": 91.10,
    },
    "llama70b-s3-runai-sharded.txt": {
        **_NONE,
        "runai_stream_s": 26.45,
        "model_load_s": 27.230487,
        "dynamo_s": 12.68,
        "inductor_s": 50.09,
        "torch_compile_s": 60.93,
        "cuda_graph_s": 17.0,
        "engine_init_s": 92.11,
    },
    "llama70B-all.txt": {
        **_NONE,
        "runai_stream_s": 26.72,
        "model_load_s": 27.513809,
        "dynamo_s": 12.24,
        "compile_cache_load_s": 3.938,
        "torch_compile_s": 16.10,
        "cuda_graph_s": 16.0,
        "engine_init_s": 38.11,
    },
    "qwen235B-base.txt": {
        **_NONE,
        "weights_download_s": 724.106366,
        "weights_load_s": 32.67,
        "model_load_s": 758.192123,
        "dynamo_s": 18.01,
        "inductor_s": 96.30,
        "torch_compile_s": 113.04,
        "cuda_graph_s": 44.0,
        "engine_init_s": 170.53,
    },
    "qwen235B-compile-cache.txt": {
        **_NONE,
        "weights_download_s": 682.151174,
        "weights_load_s": 32.83,
        "model_load_s": 716.166863,
        "dynamo_s": 17.06,
        "compile_cache_load_s": 5.702,
        "torch_compile_s": 22.71,
        "cuda_graph_s": 44.0,
        "engine_init_s": 86.76,
    },
    "qwen235B-s3-runai-sharded.txt": {
        **_NONE,
        "runai_stream_s": 76.63,
        "model_load_s": 77.521401,
        "dynamo_s": 18.03,
        "inductor_s": 97.34,
        "torch_compile_s": 113.22,
        "cuda_graph_s": 44.0,
        "engine_init_s": 170.53,
    },
    "qwen235B-all.txt": {
        **_NONE,
        "runai_stream_s": 76.95,
        "model_load_s": 77.913745,
        "dynamo_s": 18.06,
        "compile_cache_load_s": 5.795,
        "torch_compile_s": 23.39,
        "cuda_graph_s": 44.0,
        "engine_init_s": 88.20,
    },
}

# (world size, compile cache hit, runai streamer, KV GiB, KV tokens, weights GiB)
GOLDEN_FACTS = {
    "llama70b-base.txt": (4, False, None, 35.76, 468_752, 32.8601),
    "llama70B-compile-cache.txt": (4, True, None, 35.76, 468_752, 32.8601),
    "llama70b-s3-runai.txt": (4, False, True, 35.76, 468_752, 32.8601),
    "llama70b-s3-runai-sharded.txt": (4, False, True, 35.76, 468_752, 32.8601),
    "llama70B-all.txt": (4, True, True, 35.76, 468_752, 32.8601),
    "qwen235B-base.txt": (8, False, None, 13.22, 294_992, 54.9205),
    "qwen235B-compile-cache.txt": (8, True, None, 13.21, 294_816, 54.9205),
    "qwen235B-s3-runai-sharded.txt": (8, False, True, 13.22, 294_992, 54.9205),
    "qwen235B-all.txt": (8, True, True, 13.21, 294_816, 54.9205),
}


def _ancestor(name: str) -> str:
    path = ANCESTOR_DIR / name
    if not path.exists():
        pytest.skip(f"ancestor logs not present at {ANCESTOR_DIR}")
    return path.read_text(errors="replace")


def test_golden_covers_every_ancestor_log():
    if not ANCESTOR_DIR.is_dir():
        pytest.skip(f"ancestor logs not present at {ANCESTOR_DIR}")
    assert sorted(p.name for p in ANCESTOR_DIR.glob("*.txt")) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_ancestor_phase_table(name):
    table = to_phase_table(parse_log(_ancestor(name)))
    assert list(table) == list(PHASE_COLUMNS)
    expected = GOLDEN[name]
    for column in PHASE_COLUMNS:
        if expected[column] is None:
            assert table[column] is None, column
        else:
            assert table[column] == pytest.approx(expected[column], abs=1e-6), column


@pytest.mark.parametrize("name", sorted(GOLDEN_FACTS))
def test_ancestor_facts(name):
    world, hit, runai, kv_gib, kv_tokens, weights_gib = GOLDEN_FACTS[name]
    v = parse_vllm(_ancestor(name))
    assert v.vllm_version == "0.1.dev10446+g2dcd12d35"
    assert v.world_size == world
    assert v.compile_cache_hit is hit
    assert v.aot_cache_hit is None  # that vLLM had no AOT compile
    assert v.runai_streamer is runai
    assert v.kv_cache_gib == pytest.approx(kv_gib)
    assert v.kv_cache_tokens == kv_tokens
    assert v.model_load_gib == pytest.approx(weights_gib)
    assert v.cuda_graph_gib == pytest.approx(2.99 if world == 8 else 1.05)
    assert v.engine_compile_s is None  # the old "init engine" line has no "(compilation: ...)"


@pytest.mark.parametrize("name", ["llama70b-base.txt", "qwen235B-base.txt", "llama70b-s3-runai.txt"])
def test_ancestor_baselines_miss_the_compile_cache(name):
    v = parse_vllm(_ancestor(name))
    assert v.compile_cache_hit is False
    assert v.compile_cache_load_s is None
    assert v.inductor_s is not None


@pytest.mark.parametrize("name", ["llama70B-compile-cache.txt", "qwen235B-compile-cache.txt", "qwen235B-all.txt"])
def test_ancestor_compile_cache_runs_hit(name):
    v = parse_vllm(_ancestor(name))
    assert v.compile_cache_hit is True
    assert v.inductor_s is None
    # Dynamo still re-traces on an Inductor cache hit; it is no evidence of a miss.
    assert v.dynamo_s is not None


def test_ancestor_spans_and_no_ray_milestones():
    parsed = parse_log(_ancestor("llama70b-base.txt"))
    assert parsed.spans["model_load_s"].first == (10, 15, 11, 56, 51.0)
    assert parsed.spans["model_load_s"].last == (10, 15, 11, 56, 52.0)
    assert parsed.spans["inductor_s"].first == (10, 15, 11, 57, 52.0)
    assert parsed.spans["inductor_s"].last == (10, 15, 11, 57, 55.0)
    assert parsed.spans["engine_init_s"].first == (10, 15, 11, 58, 24.0)
    assert "compile_cache_load_s" not in parsed.spans
    assert parsed.year is None  # vLLM stamps carry no year
    assert parsed.ray.events == ()
    assert parsed.events == ()


# ---------------------------------------------------------------------------------------------------------
# Lines

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


# ---------------------------------------------------------------------------------------------------------
# vLLM 0.25.1 wordings (synthetic; format strings from the 0.25.1 wheel)

C = f"{ESC}[36m"
R = f"{ESC}[0m"


def _v025(prefix: str, stamp: str, where: str, msg: str, repeated: int | None = None) -> str:
    """A vLLM 0.25 line as a coloured terminal shows it: cyan prefix, green level, grey stamp and file."""
    suffix = f"{ESC}[32m [repeated {repeated}x across cluster]{R}" if repeated else ""
    return (
        f"{C}(ServeReplica:default:LLMServer:m pid=90){R} {C}({prefix}){R} "
        f"{ESC}[32mINFO{R} {ESC}[90m11-22 {stamp}{R} {ESC}[90m[{where}]{R} {msg}{suffix}"
    )


# TP=2 miss: AOT compile (torch>=2.10 default), two compile ranges per rank.
V025_MISS = "\n".join(
    [
        "(ServeReplica:default:LLMServer:m pid=90) (EngineCore pid=99) INFO 11-22 18:50:00 [core.py:115] "
        "Initializing a V1 LLM engine (v0.25.1) with config: model='m', speculative_config=None",
        _v025(
            "Worker pid=100",
            "18:50:02",
            "parallel_state.py:1943",
            "rank 0 in world size 2 is assigned as DP rank 0, PP rank 0, PCP rank 0, TP rank 0, EP rank N/A, "
            "EPLB rank N/A",
        ),
        _v025("Worker_TP0 pid=100", "18:50:03", "gpu_model_runner.py:5210", "Starting to load model m..."),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:10",
            "weight_utils.py:531",
            "Time spent downloading weights for org/m: 6.500000 seconds",
        ),
        _v025("Worker_TP0 pid=100", "18:50:12", "default_loader.py:431", "Loading weights took 1.50 seconds"),
        _v025("Worker_TP1 pid=101", "18:50:12", "default_loader.py:431", "Loading weights took 1.75 seconds"),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:12",
            "gpu_model_runner.py:5307",
            "Model loading took 0.93 GiB memory and 8.250000 seconds",
        ),
        _v025(
            "Worker_TP1 pid=101",
            "18:50:13",
            "gpu_model_runner.py:5307",
            "Model loading took 0.93 GiB memory and 8.750000 seconds",
        ),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:14",
            "backends.py:1089",
            "Using cache directory: /root/.cache/vllm/torch_compile_cache/ab12/rank_0_0/backbone for vLLM's "
            "torch.compile",
        ),
        _v025("Worker_TP0 pid=100", "18:50:16", "backends.py:1149", "Dynamo bytecode transform time: 2.10 s"),
        _v025("Worker_TP1 pid=101", "18:50:16", "backends.py:1149", "Dynamo bytecode transform time: 2.30 s"),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:17",
            "backends.py:378",
            "Cache the graph of compile range (1, 8192) for later use",
        ),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:27",
            "backends.py:394",
            "Compiling a graph for compile range (1, 8192) takes 10.00 s",
        ),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:29",
            "backends.py:394",
            "Compiling a graph for compile range (8, 8) takes 2.00 s",
        ),
        _v025(
            "Worker_TP1 pid=101",
            "18:50:28",
            "backends.py:394",
            "Compiling a graph for compile range (1, 8192) takes 11.00 s",
        ),
        _v025(
            "Worker_TP1 pid=101",
            "18:50:29",
            "backends.py:394",
            "Compiling a graph for compile range (8, 8) takes 0.50 s",
        ),
        _v025(
            "Worker_TP0 pid=100",
            "18:50:30",
            "decorators.py:710",
            "saved AOT compiled function to /root/.cache/vllm/torch_compile_cache/torch_aot_compile/ff/rank_0_0/model",
        ),
        _v025("Worker_TP0 pid=100", "18:50:30", "monitor.py:53", "torch.compile took 14.40 s in total"),
        _v025("Worker_TP1 pid=101", "18:50:30", "monitor.py:53", "torch.compile took 14.10 s in total"),
        _v025("Worker_TP0 pid=100", "18:50:31", "monitor.py:81", "Initial profiling/warmup run took 0.80 s"),
        _v025("Worker_TP0 pid=100", "18:50:32", "gpu_worker.py:539", "Available KV cache memory: 20.5 GiB"),
        _v025("Worker_TP1 pid=101", "18:50:32", "gpu_worker.py:539", "Available KV cache memory: 20.25 GiB"),
        "(ServeReplica:default:LLMServer:m pid=90) (EngineCore pid=99) INFO 11-22 18:50:33 [kv_cache_utils.py:2146] "
        "GPU KV cache size: 1,234,567 tokens",
        _v025(
            "Worker_TP0 pid=100",
            "18:50:40",
            "gpu_model_runner.py:6708",
            "Graph capturing finished in 7 secs, took 0.45 GiB",
        ),
        "(ServeReplica:default:LLMServer:m pid=90) (EngineCore pid=99) INFO 11-22 18:50:41 [core.py:338] "
        "init engine (profile, create kv cache, warmup model) took 27.66 s (compilation: 14.40 s)",
    ]
)


def test_v025_miss_phases():
    v = parse_vllm(V025_MISS)
    assert v.vllm_version == "0.25.1"
    assert v.world_size == 2
    assert v.weights_download_s == pytest.approx(6.5)
    assert v.weights_load_s == pytest.approx(1.75)
    assert v.model_load_s == pytest.approx(8.75)
    assert v.model_load_gib == pytest.approx(0.93)
    assert v.dynamo_s == pytest.approx(2.30)
    # Per rank the compile ranges add up (TP0 12.0 s, TP1 11.5 s); the slower rank gates the engine.
    assert v.inductor_s == pytest.approx(12.0)
    assert v.torch_compile_s == pytest.approx(14.40)
    assert v.torch_compile_includes_profiling is None
    assert v.profiling_s == pytest.approx(0.80)
    assert v.kv_cache_gib == pytest.approx(20.25)  # the tightest rank sizes the cache
    assert v.kv_cache_tokens == 1_234_567
    assert v.cuda_graph_s == pytest.approx(7.0)
    assert v.cuda_graph_gib == pytest.approx(0.45)
    assert v.engine_init_s == pytest.approx(27.66)
    assert v.engine_compile_s == pytest.approx(14.40)
    assert v.compile_cache_hit is False
    assert v.aot_cache_hit is False
    assert v.compile_cache_load_s is None
    assert v.runai_streamer is None
    assert v.compile_cache_disabled is None


def test_v025_aot_hit():
    text = "\n".join(
        [
            _v025(
                "Worker_TP0 pid=100",
                "19:00:05",
                "decorators.py:312",
                "Directly load AOT compilation from path "
                "/root/.cache/vllm/torch_compile_cache/torch_aot_compile/ff/rank_0_0/model",
            ),
            _v025("Worker_TP0 pid=100", "19:00:05", "monitor.py:53", "torch.compile took 3.10 s in total"),
            _v025(
                "Worker_TP1 pid=101",
                "19:00:05",
                "decorators.py:312",
                "Directly load AOT compilation from path "
                "/root/.cache/vllm/torch_compile_cache/torch_aot_compile/ff/rank_1_0/model",
            ),
            _v025("Worker_TP1 pid=101", "19:00:06", "monitor.py:53", "torch.compile took 3.40 s in total"),
            _v025("Worker_TP0 pid=100", "19:00:07", "monitor.py:81", "Initial profiling/warmup run took 0.70 s"),
        ]
    )
    parsed = parse_log(text)
    v = parsed.vllm
    assert v.aot_cache_hit is True
    assert v.compile_cache_hit is True
    assert v.compile_cache_load_s == pytest.approx(3.40)  # the torch.compile monitor timed only the load
    assert v.torch_compile_s == pytest.approx(3.40)
    assert v.dynamo_s is None
    assert v.inductor_s is None
    assert v.profiling_s == pytest.approx(0.70)
    assert parsed.spans["compile_cache_load_s"].first == (11, 22, 19, 0, 5.0)


def test_v025_inductor_cache_hit_without_aot():
    text = "\n".join(
        [
            _v025("Worker_TP0 pid=100", "19:00:05", "backends.py:1149", "Dynamo bytecode transform time: 2.00 s"),
            _v025(
                "Worker_TP0 pid=100",
                "19:00:06",
                "backends.py:292",
                "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.900 s",
            ),
            _v025(
                "Worker_TP0 pid=100",
                "19:00:06",
                "backends.py:292",
                "Directly load the compiled graph(s) for compile range (8, 8) from the cache, took 0.100 s",
            ),
            _v025(
                "Worker_TP1 pid=101",
                "19:00:06",
                "backends.py:292",
                "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.950 s",
            ),
            _v025(
                "Worker_TP0 pid=100",
                "19:00:07",
                "decorators.py:672",
                "torch.compile and initial profiling/warmup run together took 4.20 s in total",
            ),
        ]
    )
    v = parse_vllm(text)
    assert v.compile_cache_hit is True
    assert v.aot_cache_hit is None
    assert v.compile_cache_load_s == pytest.approx(1.0)  # TP0: 0.9 + 0.1 beats TP1's 0.95
    assert v.torch_compile_s == pytest.approx(4.20)
    assert v.torch_compile_includes_profiling is True
    assert v.profiling_s is None


def test_mixed_ranks_count_as_a_miss():
    # One rank found its graphs and AOT artifact, the other compiled: the engine still waited on a compile.
    text = "\n".join(
        [
            _v025(
                "Worker_TP0 pid=100",
                "19:00:06",
                "backends.py:292",
                "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.900 s",
            ),
            _v025(
                "Worker_TP0 pid=100", "19:00:06", "decorators.py:312", "Directly load AOT compilation from path /c/0"
            ),
            _v025(
                "Worker_TP1 pid=101",
                "19:00:16",
                "backends.py:394",
                "Compiling a graph for compile range (1, 8192) takes 10.00 s",
            ),
            _v025("Worker_TP1 pid=101", "19:00:17", "decorators.py:710", "saved AOT compiled function to /c/1"),
        ]
    )
    v = parse_vllm(text)
    assert v.compile_cache_hit is False
    assert v.aot_cache_hit is False
    assert v.inductor_s == pytest.approx(10.0)
    assert v.compile_cache_load_s == pytest.approx(0.9)


def test_v025_aot_load_failure_is_a_miss_and_cache_disabled_flag():
    text = "\n".join(
        [
            _v025("Worker pid=100", "19:00:05", "backends.py:1087", "vLLM's torch.compile cache is disabled."),
            _v025(
                "Worker pid=100",
                "19:00:05",
                "decorators.py:318",
                "Compiling model again due to a load failure from /c/model, reason: Compile cache file corrupted.",
            ),
        ]
    )
    v = parse_vllm(text)
    assert v.aot_cache_hit is False
    assert v.compile_cache_disabled is True
    assert v.compile_cache_hit is None  # no Inductor evidence either way


def test_v025_init_engine_variants():
    plain = "INFO 11-22 19:00:00 [core.py:345] init engine (profile, create kv cache, warmup model) took 5.25 s"
    v = parse_vllm(plain)
    assert (v.engine_init_s, v.engine_compile_s) == (pytest.approx(5.25), None)
    encoder = (
        "INFO 11-22 19:00:00 [core.py:328] init engine (profile, create kv cache, warmup model) took 30.00 s "
        "(compilation: 12.00 s — language_model: 9.00 s, encoder: 3.00 s)"
    )
    v = parse_vllm(encoder)
    assert (v.engine_init_s, v.engine_compile_s) == (pytest.approx(30.0), pytest.approx(12.0))


def test_v1_model_runner_keeps_old_model_loading_wording():
    # vllm/v1/worker/gpu/model_runner.py (the newer runner) still says "GiB and".
    v = parse_vllm("INFO 11-22 19:00:00 [model_runner.py:303] Model loading took 1.5 GiB and 4.000000 seconds")
    assert (v.model_load_gib, v.model_load_s) == (pytest.approx(1.5), pytest.approx(4.0))


def test_runai_streamer_wordings():
    newer = "\n".join(
        [
            "(Worker_TP0 pid=1) [2026-02-15 05:16:38] INFO file_streamer.py:66: [RunAI Streamer] Overall time to "
            "stream 34.3 GiB of all files to cpu: 28.74s, 1.2 GiB/s",
            "(Worker_TP1 pid=2) [RunAI Distributed Streamer] Overall time to stream 512.0 MiB of all files to "
            "cuda:1: 29.5s, 17.4 MiB/s",
        ]
    )
    v = parse_vllm(newer)
    assert v.runai_streamer is True
    assert v.runai_stream_s == pytest.approx(29.5)
    assert v.runai_stream_gib == pytest.approx(34.3)
    tqdm_only = "Loading safetensors using Runai Model Streamer: 100% Completed | 194/194 [01:09<00:00, 20.81it/s]"
    v = parse_vllm(tqdm_only)
    assert v.runai_streamer is True
    assert v.runai_stream_s == pytest.approx(69.0)
    assert v.runai_stream_gib is None


def test_repeated_suffix_is_not_a_multiplier():
    line = _v025("Worker_TP1 pid=101", "18:50:12", "default_loader.py:431", "Loading weights took 5.00 seconds", 3)
    assert parse_vllm(line).weights_load_s == pytest.approx(5.0)


def test_echoed_lines_count_once_in_per_rank_sums():
    direct = "(RayWorkerWrapper pid=7) INFO 11-22 18:50:27 [backends.py:394] Compiling a graph for compile range (1, 8192) takes 10.00 s"  # noqa: E501
    echoed = "(ServeReplica:a:b pid=1) (EngineCore_DP0 pid=2) " + direct + " [repeated 2x across cluster]"
    other_range = "(RayWorkerWrapper pid=7) INFO 11-22 18:50:29 [backends.py:394] Compiling a graph for compile range (8, 8) takes 2.00 s"  # noqa: E501
    assert parse_vllm("\n".join([direct, echoed, other_range])).inductor_s == pytest.approx(12.0)


def test_old_wordings_from_synthetic_lines():
    text = "\n".join(
        [
            "(RayWorkerWrapper pid=1) INFO 10-15 11:57:52 [backends.py:274] Compiling a graph for dynamic shape takes 46.70 s",  # noqa: E501
            "(RayWorkerWrapper pid=2) INFO 10-15 11:57:55 [backends.py:274] Compiling a graph for dynamic shape takes 49.91 s",  # noqa: E501
            "(RayWorkerWrapper pid=1) INFO 10-15 11:58:03 [monitor.py:33] torch.compile takes 60.79 s in total",
            "(RayWorkerWrapper pid=1) INFO 10-15 11:56:51 [gpu_model_runner.py:2906] Model loading took 32.8601 GiB and 212.733378 seconds",  # noqa: E501
            "INFO 10-15 11:58:24 [core.py:243] init engine (profile, create kv cache, warmup model) took 91.82 seconds",
        ]
    )
    v = parse_vllm(text)
    assert v.inductor_s == pytest.approx(49.91)
    assert v.torch_compile_s == pytest.approx(60.79)
    assert v.model_load_s == pytest.approx(212.733378)
    assert v.engine_init_s == pytest.approx(91.82)
    assert v.compile_cache_hit is False


def test_absent_phases_are_none_not_zero():
    parsed = parse_log("INFO 11-22 19:00:00 [api_server.py:1] Supported tasks: ['generate']\nhello\n")
    assert all(value is None for value in to_phase_table(parsed).values())
    assert all(value is None for value in dataclasses.asdict(parsed.vllm).values())
    ray = dataclasses.asdict(parsed.ray)
    assert ray.pop("events") == ()
    assert all(value is None for value in ray.values())
    assert parsed.spans == {}
    empty = to_phase_table(parse_log(""))
    assert list(empty) == list(PHASE_COLUMNS)
    assert set(empty.values()) == {None}


def test_phase_columns_are_stable_seconds():
    assert all(column.endswith("_s") for column in PHASE_COLUMNS)
    assert len(set(PHASE_COLUMNS)) == len(PHASE_COLUMNS)


# ---------------------------------------------------------------------------------------------------------
# Ray Serve 2.57 / Ray LLM (synthetic; wording from the 2.57.1 wheel)

SERVE = "(ServeController pid=777) INFO 2026-11-22 "
RAY_LOG = "\n".join(
    [
        SERVE + "18:49:59,001 controller 777 -- Deploying new version of "
        "Deployment(name='OpenAiIngress', app='default') (initial target replicas: 1).",
        SERVE + "18:49:59,002 controller 777 -- Deploying new version of "
        "Deployment(name='LLMServer:m', app='default') (initial target replicas: 0).",
        SERVE + "18:49:59,100 controller 777 -- Adding 1 replica to Deployment(name='OpenAiIngress', app='default').",
        SERVE + "18:50:00,500 controller 777 -- Upscaling Deployment(name='LLMServer:m', app='default') from 0 to 1 "
        "replicas. Current ongoing requests: 1.00, current running replicas: 0.",
        SERVE + "18:50:00,600 controller 777 -- Adding 1 replica to Deployment(name='LLMServer:m', app='default').",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:01,000 default_LLMServer:m x1y2 -- "
        "Running tasks to download model files on worker nodes",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:04,250 default_LLMServer:m x1y2 -- "
        "CloudDownloader: Files downloaded in 3.25 seconds",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:40,000 default_LLMServer:m x1y2 -- "
        "Started vLLM engine.",
        SERVE + "18:50:41,300 controller 777 -- Replica(id='x1y2', deployment='LLMServer:m', app='default') started "
        "successfully on node 'abc123' after 40.7s (PID: 90). Replica constructor, reconfigure method, and initial "
        "health check took 39.9s.",
        "INFO 2026-11-22 18:50:42,000 serve 55 -- Application 'default' is ready at http://127.0.0.1:8000/.",
    ]
)


def test_parse_ray_milestones_of_the_llm_deployment():
    r = parse_ray(RAY_LOG)
    assert r.year == 2026
    assert r.deploy_ts == (11, 22, 18, 49, pytest.approx(59.002))  # the LLMServer's, not the ingress's
    assert r.upscale_ts == (11, 22, 18, 50, pytest.approx(0.5))
    assert (r.upscale_from, r.upscale_to) == (0, 1)
    assert r.replica_add_ts == (11, 22, 18, 50, pytest.approx(0.6))
    assert r.replicas_added == 1
    assert r.download_tasks_ts == (11, 22, 18, 50, 1.0)
    assert r.cloud_download_s == pytest.approx(3.25)
    assert r.engine_started_ts == (11, 22, 18, 50, 40.0)
    assert r.replica_started_ts == (11, 22, 18, 50, pytest.approx(41.3))
    assert r.replica_startup_s == pytest.approx(40.7)
    assert r.replica_init_s == pytest.approx(39.9)
    assert r.app_ready_ts == (11, 22, 18, 50, 42.0)
    assert [e.deployment for e in r.events if e.kind == "add"] == ["OpenAiIngress", "LLMServer:m"]


def test_parse_log_combines_ray_vllm_and_events():
    events = [
        "(driver pid=3) " + format_event("deploy_start", t=1795200000.5, model="m"),
        # The same event echoed through a parent's stdout, coloured: still one event.
        f"{C}(ServeReplica:default:LLMServer:m pid=90){R} " + format_event("deploy_start", t=1795200000.5, model="m"),
        format_event("first_token", t=1795200050.25),
    ]
    parsed = parse_log("\n".join([RAY_LOG, V025_MISS, *events]))
    assert [e["event"] for e in parsed.events] == ["deploy_start", "first_token"]
    assert parsed.year == 2026
    table = to_phase_table(parsed)
    assert table["replica_startup_s"] == pytest.approx(40.7)
    assert table["cloud_download_s"] == pytest.approx(3.25)
    assert table["inductor_s"] == pytest.approx(12.0)
    assert table["runai_stream_s"] is None
    assert parsed.spans["replica_startup_s"].first == (11, 22, 18, 50, pytest.approx(41.3))
    assert parsed.spans["replica_startup_s"].year == 2026
    assert parsed.spans["inductor_s"].first == (11, 22, 18, 50, 27.0)
    assert parsed.spans["inductor_s"].last == (11, 22, 18, 50, 29.0)
