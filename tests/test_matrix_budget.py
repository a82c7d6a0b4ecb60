"""The time budget: estimates from earlier runs of the same model, experiment, scenario and GPU, and a run that would
not fit is not started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_sut import PROVENANCE, FakeSUT
from fakes import FakeClock

from coldstart.analysis.results import SCHEMA_VERSION, ResultRow
from coldstart.lab.matrix.budget import estimate_run_s
from coldstart.lab.matrix.loop import run_matrix
from coldstart.lab.matrix.plan import RunSpec, plan


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


def _prior(
    model: str,
    experiment: str,
    *,
    wall_s: float | None = None,
    ttft_s: float | None = 50.0,
    gpu: str | None = "GPU-A",
    status: str = "ok",
    campaign: str = "earlier",
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{campaign}-{model}-{experiment}-{wall_s}-{ttft_s}",  # readers skip a row without one
        "campaign": campaign,
        "model": model,
        "experiment": experiment,
        "repeat": 0,
        "status": status,
        "ttft_s": ttft_s,
        "provenance": {"gpu": gpu},
        "extra": {} if wall_s is None else {"wall_s": wall_s},
    }


def test_estimate_prefers_wall_time_then_ttft_plus_overhead_and_ignores_other_gpus() -> None:
    spec = RunSpec("tiny", "baseline", 0, "now")
    rows = [
        _prior("tiny", "baseline", wall_s=100.0),
        _prior("tiny", "baseline", wall_s=300.0),
        _prior("tiny", "baseline", wall_s=200.0),
        _prior("tiny", "baseline", wall_s=999.0, gpu=None),
        _prior("tiny", "baseline", wall_s=999.0, status="failed"),
        _prior("tiny", "all", wall_s=999.0),
    ]
    rows = [ResultRow.from_dict(r) for r in rows]
    est = estimate_run_s(spec, rows, gpu="GPU-A")
    assert est is not None and est.seconds == 200.0 and "3 earlier" in est.basis
    ttft_only = [ResultRow.from_dict(_prior("tiny", "baseline", ttft_s=t)) for t in (40.0, 60.0)]
    assert estimate_run_s(spec, ttft_only, gpu="GPU-A", overhead_s=10.0).seconds == 60.0
    assert estimate_run_s(spec, rows, gpu="GPU-B") is None
    # No run of this experiment yet: the model's other experiments on that GPU stand in.
    other = estimate_run_s(RunSpec("tiny", "compile_cache_mega", 0, "now"), rows, gpu="GPU-A")
    assert other is not None and other.seconds == 250.0 and "earlier tiny run" in other.basis


def test_estimate_of_a_scenario_comes_from_runs_of_that_scenario_first() -> None:
    # In the campaign 2026-11-29-h200x1 a `tour` (two cold starts, 20 requests) was budgeted like a single start of
    # its experiment.
    single = [_prior("llama-3-8b", "fast", wall_s=w) for w in (140.0, 150.0)]
    tour = _prior("llama-3-8b", "fast", wall_s=207.0, campaign="tour")
    tour["extra"]["scenario"] = "tour"
    rows = [ResultRow.from_dict(r) for r in (*single, tour)]
    est = estimate_run_s(RunSpec("llama-3-8b", "fast", 0, "now", scenario="tour"), rows, gpu="GPU-A")
    assert est is not None and est.seconds == 207.0 and "1 earlier run" in est.basis
    # No run of that scenario yet: the experiment's runs under any scenario stand in, and say so.
    burst = estimate_run_s(RunSpec("llama-3-8b", "fast", 0, "now", scenario="burst"), rows, gpu="GPU-A")
    assert burst is not None and burst.seconds == 150.0 and "3 earlier fast run" in burst.basis


def test_a_run_that_would_not_fit_the_budget_is_not_started(
    sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results.parent.mkdir(parents=True)
    gpu = PROVENANCE.gpu
    results.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                _prior("tiny", "baseline", wall_s=100.0, gpu=gpu),
                _prior("tiny", "compile_cache", wall_s=300.0, gpu=gpu),
            )
        )
    )
    clock = FakeClock()

    class Ticking(FakeSUT):
        def clear(self, spec: RunSpec) -> dict[str, Any]:
            clock.now += 100.0  # every run takes 100 s of the budget
            return super().clear(spec)

    ticking = Ticking(root=sut.root)
    specs = plan(["tiny"], ["baseline", "compile_cache", "runai_streamer"], 1, "now")
    rows = run_matrix(
        ticking, specs, results, provenance=PROVENANCE, show_progress=False, time_budget_s=250.0, clock=clock
    )
    # baseline (~100 s) fits 250 s; compile_cache (~300 s) does not fit the 150 s left and is not started;
    # runai_streamer is estimated from tiny's other runs (median of 100 s, 300 s and the fake's instant run).
    assert [r.experiment for r in rows] == ["baseline", "runai_streamer"]
    assert ("now", "tiny", "compile_cache", "single", 0) not in ticking.ran("clear")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "compile_cache #0: not started, needs ~300 s (median wall time of 1 earlier run(s)), 150 s left" in out
    assert all(isinstance(r.wall_s, float) for r in rows)
