"""Whole logs: the ancestor logs' golden phase tables (older vLLM, 8xH100), and what ``parse_log`` combines.

The lexer, the vLLM wordings and the Ray milestones have their own files (``test_parse_lines.py``,
``test_parse_rules.py``, ``test_parse_ray.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_parse_ray import RAY_LOG
from test_parse_rules import V025_MISS, C, R

from coldstart.analysis.events import format_event
from coldstart.analysis.parse import PHASE_COLUMNS, parse_log, parse_vllm, to_phase_table

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
