"""The `vllm bench startup --output-json` export: vLLM's keys and percentiles, from this lab's timelines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from coldstart.analysis.collect import Run, Source, row_from_log
from coldstart.analysis.results import ClientResult
from coldstart.analysis.tables import run_table
from coldstart.analysis.vllm_startup import (
    ENGINE_SEGMENTS,
    PERCENTAGES,
    metric_json,
    phase_of,
    startup_results,
    write_startup_json,
)

REPO = Path(__file__).resolve().parents[1]
FAST = REPO / "experiment_terminal_output" / "llama-3-8b" / "fast" / "20261129T185203Z-484a"
BASELINE = REPO / "experiment_terminal_output" / "llama-3-8b" / "baseline" / "20261129T190225Z-2141"


def _run(stem: Path, experiment: str) -> Run:
    client = ClientResult.from_dict(json.loads(stem.with_suffix(".client.json").read_text()))
    row = row_from_log(
        stem.with_suffix(".log").read_text(errors="replace"),
        run_id=stem.name,
        model="llama-3-8b",
        experiment=experiment,
        client=client,
    ).row
    return Run(dataclasses.replace(row, node_state="warm", repeat=1), Source.RESULTS)


def test_metric_json_has_vllms_keys_and_numpys_percentiles() -> None:
    values = [3.0, 1.0, 2.0, 10.0]
    out = metric_json("cold_startup", values)
    assert set(out) == {"avg_cold_startup_time", "cold_startup_times", "cold_startup_percentiles"}
    assert out["avg_cold_startup_time"] == pytest.approx(4.0)
    expected = np.percentile(np.array(values), PERCENTAGES).tolist()
    assert list(out["cold_startup_percentiles"].values()) == pytest.approx(expected)
    assert list(out["cold_startup_percentiles"]) == [str(p) for p in PERCENTAGES]


def test_startup_is_engine_start_to_ready_and_the_phase_follows_the_compile_cache(tmp_path: Path) -> None:
    assert phase_of("baseline") == "cold" and phase_of("fast") == "warm"
    runs = [_run(FAST, "fast"), _run(BASELINE, "baseline")]
    results = startup_results(run_table(runs))
    fast = next(v for k, v in results.items() if k[1] == "fast")
    base = next(v for k, v in results.items() if k[1] == "baseline")
    timeline = runs[0].row.timeline
    assert timeline is not None
    ms = timeline.milestones
    assert fast["warm_startup_times"] == [
        pytest.approx(ms["engine_ready"].t_epoch - ms["engine_start"].t_epoch, abs=1e-6)
    ]
    assert fast["warm_startup_times"][0] == pytest.approx(sum(timeline.segments[s] or 0.0 for s in ENGINE_SEGMENTS))
    assert fast["warm_compilation_times"] == [pytest.approx(runs[0].row.phases["torch_compile_s"])]
    assert set(base) == {
        f"{a}cold_{m}{b}"
        for m in ("startup", "compilation")
        for a, b in (("avg_", "_time"), ("", "_times"), ("", "_percentiles"))
    }
    written = write_startup_json(results, tmp_path)
    assert len(written) == 2 and all(p.name.endswith(".startup.json") for p in written)
    assert json.loads(written[0].read_text())
