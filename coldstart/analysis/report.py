"""A static HTML report of every run: ``python -m analysis report [--out DIR]``.

One folder that opens from disk with no server and no network (inline CSS, no script at all). It opens with
the headline: the fast-path ladder graph and the ancestor's published figures beside our medians
(``headline.headline_rows``, the table of the README). Then the median table of ``results/summary.md``
(computed the same way, from the same remembered log sources), relative links to the graphs
``python -m analysis`` wrote (linked, not copied: they stay the one copy), and each run with its timeline
segments (± of whole-second vLLM stamps), its cache audit, its provenance, a link to its raw log and to its
Chrome trace (``trace.py``), which this command writes into ``<out>/traces/``.

It reads result files and logs only and writes nothing outside ``--out``: the tables and graphs stay
``python -m analysis``'s.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldstart import paths
from coldstart.analysis import scenarios
from coldstart.analysis.ancestor_logs import ancestor_facts
from coldstart.analysis.collect import Run, Source, add_source_args, cli_runs
from coldstart.analysis.headline import FIGURES_PATH_IN_REPO, HEAD, HeadlineRow, headline_rows, load_ancestor_figures
from coldstart.analysis.plots import ladder_stem, slug
from coldstart.analysis.results import ResultRow
from coldstart.analysis.scenario_report import scenario_summaries
from coldstart.analysis.tables import (
    FAST_RUNGS,
    SUMMARY_HEAD,
    device_label,
    median_table,
    run_table,
    summary_cells,
)
from coldstart.analysis.timeline import SEGMENT_LABELS, SEGMENT_NAMES, UNATTRIBUTED
from coldstart.analysis.trace import client_of, write_trace

if TYPE_CHECKING:
    import pandas as pd

# The graphs a reader wants first; the per-run timeline PNGs are linked from each run instead.
GRAPH_PATTERNS = ("comparison.png", "ttft_spread.png", "ladder_*.png", "phases_*.png")
INLINE_GRAPHS = "ladder_*.png"  # shown on the page; the others are one click away
SCENARIO_GRAPHS = "scenario_*.png"  # shown in the Scenarios section, inline like the ladders

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th:first-child, td:first-child, table.facts td { text-align: left; }
th { background: #f2f2f2; }
.bad { color: #b00020; font-weight: bold; }
.muted { color: #777; }
details { margin: 0.3em 0 1em; }
"""


def _graph_item(graph: Path, out_dir: Path, *, inline: bool) -> str:
    """A graph's list item: its link, and for the ladders the picture itself (an <img> of the same file, so the
    page shows the fast path at a glance without holding a copy)."""
    href = html.escape(_rel(graph, out_dir), quote=True)
    picture = f'<br><img src="{href}" alt="{_esc(graph.name)}" width="900">' if inline else ""
    return f'<li><a href="{href}">{_esc(graph.name)}</a>{picture}</li>'


