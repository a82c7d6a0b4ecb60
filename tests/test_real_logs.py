"""Golden phase tables for startup logs this lab never produced.

``tests/fixtures/real_logs/`` holds real logs pasted into public vLLM issues, each with a golden table
written by reading the log (README.md there says how). A parser change that moves any value, turns an absent
phase into a number, or merges two engine starts fails here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from coldstart.analysis.parse import VllmPhases, explain, parse_log, parse_vllm

CORPUS = Path(__file__).resolve().parent / "fixtures" / "real_logs"
GOLDENS = sorted(CORPUS.glob("*.golden.json"))


def _golden(path: Path) -> tuple[dict, str]:
    return json.loads(path.read_text()), path.with_name(path.name.replace(".golden.json", ".log")).read_text()


def _same(got: object, expected: object) -> bool:
    if expected is None or isinstance(expected, bool):
        return got is expected
    return isinstance(got, (int, float)) and not isinstance(got, bool) and got == pytest.approx(expected, abs=1e-6)


def _mismatches(phases: VllmPhases, expected: dict) -> dict[str, tuple[object, object]]:
    return {
        name: (getattr(phases, name), want) for name, want in expected.items() if not _same(getattr(phases, name), want)
    }


def test_corpus_has_at_least_25_logs_each_with_a_source_and_a_golden():
    logs = sorted(CORPUS.glob("*.log"))
    assert len(logs) >= 25
    assert len(GOLDENS) == len(logs)
    for log in logs:
        assert log.read_text().startswith("# source: https://github.com/"), log.name


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.name.replace(".golden.json", ""))
def test_real_log_golden(path):
    golden, text = _golden(path)
    parsed = parse_log(text)
    assert len(parsed.starts) == golden["engine_starts"]
    assert parsed.served == len(parsed.starts) - 1
    served = parsed.starts[parsed.served]
    assert parsed.vllm == served.phases
    assert _mismatches(parsed.vllm, golden["served"]["main"]) == {}
    if "draft" in golden["served"]:
        assert _mismatches(served.models["draft"], golden["served"]["draft"]) == {}
    else:
        assert set(served.models) == {"main"}
    for start, expected in zip(parsed.starts, golden.get("other_starts", []), strict=False):
        assert _mismatches(start.phases, expected["main"]) == {}


def test_every_absent_phase_stays_none_across_the_corpus():
    invented = []
    for path in GOLDENS:
        golden, text = _golden(path)
        parsed = parse_log(text)
        expected = golden["served"]["main"]
        for name, value in dataclasses.asdict(parsed.vllm).items():
            if expected.get(name, "unchecked") is None and value is not None:
                invented.append((path.name, name, value))
    assert invented == []


def test_explain_names_the_lines_behind_each_phase_and_the_unread_timing_lines():
    text = (CORPUS / "vllm-18757-v0.9.1-tp1.log").read_text()
    report = explain(text)
    assert "engine start 1/2 (did not serve)" in report
    assert "engine start 2/2 (served)" in report
    assert "weights_load_s = 0.06" in report
    assert "line 97: INFO 05-27 12:32:24 [default_loader.py:280] Loading weights took 0.06 seconds" in report
    assert "timing-looking lines no rule read:" in report


# ---------------------------------------------------------------------------------------------------------
# Six ways the parser once misread real logs, each on the wording those logs use

W = "INFO 07-21 19:37:06 [default_loader.py:272] Loading weights took {} seconds"


def test_1_vllm_worker_rank_prefix_is_split_and_ranks_are_maxed_not_summed():
    text = "\n".join(
        [
            "(VllmWorker rank=0 pid=3249) " + W.format("2.37"),
            "(VllmWorker rank=1 pid=3250) " + W.format("2.52"),
            "(VllmWorker rank=1 pid=3250) INFO 07-21 19:37:20 [gpu_model_runner.py:1] "
            "Graph capturing finished in 4 secs, took 0.4 GiB",
        ]
    )
    parsed = parse_log(text)
    assert parsed.vllm.weights_load_s == pytest.approx(2.52)
    assert parsed.starts[0].ranks == ((None, 3249), (None, 3250))
    assert parsed.spans["weights_load_s"].first == (7, 21, 19, 37, 6.0)


def test_2_negative_cuda_graph_memory_is_kept():
    v = parse_vllm("INFO 07-21 19:38:00 [gpu_model_runner.py:1] Graph capturing finished in 4 secs, took -0.41 GiB")
    assert (v.cuda_graph_s, v.cuda_graph_gib) == (4.0, pytest.approx(-0.41))


def test_3_v0_wordings_and_headers_without_bracket():
    text = "\n".join(
        [
            "INFO 03-19 06:36:19 model_runner.py:1072] Loading model weights took 15.3916 GB",
            "INFO 03-19 06:36:47 model_runner.py:1523] Graph capturing finished in 28 secs.",
        ]
    )
    parsed = parse_log(text)
    assert parsed.vllm.model_load_gib == pytest.approx(15.3916)
    assert parsed.vllm.cuda_graph_s == 28.0
    assert parsed.vllm.cuda_graph_gib is None
    assert parsed.spans["cuda_graph_s"].first == (3, 19, 6, 36, 47.0)


def test_4_two_engine_starts_are_two_starts_not_two_ranks():
    start = "INFO 05-27 12:32:{} [llm_engine.py:230] Initializing a V0 LLM engine (v0.9.1) with config: model='{}'"
    text = "\n".join(
        [
            start.format("18", "a"),
            W.format("9.00"),
            "INFO 05-27 12:32:20 [llm_engine.py:1] init engine (profile, create kv cache, warmup model) took 3 seconds",
            start.format("21", "b"),
            W.format("1.00"),
            "INFO 05-27 12:32:30 [llm_engine.py:1] init engine (profile, create kv cache, warmup model) took 2 seconds",
        ]
    )
    parsed = parse_log(text)
    assert [s.phases.weights_load_s for s in parsed.starts] == [9.0, 1.0]
    assert parsed.served == 1
    assert parsed.vllm.weights_load_s == 1.0
    assert parsed.vllm.engine_init_s == 2.0


def test_4_a_served_start_is_the_last_one_that_reached_engine_init():
    start = "INFO 05-27 12:32:{} [core.py:1] Initializing a V1 LLM engine (v0.9.1) with config: model='m'"
    text = "\n".join(
        [
            start.format("18"),
            W.format("9.00"),
            "INFO 05-27 12:32:20 [core.py:1] init engine (profile, create kv cache, warmup model) took 3 seconds",
            start.format("40"),
            W.format("1.00"),
            "ERROR 05-27 12:32:41 [core.py:1] EngineCore failed to start.",
        ]
    )
    parsed = parse_log(text)
    assert parsed.served == 0
    assert parsed.vllm.weights_load_s == 9.0
    assert parsed.starts[1].phases.weights_load_s == 1.0


def _w(msg: str, t: str = "08:55:20") -> str:
    return f"(Worker_TP0 pid=79) INFO 07-05 {t} [x.py:1] {msg}"


def test_5_the_cache_load_time_vllm_states_beats_one_derived_from_the_monitor_total():
    load = "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.202 s"
    lines = [
        _w("Dynamo bytecode transform time: 1.26 s"),
        _w(load),
        _w("Directly load AOT compilation from path /c/torch_aot_compile/348f/rank_0_0/model"),
        _w("torch.compile took 2.18 s in total"),
    ]
    v = parse_vllm("\n".join(lines))
    assert v.aot_cache_hit is True
    assert v.compile_cache_load_s == pytest.approx(0.202)  # stated; 2.18 - 1.26 = 0.92 would be derived
    assert v.torch_compile_s == pytest.approx(2.18)
    # Only where no line states it is it derived: the monitor's total minus the Dynamo pass before the load.
    unstated = parse_vllm("\n".join(line for line in lines if load not in line))
    assert unstated.compile_cache_load_s == pytest.approx(0.92)


def test_6_cache_status_per_model_with_a_draft():
    text = "\n".join(
        [
            _w("Loading weights took 151.24 seconds", "08:54:33"),
            _w("Loading drafter model...", "08:54:45"),
            _w("Loading weights took 27.99 seconds", "08:55:15"),
            _w("Model loading took 79.52 GiB memory and 197.764892 seconds", "08:55:18"),
            _w("Using cache directory: /c/d8d2/rank_0_0/backbone for vLLM's torch.compile"),
            _w("Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.202 s"),
            _w("Using cache directory: /c/d8d2/rank_0_0/eagle_head for vLLM's torch.compile"),
            _w("Compiling a graph for compile range (1, 8192) takes 3.50 s"),
        ]
    )
    start = parse_log(text).starts[0]
    main, draft = start.models["main"], start.models["draft"]
    assert (main.weights_load_s, draft.weights_load_s) == (151.24, 27.99)
    assert main.model_load_s == pytest.approx(197.764892)
    assert (main.compile_cache_hit, draft.compile_cache_hit) == (True, False)
    assert (main.inductor_s, draft.inductor_s) == (None, 3.5)
    assert draft.kv_cache_gib is None  # engine-wide figures belong to the main model's row only


@pytest.mark.parametrize(
    "prefix, rank",
    [
        ("(VllmWorker rank=3 pid=53006) ", 3),
        ("(Worker_TP1 pid=5537) ", 1),
        ("(RayWorkerWrapper pid=325, ip=192.168.195.152) ", None),
        ("vllm-llm-1  | (VllmWorkerProcess pid=237) ", None),
        ("^[[36m(RayWorkerWrapper pid=2300)^[[0m ", None),
        ("[36m(RayWorkerWrapper pid=861)[0m ", None),
    ],
)
def test_every_rank_prefix_style_yields_header_and_stamp(prefix, rank):
    from coldstart.analysis.parse import parse_line

    line = parse_line(prefix + W.format("2.37"))
    assert line.pid is not None
    assert line.rank == rank
    assert line.ts == (7, 21, 19, 37, 6.0)
    assert line.message == "Loading weights took 2.37 seconds"


def test_analysis_cli_explain_prints_the_report(capsys):
    import argparse

    from coldstart.analysis.cli import add_cli_args, main

    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    assert main(parser.parse_args(["--explain", str(CORPUS / "vllm-6768-v0.5.2-tp1.log")])) == 0
    out = capsys.readouterr().out
    assert "model draft:" in out
    assert "model_load_gib = 4.4062" in out
    assert main(parser.parse_args(["--explain", str(CORPUS / "missing.log")])) == 2


def test_rows_wrapped_by_the_paste_are_read_joined():
    head = "(RayWorkerWrapper pid=326, ip=192.168.195.154) INFO 05-09 02:55:02 [gpu_model_runner.py:1697] "
    text = "\n".join(
        [
            head + "Graph capturing finished in 2",
            "30 secs, took 1.49 GiB [repeated 4x across cluster]",
            head + "Model loading took 35.1633 Gi",
            "B and 324.096440 seconds",
            "Loading safetensors checkpoint shards: 100% Completed | 5/5 [00:04<00:00,  1.09it/s]",
        ]
    )
    v = parse_vllm(text)
    assert (v.cuda_graph_s, v.cuda_graph_gib) == (230.0, 1.49)
    assert (v.model_load_gib, v.model_load_s) == (35.1633, pytest.approx(324.09644))
    assert "line 1: " in explain(text)


def test_data_parallel_engines_starting_together_are_one_start():
    marker = "INFO 06-17 07:32:{} [core.py:70] Initializing a V1 LLM engine (v0.9.1) with config: model='m'"
    text = "\n".join(
        [
            "(DPEngineCoreActor pid=1) " + marker.format("38"),
            "(DPEngineCoreActor pid=1) " + W.format("16.47"),
            "(DPEngineCoreActor pid=2) " + marker.format("39"),
            "(DPEngineCoreActor pid=2) " + W.format("16.77"),
        ]
    )
    parsed = parse_log(text)
    assert len(parsed.starts) == 1
    assert parsed.vllm.weights_load_s == 16.77


# ---------------------------------------------------------------------------------------------------------
# Rules read off real logs with a draft model (speculative decoding: the draft loads, compiles and profiles
# after the main model, on the same ranks)


def _corpus(name: str) -> str:
    return (CORPUS / f"{name}.log").read_text()


def test_a_stated_compile_cache_load_beats_the_monitor_total_on_a_real_aot_hit():
    # TP0 states 5.958 s for its graphs; the monitor's 9.61 s total holds more than the cache load.
    v = parse_vllm(_corpus("club3090-142-drafter-aot-hit-tp2"))
    assert v.aot_cache_hit is True
    assert v.compile_cache_load_s == pytest.approx(5.958)
    assert v.torch_compile_s == pytest.approx(9.61)


def test_a_drafts_own_profiling_run_is_the_drafts_not_the_main_models():
    # Logged after the draft's own compile, in its eagle_head cache directory: the main model logged none here.
    start = parse_log(_corpus("club3090-95-drafter-compile-tp2")).starts[0]
    assert start.models["draft"].profiling_s == pytest.approx(0.59)
    assert start.models["main"].profiling_s is None
    # The main model's profiling run, logged before the eagle_head line, stays the main model's.
    main = parse_log(_corpus("club3090-142-drafter-aot-hit-tp2")).starts[0]
    assert main.phases.profiling_s == pytest.approx(56.94)


def test_the_phase_table_counts_the_engine_main_plus_draft():
    from coldstart.analysis.parse import to_phase_table

    # Main weights 25.92 s, then the drafter's 5.94 s on the same rank: the engine waited for both.
    weights = parse_log(_corpus("club3090-137-drafter-tp2"))
    assert weights.vllm.weights_load_s == pytest.approx(25.92)
    assert to_phase_table(weights)["weights_load_s"] == pytest.approx(31.86)
    # The draft's compile and profiling run count for the engine too (the main model's are not in the excerpt).
    table = to_phase_table(parse_log(_corpus("club3090-95-drafter-compile-tp2")))
    assert table["torch_compile_s"] == pytest.approx(10.96)
    assert table["profiling_s"] == pytest.approx(0.59)
    assert (table["dynamo_s"], table["inductor_s"]) == (pytest.approx(0.96), pytest.approx(9.14))


def test_the_timeline_ends_the_model_load_when_the_draft_is_loaded():
    from coldstart.analysis.timeline import build_timeline

    tl = build_timeline(_corpus("club3090-137-drafter-tp2"))
    loaded = tl.milestone("model_loaded")
    assert loaded is not None
    # No year in the log: the placeholder year; the drafter's "Loading weights took" line is at 05:56:17.
    drafter_done = tl.clock.epoch((5, 16, 5, 56, 17.0))
    assert drafter_done is not None
    assert loaded.t_epoch == pytest.approx(drafter_done + 0.5, abs=0.01)


def test_a_running_torch_compile_total_is_not_added_up_again_for_the_draft():
    # Before the monitor timed each module alone, "torch.compile takes X s in total" was the process's running
    # total: the draft's line already holds the main model's compile (5.71 + 0.39 + 0.14 = 6.25 here). The
    # lines are an EAGLE3 start's from vllm-project/speculators#166, whose compile cache was off; the draft's
    # cache-directory line, which that run did not print, is added so that the draft's lines are the draft's.
    text = "\n".join(
        [
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:03 [backends.py:634] Dynamo bytecode transform time: 3.38 s",
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:05 [backends.py:279] Compiling a graph for dynamic shape takes 2.33 s",  # noqa: E501
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:06 [monitor.py:34] torch.compile takes 5.71 s in total",
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:06 [backends.py:1] Using cache directory: /c/rank_0_0/eagle_head for vLLM's torch.compile",  # noqa: E501
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:06 [backends.py:634] Dynamo bytecode transform time: 0.39 s",
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:06 [backends.py:279] Compiling a graph for dynamic shape takes 0.14 s",  # noqa: E501
            "(EngineCore_DP0 pid=774560) INFO 10-30 14:21:07 [monitor.py:34] torch.compile takes 6.25 s in total",
        ]
    )
    parsed = parse_log(text)
    assert parsed.engine.torch_compile_s == pytest.approx(6.25)  # not 5.71 + 6.25
    assert parsed.engine.dynamo_s == pytest.approx(3.77)  # per-model lines add up
    assert parsed.starts[0].models["draft"].dynamo_s == pytest.approx(0.39)
