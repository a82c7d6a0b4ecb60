"""The headline: the seeds' figures beside our medians, built from result rows, and README.md showing exactly it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coldstart.analysis import headline
from coldstart.analysis.headline import AncestorFigure, headline_rows, load_ancestor_figures, render_markdown
from coldstart.analysis.results import ResultRow, SchemaError, load_rows, parse_rows
from coldstart.registry import EXPERIMENTS, MODELS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "results" / "results.jsonl"
# The table sits between these two lines of README.md (HTML comments: invisible when rendered).
BEGIN = "<!-- headline: python -m coldstart.analysis.headline -->"
END = "<!-- /headline -->"


def _figure(model: str = "m", experiment: str = "baseline", startup_s: float = 100.0) -> AncestorFigure:
    return AncestorFigure(
        model=model,
        experiment=experiment,
        label="Baseline",
        startup_s=startup_s,
        read_error_s=0.5,
        tp=1,
        hardware="H100 x1",
        published="2025-10-21",
        n=1,
        source="somewhere@abc:chart.png",
        log=None,
    )


def _row(run_id: str, experiment: str, ttft_s: float | None, **extra: object) -> dict[str, object]:
    """A results line as the runner writes it, with only what the headline reads."""
    row: dict[str, object] = {
        "schema_version": 1,
        "run_id": run_id,
        "model": "m",
        "experiment": experiment,
        "repeat": 0,
        "status": "ok",
        "ttft_s": ttft_s,
        "phases": {},
        "audit": {"compile_cache_hit": EXPERIMENTS[experiment].compile_cache, "passed": True},
        "provenance": {"gpu": "NVIDIA H200 x1"},
        "campaign": "c",
        "device": "cuda",
        "extra": {"node_state": "warm"},
    }
    row.update(extra)
    return row


def _rows(*lines: dict[str, object]) -> list[ResultRow]:
    skipped: list[str] = []
    rows = parse_rows([json.dumps(line) for line in lines], skipped=skipped)
    assert skipped == []
    return rows


def test_the_packaged_figures_name_their_source_and_registry_names() -> None:
    figures = load_ancestor_figures()
    assert figures, "no figures packaged"
    for f in figures:
        assert f.model in MODELS, f
        assert f.experiment in EXPERIMENTS, f
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{7,40}:\S+\.(png|txt|md)", f.source), f.source
        assert f.read_error_s < f.startup_s


def test_every_published_log_a_figure_names_is_one_of_the_seeds_captures() -> None:
    logs = Path(REPO.parent / "shared" / "fixtures" / "ancestor-logs")
    if not logs.is_dir():
        pytest.skip(f"{logs} is not here (the seeds' logs live beside the checkout)")
    named = [f.log for f in load_ancestor_figures() if f.log is not None]
    assert named
    assert sorted(n for n in named if not (logs / n).is_file()) == []


def test_a_figure_file_without_a_source_is_refused(tmp_path: Path) -> None:
    bad = dict(vars(_figure()), source="")
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"figures": [bad]}))
    with pytest.raises(SchemaError, match="no source"):
        load_ancestor_figures(path)


def test_a_figure_that_is_not_a_number_of_seconds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"figures": [dict(vars(_figure()), read_error_s=None)]}))
    with pytest.raises(SchemaError, match="read_error_s"):
        load_ancestor_figures(path)


def test_ours_are_the_median_and_range_of_the_runs_that_count() -> None:
    rows = _rows(
        _row("20261129T100000Z-0001", "baseline", 150.0),
        _row("20261129T110000Z-0002", "baseline", 140.0),
        _row("20261130T100000Z-0003", "baseline", 170.0),
        _row("20261130T110000Z-0004", "baseline", 10.0, status="http_error"),  # failed: left out
        _row("20261130T120000Z-0005", "baseline", 11.0, audit={"compile_cache_hit": True}),  # a hit on a cold run
        _row("20261130T130000Z-0006", "baseline", 12.0),  # superseded below
        _row("20261130T140000Z-0007", "baseline", 13.0, extra={"node_state": "warm", "scenario": "burst"}),
    )
    [row] = headline_rows(rows, [_figure()], superseded={"20261130T130000Z-0006"})
    assert row.theirs is not None and row.theirs.startup_s == 100.0
    assert row.ours is not None
    assert (row.ours.n, row.ours.median_s, row.ours.device, row.ours.node_state) == (3, 150.0, "H200 x1", "warm")
    assert row.ours.dates == ("2026-11-29", "2026-11-30")
    table = render_markdown([row])
    assert (
        "| m | `baseline` | ≈ 100 | 150.0 (140.0–170.0) | H200 x1, warm node | 2026-11-29 – 2026-11-30 | 3 |" in table
    )


def test_the_ladder_stays_on_one_hardware_and_a_seeds_experiment_we_ran_elsewhere_still_shows() -> None:
    cold_h100 = {"provenance": {"gpu": "NVIDIA H100 80GB HBM3 x1"}, "extra": {"node_state": "cold"}}
    rows = _rows(
        _row("20261122T100000Z-0001", "baseline", 190.0, **cold_h100),
        _row("20261122T110000Z-0002", "baseline", 191.0, **cold_h100),
        _row("20261122T120000Z-0003", "runai_streamer", 175.0, **cold_h100),
        _row("20261129T100000Z-0004", "baseline", 140.0),
        _row("20261129T110000Z-0005", "fast", 15.0),
    )
    by_experiment = {r.experiment: r for r in headline_rows(rows, [_figure(), _figure(experiment="runai_streamer")])}
    assert list(by_experiment) == ["baseline", "runai_streamer", "fast"]  # the registry's order
    # The H200 group holds two rungs, the H100 one: the ladder's baseline is the H200's, though n is smaller.
    assert by_experiment["baseline"].ours is not None and by_experiment["baseline"].ours.device == "H200 x1"
    assert by_experiment["runai_streamer"].ours is not None
    assert by_experiment["runai_streamer"].ours.device == "H100 x1"
    assert by_experiment["fast"].theirs is None


def test_a_seeds_figure_we_have_not_run_says_so() -> None:
    [row] = headline_rows([], [_figure(model="llama-3-70b")])
    assert row.ours is None
    assert "| llama-3-70b | `baseline` | ≈ 100 | not run yet | — | — | — |" in render_markdown([row])


def _readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"README.md lacks the headline markers {BEGIN!r} ... {END!r}"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def test_the_readme_headline_is_what_the_results_render() -> None:
    rendered = headline.headline_markdown(RESULTS)
    assert load_rows(RESULTS), "no result rows committed"
    assert _readme_table() == rendered, (
        "README.md's headline table drifted from results/: paste the output of "
        "`python -m coldstart.analysis.headline` between its headline markers"
    )
