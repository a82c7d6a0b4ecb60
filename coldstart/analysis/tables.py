"""Runs -> pandas tables: one row per run, medians per group, the data of each graph, the summary's cells.

How a run's time is split into the stacked-bar categories (``CATEGORIES``):

* a run with a request and a first token: the timeline segments, which sum to its TTFT (``unattributed``
  is the part between milestones the log lacks);
* a run without a request (the ancestor's captures, which time a deploy): the durations vLLM logged, and
  ``unattributed`` = the log's span (first stamped line -> engine ready) minus their sum. vLLM's "Model
  loading took" includes an HF download it also logs, so model load is the difference; "KV cache /
  profiling" is the rest of "init engine took" after torch.compile and CUDA graphs.

A group's bar is the median of each category over its runs (so a stack need not equal the median total,
which is printed on top); only runs with status ``ok`` (or log-only captures) count. Nothing here reads a
log or draws: ``collect`` reads, ``plots`` draws.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldstart.analysis.ancestor_logs import ANCESTOR_HARDWARE, ANCESTOR_NODE_STATE, ANCESTOR_SOURCE
from coldstart.analysis.audit import audit as run_audit
from coldstart.analysis.collect import LOG_ONLY, Run, Source
from coldstart.analysis.parse import PHASE_COLUMNS
from coldstart.analysis.results import Audit, GanttSpan, ResultRow, RunStatus
from coldstart.analysis.timeline import (
    CATEGORIES,
    PRESTART_IMPORT,
    SEGMENT_CATEGORY,
    SEGMENT_LABELS,
    SEGMENT_NAMES,
    UNATTRIBUTED,
)
from coldstart.registry import EXPERIMENTS, LADDER

if TYPE_CHECKING:
    import pandas as pd

USABLE_STATUS = (RunStatus.OK, LOG_ONLY)

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
# A warm node (weights in the page cache) and a cold one are different measurements: never one median. In the
# medians ``source`` says whose measurement a group is (``whose``): ours, or the ancestor's published logs.
GROUP = ["model", "experiment", "source", "device", "node_state"]
SOURCE_OURS = "ours"
# The rungs past the compile cache: a (model, hardware, node state) with one of them gets a ladder graph.
FAST_RUNGS: frozenset[str] = frozenset(LADDER[2:])
ANCESTOR_DEVICE = f"cuda:{ANCESTOR_HARDWARE}"  # labelled "8×H100" (``device_label``)
SINGLE = "single"  # the scenario of the phase and ladder medians (``ResultRow.scenario_name``)
NODE_STATE_UNKNOWN = "?"  # a log without a row (a capture, the ancestor's logs)


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


def device_of(row: ResultRow) -> str | None:
    """The row's device from its log (or the runner), else from its provenance (GPUs found: cuda; none: cpu).
    None only for a row with neither: it stays apart as "?", never merged with a known kind."""
    if row.device:
        return row.device
    if row.provenance is not None:
        return "cuda" if row.provenance.gpu else "cpu"
    return None


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def category_seconds(
    phases: Mapping[str, float | None], startup_span_s: float | None = None
) -> dict[str, float | None]:
    """Seconds per category (``CATEGORIES``) for one run; the module docstring says the two ways."""
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
                "device": ANCESTOR_DEVICE
                if run.source is Source.ANCESTOR
                else device_kind(device_of(r), r.provenance.gpu if r.provenance else None),
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
    the weights before every run); a log without a runner row (a capture, a by-hand run) is unknown; the
    ancestor never published theirs."""
    if run.source is Source.ANCESTOR:
        return ANCESTOR_NODE_STATE
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


def experiment_order(name: str) -> tuple[int, str]:
    names = list(EXPERIMENTS)
    return (names.index(name) if name in names else len(names), name)


