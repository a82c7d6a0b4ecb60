"""The vLLM wordings (``VLLM_RULES``) and the multi-rank rule, on vLLM 0.25.1 lines and older wordings.

The synthetic lines below are built from the format strings in the vLLM 0.25.1 wheel (file and line
numbers in the ``[file.py:N]`` headers are theirs), so a wording change upstream shows up here as a failing
test rather than as a silent ``None`` in a results table.
"""

from __future__ import annotations

import pytest

from coldstart.analysis.parse import parse_log, parse_vllm

ESC = "\x1b"

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
