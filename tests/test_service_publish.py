"""service.py --publish-compile-cache: the errors a user meets before any cache exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def staged_home(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "COLDSTART_HOME": str(home), "COLDSTART_STORE": (home / "store").as_uri()}
    for args in (["checkpoint", "tiny", "--no-progress"],
                 ["stage", "put", "tiny", "--from", str(home / "checkpoints" / "tiny"), "--no-progress"]):
        subprocess.run([sys.executable, "-m", "coldstart", *args], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=300)
    return env


def _publish(env: dict[str, str], experiment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "service.py", "tiny", experiment, "--device", "cpu",
                           "--publish-compile-cache"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_publish_without_an_engine_run_says_what_to_do(staged_home):
    proc = _publish(staged_home, "compile_cache")
    assert proc.returncode == 1
    assert "no vLLM compile cache" in proc.stderr and "start the engine once" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_for_an_experiment_without_a_cache_is_bad_input(staged_home):
    proc = _publish(staged_home, "baseline")
    assert proc.returncode == 2
    assert "does not use a compile cache" in proc.stderr