_GPU_MODEL_RE = re.compile(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b")


def device_kind(device: str | None, gpu: str | None) -> str | None:
    """``cuda:H100 x1`` when the row knows its GPUs (provenance), else the bare device: medians must never mix
    GPU kinds (one campaign's H100 against another's H200). A log without a row only knows ``cuda``."""
    if device != "cuda" or not gpu:
        return device
    name, _, count = gpu.rpartition(" x")
    if not count.isdigit():
        name, count = gpu, ""
    m = _GPU_MODEL_RE.search(name)
    short = m.group(1) if m else name.removeprefix("NVIDIA ").strip()
    return f"cuda:{short}" + (f" x{count}" if count else "")


def device_label(device: Any) -> str:
    if isinstance(device, str) and device.startswith("cuda:"):
        return device.removeprefix("cuda:")
    return {"cuda": "GPU", "cpu": "CPU"}.get(device, "?") if isinstance(device, str) else "?"


def whose(runs: pd.DataFrame) -> pd.Series:
    """Per run, whose measurement it is: the ancestor's published logs, or ours (however the analysis found it:
    a runner row, a log, both)."""
    return runs["source"].where(runs["source"].eq(ANCESTOR_SOURCE), SOURCE_OURS)


def median_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, experiment, whose, device, node state): n, median total (and which kind) with its min and max,
    median of every category."""
    import pandas as pd

    ok = usable(runs).copy()
    ok["source"] = whose(ok)
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
    out["_order"] = out["experiment"].map(experiment_order)
    return out.sort_values(["model", "_order", "device", "node_state"]).drop(columns="_order").reset_index(drop=True)


def stacked_data(medians: pd.DataFrame, model: str) -> pd.DataFrame:
    """Bars of one model: index = bar label (experiment, device when the model ran on several), columns =
    category labels with median seconds (NaN: not measured), plus ``n``, ``total_s`` and its range."""
    sub = medians[medians["model"] == model]
    several = sub["device"].nunique() > 1
    labels = [
        f"{e}\n({device_label(d)})" if several else e for e, d in zip(sub["experiment"], sub["device"], strict=True)
    ]
    labels = [
        f"{label}\n{n} node" if n in ("warm",) else label for label, n in zip(labels, sub["node_state"], strict=True)
    ]
    labels = [label if k == "ttft" else f"{label}\n[{k}]" for label, k in zip(labels, sub["total_kind"], strict=True)]
    labels = [
        label if src == SOURCE_OURS else f"{label}\n(ancestor)"
        for label, src in zip(labels, sub["source"], strict=True)
    ]
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
    groups = medians[medians["experiment"].isin(FAST_RUNGS)][["model", "device", "node_state"]]
    return [tuple(g) for g in groups.drop_duplicates().itertuples(index=False)]


def comparison_data(medians: pd.DataFrame) -> pd.DataFrame:
    """Models x series (experiment, device) -> median total and its range; ``kind`` says TTFT or log span."""
    sub = medians.copy()
    # An unknown device ("?") is its own series: merged with "cuda" it would pass a CPU run off as a GPU one.
    sub["series"] = [
        (e if d == "cuda" else f"{e} ({device_label(d)})") + ("" if k == "ttft" else f" [{k}]")
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
    """Per group (``GROUP``) with a TTFT: n, median, min, max, quartiles, and the values."""
    import pandas as pd

    ok = usable(runs)
    ok = ok[(ok["status"] == "ok") & ok["ttft_s"].notna()].copy()
    ok["source"] = whose(ok)
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
    out["_order"] = out["experiment"].map(experiment_order)
    out = out.sort_values(["model", "_order", "device", "node_state"]).drop(columns="_order")
    return out.reset_index(drop=True)[cols]


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


def fmt_seconds(v: Any) -> str:
    return "—" if v is None or v != v else f"{v:.1f}"


def total_text(r: Mapping[str, Any]) -> str:
    """``193.2 (141.1–200.9)``: the median and, over more than one run, the range."""
    text = fmt_seconds(r["total_s"])
    if r["n"] > 1:
        text += f" ({fmt_seconds(r['total_min_s'])}–{fmt_seconds(r['total_max_s'])})"
    return text + ("" if r["total_kind"] == "ttft" else f" [{r['total_kind']}]")


SUMMARY_HEAD: tuple[str, ...] = (
    "model",
    "experiment",
    "source",  # whose measurement: ours, or the ancestor's published logs
    "hardware",
    "node",
    "n",
    "total s, median (min–max)",
    *(c.short for c in CATEGORIES),
)


def summary_cells(medians: pd.DataFrame) -> list[list[str]]:
    """The cells of the median table, one list per group in ``SUMMARY_HEAD`` order: ``summary.md``, the console
    table and the report's table are these same strings."""
    return [
        [
            r["model"],
            r["experiment"],
            r["source"],
            device_label(r["device"]),
            r["node_state"],
            str(int(r["n"])),
            total_text(r),
            *(fmt_seconds(r[f"cat_{c.name}_s"]) for c in CATEGORIES),
        ]
        for _, r in medians.iterrows()
    ]


def summary_markdown(medians: pd.DataFrame) -> str:
    """The median table as Markdown (README, notes): total with its range, then each category."""
    head = list(SUMMARY_HEAD)
    n_keys = head.index("n")  # the text columns left of ``n`` align left, the numbers right
    align = ["---" if i < n_keys else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in summary_cells(medians)]
    return "\n".join(lines) + "\n"


def print_medians(medians: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="median seconds per (model, experiment); total = TTFT (range over runs), or the log span of a capture"
    )
    n_keys = SUMMARY_HEAD.index("n")
    for i, col in enumerate(SUMMARY_HEAD):
        table.add_column("total" if col.startswith("total") else col, justify="left" if i < n_keys else "right")
    for cells in summary_cells(medians):
        table.add_row(*cells)
    Console(width=200).print(table)
