"""The results file: checked writable before the first cold start; a row that cannot be appended is kept beside
its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_sut import FakeSUT, run_quietly

from coldstart.lab.matrix import results_file
from coldstart.lab.matrix.plan import plan
from coldstart.lab.matrix.results_file import ResultsNotWritable, check_writable


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


def test_check_writable_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDSTART_OUTPUT", str(tmp_path / "logs"))
    specs = plan(["tiny"], ["baseline"], 1, "c")
    assert check_writable(tmp_path / "r" / "results.jsonl", specs) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_row_that_cannot_be_appended_is_kept_beside_its_log(
    sut: FakeSUT, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, row: Any) -> None:
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(results_file, "append_row", refuse)
    specs = plan(["tiny"], ["baseline"], 2, "c")
    with pytest.raises(ResultsNotWritable, match="row is saved in") as info:
        run_quietly(sut, specs, results)
    assert len(sut.ran("measure")) == 1  # the campaign stops: the next row would be lost too
    rescue = Path(str(info.value).split("saved in ")[1].split(" ")[0])
    row = json.loads(rescue.read_text())
    assert row["ttft_s"] == 12.0 and row["status"] == "ok" and rescue.parent == Path(row["log_path"]).parent
