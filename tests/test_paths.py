"""Where the lab writes: run ids are one safe path segment; records go to the lab, never the working directory."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("run_id", ["../../..", "a/b", "..", ".hidden", "", "x" * 200, "a..b"])
def test_a_run_id_that_could_leave_the_output_folder_is_refused(run_id):
    from coldstart import paths

    with pytest.raises(ValueError, match="invalid run id"):
        paths.run_log_path("tiny", "fast", run_id)
    assert paths.check_run_id("20261129T160322Z-2787") == "20261129T160322Z-2787"


def test_service_refuses_a_bad_run_id_with_exit_2(capsys):
    from coldstart.lab import service

    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["tiny", "fast", "--run-id", "../../etc"])
    assert info.value.code == 2
    assert "invalid run id" in capsys.readouterr().err


def _project(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    return root


def test_the_checkout_is_found_by_its_pyproject_and_nothing_else(tmp_path: Path) -> None:
    from coldstart import paths

    assert paths.source_checkout(_project(tmp_path / "ours", "coldstart")) == tmp_path / "ours"
    assert paths.source_checkout(_project(tmp_path / "theirs", "other")) is None
    assert paths.source_checkout(tmp_path / "site-packages") is None  # an installed wheel: no pyproject.toml
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("[project\n")
    assert paths.source_checkout(tmp_path / "broken") is None
    # The default: this test's own checkout.
    assert paths.source_checkout() == Path(__file__).resolve().parents[1]


def test_records_go_to_the_lab_never_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coldstart import paths

    monkeypatch.chdir(tmp_path)
    env = {"COLDSTART_LAB": str(tmp_path / "lab"), "COLDSTART_HOME": str(tmp_path / "home")}
    assert paths.lab_dir(env) == tmp_path / "lab"
    assert paths.output_root(env) == tmp_path / "lab" / "experiment_terminal_output"
    assert paths.results_file(env) == tmp_path / "lab" / "results" / "results.jsonl"
    assert paths.run_log_path("tiny", "fast", "r1", env) == tmp_path / "lab" / "experiment_terminal_output" / (
        "tiny/fast/r1.log"
    )
    # From a checkout: the checkout, whatever the working directory.
    checkout = _project(tmp_path / "checkout", "coldstart")
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", checkout)
    no_lab = {"COLDSTART_HOME": str(tmp_path / "home")}
    assert paths.lab_dir(no_lab) == checkout
    assert paths.graphs_dir(no_lab) == checkout / "graphs"
    # An installed wheel: the lab's home.
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", tmp_path / "site-packages")
    assert paths.lab_dir(no_lab) == tmp_path / "home" / "lab"
    assert paths.report_dir(no_lab) == tmp_path / "home" / "lab" / "report"


def test_a_relative_output_folder_is_made_absolute_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coldstart import paths

    monkeypatch.chdir(tmp_path)
    assert paths.output_root({"COLDSTART_OUTPUT": "logs"}) == tmp_path / "logs"


def test_the_tests_themselves_write_no_record_into_the_checkout() -> None:
    from coldstart import paths

    checkout = Path(__file__).resolve().parents[1]
    assert not paths.output_root().is_relative_to(checkout)
    assert not paths.results_file().is_relative_to(checkout)


def test_a_row_path_is_relative_to_the_lab_whichever_folder_the_runner_started_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coldstart import paths

    env = {"COLDSTART_LAB": str(tmp_path / "lab")}
    log = paths.run_log_path("tiny", "fast", "r1", env)
    for cwd in (tmp_path, tmp_path / "lab"):  # elsewhere, and the lab itself: the same stored path
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        assert paths.lab_relative(log, env) == "experiment_terminal_output/tiny/fast/r1.log"
    assert paths.in_lab("experiment_terminal_output/tiny/fast/r1.log", env) == log
    # A log outside the lab (COLDSTART_OUTPUT elsewhere) keeps its absolute path, and reads back as itself.
    outside = tmp_path / "out" / "r2.log"
    assert paths.lab_relative(outside, env) == str(outside)
    assert paths.in_lab(str(outside), env) == outside


_ANALYSIS_RUN = Path(__file__).resolve().parents[1] / "experiment_terminal_output" / "tiny" / "baseline"


@pytest.mark.parametrize(
    ("tool", "writes"),
    [
        (["-m", "coldstart", "configs"], ["experiments/tiny/fast.yaml"]),
        (["-m", "analysis"], ["results/summary.md", "results/analysis_sources.json", "graphs/comparison.png"]),
    ],
)
def test_a_tool_started_in_another_folder_writes_into_the_lab_and_nothing_there(
    tool: list[str], writes: list[str], tmp_path: Path
) -> None:
    if tool[-1] == "analysis":
        pytest.importorskip("pandas")
        pytest.importorskip("matplotlib")
    lab, elsewhere = tmp_path / "lab", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # One real run in the lab's log tree: what `python -m analysis` reads without --logs.
    runs = lab / "experiment_terminal_output" / "tiny" / "baseline"
    runs.mkdir(parents=True)
    for suffix in (".log", ".client.json"):
        shutil.copy((_ANALYSIS_RUN / "20261122T185844Z-5722").with_suffix(suffix), runs)
    proc = subprocess.run(
        [sys.executable, *tool],
        cwd=elsewhere,
        env={**os.environ, "COLDSTART_LAB": str(lab), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(elsewhere.iterdir()) == [], "nothing may land in the folder the tool was started from"
    for rel in writes:
        assert (lab / rel).is_file(), rel
    if tool[-1] == "analysis":
        # The default log folder is recorded relative to the lab, as it always was in the checkout.
        record = json.loads((lab / "results" / "analysis_sources.json").read_text())
        assert record == {"logs": ["experiment_terminal_output"]}
