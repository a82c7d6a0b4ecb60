"""Apply a recorded campaign-name migration (``results/migrations/*.json``) to the checkout, idempotently.

The mapping holds three parts:

* ``rows``: old campaign tag -> ``set`` (dotted row fields and their new values) and ``holds`` (dotted row
  fields that must already carry what the old tag's suffix said, checked before any row changes: a row that
  does not hold them stops the migration, nothing written);
* ``files``: transcripts moved (``from`` -> ``to``, each with its ``campaign``);
* ``text``: regex replacements for lab-written lines in the moved transcripts (``{campaign}`` stands for the
  file's campaign) and in ``generated`` tables; every old tag in those files also becomes its campaign.

A second run changes nothing: rows already renamed match no old tag, moved files are skipped, and no pattern
matches its own replacement.

    python -m coldstart.lab.campaign.migrate results/migrations/2026-12-07-campaign-names.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldstart import paths

RESULT_FILES = ("results/results.jsonl", "results/superseded.jsonl")


class MigrationError(ValueError):
    """The mapping does not apply: a row lacks what its tag said, or a move would overwrite a file."""


@dataclass
class Report:
    rows_changed: int = 0
    files_moved: list[str] = field(default_factory=list)
    texts_rewritten: list[str] = field(default_factory=list)


def _get(row: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``a.b.0.c`` (a list index where the value is a list); a missing step gives None."""
    value: Any = row
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _set(row: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target = row
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def migrate_row(row: dict[str, Any], rules: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row with its tag's fields set; None when its campaign is no old tag (nothing to do)."""
    rule = rules.get(row.get("campaign"))  # type: ignore[arg-type]
    if rule is None:
        return None
    for dotted, expected in rule.get("holds", {}).items():
        if (got := _get(row, dotted)) != expected:
            raise MigrationError(
                f"row {row.get('run_id')!r} ({row.get('campaign')}): {dotted} is {got!r}, not {expected!r}; "
                "what its tag said would be lost"
            )
    new = json.loads(json.dumps(row))
    for dotted, value in rule["set"].items():
        _set(new, dotted, value)
    return new


def _rewrite_rows(path: Path, rules: Mapping[str, Any]) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    out, changed = [], 0
    for line in lines:
        row = json.loads(line) if line.strip() else None
        new = migrate_row(row, rules) if isinstance(row, dict) else None
        if new is None:
            out.append(line)
            continue
        # The results file's own shape: one sorted-key JSON object per line (ResultRow.to_json).
        out.append(json.dumps(new, sort_keys=True) + "\n")
        changed += 1
    if changed:
        _write(path, "".join(out))
    return changed


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def tag_pattern(tags: Sequence[str]) -> re.Pattern[str]:
    # Longest first, and whole tokens only: a tag "<x>-warm-miss" is not the tag "<x>-warm" followed by "-miss".
    alternatives = "|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9-])(?:{alternatives})(?![A-Za-z0-9-])")


def rewrite_text(text: str, campaign: str | None, mapping: Mapping[str, Any]) -> str:
    """``text`` with the mapping's replacements (first: a line they rewrite whole may hold a tag), then each
    old tag as its campaign. ``campaign``: the transcript's; None for a generated table."""
    for rep in mapping["text"]["replacements"]:
        if "{campaign}" in rep["replacement"] and campaign is None:
            continue  # a per-transcript pattern, and this is a generated table
        replacement = rep["replacement"].replace("{campaign}", campaign or "")
        text = re.sub(rep["pattern"], replacement, text, flags=re.MULTILINE)
    rules = mapping["rows"]
    if rules:
        text = tag_pattern(list(rules)).sub(lambda m: rules[m.group(0)]["set"]["campaign"], text)
    return text


def apply(mapping: Mapping[str, Any], root: Path) -> Report:
    """Apply ``mapping`` under ``root``. Checks every row and every move before it writes anything."""
    report = Report()
    rules = mapping["rows"]
    pending_rows = []
    for name in RESULT_FILES:
        path = root / name
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line) if line.strip() else None
                if isinstance(row, dict):
                    pending_rows.append(migrate_row(row, rules))  # raises before anything is written
    moves = []
    for move in mapping["files"]:
        src, dest = root / move["from"], root / move["to"]
        if src.exists() and dest.exists():
            raise MigrationError(f"cannot move {move['from']}: {move['to']} exists")
        if src.exists():
            moves.append((src, dest))
    report.rows_changed = sum(_rewrite_rows(root / name, rules) for name in RESULT_FILES)
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        report.files_moved.append(str(dest.relative_to(root)))
        if src.parent != root and not any(src.parent.iterdir()):
            src.parent.rmdir()  # an emptied folder of the old layout
    targets = [(m["to"], m["campaign"]) for m in mapping["files"]] + [(g, None) for g in mapping["text"]["generated"]]
    for rel, campaign in targets:
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text(errors="surrogateescape")
        if (new := rewrite_text(text, campaign, mapping)) != text:
            path.write_text(new, errors="surrogateescape")
            report.texts_rewritten.append(rel)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coldstart.lab.campaign.migrate", description=__doc__)
    parser.add_argument("mapping", type=Path)
    parser.add_argument(
        "--root",
        type=Path,
        default=paths.lab_dir(),
        help="the lab whose results and logs to migrate (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        report = apply(json.loads(args.mapping.read_text()), args.root)
    except (OSError, ValueError) as exc:  # MigrationError is a ValueError, as is a mapping that is not JSON
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.rows_changed} row(s) renamed, {len(report.files_moved)} file(s) moved, "
        f"{len(report.texts_rewritten)} file(s) rewritten"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
