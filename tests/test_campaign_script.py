"""scripts/gpu/campaign.sh runs only on the lent GPU machine (CI never calls it): keep it parseable, its
documented steps the ones the Python plan has, and its environment reaching `python -m coldstart campaign`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coldstart.lab.campaign import STEPS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "campaign.sh"
SITE_ENV = "source /tmp/gpu-site/env.sh"


def _documented_steps(text: str) -> set[str]:
    header = []
    for line in text.splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line)
    block = re.search(r"^# steps:(.*?)^# Home:", "\n".join(header), re.M | re.S)
    assert block, "the header lists the steps after '# steps:'"
    words = re.sub(r"\(.*?\)", "", block.group(1).replace("#", " ")).split()
    return set(words)


def test_every_step_is_documented_and_every_documented_step_exists():
    assert _documented_steps(SCRIPT.read_text()) == set(STEPS)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _run_glue(tmp_path: Path, env: dict[str, str], *args: str) -> list[str]:
    """The script with its site environment swapped for an empty one and `python` for a recorder: the argv
    the lent machine's python would get."""
    text = SCRIPT.read_text()
    assert text.count(SITE_ENV) == 1
    site = tmp_path / "env.sh"
    site.write_text("")
    script = tmp_path / "campaign.sh"
    script.write_text(text.replace(SITE_ENV, f"source {site}"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorded = tmp_path / "argv"
    (bin_dir / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {recorded}\n')
    (bin_dir / "python").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("REPEATS", "CALL_BUDGET_S", "CAMPAIGN_TAG", "OUT")}
    proc = subprocess.run(
        ["bash", str(script), *args],
        env={**base, "PATH": f"{bin_dir}:{base['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return recorded.read_text().splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_hands_its_environment_to_the_python_campaign(tmp_path: Path):
    argv = _run_glue(
        tmp_path, {"REPEATS": "3", "CALL_BUDGET_S": "500", "CAMPAIGN_TAG": "s7", "OUT": "/x"}, "fast-8b", "--dry-run"
    )
    assert argv == [
        "-m", "coldstart", "campaign", "--repeats", "3", "--call-budget-s", "500", "--tag", "s7", "--out", "/x",
        "fast-8b", "--dry-run",
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_defaults_match_the_old_script(tmp_path: Path):
    argv = _run_glue(tmp_path, {}, "ladder-8b")
    assert argv == [
        "-m", "coldstart", "campaign", "--repeats", "1", "--call-budget-s", "560", "--out", "/tmp/out", "ladder-8b",
    ]  # fmt: skip
