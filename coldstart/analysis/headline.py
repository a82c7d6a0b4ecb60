"""The headline: the seeds' published startup figures and this lab's measured medians, side by side.

The seeds (the public experiment this lab reproduces) published charts, not rows; their bars live in
``data/ancestor_figures.json`` with the chart each one was read from, so a checkout without the seeds' logs
still makes the comparison. Ours are the result rows (``results/results.jsonl``) that count: status ok, one
request at zero replicas, cache audit passed, not superseded.

Pure apart from ``load_ancestor_figures`` / ``headline_markdown`` (which read files): rows and figures in,
``HeadlineRow``s and markdown out. README.md's headline table is ``python -m coldstart.analysis.headline``'s
output, and ``tests/test_headline.py`` fails when the two drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.resources
import json
import statistics
import sys
import textwrap
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.analysis.collect import SUPERSEDED_FILE, Run, Source, load_superseded
from coldstart.analysis.results import Audit, ResultRow, RunStatus, SchemaError, load_rows
from coldstart.analysis.tables import (
    SINGLE,
    audit_passed,
    device_kind,
    device_label,
    device_of,
    experiment_order,
    node_state_of,
)
from coldstart.registry import LADDER

FIGURES_FILE = "ancestor_figures.json"  # in coldstart/analysis/data/, shipped with the package
FIGURES_PATH_IN_REPO = f"coldstart/analysis/data/{FIGURES_FILE}"


@dataclass(frozen=True)
class AncestorFigure:
    """One bar of the seeds' charts, named by this lab's model and experiment."""

    model: str
    experiment: str  # the registry experiment the bar stands for ("+Compile Cache" is ours "all")
    label: str  # the bar's label as published
    startup_s: float  # the bar's top: their replica startup time
    read_error_s: float  # half-width of reading the bar off the chart's pixels
    tp: int
    hardware: str
    published: str  # ISO date the chart was published
    n: int  # runs behind the bar
    source: str  # repository@commit:path of the chart
    log: str | None  # the published terminal output of the same run, where there is one

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AncestorFigure:
        names = {f for f in cls.__dataclass_fields__}
        if missing := sorted(names - set(data)):
            raise SchemaError(f"ancestor figure without {missing}: {dict(data)!r}")
        if unknown := sorted(set(data) - names):
            raise SchemaError(f"ancestor figure with unknown key(s) {unknown}")
        for key in ("startup_s", "read_error_s"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SchemaError(f"ancestor figure {key} {value!r} is not a number of seconds >= 0")
        if data["startup_s"] <= data["read_error_s"]:
            raise SchemaError(f"ancestor figure {data['model']} {data['experiment']}: startup_s within its read error")
        if not data["source"]:
            raise SchemaError(f"ancestor figure {data['model']} {data['experiment']} names no source")
        return cls(**{**data, "startup_s": float(data["startup_s"]), "read_error_s": float(data["read_error_s"])})


def load_ancestor_figures(path: Path | None = None) -> tuple[AncestorFigure, ...]:
    """The seeds' figures from ``path``, or from the copy shipped in the package."""
    if path is None:
        text = importlib.resources.files("coldstart.analysis").joinpath("data", FIGURES_FILE).read_text("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    figures = data.get("figures") if isinstance(data, dict) else None
    if not isinstance(figures, list) or not figures:
        raise SchemaError(f'{path or FIGURES_FILE}: expected {{"figures": [...]}}')
    out = tuple(AncestorFigure.from_dict(f) for f in figures)
    keys = [(f.model, f.experiment) for f in out]
    if len(set(keys)) != len(keys):
        raise SchemaError(f"{path or FIGURES_FILE}: a (model, experiment) appears twice")
    return out


@dataclass(frozen=True)
class OurRuns:
    """The runs of one (model, experiment) on one kind of hardware and node state that count."""

    device: str  # "H200 x1"
    node_state: str  # "warm" / "cold"
    ttft_s: tuple[float, ...]
    dates: tuple[str, ...]  # the runs' UTC dates, sorted, each once

    @property
    def n(self) -> int:
        return len(self.ttft_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.ttft_s)


@dataclass(frozen=True)
class HeadlineRow:
    model: str
    experiment: str
    theirs: AncestorFigure | None  # None: the seeds have no bar for it
    ours: OurRuns | None  # None: no run of ours counts yet


def _date_of(row: ResultRow) -> str:
    if row.t_start_epoch is not None:
        return dt.datetime.fromtimestamp(row.t_start_epoch, dt.timezone.utc).date().isoformat()
    stamp = row.run_id[:8]  # run ids start with their UTC start: 20261129T190225Z-2141
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"


def _counts(row: ResultRow, superseded: Collection[str]) -> bool:
    """The rule of the phase and ladder medians (``tables.usable``), on one row read from the results file."""
    return (
        row.status is RunStatus.OK
        and row.ttft_s is not None
        and row.scenario_name == SINGLE
        and audit_passed(row.experiment, row.audit or Audit()) is not False
        and row.run_id not in superseded
    )


def _group_of(row: ResultRow) -> tuple[str, str]:
    gpu = row.provenance.gpu if row.provenance is not None else None
    return device_label(device_kind(device_of(row), gpu)), node_state_of(Run(row, Source.RESULTS))


def _newest(rows: Iterable[ResultRow]) -> str:
    return max(r.run_id for r in rows)


def headline_rows(
    rows: Iterable[ResultRow], figures: Sequence[AncestorFigure], superseded: Collection[str] = ()
) -> list[HeadlineRow]:
    """For each model the seeds published: one row per experiment they published or a ladder rung we ran.

    Ours come from one (hardware, node state) per model where we can: the one holding the most ladder rungs
    (then the newest), so the ladder reads as one measurement. An experiment that group lacks (a seeds'
    experiment we ran elsewhere) takes the group with the most runs of it (then the newest)."""
    counted = [r for r in rows if _counts(r, superseded)]
    out: list[HeadlineRow] = []
    for model in dict.fromkeys(f.model for f in figures):
        theirs = {f.experiment: f for f in figures if f.model == model}
        by_group: dict[tuple[str, str], dict[str, list[ResultRow]]] = {}
        for r in counted:
            if r.model == model:
                by_group.setdefault(_group_of(r), {}).setdefault(r.experiment, []).append(r)
        ladder_group = max(
            by_group,
            key=lambda g: (sum(e in by_group[g] for e in LADDER), _newest(x for v in by_group[g].values() for x in v)),
            default=None,
        )
        rungs = {e for e in LADDER if ladder_group is not None and e in by_group[ladder_group]}
        for experiment in sorted(set(theirs) | rungs, key=experiment_order):
            if ladder_group is not None and experiment in by_group[ladder_group]:
                group: tuple[str, str] | None = ladder_group
            else:
                having = [g for g in by_group if experiment in by_group[g]]
                group = max(
                    having, key=lambda g: (len(by_group[g][experiment]), _newest(by_group[g][experiment])), default=None
                )
            ours = None
            if group is not None:
                runs = by_group[group][experiment]
                ours = OurRuns(
                    device=group[0],
                    node_state=group[1],
                    ttft_s=tuple(r.ttft_s for r in runs if r.ttft_s is not None),
                    dates=tuple(sorted({_date_of(r) for r in runs})),
                )
            out.append(HeadlineRow(model, experiment, theirs.get(experiment), ours))
    return out


CAPTION_WIDTH = 110
HEAD = ("model", "experiment", "theirs s", "ours s", "hardware", "date", "n")


def _ours_cell(ours: OurRuns) -> str:
    if ours.n == 1:
        return f"{ours.median_s:.1f}"
    return f"{ours.median_s:.1f} ({min(ours.ttft_s):.1f}–{max(ours.ttft_s):.1f})"


def _dates_cell(dates: Sequence[str]) -> str:
    return dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"


def render_markdown(rows: Sequence[HeadlineRow]) -> str:
    """The rows as a markdown table, with the two lines that say what each side measured."""
    lines = [
        "| " + " | ".join(HEAD) + " |",
        "|---|---|---:|---:|---|---|---:|",
    ]
    for row in rows:
        theirs = "—" if row.theirs is None else f"≈ {row.theirs.startup_s:.0f}"
        if row.ours is None:
            cells = [row.model, f"`{row.experiment}`", theirs, "not run yet", "—", "—", "—"]
        else:
            hardware = f"{row.ours.device}, {row.ours.node_state} node"
            cells = [row.model, f"`{row.experiment}`", theirs, _ours_cell(row.ours), hardware]
            cells += [_dates_cell(row.ours.dates), str(row.ours.n)]
        lines.append("| " + " | ".join(cells) + " |")
    published = sorted({r.theirs.published for r in rows if r.theirs is not None})
    caption = (
        f"*theirs*: the seeds' replica startup time, read off their published charts ({', '.join(published)}; "
        f"H100s, one run per bar; `{FIGURES_PATH_IN_REPO}` names each chart). *ours*: seconds from the request "
        "to the first token, median (min–max) of the runs in `results/results.jsonl` that count; hardware, "
        "date and n are ours."
    )
    # Wrapped as the README's prose is; markdown renders the lines as one paragraph.
    lines += ["", *textwrap.wrap(caption, width=CAPTION_WIDTH, break_long_words=False, break_on_hyphens=False)]
    return "\n".join(lines) + "\n"


def headline_markdown(results: Path | None = None, figures: Path | None = None) -> str:
    """The headline table of a results file (default: the lab's) and the superseded runs listed beside it."""
    results = results or paths.results_file()
    rows = load_rows(results)
    superseded = load_superseded(results.parent / SUPERSEDED_FILE)
    return render_markdown(headline_rows(rows, load_ancestor_figures(figures), superseded))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coldstart.analysis.headline",
        description="Print the headline table (the seeds' figures beside our medians) as markdown.",
    )
    parser.add_argument(
        "--results", type=Path, default=paths.results_file(), help="results file (default: %(default)s)"
    )
    parser.add_argument("--figures", type=Path, default=None, help="the seeds' figures (default: the packaged copy)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(headline_markdown(args.results, args.figures))
    except (OSError, ValueError) as exc:  # SchemaError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
