"""``python -m coldstart matrix``: names, paths and timeouts checked before anything starts, dry runs, the exit status,
a re-run of a finished campaign."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_sut import PROVENANCE, FakeSUT

from coldstart.analysis.results import append_row, load_rows
from coldstart.lab.matrix import cli
from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.matrix.rows import run_one
from coldstart.registry import EXPERIMENTS, MODELS


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_cli_args(parser)
    return parser.parse_args(argv)


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dry run / bad name must not start anything")

    monkeypatch.setattr(cli, "ServiceSUT", refuse)
    monkeypatch.setattr(cli, "run_matrix", refuse)
    monkeypatch.setattr(cli, "collect_provenance", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


def test_main_dry_run_lists_runs_and_starts_nothing(
    nothing_starts: None, results: Path, sut: FakeSUT, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--models",
        "tiny",
        "--experiments",
        "baseline",
        "runai_streamer_sharded",
        "compile_cache",
        "--repeats",
        "2",
        "--campaign",
        "dr",
        "--results",
        str(results),
        "--dry-run",
        "--",
        "--device",
        "cpu",
    ]
    assert cli.main(_args(argv)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [f"todo  dr  tiny  {e}  single  #{r}" for r in (0, 1) for e in ("baseline", "compile_cache")]
    assert out[-1] == "4 of 4 runs to do; service args: --device cpu"
    assert not results.exists()


def test_main_dry_run_marks_done_runs(
    nothing_starts: None, results: Path, sut: FakeSUT, capsys: pytest.CaptureFixture[str]
) -> None:
    # One ok row from an earlier (fake) campaign run; written before the CLI's hands are tied.
    append_row(results, run_one(sut, RunSpec("tiny", "baseline", 1, "dr"), provenance=PROVENANCE, device=None))
    argv = ["--models", "tiny", "--repeats", "2", "--campaign", "dr", "--results", str(results), "--dry-run"]
    assert cli.main(_args(argv)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "todo  dr  tiny  baseline  single  #0",
        "done  dr  tiny  baseline  single  #1",
        "1 of 2 runs to do; service args: (none)",
    ]


@pytest.mark.parametrize(
    ("argv", "needle", "valid"),
    [
        (["--models", "tiny", "gpt-9"], "unknown model 'gpt-9'", list(MODELS)),
        (["--experiments", "warp_drive"], "unknown experiment 'warp_drive'", list(EXPERIMENTS)),
    ],
)
def test_main_unknown_name_exits_2_listing_valid_names(
    nothing_starts: None,
    results: Path,
    argv: list[str],
    needle: str,
    valid: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(_args([*argv, "--results", str(results)])) == 2
    err = capsys.readouterr().err
    assert needle in err
    for name in valid:
        assert name in err
    assert not results.exists()


def test_main_runs_the_matrix_through_the_sut(
    monkeypatch: pytest.MonkeyPatch, sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[tuple[list[str], dict]] = []

    def fake_service_sut(service_args: list[str], **kwargs: Any) -> FakeSUT:
        made.append((service_args, kwargs))
        return sut

    monkeypatch.setattr(cli, "ServiceSUT", fake_service_sut)
    monkeypatch.setattr(cli, "collect_provenance", lambda: PROVENANCE)
    argv = [
        "--models",
        "tiny",
        "--repeats",
        "2",
        "--results",
        str(results),
        "--campaign",
        "default",
        "--no-clear",
        "--client-timeout",
        "7",
        "--",
        "--device",
        "cpu",
    ]
    assert cli.main(_args(argv)) == 0
    assert made[0][0] == ["--device", "cpu"]
    assert made[0][1]["clear"] is False and made[0][1]["client_timeout_s"] == 7.0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    assert len(load_rows(results)) == 2

    # A failed run makes the exit status 1; only the retried run is done again.
    sut.calls.clear()
    sut.fail_deploy = {("default", "tiny", "baseline", "single", 2)}
    assert cli.main(_args([*argv[:3], "3", *argv[4:]])) == 1
    assert sut.ran("clear") == [("default", "tiny", "baseline", "single", 2)]
    assert "0 ok, 1 failed" in capsys.readouterr().out


def test_main_rerun_of_a_finished_campaign_says_what_is_done_and_how_to_measure_again(
    monkeypatch: pytest.MonkeyPatch, sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make demo` twice: the second finds its one run done and must say so, not "0 ok, 0 failed".
    monkeypatch.setattr(cli, "ServiceSUT", lambda service_args, **kwargs: sut)
    monkeypatch.setattr(cli, "collect_provenance", lambda: PROVENANCE)
    argv = ["--models", "tiny", "--repeats", "1", "--campaign", "demo", "--results", str(results)]
    assert cli.main(_args(argv)) == 0
    (row,) = load_rows(results)
    capsys.readouterr()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is pending: no system under test may be started")

    monkeypatch.setattr(cli, "ServiceSUT", refuse)
    monkeypatch.setattr(cli, "run_matrix", refuse)
    assert cli.main(_args(argv)) == 0
    out = capsys.readouterr().out
    assert "0 ok" not in out
    assert out.startswith(f"nothing to run: tiny baseline #0 of campaign 'demo' is already in {results}")
    assert f"run {row.run_id}; TTFT 12.0 s" in out
    assert "--campaign NAME" in out and "--repeats 2" in out
    assert len(load_rows(results)) == 1


def test_main_with_no_pair_that_can_run_exits_2_and_says_why(
    nothing_starts: None, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--models", "tiny", "--experiments", "runai_streamer_sharded", "--results", str(results)]
    assert cli.main(_args(argv)) == 2
    err = capsys.readouterr().err
    assert "no (model, experiment) pair can run" in err and "tensor parallelism" in err


@pytest.mark.parametrize("what", ["results", "logs"])
def test_main_checks_it_can_write_before_the_first_cold_start(
    nothing_starts: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], what
) -> None:
    # Tests may run as root, where chmod stops nothing: a file where a folder must be blocks root too.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    results = blocker / "results.jsonl" if what == "results" else tmp_path / "results.jsonl"
    if what == "logs":
        monkeypatch.setenv("COLDSTART_OUTPUT", str(blocker / "logs"))
    assert cli.main(_args(["--models", "tiny", "--repeats", "1", "--results", str(results)])) == 2
    err = capsys.readouterr().err
    assert "nothing was run" in err and str(blocker) in err
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("flag", ["--client-timeout", "--ready-timeout"])
def test_main_refuses_a_timeout_that_is_not_a_wait(nothing_starts: None, flag: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _args([flag, "0"])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_main_refuses_a_results_path_it_cannot_read(nothing_starts: None, tmp_path: Path, capsys) -> None:
    assert cli.main(_args(["--models", "tiny", "--results", str(tmp_path)])) == 2  # a folder, not a file
    assert "cannot read the results file" in capsys.readouterr().err
