"""Logs and result rows -> ``Run``s: what ``python -m analysis`` and its subcommands read.

Logs come as run trees (``<root>/<model>/<experiment>/<run_id>.log`` + ``<run_id>.client.json``) or flat
folders of captures (the ancestor's ``llama70b-s3-runai-sharded.txt``); rows come from ``results.jsonl``. A
run is a ``ResultRow`` (read back, or built from a log) and where it came from (``Source``); a log and its
runner row merge into one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from coldstart import paths
from coldstart.analysis import events
from coldstart.analysis.ancestor_logs import ANCESTOR_SOURCE, is_ancestor_capture
from coldstart.analysis.parse.lines import has_header_line
from coldstart.analysis.placement import ray_placement
from coldstart.analysis.results import ClientResult, ResultRow, RunStatus, SchemaError, load_rows
from coldstart.analysis.serve_log import replica_spans
from coldstart.analysis.timeline import summarize_run
from coldstart.registry import MODELS

LOG_SUFFIXES = (".log", ".txt")
LOG_ONLY = RunStatus.LOG_ONLY  # a run with no client result (a capture, or a client that never wrote one)

# The ancestor's file names: "llama70b-s3-runai-sharded.txt", "qwen235B-all.txt".
MODEL_ALIASES: Mapping[str, str] = {
    "llama70b": "llama-3-70b",
    "llama8b": "llama-3-8b",
    "qwen235b": "qwen-3-235b",
    "qwen0.6b": "qwen-3-0.6b",
}
EXPERIMENT_ALIASES: Mapping[str, str] = {
    "base": "baseline",
    "s3-runai": "runai_streamer",
    "runai": "runai_streamer",
    "s3-runai-sharded": "runai_streamer_sharded",
    "runai-sharded": "runai_streamer_sharded",
    "compile-cache": "compile_cache",
}


class Source(StrEnum):
    """Where the analysis found a run (the ``source`` column)."""

    RESULTS = "results"  # a runner row whose log is not here
    LOG = "log"  # a run tree's log (``<model>/<experiment>/<run_id>.log``) without a runner row
    CAPTURE = "capture"  # a flat capture that is not the ancestor's (``tiny-baseline.log``: <model>-<experiment>)
    RESULTS_AND_LOG = "results+log"  # a runner row, its log re-parsed now
    ANCESTOR = ANCESTOR_SOURCE  # a capture the ancestor published (``ancestor_logs``), 8×H100, not ours


@dataclass(frozen=True)
class Run:
    """One run as the analysis sees it. A row built from a log has no repeat, campaign or provenance."""

    row: ResultRow
    source: Source


SUPERSEDED_FILE = "superseded.jsonl"


def load_superseded(path: Path) -> dict[str, str]:
    """run_id -> why, from ``superseded.jsonl`` beside the results: runs measured right but on code that a
    later fix changed for the same experiment name (kept in the CSV and named under the graphs, never in a
    median beside the runs of the fixed code). A missing file is no superseded run; a bad line is an error."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("run_id"), str) and entry.get("why")):
            raise ValueError(f'{path}:{n}: expected {{"run_id": "...", "why": "..."}}, got {line[:120]!r}')
        out[entry["run_id"]] = str(entry["why"])
    return out


SOURCES_FILE = "analysis_sources.json"


def _stored_path(path: Path, base: Path) -> str:
    # A path the user typed relative (``../shared/fixtures/ancestor-logs``) is stored relative to the folder
    # that holds the results folder (the lab), so the record holds in any checkout beside the same fixtures;
    # so is an absolute one written under that folder: the default logs (``paths.output_root()``) and what
    # ``load_sources`` read back (``<lab>/../shared/...``: compared as written, '..' unfolded). Any other
    # absolute one stays absolute, as typed.
    if path.is_absolute() and not path.is_relative_to(base.absolute()):
        return path.as_posix()
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()