def _esc(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _rel(target: Path, out_dir: Path) -> str:
    """A link that works from the opened file: relative, with forward slashes."""
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def _resolve(path: str | None, bases: Sequence[Path]) -> Path | None:
    """A row's path as written (relative to the lab it ran in), found under one of ``bases``; never looked
    up from the working directory."""
    if not path:
        return None
    p = Path(path)
    for candidate in (b / p for b in bases) if not p.is_absolute() else (p,):
        if candidate.is_file():
            return candidate
    return None


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    out = [
        f'<table class="{cls}">' if cls else "<table>",
        "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>",
    ]
    out += ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    return "\n".join([*out, "</table>"])


def summary_rows(medians: pd.DataFrame) -> list[list[str]]:
    """The cells of ``summary_markdown``'s table (the same numbers), HTML-escaped."""
    return [[_esc(cell) for cell in cells] for cells in summary_cells(medians)]


def _seconds(value: float | None, error_s: float | None = None) -> str:
    if value is None:
        return "—"
    # Ray's millisecond stamps (±0.0005 s) would print as "±0.00": the ± is shown where it matters.
    return f"{value:.2f} ±{error_s:.2f}" if error_s is not None and error_s >= 0.005 else f"{value:.2f}"


def _run_section(run: Run, table_row: Mapping[str, Any], out_dir: Path, graphs_dir: Path, bases: Sequence[Path]) -> str:
    r: ResultRow = run.row
    anchor = html.escape(r.run_id, quote=True)
    parts = [f'<h3 id="{anchor}">{_esc(r.model)} · {_esc(r.experiment)} · {_esc(r.run_id)}</h3>']
    links = []
    log = _resolve(r.log_path, bases)
    if log is not None:
        links.append(f'<a href="{html.escape(_rel(log, out_dir), quote=True)}">raw log</a>')
        trace = write_trace(log, out_dir / "traces" / f"{r.run_id}.trace.json", client_of(log, r), r.run_id)
        links.append(
            f'<a href="{html.escape(_rel(trace, out_dir), quote=True)}">trace JSON</a>'
            ' <span class="muted">(open in Perfetto or chrome://tracing)</span>'
        )
    else:
        links.append('<span class="muted">no log here</span>')
    gantt = graphs_dir / f"{slug(f'timeline_{r.model}_{r.run_id}')}.png"  # as save_figure names it
    if gantt.is_file():  # `python -m analysis` draws one per run with a request (untracked, so maybe absent)
        links.append(f'<a href="{html.escape(_rel(gantt, out_dir), quote=True)}">timeline graph</a>')
    parts.append("<p>" + " · ".join(links) + "</p>")

    audit_passed = table_row.get("audit_passed")
    flag = {True: "passed", False: '<span class="bad">FAILED</span>', None: "not audited"}[
        None if audit_passed is None or audit_passed != audit_passed else bool(audit_passed)
    ]
    superseded = table_row.get("superseded")
    facts = [
        ("status", _esc(r.status.value)),
        ("TTFT s", _esc(None if r.ttft_s is None else f"{r.ttft_s:.2f}")),
        ("hardware", _esc(device_label(table_row.get("device")))),
        ("node state", _esc(table_row.get("node_state"))),
        ("scenario", _esc(r.scenario_name)),
        ("source", _esc(run.source.value)),
        ("repeat", _esc(r.repeat)),
        ("campaign", _esc(r.campaign)),
        ("cache audit", flag),
        ("compile-cache hit", _esc(table_row.get("compile_cache_hit"))),
        ("AOT cache hit", _esc(table_row.get("aot_cache_hit"))),
        ("restore status", _esc(table_row.get("compile_cache_restore_status"))),
        ("superseded", _esc(superseded if isinstance(superseded, str) else None)),
    ]
    p = r.provenance
    if p is not None:
        packages = ", ".join(f"{k} {v}" for k, v in (p.packages or {}).items() if v)
        facts += [
            ("GPU", _esc(p.gpu)),
            ("driver", _esc(p.driver)),
            ("git commit", _esc(p.git_commit) + (" (dirty)" if p.git_dirty else "")),
            ("packages", _esc(packages or None)),
            ("host / boot", _esc(f"{p.host} / {p.boot_id}")),
        ]
    elif run.source is Source.ANCESTOR:
        facts += [(f"ancestor: {k}", _esc(v)) for k, v in ancestor_facts().items()]
    else:
        facts.append(("provenance", '<span class="muted">none (a log without a runner row)</span>'))
    parts.append(_table(("run", "value"), ([k, v] for k, v in facts), "facts"))

    tl = r.timeline
    if tl is not None:
        seg_rows = [
            [_esc(SEGMENT_LABELS[name]), _seconds(tl.segments.get(name), tl.segment_error_s.get(name))]
            for name in (*SEGMENT_NAMES, UNATTRIBUTED)
            if tl.segments.get(name) is not None
        ]
        measured = [tl.segments[n] for n in (*SEGMENT_NAMES, UNATTRIBUTED) if tl.segments.get(n) is not None]
        if tl.ttft_s is not None and measured:
            # They telescope: the sum is the TTFT (a check a reader can do on the page).
            seg_rows.append(["<b>sum (= TTFT)</b>", f"<b>{sum(v for v in measured if v is not None):.2f}</b>"])
        parts.append("<details open><summary>timeline segments (request → first token)</summary>")
        parts.append(_table(("segment", "seconds ± stamp precision"), seg_rows))
        if tl.notes:
            parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in tl.notes) + "</ul>")
        parts.append("</details>")
    return "\n".join(parts)


