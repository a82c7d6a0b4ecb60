"""`coldstart import-runs`: runs made on another machine come back as an archive and join this checkout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from coldstart.analysis.results import SCHEMA_VERSION, load_rows
from coldstart.lab.import_runs import NotARunArchive, import_archive

LOG = "experiment_terminal_output/tiny/baseline/{}.log"


def _row(run_id: str, **kw) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model": "tiny",
        "experiment": "baseline",
        "repeat": 0,
        "status": "ok",
        "ttft_s": 12.5,
        "log_path": LOG.format(run_id),
        **kw,
    }


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def here(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "results").mkdir(parents=True)
    (root / "results/results.jsonl").write_bytes(_jsonl(_row("old-run")))
    return root


def test_new_rows_and_their_files_come_in_known_and_cut_short_runs_do_not(here: Path, tmp_path: Path) -> None:
    archive = _archive(
        tmp_path / "runs.tgz",
        {
            "results/results.jsonl": _jsonl(
                _row("old-run"), _row("new-run"), _row("failed-run", status="failed", ttft_s=None, log_path=None)
            ),
            LOG.format("old-run"): b"old log, already here\n",
            LOG.format("new-run"): b"the new log\n",
            LOG.format("new-run").replace(".log", ".client.json"): b'{"status": "ok"}',
            LOG.format("killed-run"): b"a run the job's time limit cut short\n",
            "experiment_terminal_output/_sharding/shard.log": b"not a run\n",
        },
    )
    (here / LOG.format("old-run")).parent.mkdir(parents=True)
    (here / LOG.format("old-run")).write_bytes(b"old log, already here\n")

    rep = import_archive(archive, here / "results/results.jsonl", here)

    assert rep.imported == ["new-run", "failed-run"] and rep.already_here == 1
    assert [r.run_id for r in load_rows(here / "results/results.jsonl")] == ["old-run", "new-run", "failed-run"]
    assert (here / LOG.format("new-run")).read_bytes() == b"the new log\n"
    assert (here / LOG.format("new-run")).with_suffix(".client.json").exists()
    assert rep.cut_short == [LOG.format("killed-run")]
    assert not (here / LOG.format("killed-run")).exists()
    assert not (here / "experiment_terminal_output/_sharding").exists()

    # Importing the same archive again adds nothing.
    again = import_archive(archive, here / "results/results.jsonl", here)
    assert again.imported == [] and again.already_here == 3
    assert len(load_rows(here / "results/results.jsonl")) == 3


def test_a_row_imported_without_its_log_gets_it_from_an_earlier_archive(here: Path, tmp_path: Path) -> None:
    # Two archives of one campaign: the later one has both rows but only its own log.
    first = _archive(
        tmp_path / "first.tgz",
        {
            "results/results.jsonl": _jsonl(_row("old-run"), _row("run-a")),
            LOG.format("run-a"): b"log of a\n",
            LOG.format("run-a").replace(".log", ".client.json"): b'{"status": "ok"}',
        },
    )
    later = _archive(
        tmp_path / "later.tgz",
        {
            "results/results.jsonl": _jsonl(_row("old-run"), _row("run-a"), _row("run-b")),
            LOG.format("run-b"): b"log of b\n",
        },
    )
    results = here / "results/results.jsonl"

    rep = import_archive(later, results, here)
    assert rep.imported == ["run-a", "run-b"] and rep.missing_logs == [LOG.format("run-a")]

    rep = import_archive(first, results, here)
    assert rep.imported == [] and rep.cut_short == []
    assert sorted(rep.files_copied) == [LOG.format("run-a").replace(".log", ".client.json"), LOG.format("run-a")]
    assert (here / LOG.format("run-a")).read_bytes() == b"log of a\n"
    assert len(load_rows(results)) == 3


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"something/else.txt": b"x"}, "holds no results/results.jsonl"),
        ({"../escape/results.jsonl": b"x"}, "unsafe path"),
        ({"results/results.jsonl": _jsonl({**_row("future"), "schema_version": SCHEMA_VERSION + 1})}, "schema_version"),
        # Rows are read typed: one this code cannot read is refused, not appended as it came.
        ({"results/results.jsonl": _jsonl({**_row("odd"), "status": "exploded"})}, "status 'exploded'"),
    ],
)
def test_bad_archives_are_refused_and_change_nothing(here: Path, tmp_path: Path, files: dict, needle: str) -> None:
    before = (here / "results/results.jsonl").read_bytes()
    with pytest.raises(NotARunArchive, match=needle):
        import_archive(_archive(tmp_path / "bad.tgz", files), here / "results/results.jsonl", here)
    assert (here / "results/results.jsonl").read_bytes() == before


def test_cli_reports_what_it_did_and_fails_on_a_non_archive(here: Path, tmp_path: Path) -> None:
    archive = _archive(
        tmp_path / "runs.tgz", {"results/results.jsonl": _jsonl(_row("new-run")), LOG.format("new-run"): b"log\n"}
    )
    cmd = [sys.executable, "-m", "coldstart", "import-runs", "--results", "results/results.jsonl"]
    ok = subprocess.run([*cmd, str(archive)], cwd=here, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "1 new run(s), 0 already here, 1 file(s) copied" in ok.stdout
    (tmp_path / "plain.txt").write_text("not a tar")
    bad = subprocess.run([*cmd, str(tmp_path / "plain.txt")], cwd=here, capture_output=True, text=True)
    assert bad.returncode == 1 and "cannot read" in bad.stderr