def record_sources(path: Path, logs: Sequence[Path]) -> None:
    """Write the log sources a summary was made from, so a later ``python -m analysis`` without ``--logs``
    (``make demo``) remakes the same tables instead of silently dropping the rows of the other sources."""
    base = path.parent.parent
    record = {"logs": [_stored_path(p, base) for p in logs]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # never a half-written record in place of a good one


def load_sources(path: Path) -> list[Path] | None:
    """The log sources recorded by ``record_sources``; None when there is no record. A record that cannot
    be read is an error (ValueError), not a silent fall back to the default source."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from None
    logs = record.get("logs") if isinstance(record, dict) else None
    if not (isinstance(logs, list) and logs and all(isinstance(p, str) and p for p in logs)):
        raise ValueError(f'{path}: expected {{"logs": ["<folder>", ...]}}, got {json.dumps(record)[:120]}')
    base = path.parent.parent
    return [Path(p) if Path(p).is_absolute() else base / p for p in logs]


# ---------------------------------------------------------------------------------------------------------
# Collect


def infer_model_experiment(name: str) -> tuple[str, str]:
    """Model and experiment from a capture's file name (registry names, or the ancestor's shorthand)."""
    stem = Path(name).stem.lower()
    model, rest = None, ""
    for m in sorted(MODELS, key=len, reverse=True):
        if stem.startswith(m) and stem[len(m) : len(m) + 1] in ("-", "_", ""):
            model, rest = m, stem[len(m) + 1 :]
            break
    if model is None:
        head, _, rest = stem.partition("-")
        model = MODEL_ALIASES.get(head, head)
    experiment = EXPERIMENT_ALIASES.get(rest, rest.replace("-", "_"))
    return model, experiment or "unknown"


_DEVICE_RE = re.compile(r"device_config=(\w+)")


def infer_device(log_text: str) -> str | None:
    """``cuda`` / ``cpu`` from vLLM's engine config line; None when no engine started."""
    m = _DEVICE_RE.search(log_text)
    return m.group(1) if m else None


def row_from_log(
    log_text: str,
    *,
    run_id: str,
    model: str,
    experiment: str,
    client: ClientResult | None = None,
    log_path: str | None = None,
    source: Source = Source.LOG,
) -> Run:
    summary = summarize_run(log_text, client)
    row = ResultRow(
        run_id=run_id,
        model=model,
        experiment=experiment,
        repeat=None,
        status=client.status.run_status if client else LOG_ONLY,
        ttft_s=summary.timeline.ttft_s,
        phases=summary.phases,
        audit=summary.audit,
        log_path=log_path,
        provenance=None,
        config={},
        campaign=None,
        device=infer_device(log_text),
        client=client,
        timeline=summary.timeline.stored(),
        replicas=replica_spans(log_text, summary.timeline.clock.utc_offset_s),
        ray=ray_placement(log_text),
    )
    return Run(row, source)


class SkipReason(StrEnum):
    """Why a file with a log's name is no run's log."""

    BINARY = "binary"
    EMPTY = "empty"
    NO_LOG_LINE = "no lab or vLLM line"


@dataclass(frozen=True)
class SkippedLog:
    path: Path
    why: SkipReason


# A NUL byte in the first block is how git and grep tell a binary file; no line of a log holds one.
_BINARY_PROBE_BYTES = 8192


def read_log(path: Path) -> tuple[str, SkipReason | None]:
    """The text of a log, and why it holds no run (None: it holds lab or vLLM lines). Linear in its size."""
    with path.open("rb") as f:
        if b"\0" in f.read(_BINARY_PROBE_BYTES):
            return "", SkipReason.BINARY
    text = path.read_text(errors="replace")  # text mode: "\r\n" and a lone "\r" read as "\n", as the parser expects
    if not text or text.isspace():
        return text, SkipReason.EMPTY
    if events.MARKER not in text and not has_header_line(text):
        return text, SkipReason.NO_LOG_LINE
    return text, None


def skipped_note(skipped: Sequence[SkippedLog]) -> str | None:
    """One line naming the files left out, with why (None: none was)."""
    if not skipped:
        return None
    named = "; ".join(f"{s.path} ({s.why})" for s in skipped)
    return f"note: {len(skipped)} log files hold no run and were left out: {named}"


def _log_files(root: Path) -> Iterable[tuple[Path, bool]]:
    """(log, from a run tree?) under root: ``<model>/<experiment>/<run>.log`` or files directly in root."""
    if root.is_file():
        yield root, False
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in LOG_SUFFIXES or path.name.endswith(".client.json"):
            continue
        depth = len(path.relative_to(root).parts)
        if depth == 3 and not any(p.startswith((".", "_")) for p in path.relative_to(root).parts):
            yield path, True
        elif depth == 1:
            yield path, False


