"""``python -m analysis`` (or ``python -m coldstart analyze``): logs and result rows -> tables and graphs.

Three stages, kept apart so each can be tested alone and the graphs never touch a log:

* collect (``collect``): logs and ``results.jsonl`` -> ``Run``s;
* compute (``tables``, ``scenario_report``): runs -> pandas tables (one row per run; medians per group; the
  data of each graph);
* render and save (``plots``, ``scenario_report``): a table -> a matplotlib ``Figure`` -> PNG + SVG.

It writes ``<out-tables>/phases.csv`` (+ long form, Parquet with pyarrow), ``summary.md``, the scenario
tables, the graphs, and the log sources it read (``analysis_sources.json``), which a later run reads back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coldstart import paths
from coldstart.analysis import scenarios
from coldstart.analysis.collect import (
    SOURCES_FILE,
    SUPERSEDED_FILE,
    SkippedLog,
    collect,
    load_results,
    load_sources,
    load_superseded,
    merge_rows,
    record_sources,
    skipped_note,
)
from coldstart.analysis.parse import explain
from coldstart.analysis.plots import render_all
from coldstart.analysis.results import SchemaError
from coldstart.analysis.scenario_report import (
    print_scenarios,
    render_scenarios,
    scenario_summaries,
    write_scenario_tables,
)
from coldstart.analysis.tables import (
    long_table,
    median_table,
    print_medians,
    run_table,
    summary_markdown,
    usable,
    write_tables,
)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        default=None,
        help="run trees (<model>/<experiment>/<run_id>.log) or flat folders of captures; recorded in "
        f"<out-tables>/{SOURCES_FILE}, which a later run without --logs reads "
        f"(default when nothing is recorded: {paths.output_root()})",
    )
    # The lab's folders (paths.lab_dir), read when the parser is built: never the working directory.
    parser.add_argument(
        "--results",
        type=Path,
        default=paths.results_file(),
        help="the matrix runner's results.jsonl (default: %(default)s)",
    )
    parser.add_argument("--out-graphs", type=Path, default=paths.graphs_dir(), help="default: %(default)s")
    parser.add_argument("--out-tables", type=Path, default=paths.tables_dir(), help="default: %(default)s")
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
        args.logs = loaded if loaded is not None else [paths.output_root()]
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
    skipped_logs: list[SkippedLog] = []
    found = merge_rows(collect(args.logs, clients, skipped_logs), results)
    if note := skipped_note(skipped_logs):
        print(note, file=sys.stderr)
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
    rows = [f.row for f in found]
    graphs = render_all(runs, rows, args.out_graphs) + render_scenarios(runs, rows, args.out_graphs)
    written += graphs
    medians = median_table(runs)
    summary = args.out_tables / "summary.md"
    summary.write_text(summary_markdown(medians))
    written.append(summary)
    # Recorded even when a source is missing now: a folder that comes back (a remounted share) counts again.
    record_sources(sources_file, args.logs)
    written.append(sources_file)
    print_medians(medians)
    if summaries := scenario_summaries(runs, rows):
        written += write_scenario_tables(summaries, args.out_tables)
        print_scenarios(scenarios.medians(summaries))
    print(
        f"{len(found)} runs ({int(usable(runs).shape[0])} usable) from {', '.join(map(str, args.logs))}"
        f"{' and ' + str(args.results) if results else ''}"
    )
    for line in skipped:
        print(f"note: {line}")
    # Only folders that got files: with no run to plot, no graph is drawn and no graphs folder made.
    graphs_line = f"graphs in {args.out_graphs}/" if graphs else "no graphs (no run had anything to plot)"
    print(f"wrote {len(written)} files: tables in {args.out_tables}/, {graphs_line}")
    return 0
