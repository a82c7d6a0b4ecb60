"""`coldstart compare`: one campaign's runs side by side, TTFT and the categories that add up to it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from coldstart.analysis import compare
from coldstart.analysis.results import Audit, ResultRow, append_row
from coldstart.analysis.timeline import CATEGORY


def _row(experiment: str, ttft_s: float | None, phases: dict[str, float | None], **kw: object) -> ResultRow:
    fields: dict = {
        "run_id": f"r-{experiment}",
        "model": "tiny",
        "experiment": experiment,
        "repeat": 0,
        "status": "ok",
        "ttft_s": ttft_s,
        "phases": phases,
        "audit": None,
        "log_path": None,
        "provenance": None,
        "config": {},
        "campaign": "demo-1",
        **kw,
    }
    return ResultRow(**fields)


BASELINE = _row(
    "baseline",
    60.0,
    {"seg_replica_actor_start_s": 10.0, "seg_first_token_s": 2.0, "seg_torch_compile_s": 30.0, "unattributed_s": 18.0},
)
FAST = _row("fast", 15.0, {"seg_replica_actor_start_s": 1.0, "seg_torch_compile_s": 4.0, "unattributed_s": 10.0})


def _cells(table: compare.Comparison, line: int) -> dict[str, str]:
    return dict(zip(table.head, table.lines[line], strict=True))


def test_each_run_is_one_line_of_its_categories_which_add_up_to_its_ttft() -> None:
    table = compare.compare([BASELINE, FAST])
    ray, compile_ = f"{CATEGORY['ray_serve'].short} s", f"{CATEGORY['torch_compile'].short} s"
    assert _cells(table, 0) == {
        "model": "tiny",
        "experiment": "baseline",
        "status": "ok",
        "ttft_s": "60.0",
        ray: "12.0",  # the replica's start and the first token are both Ray/Serve's
        compile_: "30.0",
        f"{CATEGORY['unattributed'].short} s": "18.0",
    }
    assert _cells(table, 1)[ray] == "1.0"
    # Only the categories some run measured: no column of dashes for CUDA graphs on this pair.
    assert f"{CATEGORY['cuda_graphs'].short} s" not in table.head
    text = table.render().splitlines()
    assert len(text) == 3 and text[0].startswith("model") and "baseline" in text[1]
    assert len({len(line) for line in text}) == 1, "columns line up"


def test_later_runs_are_compared_with_the_first() -> None:
    assert compare.speedup_lines([BASELINE, FAST]) == ["fast vs baseline: 15.0 s vs 60.0 s (4.00x faster)"]
    slower = _row("stream", 120.0, {})
    assert compare.speedup_lines([BASELINE, slower])[0].endswith("(2.00x slower)")
    failed = _row("fast", None, {}, status="failed", error="engine died")
    assert compare.speedup_lines([BASELINE, failed]) == []


def test_a_run_whose_cache_audit_failed_is_named() -> None:
    missed = Audit(compile_cache_restore_status="DOES_NOT_EXIST", expected_compile_cache_hit=True, passed=False)
    rows = [BASELINE, _row("fast", 56.0, {}, audit=missed), _row("fast", 9.0, {}, audit=Audit(passed=True))]
    assert compare.audit_notes(rows) == [
        "note: fast (r-fast): cache audit failed; expected a compile-cache hit: True, restore: DOES_NOT_EXIST"
    ]


def _main(results: Path, campaign: str) -> int:
    parser = argparse.ArgumentParser()
    compare.add_cli_args(parser)
    return compare.main(parser.parse_args(["--campaign", campaign, "--results", str(results)]))


def test_the_tool_shows_one_campaign_and_says_when_a_run_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.jsonl"
    append_row(results, _row("baseline", 90.0, {}, campaign="other"))
    for row in (BASELINE, FAST):
        append_row(results, row)
    assert _main(results, "demo-1") == 0
    out = capsys.readouterr().out
    assert "90.0" not in out and "fast vs baseline" in out
    append_row(results, _row("cc_trims", None, {}, campaign="demo-2", status="failed", error="engine died"))
    assert _main(results, "demo-2") == 1
    assert "cc_trims failed: engine died" in capsys.readouterr().err
    assert _main(results, "nothing") == 1
    assert "no runs of campaign 'nothing'" in capsys.readouterr().err


def test_make_demos_capture_run_is_named_but_not_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo`: baseline, one capture run of cc_trims (fast's compile-cache key, a miss by design), fast."""
    results = tmp_path / "results.jsonl"
    missed = Audit(compile_cache_restore_status="DOES_NOT_EXIST", expected_compile_cache_hit=True, passed=False)
    capture = _row("cc_trims", 80.0, {"seg_torch_compile_s": 50.0}, audit=missed, capture=True)
    for row in (BASELINE, capture, dataclasses.replace(FAST, audit=Audit(passed=True))):
        append_row(results, row)
    assert _main(results, "demo-1") == 0
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith("tiny ")]
    assert [line.split()[1] for line in table] == ["baseline", "fast"]  # the two measured rows, nothing between
    assert "fast vs baseline: 15.0 s vs 60.0 s (4.00x faster)" in out
    assert not any("cc_trims vs" in line or "cache audit failed" in line for line in out)
    assert "not compared: cc_trims (r-cc_trims, ok): a capture run" in "\n".join(out)


def test_a_campaign_of_captures_alone_has_nothing_to_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.jsonl"
    append_row(results, _row("cc_trims", 80.0, {}, capture=True))
    assert _main(results, "demo-1") == 1
    assert "only capture runs" in capsys.readouterr().err
