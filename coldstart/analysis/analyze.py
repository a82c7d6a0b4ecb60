"""Logs and result rows -> tidy tables and graphs: ``python -m analysis`` (or ``python -m coldstart analyze``).

Three stages, kept apart so each can be tested alone and the graphs never touch a log:

* collect: logs (``<root>/<model>/<experiment>/<run_id>.log`` + ``<run_id>.client.json``, or a flat folder
  of captures such as the ancestor's ``llama70b-s3-runai-sharded.txt``) and ``results.jsonl`` -> ``Run``s:
  a ``ResultRow`` (read back, or built from a log) and where it came from.
* compute: rows -> pandas tables (one row per run; medians per group; the data of each graph).
* render / save: a table -> a matplotlib ``Figure`` -> PNG + SVG.

How a run's time is split into the stacked-bar categories (``CATEGORIES``):

* a run with a request and a first token: the timeline segments, which sum to its TTFT (``unattributed``
  is the part between milestones the log lacks);
* a run without a request (the ancestor's captures, which time a deploy): the durations vLLM logged, and
  ``unattributed`` = the log's span (first stamped line -> engine ready) minus their sum. vLLM's "Model
  loading took" includes an HF download it also logs, so model load is the difference; "KV cache /
  profiling" is the rest of "init engine took" after torch.compile and CUDA graphs.

A group's bar is the median of each category over its runs (so a stack need not equal the median total,
which is printed on top); only runs with status ``ok`` (or log-only captures) count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldstart.analysis import scenarios
from coldstart.analysis.audit import audit as run_audit
from coldstart.analysis.parse import PHASE_COLUMNS, explain
from coldstart.analysis.results import (
    DEFAULT_RESULTS,
    Audit,
    ClientResult,
    GanttSpan,
    RequestGroup,
    ResultRow,
    RunStatus,
    SchemaError,
    load_rows,
)
from coldstart.analysis.serve_log import replica_spans
from coldstart.analysis.timeline import (
    CATEGORIES,
    CATEGORY,
    PRESTART_IMPORT,
    SEGMENT_CATEGORY,
    SEGMENT_LABELS,
    SEGMENT_NAMES,
    UNATTRIBUTED,
    summarize_run,
)
from coldstart.registry import EXPERIMENTS, LADDER, MODELS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DEFAULT_LOGS = Path("experiment_terminal_output")
DEFAULT_GRAPHS = Path("graphs")
DEFAULT_TABLES = Path("results")

LOG_SUFFIXES = (".log", ".txt")
LOG_ONLY = RunStatus.LOG_ONLY  # a run with no client result (a capture, or a client that never wrote one)
USABLE_STATUS = (RunStatus.OK, LOG_ONLY)

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

CATEGORY_COLUMNS: tuple[str, ...] = tuple(f"cat_{c.name}_s" for c in CATEGORIES)
ID_COLUMNS = ("run_id", "model", "experiment", "device", "source", "status", "campaign", "repeat")
NUMERIC_COLUMNS: tuple[str, ...] = (
    "ttft_s",
    "startup_span_s",
    "total_s",
    *PHASE_COLUMNS,
    *SEGMENT_NAMES,
    UNATTRIBUTED,
    *CATEGORY_COLUMNS,
    PRESTART_IMPORT,  # not a phase: the host-speed probe of a prestart run (timeline.PRESTART_IMPORT)
)
RUN_COLUMNS: tuple[str, ...] = (
    *ID_COLUMNS,
    "node_state",
    "scenario",
    "total_kind",
    *NUMERIC_COLUMNS,
    "compile_cache_hit",
    "aot_cache_hit",
    "compile_cache_restore_status",
    "audit_passed",
    "superseded",
    "log_path",
)
# A warm node (weights in the page cache) and a cold one are different measurements: never one median.
GROUP = ["model", "experiment", "device", "node_state"]
SINGLE = "single"  # the scenario of the phase and ladder medians (``ResultRow.scenario_name``)
NODE_STATE_UNKNOWN = "?"  # a log without a row (a capture, the ancestor's logs)


class Source(StrEnum):
    """Where the analysis found a run (the ``source`` column)."""

    RESULTS = "results"  # a runner row whose log is not here
    LOG = "log"  # a run tree's log (``<model>/<experiment>/<run_id>.log``) without a runner row
    CAPTURE = "capture"  # a flat capture (the ancestor's ``llama70b-s3-runai-sharded.txt``)
    RESULTS_AND_LOG = "results+log"  # a runner row, its log re-parsed now


@dataclass(frozen=True)
class Run:
    """One run as the analysis sees it. A row built from a log has no repeat, campaign or provenance."""

    row: ResultRow
    source: Source


@dataclass(frozen=True)
class ExcludedRun:
    """A run left out of the medians, named under the graphs."""

    model: str
    experiment: str
    run_id: str
    status: RunStatus
    failed_audit: bool  # finished, but its cache audit failed (a cache run without a hit, a cold run with one)
    superseded: str | None = None  # why a later run of the same experiment stands for it (superseded.jsonl)

    def __str__(self) -> str:
        why = ", failed cache audit" if self.failed_audit else ""
        why += f", superseded: {self.superseded}" if self.superseded else ""
        return f"{self.model} {self.experiment} {self.run_id} ({self.status}{why})"


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
    # that holds the results folder (the repo root), so the record holds in any checkout beside the same
    # fixtures; an absolute one stays absolute, as typed.
    if path.is_absolute():
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


def device_of(row: ResultRow) -> str | None:
    """The row's device from its log (or the runner), else from its provenance (GPUs found: cuda; none: cpu).
    None only for a row with neither: it stays apart as "?", never merged with a known kind."""
    if row.device:
        return row.device
    if row.provenance is not None:
        return "cuda" if row.provenance.gpu else "cpu"
    return None


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
    )
    return Run(row, source)


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


def collect(log_dirs: Iterable[Path], clients: Mapping[str, ClientResult] | None = None) -> list[Run]:
    """One row per log found. ``clients``: run_id -> client result, for logs whose sidecar is missing."""
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
            sidecar = path.with_suffix(".client.json")
            client: ClientResult | None
            if sidecar.exists():
                client = ClientResult.from_dict(json.loads(sidecar.read_text()))
            else:
                client = (clients or {}).get(run_id)
            rows.append(
                row_from_log(
                    path.read_text(errors="replace"),
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
        )
        merged.append(Run(row, Source.RESULTS_AND_LOG))
    return merged + [Run(r, Source.RESULTS) for r in by_id.values()]


# ---------------------------------------------------------------------------------------------------------
# Compute


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def category_seconds(
    phases: Mapping[str, float | None], startup_span_s: float | None = None
) -> dict[str, float | None]:
    """Seconds per category (``CATEGORIES``) for one run; see the module docstring for the two ways."""
    if phases.get(UNATTRIBUTED) is not None:
        cats: dict[str, float | None] = {
            c.name: _sum(phases.get(s) for s in SEGMENT_NAMES if SEGMENT_CATEGORY[s] == c.name) for c in CATEGORIES
        }
        cats["unattributed"] = phases[UNATTRIBUTED]
        return cats

    def get(name: str) -> float | None:
        return phases.get(name)

    download = _sum([get("weights_download_s"), get("cloud_download_s")])
    load = get("model_load_s")
    if load is not None and (weights_download := get("weights_download_s")) is not None:
        load -= weights_download  # vLLM's model-load time includes the download it also logs
    elif load is None:
        load = get("runai_stream_s") if get("runai_stream_s") is not None else get("weights_load_s")
    compile_s = get("torch_compile_s") if get("torch_compile_s") is not None else get("compile_cache_load_s")
    graphs = get("cuda_graph_s")
    kv = None
    if (engine_init := get("engine_init_s")) is not None:
        kv = max(0.0, engine_init - (compile_s or 0.0) - (graphs or 0.0))
    elif get("profiling_s") is not None:
        kv = get("profiling_s")
    cats = {c.name: None for c in CATEGORIES}
    cats.update(
        weights_download=download, model_load=load, torch_compile=compile_s, cuda_graphs=graphs, kv_cache_profiling=kv
    )
    known = _sum(cats.values())
    if startup_span_s is not None:
        cats["unattributed"] = startup_span_s - (known or 0.0)
    return cats


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--results`` and ``--logs`` for the tools that read runs the way ``python -m analysis`` does."""
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the matrix runner's results.jsonl")
    parser.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        default=None,
        help=f"log sources (default: those recorded in {DEFAULT_TABLES}/{SOURCES_FILE}, as `python -m analysis`)",
    )