def scenario_section(runs: Sequence[Run], table: pd.DataFrame, out_dir: Path, graphs_dir: Path) -> list[str]:
    """The Scenarios section: the tables of ``results/scenarios.md`` (same numbers) and the scenario graphs
    ``python -m analysis`` drew. Nothing when no run has a scenario beyond single."""
    summaries = scenario_summaries(table, [run.row for run in runs])
    if not summaries:
        return []
    meds = scenarios.medians(summaries)
    graphs = sorted(g for g in graphs_dir.glob(SCENARIO_GRAPHS) if g.is_file())
    parts = [
        "<h2>Scenarios</h2>",
        '<p class="muted">Runs of a scenario beyond a single request (burst, after ready, return to zero, '
        "sleep/wake), from their request records; they are kept out of the medians above. Medians over runs; "
        "request and failure counts are totals over the runs.</p>",
    ]
    for title, (head, cells), cls in (
        ("Medians over runs (seconds)", scenarios.scenario_table(meds, device_label), "scenarios"),
        ("Per request group", scenarios.group_table(meds, device_label), "scenario-groups"),
    ):
        parts.append(f"<h3>{_esc(title)}</h3>")
        parts.append(_table(head, ([_esc(c) for c in row] for row in cells), cls))
    parts.append(
        "<ul>" + "".join(_graph_item(g, out_dir, inline=True) for g in graphs) + "</ul>"
        if graphs
        else '<p class="muted">no scenario graphs found; run <code>python -m analysis</code> first</p>'
    )
    return parts


def _headline_cells(row: HeadlineRow) -> list[str]:
    """One headline row as the README's table writes it: theirs ≈ the chart's bar, ours the median (min–max)."""
    theirs = "—" if row.theirs is None else f"≈ {row.theirs.startup_s:.0f}"
    if row.ours is None:
        return [row.model, row.experiment, theirs, "not run yet", "—", "—", "—"]
    ttfts = row.ours.ttft_s
    ours = f"{row.ours.median_s:.1f}" + (f" ({min(ttfts):.1f}–{max(ttfts):.1f})" if row.ours.n > 1 else "")
    dates = row.ours.dates
    when = dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"
    hardware = f"{row.ours.device}, {row.ours.node_state} node"
    return [row.model, row.experiment, theirs, ours, hardware, when, str(row.ours.n)]


def headline_ladders(rows: Sequence[HeadlineRow], graphs_dir: Path) -> list[Path]:
    """The ladder graphs of the headline's measurements: the (model, hardware, node state) its fast-path rungs
    come from, drawn by ``python -m analysis`` (absent ones are left out)."""
    groups = dict.fromkeys(
        (r.model, r.ours.device, r.ours.node_state) for r in rows if r.ours is not None and r.experiment in FAST_RUNGS
    )
    return [p for g in groups if (p := graphs_dir / f"{ladder_stem(*g)}.png").is_file()]


def headline_section(
    runs: Sequence[Run], superseded: Mapping[str, str], out_dir: Path, graphs_dir: Path
) -> tuple[list[str], list[Path]]:
    """The page's opening: the fast-path ladder and the headline table (the ancestor's figures beside our
    medians of the result rows that count, as README.md's headline). Returns the HTML and the ladders shown."""
    # Result rows only, as the README's table: a log without a runner row has no node state or repeat.
    rows = [run.row for run in runs if run.source in (Source.RESULTS, Source.RESULTS_AND_LOG)]
    heads = headline_rows(rows, load_ancestor_figures(), superseded.keys())
    ladders = headline_ladders(heads, graphs_dir)
    published = sorted({h.theirs.published for h in heads if h.theirs is not None})
    parts = [
        "<h2>Headline: the fast path, and the ancestor's published figures beside ours</h2>",
        *(
            f'<p><img src="{html.escape(_rel(g, out_dir), quote=True)}" alt="{_esc(g.name)}" width="900"></p>'
            for g in ladders
        ),
        "" if ladders else '<p class="muted">no ladder graph found; run <code>python -m analysis</code> first</p>',
        _table(HEAD, ([_esc(c) for c in _headline_cells(h)] for h in heads), "headline"),
        f'<p class="muted"><i>theirs</i>: the ancestor\'s replica startup time read off their published charts '
        f"({_esc(', '.join(published))}; H100s, one run per bar; <code>{_esc(FIGURES_PATH_IN_REPO)}</code> names "
        "each chart). <i>ours</i>: seconds from the request to the first token, median (min–max) of the result "
        "rows that count; hardware, date and n are ours.</p>",
    ]
    return parts, ladders


