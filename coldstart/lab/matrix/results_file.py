"""Where the rows go: ``results.jsonl``, checked writable before the first cold start, appended one row per
run. A row that cannot be appended is kept beside its run log instead: a timed cold start is never lost."""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Sequence
from pathlib import Path

from coldstart import paths
from coldstart.analysis.jsonl_append import lock_path
from coldstart.analysis.results import ResultRow, append_row
from coldstart.lab.matrix.plan import RunSpec


class ResultsNotWritable(RuntimeError):
    """A row could not be appended to the results file; the message says where it was saved instead."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path, what: str) -> str | None:
    """Why nothing could be written into ``folder`` (created later as needed); None when it can.

    Probes with a real temp file in the nearest existing ancestor: os.access says yes to root on a folder a
    quota or a read-only bind mount would still refuse. Creates no folder.
    """
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        return f"{what} {folder}: {anchor} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=anchor, prefix=".coldstart-writable-"):
            pass
    except OSError as exc:
        return f"{what} {folder}: cannot write in {anchor} ({exc.strerror or exc})"
    return None


def check_writable(results_path: Path, specs: Sequence[RunSpec]) -> list[str]:
    """What a campaign will write, checked before the first cold start: the results file, each run's log
    folder, the temp folder the service's ready file goes to. Returns the problems (empty: all writable)."""
    problems = []
    if results_path.exists():
        # Append mode, nothing written: the files stay as they are. The lock file beside the results is what
        # every append opens first (jsonl_append), so a folder that refuses it refuses every row.
        for what, path in (("results file", results_path), ("results lock file", lock_path(results_path))):
            try:
                with open(path, "a"):
                    pass
            except OSError as exc:
                problems.append(f"{what} {path}: {exc.strerror or exc}")
    elif problem := _folder_problem(results_path.parent, "results folder"):
        problems.append(problem)
    log_folders = {paths.run_log_path(s.model, s.experiment, "probe").parent for s in specs}
    problems += [p for folder in sorted(log_folders) if (p := _folder_problem(folder, "log folder"))]
    if problem := _folder_problem(Path(tempfile.gettempdir()), "temp folder"):
        problems.append(problem)
    return problems


def save_row(results_path: Path, row: ResultRow) -> None:
    """Append ``row``; if that fails, keep it beside its run log (else in the temp folder) and raise
    ResultsNotWritable naming that file: a timed cold start is never lost to a late write error."""
    try:
        append_row(results_path, row)
        return
    except OSError as exc:
        # The errno's name beside the system's words: ENOSPC (a full disk) reads apart from EROFS or EACCES.
        name = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
        failure = f"{type(exc).__name__}: {exc}" + (f" ({name})" if name else "")
    line = row.to_json() + "\n"
    candidates = [paths.in_lab(row.log_path).parent] if row.log_path else []
    for folder in [*candidates, Path(tempfile.gettempdir())]:
        rescue = folder / f"{row.run_id}.row.jsonl"
        try:
            rescue.write_text(line)
        except OSError:
            continue
        raise ResultsNotWritable(
            f"cannot append to {results_path} ({failure}); the row is saved in {rescue} "
            f"(append it with: cat {rescue} >> {results_path})"
        )
    raise ResultsNotWritable(f"cannot append to {results_path} ({failure}); the row, not saved anywhere: {line}")