def collect(
    log_dirs: Iterable[Path],
    clients: Mapping[str, ClientResult] | None = None,
    skipped: list[SkippedLog] | None = None,
) -> list[Run]:
    """One row per log found. ``clients``: run_id -> client result, for logs whose sidecar is missing. A file
    that is binary, empty or holds no lab or vLLM line is no run unless a client result names it; it goes to
    ``skipped`` (a binary one would otherwise become a model named after the file)."""
    rows = []
    for root in log_dirs:
        root = Path(root)
        if not root.exists():
            continue
        for path, in_tree in _log_files(root):
            if in_tree:
                model, experiment, run_id = path.parent.parent.name, path.parent.name, path.stem
                source = Source.LOG
            else:
                (model, experiment), run_id, source = infer_model_experiment(path.name), path.stem, Source.CAPTURE
            log_text, why = read_log(path)
            sidecar = path.with_suffix(".client.json")
            client: ClientResult | None
            if sidecar.exists():
                client = ClientResult.from_dict(json.loads(sidecar.read_text()))
            else:
                client = (clients or {}).get(run_id)
            if why is not None and client is None:
                if skipped is not None:
                    skipped.append(SkippedLog(path, why))
                continue
            if source is Source.CAPTURE and is_ancestor_capture(path, log_text):
                source = Source.ANCESTOR
            rows.append(
                row_from_log(
                    log_text,
                    run_id=run_id,
                    model=model,
                    experiment=experiment,
                    client=client,
                    log_path=str(path),
                    source=source,
                )
            )
    return rows


def load_results(path: Path, skipped: list[str] | None = None) -> list[Run]:
    """The results file's usable rows; malformed lines go to ``skipped`` (``<file>:<line>: why``)."""
    return [Run(row, Source.RESULTS) for row in load_rows(path, skipped=skipped)]


def merge_rows(log_runs: Sequence[Run], result_runs: Sequence[Run]) -> list[Run]:
    """One run per run_id. A log re-parsed now wins for what is derived from it (phases, audit, timeline,
    device: the parser may have been fixed since); the result row keeps what only it knows (repeat,
    campaign, provenance, config)."""
    by_id = {r.row.run_id: r.row for r in result_runs}
    merged = []
    for run in log_runs:
        base = by_id.pop(run.row.run_id, None)
        if base is None:
            merged.append(run)
            continue
        log = run.row
        row = dataclasses.replace(
            base,
            phases=log.phases,
            audit=log.audit if log.audit is not None else base.audit,
            log_path=log.log_path or base.log_path,
            device=log.device or base.device,
            timeline=log.timeline if log.timeline is not None else base.timeline,
            client=log.client or base.client,
            replicas=log.replicas if log.replicas is not None else base.replicas,
            ray=log.ray if log.ray is not None else base.ray,
        )
        merged.append(Run(row, Source.RESULTS_AND_LOG))
    return merged + [Run(r, Source.RESULTS) for r in by_id.values()]


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--results`` and ``--logs`` for the tools that read runs the way ``python -m analysis`` does."""
    parser.add_argument(
        "--results",
        type=Path,
        default=paths.results_file(),
        help="the matrix runner's results.jsonl (default: %(default)s)",
    )
    parser.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        default=None,
        help=f"log sources (default: those recorded in {paths.tables_dir() / SOURCES_FILE}, as `python -m analysis`)",
    )


def load_runs(
    results_path: Path, logs: Sequence[Path] | None, skipped: list[SkippedLog] | None = None
) -> tuple[list[Run], dict[str, str]]:
    """The runs ``python -m analysis`` would see (the results file merged with the logs; the recorded sources
    when ``logs`` is None) and the superseded ones; the files that hold no run go to ``skipped``. Raises
    OSError, SchemaError or ValueError for a source it cannot read."""
    recorded = load_sources(paths.tables_dir() / SOURCES_FILE) if logs is None else None
    sources = list(logs) if logs is not None else (recorded or [paths.output_root()])
    results = load_results(results_path)
    superseded = load_superseded(results_path.parent / SUPERSEDED_FILE)
    clients = {r.row.run_id: r.row.client for r in results if r.row.client and r.row.client.t_send_epoch is not None}
    return merge_rows(collect(sources, clients, skipped), results), superseded


def cli_runs(args: argparse.Namespace) -> tuple[list[Run], dict[str, str]] | None:
    """``load_runs`` for the tools beside ``python -m analysis`` (report, startup-json): None after saying why
    on stderr (their exit 2), so each tool does not repeat the checks."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("error: pandas is missing; pip install -e '.[analysis]'", file=sys.stderr)
        return None
    skipped: list[SkippedLog] = []
    try:
        loaded = load_runs(args.results, args.logs, skipped)
    except (OSError, SchemaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if note := skipped_note(skipped):
        print(note, file=sys.stderr)
    return loaded
