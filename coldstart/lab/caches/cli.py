"""``python -m coldstart clear-cache`` (and ``clear_cache.py``): each action asked for by name, ``--all`` or
``--only NAME...`` clears, ``--evict PATH...`` evicts, ``--drop-caches`` drops the page cache; a table of what
went."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from coldstart.lab.caches.clearing import ClearReport, clear
from coldstart.lab.caches.roots import OutsideCacheRootError, UnknownRootError, cache_roots, select_roots

if TYPE_CHECKING:
    from rich.console import Console


def _human_bytes(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    value = float(size_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def print_report(report: ClearReport, console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = console or Console()
    verb = "would remove" if report.dry_run else "removed"
    if report.roots:  # an --evict-only call clears nothing: no table of roots
        table = Table(title=f"cache roots ({'dry run' if report.dry_run else 'cleared'})")
        for col in ("root", "path", "files", verb, "status"):
            table.add_column(col, justify="right" if col in ("files", verb) else "left", overflow="fold")
        for r in report.roots:
            if r.error:
                status = f"[red]FAILED: {r.error}[/red]"
            elif not r.existed:
                status = "absent"
            else:
                status = r.note or ("removed" if r.removed else "kept")
            table.add_row(r.name, str(r.path), str(r.files), _human_bytes(r.size_bytes), status)
        table.add_row("total", "", str(sum(r.files for r in report.roots)), _human_bytes(report.size_bytes), "")
        out.print(table)
    ev = report.evict
    if ev is not None:
        if ev.paths:
            out.print(
                f"page cache: {'would evict' if report.dry_run else 'evicted'} {ev.files} files, "
                f"{_human_bytes(ev.size_bytes)} under {', '.join(map(str, ev.paths))}"
            )
        for err in ev.errors:
            out.print(f"[red]evict failed: {err}[/red]")
        for skip in ev.skipped:
            out.print(f"evict skipped: {skip}")
        if ev.drop_caches is not None:
            out.print(f"drop_caches: {'done' if ev.drop_caches.done else 'not done'} ({ev.drop_caches.detail})")


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # Each action is asked for by name: a bare call, or --evict alone, clears nothing it was not told to.
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--all", action="store_true", help="clear every cache root (clear_cache.py --all --dry-run lists them)"
    )
    what.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="clear only these roots")
    parser.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    parser.add_argument(
        "--evict",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="files or folders kept on disk whose pages to drop from the page cache (e.g. a checkpoint); each "
        "must lie inside a cache root, the lab's home, its local store or a --weights-root. Evicts only: clears "
        "no root",
    )
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="also sync and drop the whole machine's page cache (/proc/sys/vm/drop_caches) when root",
    )
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="PATH",
        type=Path,
        help="a cache folder outside home, temp folders and cache-named folders that may be cleared "
        "(e.g. HF_HOME=/mnt/nvme/hf): you vouch that it holds only caches; system folders stay refused",
    )
    parser.add_argument(
        "--weights-root",
        action="append",
        default=[],
        metavar="PATH",
        type=Path,
        help="a folder of weights outside the lab's roots (a model of your own) that --evict may evict in; "
        "never cleared",
    )
    return parser


def main(args: argparse.Namespace) -> int:
    """0: all cleared; 1: something could not be removed or evicted; 2: bad input."""
    if not (args.all or args.only or args.evict or args.drop_caches):
        print(
            "error: nothing to do: say --all or --only NAME... to clear, --evict PATH... to evict, "
            "--drop-caches to drop the page cache (add --dry-run to see what would go)",
            file=sys.stderr,
        )
        return 2
    try:
        roots = select_roots(args.only) if args.only else cache_roots() if args.all else []
        report = clear(
            roots,
            dry_run=args.dry_run,
            evict_paths=args.evict,
            drop_page_cache=args.drop_caches,
            allowed_roots=args.allow_root,
            weights_roots=args.weights_root,
        )
    except (UnknownRootError, OutsideCacheRootError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if not report.ok:
        for err in report.errors():
            print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
