"""The matrix's plan and resume: which runs a campaign holds, in which order, and which of them its results file already
answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_sut import PROVENANCE, FakeSUT, run_quietly

from coldstart.analysis.results import load_rows
from coldstart.lab.matrix.loop import run_matrix
from coldstart.lab.matrix.plan import RunSpec, nothing_to_run, pending, plan
from coldstart.registry import UnknownNameError


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


# ---------------------------------------------------------------------------------------------------------
# plan


def test_plan_is_repeat_major_and_drops_invalid_pairs() -> None:
    specs = plan(["tiny", "llama-3-8b-tp2"], ["baseline", "runai_streamer_sharded", "all"], 2, "camp")
    pairs = [
        ("tiny", "baseline"),
        ("tiny", "all"),  # tiny (TP1) + runai_streamer_sharded is dropped; "all" stays
        ("llama-3-8b-tp2", "baseline"),
        ("llama-3-8b-tp2", "runai_streamer_sharded"),
        ("llama-3-8b-tp2", "all"),
    ]
    assert specs == [RunSpec(m, e, r, "camp") for r in (0, 1) for m, e in pairs]
    assert [s.key for s in specs[:2]] == [
        ("camp", "tiny", "baseline", "single", 0),
        ("camp", "tiny", "all", "single", 0),
    ]


def test_plan_only_invalid_pairs_is_empty_and_unknown_names_raise() -> None:
    assert plan(["tiny"], ["runai_streamer_sharded"], 3, "c") == []
    assert plan(["tiny"], ["baseline"], 0, "c") == []
    with pytest.raises(UnknownNameError, match="valid models"):
        plan(["no-such-model"], ["baseline"], 1, "c")


# ---------------------------------------------------------------------------------------------------------
# resume


def test_pending_skips_ok_rows_and_retries_failed_ones(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    _, b, c, _ = specs
    sut.fail_deploy = {b.key}
    sut.client_status = {c.key: "timeout"}
    run_quietly(sut, specs, results)
    assert [r.status for r in load_rows(results)] == ["ok", "failed", "timeout", "ok"]

    assert pending(specs, results) == [b, c]
    # Another campaign's rows do not count as done for this one.
    other = plan(["tiny"], ["baseline"], 1, "other")
    assert pending(other, results) == [RunSpec("tiny", "baseline", 0, "other")]
    assert pending(specs, results.with_name("missing.jsonl")) == specs

    second = FakeSUT(root=sut.root)
    rows = run_quietly(second, specs, results)
    assert second.ran("clear") == [b.key, c.key]
    assert [r.status for r in rows] == ["ok", "ok"]
    assert pending(specs, results) == []

    third = FakeSUT(root=sut.root)
    assert run_quietly(third, specs, results) == []
    assert third.calls == []
    assert len(load_rows(results)) == 6  # 4 + 2 retries; nothing rewritten


def test_pending_retries_a_run_that_failed_its_audit_and_keeps_the_flagged_row(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["compile_cache"], 1, "c")
    sut.hit = {specs[0].key: False}  # the cache did not hit: ok status, failed audit
    run_quietly(sut, specs, results)
    assert load_rows(results)[0].audit.passed is False
    assert pending(specs, results) == specs
    run_quietly(FakeSUT(root=sut.root), specs, results)  # hits this time
    assert [r.audit.passed for r in load_rows(results)] == [False, True]
    assert pending(specs, results) == []


def test_a_capture_run_is_done_once_it_ran_ok_whatever_its_audit(sut: FakeSUT, results: Path) -> None:
    # In the campaign 2026-11-30-h200x2 a resumed step re-ran its capture (miss) run, because its miss failed the
    # cache audit.
    specs = plan(["tiny"], ["cc_trims"], 1, "c-miss")
    sut.hit = {specs[0].key: False}
    run_matrix(sut, specs, results, provenance=PROVENANCE, show_progress=False, capture=True)
    assert load_rows(results)[0].audit.passed is False
    assert pending(specs, results, capture=True) == []
    assert "nothing to run" in nothing_to_run(specs, load_rows(results), results, 1, capture=True)
    again = FakeSUT(root=sut.root)
    assert run_matrix(again, specs, results, provenance=PROVENANCE, show_progress=False, capture=True) == []
    assert again.calls == []
    assert pending(specs, results) == specs  # the same rows, judged as measurements: the miss is retried