def load_runs(results_path: Path, logs: Sequence[Path] | None) -> tuple[list[Run], dict[str, str]]:
    """The runs ``python -m analysis`` would see (the results file merged with the logs; the recorded sources
    when ``logs`` is None) and the superseded ones. Raises OSError, SchemaError or ValueError for a source it
    cannot read."""
    sources = list(logs) if logs is not None else (load_sources(DEFAULT_TABLES / SOURCES_FILE) or [DEFAULT_LOGS])
    results = load_results(results_path)
    superseded = load_superseded(results_path.parent / SUPERSEDED_FILE)
    clients = {r.row.run_id: r.row.client for r in results if r.row.client and r.row.client.t_send_epoch is not None}
    return merge_rows(collect(sources, clients), results), superseded


def cli_runs(args: argparse.Namespace) -> tuple[list[Run], dict[str, str]] | None:
    """``load_runs`` for the tools beside ``python -m analysis`` (report, startup-json): None after saying why
    on stderr (their exit 2), so each tool does not repeat the checks."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("error: pandas is missing; pip install -e '.[analysis]'", file=sys.stderr)
        return None
    try:
        return load_runs(args.results, args.logs)
    except (OSError, SchemaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_table(runs: Sequence[Run], superseded: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per run: ids, TTFT / total, every phase as logged, every segment, every category."""
    import pandas as pd

    records = []
    for run in runs:
        r = run.row
        phases = dict(r.phases)
        span = r.timeline.startup_span_s if r.timeline is not None else None
        # A TTFT needs a client result: a log's own client events do not make a row without one a TTFT row.
        ttft = r.ttft_s if r.status != LOG_ONLY else None
        cats = category_seconds(phases, span)
        total: float | None
        kind: str | None
        if ttft is not None:
            total, kind = ttft, "ttft"
        else:
            total, kind = (span, "log_span") if span is not None else (None, None)
        audit = r.audit or Audit()  # a run without a log: no hit seen
        records.append(
            {
                "run_id": r.run_id,
                "model": r.model,
                "experiment": r.experiment,
                "device": device_kind(device_of(r), r.provenance.gpu if r.provenance else None),
                "source": run.source.value,
                "status": r.status.value,
                "campaign": r.campaign,
                "repeat": r.repeat,
                "node_state": node_state_of(run),
                "scenario": r.scenario_name,
                "total_kind": kind,
                "ttft_s": ttft,
                "startup_span_s": span,
                "total_s": total,
                **{c: phases.get(c) for c in (*PHASE_COLUMNS, *SEGMENT_NAMES, UNATTRIBUTED)},
                **{f"cat_{c.name}_s": cats.get(c.name) for c in CATEGORIES},
                PRESTART_IMPORT: phases.get(PRESTART_IMPORT),
                "compile_cache_hit": audit.compile_cache_hit,
                "aot_cache_hit": audit.aot_cache_hit,
                "compile_cache_restore_status": audit.compile_cache_restore_status,
                "audit_passed": audit_passed(r.experiment, audit),
                "superseded": (superseded or {}).get(r.run_id),
                "log_path": r.log_path,
            }
        )
    df = pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS))
    df[list(NUMERIC_COLUMNS)] = df[list(NUMERIC_COLUMNS)].astype(float)
    return df


def node_state_of(run: Run) -> str:
    """The run's node state; runner rows from before it was recorded ran on a cold node (the runner evicted
    the weights before every run); a log without a runner row (a capture, a by-hand run) is unknown."""
    if run.source in (Source.LOG, Source.CAPTURE):
        return NODE_STATE_UNKNOWN
    return run.row.node_state or "cold"


def long_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy: one row per (run, phase) that was observed; a phase not observed has no row."""
    phase_cols = [*PHASE_COLUMNS, *SEGMENT_NAMES, UNATTRIBUTED, "ttft_s", "startup_span_s"]
    long = runs.melt(
        id_vars=["run_id", "model", "experiment", "device"],
        value_vars=phase_cols,
        var_name="phase",
        value_name="seconds",
    )
    return long.dropna(subset=["seconds"]).reset_index(drop=True)


def audit_passed(experiment: str | None, audit: Audit) -> bool | None:
    """The runner's audit rule, re-applied to a re-parsed log: a cold run with a cache-hit line, or a cache
    run without one, fails (None: an experiment this registry does not know)."""
    if experiment is None or experiment not in EXPERIMENTS:
        return None
    return run_audit(experiment, audit).passed


def countable(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose numbers count: a finished cold start with a total that passed its cache audit (failed and
    flagged runs stay in the CSV and are named under the graphs), of any scenario."""
    return runs[
        runs["status"].isin(USABLE_STATUS)
        & runs["total_s"].notna()
        & runs["audit_passed"].ne(False)
        & runs["superseded"].isna()
    ]


