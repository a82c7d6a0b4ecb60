"""Where the lab keeps things on a node. Every root is computed from the environment at call time (never
a hard-coded home), so tests, CI and a user's shell can move each one with one variable.

Two roots, one rule for every path a tool writes:

* ``coldstart_home()``: caches and weights (checkpoints, the embedded store, engine caches): ``$COLDSTART_HOME``,
  else ``coldstart/`` in the XDG cache folder.
* ``lab_dir()``: the lab's records (result rows, run logs, tables, graphs, the report, Serve YAMLs):
  ``$COLDSTART_LAB``, else the source checkout the package runs from, else ``lab/`` in the home.

A tool that writes records takes ``--out DIR`` (or its own path flag); without one it writes under these
roots, never into whatever folder it was started from.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
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


_PROJECT_NAME = "coldstart"
# The checkout this module sits in, two folders up: <checkout>/coldstart/paths.py.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def source_checkout(root: Path | None = None) -> Path | None:
    """``root`` (default: the folder that holds this package) when it is this project's source checkout (an
    editable install, or the package run from its folder), else None (an installed wheel: the folder is then
    site-packages, which holds no pyproject.toml)."""
    root = _PACKAGE_PARENT if root is None else root
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    # A pyproject.toml that does not parse, or names another project, is not this project's checkout.
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return None
    return root if project.get("name") == _PROJECT_NAME else None


def lab_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The lab's records: ``$COLDSTART_LAB``, else the source checkout (its committed ``results/`` and logs),
    else ``lab/`` in the lab's home. Never the working directory: a tool started from another folder writes
    where the last one did."""
    if env.get("COLDSTART_LAB"):
        return Path(env["COLDSTART_LAB"]).expanduser().absolute()
    checkout = source_checkout()
    return checkout if checkout is not None else coldstart_home(env) / "lab"


def results_file(env: Mapping[str, str] = os.environ) -> Path:
    """The matrix runner's rows: ``results/results.jsonl`` in the lab."""
    return lab_dir(env) / "results" / "results.jsonl"


def tables_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The analysis tables (CSV, Parquet, summary.md): beside the rows they are made from."""
    return results_file(env).parent


def graphs_dir(env: Mapping[str, str] = os.environ) -> Path:
    return lab_dir(env) / "graphs"


def report_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The static HTML report."""
    return lab_dir(env) / "report"


def experiments_dir(env: Mapping[str, str] = os.environ) -> Path:
    """One Serve YAML per (model, experiment)."""
    return lab_dir(env) / "experiments"


def output_root(env: Mapping[str, str] = os.environ) -> Path:
    """Raw run logs: ``$COLDSTART_OUTPUT``, else ``experiment_terminal_output/`` in the lab."""
    if env.get("COLDSTART_OUTPUT"):
        return Path(env["COLDSTART_OUTPUT"]).expanduser().absolute()
    return lab_dir(env) / "experiment_terminal_output"


def run_log_path(model: str, experiment: str, run_id: str, env: Mapping[str, str] = os.environ) -> Path:
    return output_root(env) / model / experiment / f"{check_run_id(run_id)}.log"


def plans_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Campaign plans (``campaigns/*.yaml``): source files, so the checkout's; the lab's without one."""
    return (source_checkout() or lab_dir(env)) / "campaigns"


def lab_relative(path: Path, env: Mapping[str, str] = os.environ) -> str:
    """How a result row stores a path: relative to the lab when inside it (the rows stay valid in a clone or a
    copy of the lab), else absolute."""
    lab = lab_dir(env)
    # As written first, then with symlinks resolved: a lab reached through a link (/tmp on macOS) still counts.
    for inside, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(lab))), (path.resolve(), lab.resolve())):
        if inside.is_relative_to(root):
            return str(inside.relative_to(root))
    return os.path.abspath(path)


def in_lab(stored: str | Path, env: Mapping[str, str] = os.environ) -> Path:
    """A path as a result row stores it (``lab_relative``), back as a file path: a relative one is in the lab."""
    return lab_dir(env) / stored  # an absolute ``stored`` stays itself
