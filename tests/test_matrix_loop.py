"""The matrix loop against a fake system under test: clear, deploy, measure, teardown per run, in order; one row
appended per run; an interrupt stops the campaign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_sut import MODEL_LOAD_S, PROVENANCE, FakeSUT, run_quietly

from coldstart.analysis.results import SCHEMA_VERSION, RunStatus, load_rows
from coldstart.lab.matrix.plan import pending, plan


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


# ---------------------------------------------------------------------------------------------------------
# one row per run, in order


def test_each_run_is_clear_deploy_measure_teardown_in_order(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    rows = run_quietly(sut, specs, results)

    expected = [(step, s.key) for s in specs for step in ("clear", "deploy", "measure", "teardown")]
    assert [(name, key) for name, key, _ in sut.calls] == expected
    # deploy, measure and teardown of a run share one run id; every run has its own.
    run_ids = [rid for name, _, rid in sut.calls if name != "clear"]
    assert all(len(set(run_ids[i : i + 3])) == 1 for i in range(0, len(run_ids), 3))
    assert len(set(run_ids)) == len(specs)
    assert [r.run_id for r in rows] == run_ids[::3]


def test_rows_are_appended_one_per_run_with_schema_and_provenance(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    rows = run_quietly(sut, specs, results)

    on_disk = load_rows(results)
    assert len(on_disk) == len(specs) == len(rows)
    assert len(results.read_text().splitlines()) == len(specs)
    for spec, row, disk in zip(specs, rows, on_disk, strict=True):
        assert disk == row  # read back as the row that was written
        assert disk.schema_version == SCHEMA_VERSION
        assert disk.provenance == PROVENANCE
        assert (disk.campaign, disk.model, disk.experiment, disk.scenario_name, disk.repeat) == spec.key
        assert disk.status is RunStatus.OK and disk.error is None
        assert disk.ttft_s == 12.0 + spec.repeat
        assert disk.device == "fake-device"
        assert disk.config == {"model": spec.model, "experiment": spec.experiment, "repeat": spec.repeat}
        assert disk.extra["clear"] == {"ok": True, "fake": "tiny"}
        assert disk.client.ttft_s == 12.0 + spec.repeat
        assert disk.timeline is not None and disk.node_state == "cold" and disk.wall_s is not None
        # The log was parsed: the phase comes from the fake's vLLM line.
        assert disk.phases["model_load_s"] == pytest.approx(MODEL_LOAD_S)
        log = Path(disk.log_path)
        assert log.name == f"{row.run_id}.log"
        # The client sidecar lands beside the log, so the analysis can rebuild the row.
        sidecar = json.loads(log.with_suffix(".client.json").read_text())
        assert sidecar["ttft_s"] == disk.ttft_s and sidecar["status"] == "ok"


def test_appending_keeps_earlier_rows(sut: FakeSUT, results: Path) -> None:
    run_quietly(sut, plan(["tiny"], ["baseline"], 1, "a"), results)
    run_quietly(sut, plan(["tiny"], ["baseline"], 1, "b"), results)
    assert [r.campaign for r in load_rows(results)] == ["a", "b"]


def test_keyboard_interrupt_is_not_swallowed(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline"], 3, "c")
    sut.interrupt_measure = {specs[1].key}
    with pytest.raises(KeyboardInterrupt):
        run_quietly(sut, specs, results)
    assert sut.ran("clear") == [specs[0].key, specs[1].key]  # the third run never started
    assert specs[1].key in sut.ran("teardown")  # the interrupted service was still stopped
    assert [r.repeat for r in load_rows(results)] == [0]  # the finished run's row is on disk
    assert pending(specs, results) == specs[1:]
