"""Bring runs made elsewhere (a GPU node, a batch job, a cluster's head node) into this checkout.

The other machine hands back an archive of its ``results/results.jsonl`` and ``experiment_terminal_output/``
(``python -m coldstart campaign`` packs one into its ``--out`` folder after every step). Its rows may already
be here (a campaign's results file starts as a copy of ours; the same archive comes twice): a row is new when
its ``run_id`` is not in our results. New rows are read as ``ResultRow`` (an older schema migrated, an
unreadable row refused) and appended in this code's schema; each one's log and client sidecar are copied to
the same relative place; a row already here whose log is still missing gets it from whichever archive has it
(archives of one campaign come in any order).
A log in the archive with no row is a run cut short (a job's time limit, a killed machine): it is listed and
left out, since nothing measured it to the end.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from coldstart import paths
from coldstart.analysis.results import SchemaError, append_rows, load_rows, parse_rows

ARCHIVE_RESULTS = "results/results.jsonl"
ARCHIVE_LOGS = "experiment_terminal_output"


class NotARunArchive(ValueError):
    """The archive is not a run archive (no results file, unsafe paths, newer schema)."""


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # run ids
    already_here: int = 0
    files_copied: list[str] = field(default_factory=list)
    cut_short: list[str] = field(default_factory=list)  # archive logs no row measured
    missing_logs: list[str] = field(default_factory=list)  # imported rows whose log the archive lacks


def _member_path(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise NotARunArchive(f"unsafe path in archive: {name!r}")
    return PurePosixPath(*[part for part in p.parts if part != "."])


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None, "regular members always have data"
    return f.read()


def _read_archive(archive: Path) -> dict[PurePosixPath, bytes]:
    """Every file of the archive by its normalized path (run archives are logs: a few MB)."""
    try:
        with tarfile.open(archive) as tar:
            return {_member_path(m.name): _member_bytes(tar, m) for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError) as e:
        raise NotARunArchive(f"cannot read {archive}: {e}") from e


def import_archive(archive: Path, results_path: Path, dest_root: Path | None = None) -> ImportReport:
    """Append the archive's new rows to ``results_path`` and copy their files under ``dest_root`` (default: the
    lab's folder, where the rows' relative log paths point)."""
    dest_root = dest_root or paths.lab_dir()
    files = _read_archive(archive)
    results_text = files.get(PurePosixPath(ARCHIVE_RESULTS))
    if results_text is None:
        raise NotARunArchive(f"{archive} holds no {ARCHIVE_RESULTS}: not a run archive")
    try:
        skipped: list[str] = []
        rows = parse_rows(results_text.decode().splitlines(), source=f"{archive}:{ARCHIVE_RESULTS}", skipped=skipped)
    except SchemaError as e:
        raise NotARunArchive(str(e)) from e
    if skipped:
        # Analysis may skip a bad line and go on; an import that did would append a campaign minus a run, silently.
        raise NotARunArchive("; ".join(skipped))
    report = ImportReport()
    ours = load_rows(results_path)
    known = {r.run_id for r in ours}
    new_rows = []
    for row in rows:
        if row.run_id in known:
            report.already_here += 1
            continue
        known.add(row.run_id)
        new_rows.append(row)
    new_ids = {r.run_id for r in new_rows}
    # A machine that starts each run of a campaign from a fresh copy of the tree packs the rows of the whole
    # campaign but only that run's logs: a row imported from a later archive gets its log from an earlier one.
    measured_logs = set()
    for row in [*ours, *rows]:
        if not row.log_path:
            continue
        log = _member_path(row.log_path)
        measured_logs.add(log)
        if row.run_id in new_ids and log not in files:
            report.missing_logs.append(str(log))
        for rel in (log, log.with_suffix(".client.json")):
            target = dest_root / Path(*rel.parts)
            if rel in files and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(files[rel])
                report.files_copied.append(str(rel))
    report.cut_short = [
        str(rel)
        for rel in files
        if len(rel.parts) == 4
        and rel.parts[0] == ARCHIVE_LOGS
        and rel.suffix == ".log"  # <model>/<exp>/<run>
        and not rel.parts[1].startswith(("_", "."))
        and rel not in measured_logs
        and not (dest_root / Path(*rel.parts)).exists()
    ]
    # Rows last, after their files: an interrupted import never leaves a row pointing at nothing. The runner's
    # locked append (a matrix may be writing the same file), which checks the ids again under its lock: another
    # import of this archive may have added them since they were read above.
    appended = append_rows(results_path, new_rows, skip_known=True)
    report.imported = [row.run_id for row in appended]
    report.already_here += len(new_rows) - len(appended)
    return report


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "archives", nargs="+", type=Path, help="run archives (.tgz of results/ and experiment_terminal_output/)"
    )
    parser.add_argument("--results", type=Path, default=paths.results_file(), help="default: %(default)s")


def main(args: argparse.Namespace) -> int:
    """0 imported (or nothing new); 1 an archive is unreadable or not a run archive."""
    for archive in args.archives:
        try:
            rep = import_archive(archive, args.results)
        except NotARunArchive as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"{archive}: {len(rep.imported)} new run(s), {rep.already_here} already here, "
            f"{len(rep.files_copied)} file(s) copied"
        )
        for rid in rep.imported:
            print(f"  imported {rid}")
        for log in rep.cut_short:
            print(f"  left out (no result row: cut short) {log}")
        for log in rep.missing_logs:
            print(f"  warning: row kept but its log is not in the archive: {log}")
    return 0
