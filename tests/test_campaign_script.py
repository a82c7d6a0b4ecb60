"""scripts/gpu/campaign.sh runs only on the lent GPU machine (CI never calls it): keep it parseable, and its
documented steps the ones it has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "campaign.sh"


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
    text = SCRIPT.read_text()
    implemented = set(re.findall(r"^\s+([a-z0-9-]+)\)$", text, re.M))
    assert implemented, "no case branches found"
    assert _documented_steps(text) == implemented


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
