"""``coldstart compare --campaign NAME``: the runs of one campaign side by side, one line each: model,
experiment, status, TTFT and its main phases (the stacked-bar categories, which add up to the TTFT).

``make demo`` prints this after its baseline and fast cold starts. A capture run of the campaign (the matrix's
``--capture``: the run that fills the compile cache a later run restores, ``make demo``'s ``cc_trims``) is
named under the table, not compared: its compile is the point, not a measurement. Rows in, text out: no log
is read (the phases are in the rows), and neither pandas nor matplotlib is needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart import paths
from coldstart.analysis.results import ResultRow, RunStatus, SchemaError, load_rows
from coldstart.analysis.tables import category_seconds, fmt_seconds
from coldstart.analysis.timeline import CATEGORIES

HEAD = ("model", "experiment", "status", "ttft_s")


@dataclass(frozen=True)
class Comparison:
    """A text table: its heading and one line of cells per run (seconds already formatted)."""

    head: tuple[str, ...]
    lines: tuple[tuple[str, ...], ...]

    def render(self) -> str:
        widths = [max(len(cells[i]) for cells in (self.head, *self.lines)) for i in range(len(self.head))]
        text_cols = HEAD.index("ttft_s")  # names left-aligned, seconds right-aligned

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(
                c.ljust(w) if i < text_cols else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        return "\n".join(fmt(cells) for cells in (self.head, *self.lines))


def compare(rows: Sequence[ResultRow]) -> Comparison:
    """One line per row, in the order given; a category no row measured is left out."""
    cats = [category_seconds(r.phases) for r in rows]
    shown = [c for c in CATEGORIES if any(seconds.get(c.name) is not None for seconds in cats)]
    head = (*HEAD, *(f"{c.short} s" for c in shown))
    lines = tuple(
        (r.model, r.experiment, str(r.status), fmt_seconds(r.ttft_s), *(fmt_seconds(cat.get(c.name)) for c in shown))
        for r, cat in zip(rows, cats, strict=True)
    )
    return Comparison(head=head, lines=lines)


def speedup_lines(rows: Sequence[ResultRow]) -> list[str]:
    """Each later ok run against the first one: ``fast vs baseline: 41.0 s vs 95.2 s (2.32x faster)``."""
    timed = [(r, r.ttft_s) for r in rows if r.status is RunStatus.OK and r.ttft_s]
    if not timed:
        return []
    first, first_s = timed[0]
    out = []
    for r, ttft_s in timed[1:]:
        ratio = first_s / ttft_s
        how = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
        out.append(f"{r.experiment} vs {first.experiment}: {ttft_s:.1f} s vs {first_s:.1f} s ({how})")
    return out


def audit_notes(rows: Sequence[ResultRow]) -> list[str]:
    """A line per run whose cache audit failed: its compile time is not what its experiment promises (``fast``
    run before any compile cache was published for its key, or a cache the engine could not load)."""
    return [
        f"note: {r.experiment} ({r.run_id}): cache audit failed; expected a compile-cache hit: "
        f"{r.audit.expected_compile_cache_hit}, restore: {r.audit.compile_cache_restore_status or 'none'}"
        for r in rows
        if r.audit is not None and r.audit.passed is False
    ]


def capture_notes(captures: Sequence[ResultRow]) -> list[str]:
    """A line per capture run left out of the comparison (its cache miss is the point, so its audit fails)."""
    return [
        f"not compared: {r.experiment} ({r.run_id}, {r.status}): a capture run, which filled the compile cache "
        "that later runs restore"
        for r in captures
    ]


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", required=True, help="the campaign whose runs to show (matrix --campaign)")
    parser.add_argument(
        "--results",
        type=Path,
        default=paths.results_file(),
        help="the matrix runner's results.jsonl (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        rows = [r for r in load_rows(args.results) if r.campaign == args.campaign]
    except (OSError, SchemaError) as exc:
        print(f"error: cannot read the results file {args.results}: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no runs of campaign {args.campaign!r} in {args.results}", file=sys.stderr)
        return 1
    measured = [r for r in rows if not r.capture]
    captures = [r for r in rows if r.capture]
    if not measured:
        print(
            f"error: campaign {args.campaign!r} holds only capture runs: nothing measured to compare", file=sys.stderr
        )
        return 1
    print(f"campaign {args.campaign}: TTFT and its phases in seconds (the phases add up to ttft_s)")
    print(compare(measured).render())
    for line in (*speedup_lines(measured), *audit_notes(measured), *capture_notes(captures)):
        print(line)
    for r in rows:
        if r.status is not RunStatus.OK:
            print(f"{r.experiment} {r.status}: {r.error or 'no error recorded'}", file=sys.stderr)
    return 0 if all(r.status is RunStatus.OK for r in rows) else 1