def build_report(
    out_dir: Path,
    runs: Sequence[Run],
    superseded: Mapping[str, str] | None = None,
    graphs_dir: Path | None = None,
    bases: Sequence[Path] = (),
) -> Path:
    """Write ``<out_dir>/index.html`` (and ``traces/``) for these runs; returns the HTML's path. The graphs
    default to the lab's; a row's relative log path is looked up under ``bases``, then in the lab."""
    graphs_dir = graphs_dir or paths.graphs_dir()
    bases = [*bases, paths.lab_dir()]
    out_dir.mkdir(parents=True, exist_ok=True)
    table = run_table(runs, superseded)
    medians = median_table(table)
    by_id = {str(rec["run_id"]): rec for rec in table.to_dict("records")}

    graphs = sorted(
        {g for pattern in GRAPH_PATTERNS for g in graphs_dir.glob(pattern) if g.is_file()},
        key=lambda g: (next(i for i, pat in enumerate(GRAPH_PATTERNS) if g.match(pat)), g.name),
    )
    headline, shown = headline_section(runs, superseded or {}, out_dir, graphs_dir)
    body = [
        "<h1>Cold-start report</h1>",
        *headline,
        '<p class="muted">Generated by <code>python -m analysis report</code> from the result rows and logs; '
        "opens from disk, no network. Medians count usable single-request runs only (finished, cache audit passed, "
        "not superseded), as in <code>results/summary.md</code>.</p>",
        "<h2>Median seconds per (model, experiment, source, hardware, node state)</h2>",
        _table(SUMMARY_HEAD, summary_rows(medians), "summary"),
        "<h2>Graphs</h2>",
        "<ul>"
        # A ladder the headline shows is only linked here: one copy of the picture on the page.
        + "".join(_graph_item(g, out_dir, inline=g.match(INLINE_GRAPHS) and g not in shown) for g in graphs)
        + "</ul>"
        if graphs
        else '<p class="muted">no graphs found; run <code>python -m analysis</code> first</p>',
        *scenario_section(runs, table, out_dir, graphs_dir),
        "<h2>Runs</h2>",
    ]
    ordered = sorted(runs, key=lambda run: (run.row.model, run.row.experiment, run.row.run_id))
    body.append(
        _table(
            ("run", "model", "experiment", "source", "status", "TTFT s"),
            (
                [
                    f'<a href="#{html.escape(run.row.run_id, quote=True)}">{_esc(run.row.run_id)}</a>',
                    _esc(run.row.model),
                    _esc(run.row.experiment),
                    _esc(run.source.value),
                    _esc(run.row.status.value),
                    _esc(None if run.row.ttft_s is None else f"{run.row.ttft_s:.2f}"),
                ]
                for run in ordered
            ),
            "runs",
        )
    )
    body += [_run_section(run, by_id.get(run.row.run_id, {}), out_dir, graphs_dir, bases) for run in ordered]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Cold-start report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    # The report is committed with the tables and graphs it shows; regenerated on demand.
    parser.add_argument("--out", type=Path, default=paths.report_dir(), help="the report folder (default: %(default)s)")
    add_source_args(parser)
    parser.add_argument(
        "--graphs",
        type=Path,
        default=paths.graphs_dir(),
        help="where `python -m analysis` wrote them (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    loaded = cli_runs(args)
    if loaded is None:
        return 2
    runs, superseded = loaded
    if not runs:
        print("no runs found: nothing to report", file=sys.stderr)
        return 1
    index = build_report(args.out, runs, superseded, args.graphs, bases=[args.results.parent.parent])
    print(f"wrote {index} ({len(runs)} runs); open it in a browser, no server needed")
    return 0
