"""Where the lab keeps things on a node. Every root is computed from the environment at call time (never
a hard-coded home), so tests, CI and a user's shell can move each one with one variable."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path


def coldstart_home(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("COLDSTART_HOME"):
        return Path(env["COLDSTART_HOME"])
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "coldstart"


def engine_cache_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The compile-cache roots the engine uses, pinned under the lab's home unless the user set them.

    Pinning them lets the service (which hands them to the replica), clear_cache and the compile-cache
    capture agree on one set of directories, instead of each guessing the defaults of vLLM, Inductor and
    Triton (Inductor's default even depends on the user name and the temp dir).
    """
    root = coldstart_home(env) / "engine-cache"
    defaults = {
        "VLLM_CACHE_ROOT": root / "vllm",
        "TORCHINDUCTOR_CACHE_DIR": root / "inductor",
        "TRITON_CACHE_DIR": root / "triton",
    }
    return {k: env.get(k) or str(v) for k, v in defaults.items()}


def apply_engine_cache_env() -> dict[str, str]:
    pinned = engine_cache_env()
    os.environ.update(pinned)
    return pinned


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """A run id names files (``<run_id>.log``): one path segment of safe characters, never ``..``."""
    if not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-' only, no '..', no '/'")
    return run_id


def output_root(env: Mapping[str, str] = os.environ) -> Path:
    """Raw logs: ``experiment_terminal_output/`` in the working directory unless moved."""
    return Path(env.get("COLDSTART_OUTPUT", "experiment_terminal_output"))


def run_log_path(model: str, experiment: str, run_id: str, env: Mapping[str, str] = os.environ) -> Path:
    return output_root(env) / model / experiment / f"{check_run_id(run_id)}.log"
