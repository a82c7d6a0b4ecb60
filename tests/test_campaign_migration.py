"""Campaign names by date and hardware (coldstart/lab/campaign_names.py), and the recorded migration that gave
the committed rows and transcripts those names (results/migrations/, coldstart/lab/campaign/migrate.py)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coldstart.analysis.results import load_rows
from coldstart.lab.campaign.migrate import MigrationError, apply, tag_pattern
from coldstart.lab.campaign_names import campaign_name, hardware, hardware_of

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = sorted((ROOT / "results" / "migrations").glob("*.json"))
MAPPING = json.loads(MAPPINGS[0].read_text()) if MAPPINGS else {}


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "gpu,expected",
    [
        ("NVIDIA H100 80GB HBM3 x1", "h100x1"),
        ("NVIDIA H200 x2", "h200x2"),
        ("NVIDIA A100-SXM4-80GB x8", "a100x8"),
        ("NVIDIA GeForce RTX 4090 x1", "4090x1"),
        ("NVIDIA L40S", "l40sx1"),
        (None, "cpu"),
    ],
)
def test_hardware_from_the_provenance_s_gpu(gpu, expected):
    assert hardware(gpu) == expected


def test_a_name_is_the_utc_date_and_the_hardware():
    evening_in_california = datetime(2026, 11, 29, 17, 0, tzinfo=timezone(timedelta(hours=-8)))
    assert campaign_name("NVIDIA H200 x1", evening_in_california) == "2026-11-30-h200x1"
    assert hardware_of("2026-11-30-h200x2") == "h200x2" and hardware_of("demo") is None


# ---------------------------------------------------------------- the committed data


def test_every_committed_row_is_named_by_its_first_day_and_its_hardware():
    rows = load_rows(ROOT / "results" / "results.jsonl")
    first_day: dict[str, str] = {}
    for r in rows:
        if r.t_start_epoch is not None and r.campaign:
            day = datetime.fromtimestamp(r.t_start_epoch, timezone.utc).strftime("%Y-%m-%d")
            first_day[r.campaign] = min(first_day.get(r.campaign, day), day)
    named = [r for r in rows if r.campaign and hardware_of(r.campaign)]
    assert named, "the committed rows carry date-hardware names"
    for r in named:
        assert r.campaign is not None and r.provenance is not None
        assert hardware_of(r.campaign) == hardware(r.provenance.gpu), r.run_id
        assert r.campaign.startswith(first_day[r.campaign]), r.run_id
    assert not {r.campaign for r in rows} & set(MAPPING["rows"]), "an old tag is left in results.jsonl"


def test_every_migrated_row_says_whether_it_was_a_capture_run():
    old_capture_tags = [tag for tag, rule in MAPPING["rows"].items() if rule["set"]["extra.capture"]]
    assert old_capture_tags and all(tag.endswith("-miss") for tag in old_capture_tags)
    lines = [json.loads(line) for line in (ROOT / "results" / "results.jsonl").read_text().splitlines()]
    migrated = [row for row in lines if row["campaign"] in {r["set"]["campaign"] for r in MAPPING["rows"].values()}]
    assert migrated and all(isinstance(row["extra"].get("capture"), bool) for row in migrated)


def test_the_transcripts_are_where_the_mapping_puts_them():
    for move in MAPPING["files"]:
        assert (ROOT / move["to"]).is_file(), move["to"]
        assert not (ROOT / move["from"]).exists(), move["from"]
        assert f"/{move['campaign']}/" in move["to"]


def test_the_old_tags_live_only_in_the_mapping():
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    mapping_files = {str(p.relative_to(ROOT)) for p in MAPPINGS}
    tags = tag_pattern(list(MAPPING["rows"]))  # the migration's own matcher: whole tags, longest first
    hits = []
    for rel in tracked:
        path = ROOT / rel
        if not rel or rel in mapping_files or not path.is_file():
            continue
        if match := tags.search(path.read_text(errors="replace")):
            hits.append(f"{rel}: {match.group(0)}")
    assert hits == []


# ---------------------------------------------------------------- applying a mapping


def _checkout(tmp_path: Path, rows: list[dict]) -> Path:
    root = tmp_path / "checkout"
    (root / "results").mkdir(parents=True)
    (root / "results" / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    old = root / "logs" / "_old" / "s1-c1.log"
    old.parent.mkdir(parents=True)
    old.write_text(
        "== 2026-11-29T18:52:03Z step fast-8b on NVIDIA-Z9-a\n"
        "nothing to run: campaign 'NVIDIA-Z9-a-warm-miss' in /tmp/x-old.jsonl\n"
        "vLLM: NVIDIA H200 stays\n"
    )
    return root


MINI = {
    "rows": {
        "NVIDIA-Z9-a-warm": {
            "set": {"campaign": "2026-11-29-z9x1", "extra.capture": False},
            "holds": {"extra.node_state": "warm"},
        },
        "NVIDIA-Z9-a-warm-miss": {
            "set": {"campaign": "2026-11-29-z9x1", "extra.capture": True},
            "holds": {"extra.node_state": "warm"},
        },
    },
    "files": [{"from": "logs/_old/s1-c1.log", "to": "logs/2026-11-29-z9x1/01.log", "campaign": "2026-11-29-z9x1"}],
    "text": {
        "generated": [],
        "replacements": [
            {
                "pattern": "^== (\\S+) step (\\S+) on NVIDIA-[A-Za-z0-9-]+$",
                "replacement": "== \\1 campaign {campaign} step \\2",
            },
            {"pattern": "/tmp/x-old\\.jsonl", "replacement": "/tmp/x-new.jsonl"},
        ],
    },
}


def _row(run_id: str, campaign: str, node_state: str) -> dict:
    return {"run_id": run_id, "campaign": campaign, "extra": {"node_state": node_state}, "schema_version": 1}


def test_apply_renames_rows_moves_and_rewrites_transcripts_and_is_idempotent(tmp_path: Path):
    root = _checkout(
        tmp_path,
        [
            _row("a", "NVIDIA-Z9-a-warm", "warm"),
            _row("b", "NVIDIA-Z9-a-warm-miss", "warm"),
            _row("c", "demo", "cold"),
        ],
    )
    report = apply(MINI, root)
    assert report.rows_changed == 2 and report.files_moved == ["logs/2026-11-29-z9x1/01.log"]
    rows = [json.loads(line) for line in (root / "results/results.jsonl").read_text().splitlines()]
    assert [(r["campaign"], r["extra"].get("capture")) for r in rows] == [
        ("2026-11-29-z9x1", False),
        ("2026-11-29-z9x1", True),
        ("demo", None),
    ]
    assert (root / "logs/2026-11-29-z9x1/01.log").read_text() == (
        "== 2026-11-29T18:52:03Z campaign 2026-11-29-z9x1 step fast-8b\n"
        "nothing to run: campaign '2026-11-29-z9x1' in /tmp/x-new.jsonl\n"
        "vLLM: NVIDIA H200 stays\n"
    )
    assert not (root / "logs/_old").exists()
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = apply(MINI, root)
    assert (again.rows_changed, again.files_moved, again.texts_rewritten) == (0, [], [])
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_row_that_does_not_hold_what_its_tag_said_stops_the_migration_before_any_write(tmp_path: Path):
    root = _checkout(tmp_path, [_row("a", "NVIDIA-Z9-a-warm", "warm"), _row("b", "NVIDIA-Z9-a-warm-miss", "cold")])
    before = (root / "results/results.jsonl").read_text()
    with pytest.raises(MigrationError, match=r"row 'b'.*extra\.node_state is 'cold', not 'warm'"):
        apply(MINI, root)
    assert (root / "results/results.jsonl").read_text() == before
    assert (root / "logs/_old/s1-c1.log").exists()


def test_a_move_onto_an_existing_file_is_refused(tmp_path: Path):
    root = _checkout(tmp_path, [])
    (root / "logs/2026-11-29-z9x1").mkdir(parents=True)
    (root / "logs/2026-11-29-z9x1/01.log").write_text("another\n")
    with pytest.raises(MigrationError, match="exists"):
        apply(MINI, root)