def single(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the ``single`` scenario: one request at zero replicas. A burst's first request queues with seven
    others and a sleep-mode engine starts differently: those go to the scenario tables, never the ladder."""
    return runs[runs["scenario"].eq(SINGLE)]


def usable(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that count toward the phase and ladder medians: countable runs of the single scenario."""
    return single(countable(runs))


def _experiment_order(name: str) -> tuple[int, str]:
    names = list(EXPERIMENTS)
    return (names.index(name) if name in names else len(names), name)


_GPU_MODEL_RE = re.compile(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b")


def device_kind(device: str | None, gpu: str | None) -> str | None:
    """``cuda:H100 x1`` when the row knows its GPUs (provenance), else the bare device: medians must never mix
    GPU kinds (one lease's H100 against another's H200). A log without a row only knows ``cuda``."""
    if device != "cuda" or not gpu:
        return device
    name, _, count = gpu.rpartition(" x")
    if not count.isdigit():
        name, count = gpu, ""
    m = _GPU_MODEL_RE.search(name)
    short = m.group(1) if m else name.removeprefix("NVIDIA ").strip()
    return f"cuda:{short}" + (f" x{count}" if count else "")


def _device_label(device: Any) -> str:
    if isinstance(device, str) and device.startswith("cuda:"):
        return device.removeprefix("cuda:")
    return {"cuda": "GPU", "cpu": "CPU"}.get(device, "?") if isinstance(device, str) else "?"


def median_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, experiment, device): n, median total (and which kind) with its min and max, median of every
    category."""
    import pandas as pd

    ok = usable(runs).copy()
    ok["device"] = ok["device"].fillna("?")
    ok["node_state"] = ok["node_state"].fillna(NODE_STATE_UNKNOWN)
    if ok.empty:
        return pd.DataFrame(
            columns=[*GROUP, "n", "total_kind", "total_s", "total_min_s", "total_max_s", "ttft_s", *CATEGORY_COLUMNS]
        )
    # TTFTs and log spans measure different things: one median never holds both (a group per kind).
    grouped = ok.groupby([*GROUP, "total_kind"], sort=False)
    out = grouped[["total_s", "ttft_s", *CATEGORY_COLUMNS]].median()
    out.insert(0, "n", grouped.size())
    out.insert(2, "total_min_s", grouped["total_s"].min())
    out.insert(3, "total_max_s", grouped["total_s"].max())
    out = out.reset_index()
    out.insert(len(GROUP) + 1, "total_kind", out.pop("total_kind"))
    out["_order"] = out["experiment"].map(_experiment_order)
    return out.sort_values(["model", "_order", "device", "node_state"]).drop(columns="_order").reset_index(drop=True)


def stacked_data(medians: pd.DataFrame, model: str) -> pd.DataFrame:
    """Bars of one model: index = bar label (experiment, device when the model ran on several), columns =
    category labels with median seconds (NaN: not measured), plus ``n``, ``total_s`` and its range."""
    sub = medians[medians["model"] == model]
    several = sub["device"].nunique() > 1
    labels = [
        f"{e}\n({_device_label(d)})" if several else e for e, d in zip(sub["experiment"], sub["device"], strict=True)
    ]
    labels = [
        f"{label}\n{n} node" if n in ("warm",) else label for label, n in zip(labels, sub["node_state"], strict=True)
    ]
    labels = [label if k == "ttft" else f"{label}\n[{k}]" for label, k in zip(labels, sub["total_kind"], strict=True)]
    data = sub[list(CATEGORY_COLUMNS)].copy()
    data.columns = [c.label for c in CATEGORIES]
    data = data.loc[:, data.notna().any() & (data.fillna(0) != 0).any()]
    data["n"] = sub["n"].to_numpy()
    data["total_s"] = sub["total_s"].to_numpy()
    data["total_min_s"] = sub["total_min_s"].to_numpy()
    data["total_max_s"] = sub["total_max_s"].to_numpy()
    data["total_kind"] = sub["total_kind"].to_numpy()
    data.index = labels
    return data


def ladder_data(medians: pd.DataFrame, model: str, device: str, node_state: str) -> pd.DataFrame:
    """The fast-path ladder of one model on one device kind and node state: the rungs (``LADDER``) that have
    usable runs, bottom to top, as ``stacked_data`` bars labelled with the lever each rung adds."""
    sub = medians[
        (medians["model"] == model)
        & (medians["device"] == device)
        & (medians["node_state"] == node_state)
        & medians["experiment"].isin(LADDER)
    ]
    sub = sub.assign(_rung=sub["experiment"].map(LADDER.index)).sort_values("_rung").drop(columns="_rung")
    data = stacked_data(sub, model)
    data.index = [
        (f"{e}\n+{EXPERIMENTS[e].levers[-1]}" if EXPERIMENTS[e].levers else e) + ("" if k == "ttft" else f"\n[{k}]")
        for e, k in zip(sub["experiment"], sub["total_kind"], strict=True)
    ]
    return data


def ladders(medians: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(model, device, node state) groups with a fast-path rung beyond the compile cache: those get a ladder."""
    fast_rungs = set(LADDER[2:])
    groups = medians[medians["experiment"].isin(fast_rungs)][["model", "device", "node_state"]]
    return [tuple(g) for g in groups.drop_duplicates().itertuples(index=False)]


def comparison_data(medians: pd.DataFrame) -> pd.DataFrame:
    """Models x series (experiment, device) -> median total and its range; ``kind`` says TTFT or log span."""
    sub = medians.copy()
    # An unknown device ("?") is its own series: merged with "cuda" it would pass a CPU run off as a GPU one.
    sub["series"] = [
        (e if d == "cuda" else f"{e} ({_device_label(d)})") + ("" if k == "ttft" else f" [{k}]")
        for e, d, k in zip(sub["experiment"], sub["device"], sub["total_kind"], strict=True)
    ]
    cols = ["model", "series", "experiment", "device", "n", "total_s", "total_min_s", "total_max_s", "total_kind"]
    return sub[cols].reset_index(drop=True)


def excluded_runs(runs: pd.DataFrame) -> list[ExcludedRun]:
    """Single-scenario runs that did not count (failed, or no total); scenario runs have tables of their own."""
    left = single(runs).drop(usable(runs).index)
    # A log with no engine at all (a service stopped before any request) is not a failed cold start.
    left = left[(left["status"] != LOG_ONLY)]
    return [
        ExcludedRun(
            r.model,
            r.experiment,
            r.run_id,
            RunStatus(r.status),
            r.audit_passed is False,
            r.superseded if isinstance(r.superseded, str) else None,
        )
        for r in left.itertuples()
    ]


def gantt_data(row: ResultRow) -> pd.DataFrame:
    """One run's segments as (label, category, start_s, end_s) since the request, in time order.

    From the row's stored timeline spans; a row without them (an older runner) is laid end to end in chain
    order, and its unattributed time, whose position is unknown, goes last.
    """
    import pandas as pd

    spans = list(row.timeline.spans) if row.timeline is not None else []
    if not spans:
        t = 0.0
        for name in (*SEGMENT_NAMES, UNATTRIBUTED):
            seconds = row.phases.get(name)
            if seconds is None:
                continue
            spans.append(GanttSpan(name, SEGMENT_LABELS[name], SEGMENT_CATEGORY[name], t, t + seconds, None))
            t += seconds
    columns = [f.name for f in dataclasses.fields(GanttSpan)]
    df = pd.DataFrame([dataclasses.asdict(s) for s in spans], columns=columns)
    return df.sort_values(["start_s", "end_s"]).reset_index(drop=True)


def ttft_spread(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, experiment, device) with a TTFT: n, median, min, max, quartiles, and the values."""
    import pandas as pd

    ok = usable(runs)
    ok = ok[(ok["status"] == "ok") & ok["ttft_s"].notna()].copy()
    ok["device"] = ok["device"].fillna("?")
    cols = [*GROUP, "n", "median_s", "min_s", "max_s", "q1_s", "q3_s", "values"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    g = ok.groupby(GROUP, sort=False)["ttft_s"]
    out = pd.DataFrame(
        {
            "n": g.size(),
            "median_s": g.median(),
            "min_s": g.min(),
            "max_s": g.max(),
            "q1_s": g.quantile(0.25),
            "q3_s": g.quantile(0.75),
            "values": g.agg(list),
        }
    ).reset_index()
    out["_order"] = out["experiment"].map(_experiment_order)
    out = out.sort_values(["model", "_order", "device", "node_state"]).drop(columns="_order")
    return out.reset_index(drop=True)[cols]


# ---------------------------------------------------------------------------------------------------------
# Render (a table in, a Figure out; nothing here reads a log or writes a file)


def _figure(width_in: float, height_in: float) -> Figure:
    # A bare Figure (no pyplot): no global state, no GUI backend, freed when dropped.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _color_of_label(label: str) -> str:
    return next((c for c in CATEGORIES if c.label == label), CATEGORY["unattributed"]).colour


def render_stacked(
    data: pd.DataFrame, model: str, excluded: Sequence[ExcludedRun] = (), title: str | None = None
) -> Figure:
    """One bar per experiment, stacked by category (median seconds), the median total, n and the range of the
    totals on top.
    ``excluded``: this model's runs left out of the medians (failed, or failed their cache audit)."""
    cats = [c for c in data.columns if c not in ("n", "total_s", "total_min_s", "total_max_s", "total_kind")]
    fig = _figure(max(6.0, 1.6 * len(data) + 4.5), 5.0)
    ax = fig.add_subplot()
    x = list(range(len(data)))
    bottom = [0.0] * len(data)
    for cat in cats:
        heights = data[cat].fillna(0.0).tolist()
        ax.bar(
            x,
            heights,
            bottom=bottom,
            width=0.6,
            label=cat,
            color=_color_of_label(cat),
            hatch="//" if cat == CATEGORY["unattributed"].label else None,
            edgecolor="white",
            linewidth=0.5,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for xi, top, (_, r) in zip(x, bottom, data.iterrows(), strict=True):
        what = "TTFT" if r["total_kind"] == "ttft" else "log span"
        spread = f" ({r['total_min_s']:.0f}–{r['total_max_s']:.0f})" if r["n"] > 1 else ""
        ax.annotate(
            f"{r['total_s']:.1f} s {what}\nn={int(r['n'])}{spread}",
            (xi, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, list(data.index))
    ax.set_ylabel("seconds (median of each phase)")
    ax.set_ylim(0, max([*bottom, 1.0]) * 1.15)
    ax.set_title(title or f"{model}: where the cold start goes")
    # Legend top-down in the order the stack reads top-down.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    notes = []
    if (data["total_kind"] == "ttft").any():
        notes.append("TTFT: request to first token, from zero replicas")
    if (data["total_kind"] != "ttft").any():
        notes.append("log span: a capture without a request, LLM replica's first log line to engine ready")
    if excluded:
        notes.append("left out: " + "; ".join(map(str, excluded)))
    fig.text(0.01, -0.01, "\n".join(notes), fontsize=7, ha="left", va="top", color="#555555", wrap=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


_SERIES_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")


def render_comparison(data: pd.DataFrame, excluded: Sequence[ExcludedRun] = ()) -> Figure:
    """Models side by side, one bar per experiment that model has: median TTFT with a min–max whisker over
    runs, or (hatched) the log span of a capture without a request. ``excluded``: runs left out (failed),
    named in a footnote."""
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(data["model"]))
    series = sorted(dict.fromkeys(data["series"]), key=lambda s: (_experiment_order(s.split(" ")[0]), s))
    # One color per experiment (a device does not make another fix); the device is written on its bar.
    experiments = sorted(dict.fromkeys(data["experiment"]), key=_experiment_order)
    color = {e: _SERIES_COLORS[i % len(_SERIES_COLORS)] for i, e in enumerate(experiments)}
    per_model = {m: [s for s in series if ((data["model"] == m) & (data["series"] == s)).any()] for m in models}
    kinds = {m: set(data.loc[data["model"] == m, "device"]) for m in models}
    width = 0.8 / max(len(v) for v in per_model.values())
    n_bars = sum(len(v) for v in per_model.values())
    fig = _figure(min(16.0, 3.5 + 0.45 * n_bars + 0.6 * len(models)), 5.0)
    ax = fig.add_subplot()
    for m, model in enumerate(models):
        present = per_model[model]
        for j, s in enumerate(present):
            r = data[(data["model"] == model) & (data["series"] == s)].iloc[0]
            x = m + (j - (len(present) - 1) / 2) * width
            ttft = r["total_kind"] == "ttft"
            ax.bar(
                [x],
                [r["total_s"]],
                width=width * 0.92,
                color=color[r["experiment"]],
                hatch=None if ttft else "//",
                edgecolor="white",
                linewidth=0.5,
            )
            top = r["total_s"]
            if r["n"] > 1:  # the spread over runs, min to max
                ax.errorbar(
                    [x],
                    [r["total_s"]],
                    yerr=[[r["total_s"] - r["total_min_s"]], [r["total_max_s"] - r["total_s"]]],
                    fmt="none",
                    ecolor="#333333",
                    elinewidth=0.8,
                    capsize=2,
                )
                top = r["total_max_s"]
            several = len(kinds[model]) > 1
            where = "\n" + _device_label(r["device"]) if several and r["device"] != "cuda" else ""
            ax.annotate(
                f"{r['total_s']:.0f}{where}",
                (x, top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
            )
    ticks = []
    for model in models:  # a model on one device kind says it once, under its name
        (kind,) = kinds[model] if len(kinds[model]) == 1 else (None,)
        ticks.append(model if kind in (None, "cuda", "?") else f"{model}\n({_device_label(kind)})")
    ax.set_xticks(range(len(models)), ticks)
    ax.set_ylabel("seconds (median over runs, whisker min–max)")
    ax.set_title("Cold start by model and experiment")
    handles = [Patch(facecolor=color[e], label=e) for e in experiments]
    handles += [
        Patch(facecolor="#999999", label="TTFT, request → first token"),
        Patch(facecolor="#999999", hatch="//", edgecolor="white", label="log span (capture, no request)"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if excluded:
        # One run a line: a single joined line stretched the figure to the width of the whole list.
        fig.text(
            0.01,
            -0.01,
            "left out of the medians:\n" + "\n".join(map(str, excluded)),
            fontsize=7,
            ha="left",
            va="top",
            color="#555555",
        )
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _duration_text(seconds: float, error_s: float | None) -> str:
    if error_s is not None and error_s >= 0.05:
        # Whole-second vLLM stamps: say so, rather than print a bare "0.0 s".
        return f"{seconds:.1f} ±{error_s:.1f} s"
    return f"{seconds:.1f} s" if seconds >= 0.05 else f"{seconds * 1000:.0f} ms"


def render_gantt(
    data: pd.DataFrame, title: str, marker_s: float | None = None, marker_label: str | None = None
) -> Figure:
    """One row per segment (a carved segment keeps its pieces on one row), from the request at 0 s; a dashed
    line at ``marker_s`` (the first token, or where a failed stream ended)."""
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    rows = list(dict.fromkeys(data["name"]))
    fig = _figure(10.0, 0.38 * len(rows) + 1.8)
    ax = fig.add_subplot()
    end = max([*data["end_s"].tolist(), marker_s or 0.0, 1.0])
    for y, name in enumerate(rows):
        sub = data[data["name"] == name]
        ranges = [(a, b - a) for a, b in zip(sub["start_s"], sub["end_s"], strict=True)]
        category = sub["category"].iloc[0]
        ax.broken_barh(
            ranges,
            (y - 0.38, 0.76),
            facecolors=CATEGORY[category].colour if category in CATEGORY else "#999999",
            hatch="//" if category == "unattributed" else None,
            edgecolor="white",
        )
        err = sub["error_s"].iloc[0] if "error_s" in sub else None
        err = None if err is None or err != err else float(err)
        ax.annotate(
            _duration_text(sum(w for _, w in ranges), err),
            (sub["end_s"].max(), y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(range(len(rows)), [data[data["name"] == n]["label"].iloc[0] for n in rows], fontsize=8)
    ax.invert_yaxis()
    if marker_s is not None:
        ax.axvline(marker_s, color="black", linewidth=0.8, linestyle="--")
        ax.annotate(
            marker_label or f"{marker_s:.1f} s",
            (marker_s, 0.99),
            xytext=(-4, 0),
            textcoords="offset points",
            xycoords=blended_transform_factory(ax.transData, ax.transAxes),
            ha="right",
            va="top",
            fontsize=8,
        )
    present = [c for c in CATEGORIES if c.name in set(data["category"])]
    ax.legend(
        handles=[
            Patch(
                facecolor=c.colour,
                hatch="//" if c.name == "unattributed" else None,
                edgecolor="white",
                label=c.label,
            )
            for c in present
        ],
        loc="lower left",
        fontsize=7,
        frameon=False,
    )
    ax.set_xlim(0, end * 1.12)
    ax.set_xlabel("seconds since the request")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def render_ttft_spread(data: pd.DataFrame) -> Figure:
    """Median TTFT per (model, experiment, device), whiskers min..max, every run as a dot, n beside."""
    fig = _figure(max(6.0, 1.1 * len(data) + 3.0), 4.8)
    ax = fig.add_subplot()
    x = list(range(len(data)))
    med = data["median_s"].tolist()
    yerr = [
        [m - lo for m, lo in zip(med, data["min_s"], strict=True)],
        [hi - m for m, hi in zip(med, data["max_s"], strict=True)],
    ]
    ax.errorbar(
        x, med, yerr=yerr, fmt="o", color="#4e79a7", ecolor="#4e79a7", capsize=6, markersize=7, label="median, min–max"
    )
    for xi, values in zip(x, data["values"], strict=True):
        ax.scatter([xi + 0.12] * len(values), values, s=12, color="#f28e2b", alpha=0.8, zorder=3)
    top = max([*data["max_s"].tolist(), 1.0])
    for xi, n, m in zip(x, data["n"], med, strict=True):
        ax.annotate(
            f"n={int(n)}\n{m:.1f} s",
            (xi, m),
            xytext=(-10, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=7,
        )
    labels = [
        f"{m}\n{e}\n({_device_label(d)})"
        for m, e, d in zip(data["model"], data["experiment"], data["device"], strict=True)
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.8, len(data) - 0.4)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("TTFT from zero replicas (s)")
    ax.set_title("Time to first token across repeats")
    ax.scatter([], [], s=12, color="#f28e2b", label="one run")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Scenarios (``registry.SCENARIOS`` beyond single: a burst, requests after ready, a return, sleep and wake)


def scenario_rows(runs: pd.DataFrame, rows: Sequence[ResultRow]) -> list[tuple[ResultRow, str | None]]:
    """(row, device kind) of the countable runs of a scenario other than single, in the order given."""
    ok = countable(runs)
    ok = ok[ok["scenario"].ne(SINGLE)]
    device = {str(r): (d if isinstance(d, str) else None) for r, d in zip(ok["run_id"], ok["device"], strict=True)}
    return [(row, device[row.run_id]) for row in rows if row.run_id in device and row.requests]


def scenario_summaries(runs: pd.DataFrame, rows: Sequence[ResultRow]) -> list[scenarios.ScenarioSummary]:
    return [s for row, device in scenario_rows(runs, rows) if (s := scenarios.summarize(row, device)) is not None]


def scenario_run_table(summaries: Sequence[scenarios.ScenarioSummary]) -> pd.DataFrame:
    """One row per scenario run: its ids and every number of its summary (``ScenarioSummary.metrics``)."""
    import pandas as pd

    ids = ["run_id", "model", "experiment", "scenario", "device", "status", "replicas_source"]
    records = [
        {**{k: getattr(s, k) for k in ids}, "return_ttfts_s": list(s.return_ttfts_s), **s.metrics()} for s in summaries
    ]
    columns = list(dict.fromkeys([*ids, "return_ttfts_s", *(k for r in records for k in r)]))
    return pd.DataFrame.from_records(records, columns=columns)


def scenario_median_table(meds: Sequence[scenarios.ScenarioMedian]) -> pd.DataFrame:
    """Medians over runs per (model, experiment, scenario, device); ``n`` runs, request counts are totals."""
    import pandas as pd

    ids = ["model", "experiment", "scenario", "device", "n"]
    records = [{**{k: getattr(m, k) for k in ids}, **m.metrics} for m in meds]
    columns = list(dict.fromkeys([*ids, *(k for r in records for k in r)]))
    return pd.DataFrame.from_records(records, columns=columns)


def scenario_markdown(meds: Sequence[scenarios.ScenarioMedian]) -> str:
    """The two scenario tables as Markdown: the scenario-wide numbers, then each request group."""
    parts = []
    for title, (head, cells) in (
        ("Scenarios: medians over runs", scenarios.scenario_table(meds, _device_label)),
        (
            "Scenarios per request group (requests: totals over runs; TTFT, tok/s: medians of the runs')",
            (scenarios.group_table(meds, _device_label)),
        ),
    ):
        parts.append(f"## {title}\n\n{scenarios.markdown(head, cells)}")
    return "\n".join(parts)


def write_scenario_tables(summaries: Sequence[scenarios.ScenarioSummary], out_dir: Path) -> list[Path]:
    """``scenarios.csv`` (one row per run), ``scenarios_summary.csv`` (medians) and ``scenarios.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meds = scenarios.medians(summaries)
    paths = [out_dir / "scenarios.csv", out_dir / "scenarios_summary.csv", out_dir / "scenarios.md"]
    scenario_run_table(summaries).to_csv(paths[0], index=False)
    scenario_median_table(meds).to_csv(paths[1], index=False)
    paths[2].write_text(scenario_markdown(meds))
    return paths


def print_scenarios(meds: Sequence[scenarios.ScenarioMedian]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for title, (head, cells) in (
        ("scenarios: medians over runs (seconds)", scenarios.scenario_table(meds, _device_label)),
        (
            "scenarios per request group: requests, failures (totals); TTFT, tok/s (medians of the runs')",
            (scenarios.group_table(meds, _device_label)),
        ),
    ):
        table = Table(title=title)
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i < len(scenarios.KEY_HEAD) - 1 or h == "group" else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)


_MAX_REPLICA_PANELS = 6  # runs past this many are named under the graph, not drawn
_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _experiment_colors(experiments: Iterable[str]) -> dict[str, str]:
    ordered = sorted(dict.fromkeys(experiments), key=_experiment_order)
    return {e: _SERIES_COLORS[i % len(_SERIES_COLORS)] for i, e in enumerate(ordered)}


def render_scenario_burst(rows: Sequence[ResultRow], title: str) -> Figure:
    """TTFT of each burst request over its index, one series per run (colour: experiment; marker: run). A
    request without a first token is a red x on the axis, not a TTFT of 0."""
    fig = _figure(9.0, 4.8)
    ax = fig.add_subplot()
    color = _experiment_colors(r.experiment for r in rows)
    failed_x: list[int] = []
    per_experiment: dict[str, int] = {}
    for row in rows:
        burst = [r for r in row.requests or () if r.group is RequestGroup.BURST]
        got = [(r.index, r.client.ttft_s) for r in burst if r.client.ok and r.client.ttft_s is not None]
        failed_x += [r.index for r in burst if not (r.client.ok and r.client.ttft_s is not None)]
        k = per_experiment[row.experiment] = per_experiment.get(row.experiment, -1) + 1
        ax.plot(
            [i for i, _ in got],
            [t for _, t in got],
            marker=_RUN_MARKERS[k % len(_RUN_MARKERS)],
            color=color[row.experiment],
            linewidth=0.8,
            markersize=5,
            label=f"{row.experiment} · {row.run_id}",
        )
    if failed_x:
        ax.scatter(failed_x, [0.0] * len(failed_x), marker="x", color="#b00020", zorder=3, label="no first token")
    ax.set_xlabel("request (send order)")
    ax.set_ylabel("TTFT (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _steps(intervals: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[int]]:
    """(times, count) of a step function: how many of ``intervals`` (start, end or None) hold. An interval still
    open when the log ended holds to the graph's right edge."""
    changes = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals if b is not None])
    times, counts, n = [0.0], [0], 0
    for t, d in changes:
        n += d
        times.append(t)
        counts.append(n)
    return times, counts


def render_scenario_replicas(rows: Sequence[ResultRow], title: str) -> Figure:
    """Replicas of the LLM deployment over time, seconds since the run's first request, one panel per run
    (the first ``_MAX_REPLICA_PANELS``): started (Serve's "Starting" to "is stopped"), engine starting (the
    replica's engine start to Ray LLM's "Started vLLM engine") and running ("started successfully" to
    "Stopping"); the requests' first tokens as ticks."""
    shown = rows[:_MAX_REPLICA_PANELS]
    fig = _figure(9.0, 1.9 * len(shown) + 1.0)
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, shown, strict=True):
        records = row.requests or ()
        sends = [r.client.t_send_epoch for r in records if r.client.t_send_epoch is not None]
        t0 = min(sends) if sends else min(s.t_starting_epoch or s.t_running_epoch or 0.0 for s in row.replicas or ())
        tokens = [r.client.t_first_token_epoch - t0 for r in records if r.client.t_first_token_epoch is not None]
        spans = row.replicas or ()
        stamps = [t - t0 for s in spans for t in dataclasses.astuple(s)[2:] if isinstance(t, float)]
        end = max([*stamps, *tokens, 1.0]) * 1.05
        started = [
            (a - t0, None if s.t_stopped_epoch is None else s.t_stopped_epoch - t0)
            for s in spans
            if (a := s.t_starting_epoch if s.t_starting_epoch is not None else s.t_running_epoch) is not None
        ]
        running = [
            (s.t_running_epoch - t0, None if s.t_stopping_epoch is None else s.t_stopping_epoch - t0)
            for s in spans
            if s.t_running_epoch is not None
        ]
        # The replica's own engine start to "Started vLLM engine": where its start went (rows since 2026-11-30).
        engine = [
            (s.t_engine_start_epoch - t0, None if s.t_engine_ready_epoch is None else s.t_engine_ready_epoch - t0)
            for s in spans
            if s.t_engine_start_epoch is not None
        ]
        lines = [
            (started, "started", "#f28e2b"),
            *([(engine, "engine starting", "#59a14f")] if engine else []),  # absent from rows before 2026-11-30
            (running, "running", "#4e79a7"),
        ]
        for intervals, label, colour in lines:
            times, counts = _steps(intervals)
            ax.step([*times, end], [*counts, counts[-1]], where="post", label=label, color=colour)
        if tokens:
            ax.plot(tokens, [0.0] * len(tokens), "|", color="#333333", markersize=10, label="first token")
        ax.set_xlim(0, end)
        ax.set_ylim(-0.3, max(1, len(spans)) + 0.5)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("replicas", fontsize=8)
        ax.set_title(f"{row.experiment} · {row.scenario_name} · {row.run_id}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel("seconds since the first request")
    fig.suptitle(title, fontsize=10)
    if len(rows) > len(shown):
        left = ", ".join(r.run_id for r in rows[len(shown) :])
        fig.text(0.01, -0.01, f"not drawn: {left}", fontsize=7, ha="left", va="top", color="#555555", wrap=True)
    return fig


def render_scenario_after_ready(summaries: Sequence[scenarios.ScenarioSummary], title: str) -> Figure:
    """Per experiment: the first request after ready against the median of the later ones, a bar each (median
    over runs) with every run as a dot. A log scale when they differ by orders of magnitude."""
    experiments = sorted(dict.fromkeys(s.experiment for s in summaries), key=_experiment_order)
    fig = _figure(max(5.0, 1.5 * len(experiments) + 3.0), 4.5)
    ax = fig.add_subplot()
    width = 0.38
    values: list[float] = []
    for i, experiment in enumerate(experiments):
        mine = [s for s in summaries if s.experiment == experiment]
        for offset, (attr, label, colour) in enumerate(
            (
                ("after_ready_first_ttft_s", "first after ready", "#e15759"),
                ("after_ready_rest_p50_s", "later ones (median)", "#59a14f"),
            )
        ):
            runs = [v for s in mine if (v := getattr(s, attr)) is not None]
            x = i + (offset - 0.5) * width
            if runs:
                med = statistics.median(runs)
                ax.bar([x], [med], width=width * 0.9, color=colour, label=label if i == 0 else None)
                ax.scatter([x] * len(runs), runs, s=12, color="#333333", zorder=3)
                ax.annotate(
                    f"{med:.2f} s\nn={len(runs)}",
                    (x, med),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
                values += runs
    if values and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_yscale("log")
    elif values:
        ax.set_ylim(0, max(values) * 1.2)  # room for the labels on top
    ax.set_xticks(range(len(experiments)), experiments)
    ax.set_ylabel("TTFT (s)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def render_scenarios(runs: pd.DataFrame, rows: Sequence[ResultRow], out_dir: Path) -> list[Path]:
    """The scenario graphs of each (model, device kind) that has such runs: bursts, replicas over time, first vs
    later after ready. Nothing when there are no scenario runs."""
    written: list[Path] = []
    picked = scenario_rows(runs, rows)
    for model, device in dict.fromkeys((row.model, device) for row, device in picked):
        mine = [row for row, d in picked if (row.model, d) == (model, device)]
        where = _slug(_device_label(device))
        on = f"{model} on {_device_label(device)}"
        bursts = [r for r in mine if sum(q.group is RequestGroup.BURST for q in r.requests or ()) > 1]
        if bursts:
            fig = render_scenario_burst(bursts, f"{on}: TTFT of each request of a burst at zero replicas")
            written += save_figure(fig, out_dir, f"scenario_burst_{model}_{where}")
        with_replicas = [r for r in mine if r.replicas]
        if with_replicas:
            fig = render_scenario_replicas(with_replicas, f"{on}: LLM replicas over time")
            written += save_figure(fig, out_dir, f"scenario_replicas_{model}_{where}")
        after = [
            s
            for r in mine
            if (s := scenarios.summarize(r, device)) is not None and s.after_ready_rest_p50_s is not None
        ]
        if after:
            fig = render_scenario_after_ready(after, f"{on}: the first request after ready against the later ones")
            written += save_figure(fig, out_dir, f"scenario_after_ready_{model}_{where}")
    return written


# ---------------------------------------------------------------------------------------------------------
# Save


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{_slug(stem)}.png", out_dir / f"{_slug(stem)}.svg"]
    import matplotlib

    # Same data, same bytes: no timestamps, fixed SVG ids, so regenerating graphs leaves unchanged ones alone
    # in git instead of rewriting every file.
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        for p in paths:
            metadata = {"Date": None} if p.suffix == ".svg" else {"Software": None}
            fig.savefig(p, dpi=150 if p.suffix == ".png" else None, bbox_inches="tight", metadata=metadata)
    return paths


def write_tables(runs: pd.DataFrame, long: pd.DataFrame, out_dir: Path) -> tuple[list[Path], list[str]]:
    """CSV always; Parquet when pyarrow is installed. Returns (written, what was skipped and why)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "phases.csv", out_dir / "phases_long.csv"]
    runs.to_csv(written[0], index=False)
    long.to_csv(written[1], index=False)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written, ["pyarrow is not installed: no Parquet files (pip install pyarrow)"]
    for name, df in (("phases.parquet", runs), ("phases_long.parquet", long)):
        df.to_parquet(out_dir / name, index=False)
        written.append(out_dir / name)
    return written, []


def render_all(runs: pd.DataFrame, rows: Sequence[ResultRow], out_dir: Path) -> list[Path]:
    """Every graph of these runs into out_dir; returns the files written."""
    written: list[Path] = []
    medians = median_table(runs)
    excluded = excluded_runs(runs)
    for model in dict.fromkeys(medians["model"]):
        mine = [e for e in excluded if e.model == model]
        fig = render_stacked(stacked_data(medians, model), model, mine)
        written += save_figure(fig, out_dir, f"phases_{model}")
    for model, device, node_state in ladders(medians):
        data = ladder_data(medians, model, device, node_state)
        mine = [e for e in excluded if e.model == model]
        title = (
            f"{model} on {_device_label(device)}, {node_state} node: the fast-path ladder (rungs not run are absent)"
        )
        fig = render_stacked(data, model, mine, title=title)
        written += save_figure(fig, out_dir, f"ladder_{model}_{_slug(_device_label(device))}_{node_state}")
    if not medians.empty:
        written += save_figure(render_comparison(comparison_data(medians), excluded), out_dir, "comparison")
    spread = ttft_spread(runs)
    if not spread.empty:
        written += save_figure(render_ttft_spread(spread), out_dir, "ttft_spread")
    for row in rows:
        if row.timeline is None or row.timeline.t_send_epoch is None:
            continue  # no request: there is no request-to-token timeline to draw
        data = gantt_data(row)
        if data.empty:
            continue
        ttft = row.ttft_s
        ended = row.client.total_s if row.client else None
        marker: float | None
        marker_label: str | None
        if ttft is not None:
            outcome, marker, marker_label = f"TTFT {ttft:.1f} s", ttft, f"first token {ttft:.1f} s"
        else:
            outcome = f"{row.status}: no first token"
            marker, marker_label = ended, None if ended is None else f"stream ended, no token ({ended:.1f} s)"
        title = f"{row.model} · {row.experiment} · {_device_label(row.device)} · {row.run_id} — {outcome}"
        fig = render_gantt(data, title, marker, marker_label)
        written += save_figure(fig, out_dir, f"timeline_{row.model}_{row.run_id}")
    written += render_scenarios(runs, rows, out_dir)
    return written


# ---------------------------------------------------------------------------------------------------------
# CLI


def _fmt(v: Any) -> str:
    return "—" if v is None or v != v else f"{v:.1f}"


def _total_text(r: Mapping[str, Any]) -> str:
    """``193.2 (141.1–200.9)``: the median and, over more than one run, the range."""
    text = _fmt(r["total_s"])
    if r["n"] > 1:
        text += f" ({_fmt(r['total_min_s'])}–{_fmt(r['total_max_s'])})"
    return text + ("" if r["total_kind"] == "ttft" else f" [{r['total_kind']}]")


SUMMARY_HEAD: tuple[str, ...] = (
    "model",
    "experiment",
    "device",
    "node",
    "n",
    "total s, median (min–max)",
    *(c.short for c in CATEGORIES),
)


def summary_markdown(medians: pd.DataFrame) -> str:
    """The median table as Markdown (README, issue notes): total with its range, then each category."""
    head = list(SUMMARY_HEAD)
    align = ["---" if i < 4 else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for _, r in medians.iterrows():
        cells = [
            r["model"],
            r["experiment"],
            _device_label(r["device"]),
            r["node_state"],
            str(int(r["n"])),
            _total_text(r),
            *(_fmt(r[f"cat_{c.name}_s"]) for c in CATEGORIES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_medians(medians: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="median seconds per (model, experiment); total = TTFT (range over runs), or the log span of a capture"
    )
    for col in ("model", "experiment", "device", "node", "n", "total"):
        table.add_column(col, justify="right" if col in ("n", "total") else "left")
    for c in CATEGORIES:
        table.add_column(c.short, justify="right")
    for _, r in medians.iterrows():
        table.add_row(
            r["model"],
            r["experiment"],
            _device_label(r["device"]),
            r["node_state"],
            str(int(r["n"])),
            _total_text(r),
            *(_fmt(r[f"cat_{c.name}_s"]) for c in CATEGORIES),
        )
    Console(width=200).print(table)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        default=None,
        help="run trees (<model>/<experiment>/<run_id>.log) or flat folders of captures; recorded in "
        f"<out-tables>/{SOURCES_FILE}, which a later run without --logs reads "
        f"(default when nothing is recorded: {DEFAULT_LOGS})",
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the matrix runner's results.jsonl")
    parser.add_argument("--out-graphs", type=Path, default=DEFAULT_GRAPHS)
    parser.add_argument("--out-tables", type=Path, default=DEFAULT_TABLES)
    parser.add_argument(
        "--explain",
        nargs="+",
        type=Path,
        metavar="LOG",
        help="print each phase of LOG with the line(s) it came from, and the timing lines no rule read",
    )


def _explain(paths: list[Path]) -> int:
    for path in paths:
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
        if len(paths) > 1:
            print(f"== {path}")
        print(explain(path.read_text(errors="replace")))
    return 0


def main(args: argparse.Namespace) -> int:
    # Explaining one log needs neither pandas nor matplotlib: a user checks a pasted log as it is.
    if getattr(args, "explain", None):
        return _explain(args.explain)
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is missing; pip install -e '.[analysis]'", file=sys.stderr)
        return 2
    sources_file = args.out_tables / SOURCES_FILE
    recorded = False
    if args.logs is None:
        try:
            loaded = load_sources(sources_file)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read the recorded log sources: {exc}; fix it, or pass --logs", file=sys.stderr)
            return 2
        recorded = loaded is not None
        args.logs = loaded if loaded is not None else [DEFAULT_LOGS]
        if recorded:
            print(f"logs: {', '.join(map(str, args.logs))} (recorded in {sources_file}; --logs replaces them)")
    for d in args.logs:
        if not d.exists():
            where = f" (recorded in {sources_file})" if recorded else ""
            print(f"note: {d}{where} does not exist: its runs are left out of the tables", file=sys.stderr)
    bad_lines: list[str] = []
    try:
        results = load_results(args.results, bad_lines)
    except (OSError, SchemaError) as exc:
        print(f"error: cannot read the results file {args.results}: {exc}", file=sys.stderr)
        return 2
    for line in bad_lines:
        print(f"note: {line}", file=sys.stderr)
    # A run whose log lost its sidecar still has its client result in its row.
    clients = {
        r.row.run_id: r.row.client
        for r in results
        if r.row.client is not None and r.row.client.t_send_epoch is not None
    }
    found = merge_rows(collect(args.logs, clients), results)
    if not found:
        print("no runs found: nothing to analyze", file=sys.stderr)
        return 1
    try:
        superseded = load_superseded(args.results.parent / SUPERSEDED_FILE)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = run_table(found, superseded)
    written, skipped = write_tables(runs, long_table(runs), args.out_tables)
    written += render_all(runs, [f.row for f in found], args.out_graphs)
    medians = median_table(runs)
    summary = args.out_tables / "summary.md"
    summary.write_text(summary_markdown(medians))
    written.append(summary)
    # Recorded even when a source is missing now: a folder that comes back (a remounted share) counts again.
    record_sources(sources_file, args.logs)
    written.append(sources_file)
    print_medians(medians)
    if summaries := scenario_summaries(runs, [f.row for f in found]):
        written += write_scenario_tables(summaries, args.out_tables)
        print_scenarios(scenarios.medians(summaries))
    print(
        f"{len(found)} runs ({int(usable(runs).shape[0])} usable) from {', '.join(map(str, args.logs))}"
        f"{' and ' + str(args.results) if results else ''}"
    )
    for line in skipped:
        print(f"note: {line}")
    print(f"wrote {len(written)} files: tables in {args.out_tables}/, graphs in {args.out_graphs}/")
    return 0
