"""One results file, several writers at once: two matrix runs (and an ``import-runs`` beside them) append rows
to the same ``results.jsonl``. Real processes, started together: no row is lost, none is interleaved with
another, none is added twice; and a last line left torn by a killed writer costs only itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from coldstart.analysis.jsonl_append import lock_path
from coldstart.analysis.results import SCHEMA_VERSION, ResultRow, load_rows
from coldstart.lab.matrix.results_file import save_row

REPO = Path(__file__).resolve().parents[1]
WRITERS = 4
ROWS_PER_WRITER = 200
# Bigger than Python's 8 KiB write buffer: a writer without the lock that let its file object split a row into
# several writes would interleave with the others here.
PAD_CHARS = 12_000
PROCESS_TIMEOUT_S = 120.0

# Waits for the start file so every writer begins at once, then saves its rows the way the matrix does.
_SAVE_ROWS = """
import sys, time
from pathlib import Path
from coldstart.analysis.results import ResultRow
from coldstart.lab.matrix.results_file import save_row
results, writer, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[5])
count, pad = int(sys.argv[3]), int(sys.argv[4])
while not start.exists():
    time.sleep(0.001)
for i in range(count):
    row = {"schema_version": 1, "run_id": f"{writer}-{i:04d}", "model": "tiny", "experiment": "baseline",
           "repeat": i, "status": "ok", "ttft_s": 1.0, "extra": {"pad": writer[0] * pad}}
    save_row(results, ResultRow.from_dict(row))
"""

_IMPORT = """
import sys, time
from pathlib import Path
from coldstart.lab.import_runs import import_archive
archive, results, dest, start = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
while not start.exists():
    time.sleep(0.001)
import_archive(archive, results, dest)
"""


def _row(run_id: str, **extra: object) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model": "tiny",
        "experiment": "baseline",
        "repeat": 0,
        "status": "ok",
        "ttft_s": 2.0,
        "extra": dict(extra),
    }


@contextmanager
def _started_together(commands: Sequence[Sequence[str]], start: Path) -> Iterator[None]:
    """Start the processes, let them go at once (they wait for ``start``), and wait for each to exit 0; any
    still running when the block ends (a failure, a hang) is killed and reaped: no orphan outlives the test."""
    procs = [
        subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for cmd in commands
    ]
    try:
        time.sleep(0.3)  # past the imports, so the writers overlap instead of running one after the other
        start.touch()
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, out.decode(errors="replace")
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_writers_lose_nothing_and_interleave_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results" / "results.jsonl"
    start = tmp_path / "start"
    writers = [f"{chr(ord('a') + n)}-writer" for n in range(WRITERS)]
    commands = [["-c", _SAVE_ROWS, str(results), w, str(ROWS_PER_WRITER), str(PAD_CHARS), str(start)] for w in writers]
    with _started_together(commands, start):
        pass

    skipped: list[str] = []
    rows = load_rows(results, skipped=skipped)
    assert skipped == []  # every line is one whole row
    ids = [r.run_id for r in rows]
    assert len(ids) == WRITERS * ROWS_PER_WRITER and len(set(ids)) == len(ids)  # none lost, none twice
    for w in writers:
        # Each writer's rows are all there, in the order it saved them, each with its own payload whole.
        mine = [r for r in rows if r.run_id.startswith(f"{w}-")]
        assert [r.run_id for r in mine] == [f"{w}-{i:04d}" for i in range(ROWS_PER_WRITER)]
        assert all(r.extra["pad"] == w[0] * PAD_CHARS for r in mine)
    assert results.read_bytes().endswith(b"\n")
    assert lock_path(results).is_file()  # the lock lives beside the rows, not in them


def test_a_torn_last_line_costs_only_itself(tmp_path: Path) -> None:
    """A writer killed mid-row leaves a last line without its newline; the next row must start a line of its
    own, or the reader drops it together with the torn one."""
    results = tmp_path / "results.jsonl"
    whole = json.dumps(_row("before"))
    results.write_text(whole + "\n" + json.dumps(_row("torn"))[:40])
    save_row(results, ResultRow.from_dict(_row("after")))

    skipped: list[str] = []
    assert [r.run_id for r in load_rows(results, skipped=skipped)] == ["before", "after"]
    assert len(skipped) == 1 and f"{results}:2: skipped, not JSON" in skipped[0]


def test_two_imports_of_one_archive_at_once_add_its_rows_once(tmp_path: Path) -> None:
    """The same archive imported twice at once (two terminals, a retried job): the ids are checked again under
    the lock, so each row lands once, while a matrix appends its own rows beside them."""
    results = tmp_path / "results" / "results.jsonl"
    start = tmp_path / "start"
    imported = [_row(f"remote-{i:03d}") for i in range(50)]
    archive = tmp_path / "runs.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        data = "".join(json.dumps(r) + "\n" for r in imported).encode()
        info = tarfile.TarInfo("results/results.jsonl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    importers = [["-c", _IMPORT, str(archive), str(results), str(tmp_path / "lab"), str(start)] for _ in range(3)]
    matrix = ["-c", _SAVE_ROWS, str(results), "local", "50", "100", str(start)]
    with _started_together([*importers, matrix], start):
        pass

    skipped: list[str] = []
    ids = [r.run_id for r in load_rows(results, skipped=skipped)]
    assert skipped == []
    assert sorted(ids) == sorted([r["run_id"] for r in imported] + [f"local-{i:04d}" for i in range(50)])
