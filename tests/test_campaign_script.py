"""scripts/gpu/campaign.sh, the GPU machine's adapter around `python -m coldstart campaign` (CI never runs it on
that machine): it parses, hands the plan and its budget to the campaign, brings compile caches into the local
store and hands back the runs and only the entries published on the machine."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "campaign.sh"
SITE_ENV = "source /tmp/gpu-site/env.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash, tar")


def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# The campaign, played: record its argv, publish one compile-cache entry (its manifest names cache-new; an
# older archive beside it is not named), leave a runs.tgz, exit with $FAKE_STATUS. Other python calls (the
# script reads a manifest with `python -c`) go to the real interpreter.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ]; then
  printf '%s\\n' "$@" > "$RECORDED"
  entry="$COLDSTART_HOME/store/compile-cache/tiny/0123456789abcdef"
  mkdir -p "$entry" "$COLDSTART_HOME/campaigns/tiny-smoke"
  printf 'new' > "$entry/cache-new.tar.gz"
  printf 'old' > "$entry/cache-old.tar.gz"
  printf '{"archive_name": "cache-new.tar.gz"}' > "$entry/manifest.json"
  printf 'runs' > "$COLDSTART_HOME/campaigns/tiny-smoke/runs.tgz"
  exit "${FAKE_STATUS:-0}"
fi
exec REAL_PYTHON "$@"
"""


def _brought_entry(checkout: Path) -> None:
    """.gpu/cc-store/ with one entry another machine published (its files days old, as tar keeps them)."""
    folder = checkout / ".gpu" / "cc-store"
    folder.mkdir(parents=True)
    old = time.time() - 3 * 86400
    with tarfile.open(folder / "cc-tiny-fedcba9876543210.tgz", "w:gz") as tar:
        for name, body in (("manifest.json", b'{"archive_name": "cache-b.tar.gz"}'), ("cache-b.tar.gz", b"b")):
            info = tarfile.TarInfo(f"compile-cache/tiny/fedcba9876543210/{name}")
            info.size, info.mtime = len(body), int(old)
            tar.addfile(info, io.BytesIO(body))


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    text = SCRIPT.read_text()
    assert text.count(SITE_ENV) == 1
    (tmp_path / "env.sh").write_text("")
    script = tmp_path / "campaign.sh"
    script.write_text(text.replace(SITE_ENV, f"source {tmp_path / 'env.sh'}"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(FAKE_PYTHON.replace("REAL_PYTHON", sys.executable))
    (bin_dir / "python").chmod(0o755)
    checkout = tmp_path / "checkout"
    checkout.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("BUDGET_S", "COLDSTART_HOME", "FAKE_STATUS")}
    proc = subprocess.run(
        ["bash", str(script), *args],
        cwd=checkout,
        env={
            **base,
            "PATH": f"{bin_dir}:{base['PATH']}",
            "RECORDED": str(tmp_path / "argv"),
            "COLDSTART_GIT_COMMIT": "0" * 40,
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    recorded = tmp_path / "argv"  # what the fake python was asked to run (absent: nothing ran)
    return proc, recorded.read_text().splitlines() if recorded.exists() else []


def test_the_plan_and_a_budget_reach_the_campaign(tmp_path: Path):
    home = tmp_path / "home"
    proc, argv = _run(tmp_path, {"COLDSTART_HOME": str(home)}, str(tmp_path / "back"), "tiny-smoke", "fast-tiny")
    assert proc.returncode == 0, proc.stderr
    assert argv == ["-m", "coldstart", "campaign", "tiny-smoke", "fast-tiny", "--budget-s", "560", "--stop-stale-ray"]
    _, argv = _run(
        tmp_path, {"COLDSTART_HOME": str(home), "BUDGET_S": "300"}, str(tmp_path / "back"), "tiny-smoke", "--dry-run"
    )
    assert argv[-4:] == ["--dry-run", "--budget-s", "300", "--stop-stale-ray"]


def test_caches_come_in_and_only_entries_published_here_go_back_with_the_runs(tmp_path: Path):
    home, back = tmp_path / "home", tmp_path / "back"
    _brought_entry(tmp_path / "checkout")
    proc, _ = _run(tmp_path, {"COLDSTART_HOME": str(home), "FAKE_STATUS": "1"}, str(back), "tiny-smoke")
    assert proc.returncode == 1  # the campaign's status, after the files were handed back
    assert (home / "store/compile-cache/tiny/fedcba9876543210/cache-b.tar.gz").read_text() == "b"
    assert sorted(p.name for p in back.iterdir()) == ["cc-tiny-0123456789abcdef.tgz", "runs-tiny-smoke.tgz"]
    with tarfile.open(back / "cc-tiny-0123456789abcdef.tgz") as tar:
        assert sorted(tar.getnames()) == [
            "compile-cache/tiny/0123456789abcdef/cache-new.tar.gz",
            "compile-cache/tiny/0123456789abcdef/manifest.json",
        ]


def test_a_command_without_the_trees_commit_is_refused(tmp_path: Path):
    # The copied tree's .git is stale on the GPU machine: rows would name the wrong commit.
    proc, argv = _run(tmp_path, {"COLDSTART_GIT_COMMIT": ""}, "plan")
    assert proc.returncode == 2 and "COLDSTART_GIT_COMMIT" in proc.stderr
    assert argv == []
