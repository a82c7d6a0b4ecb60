"""Where a campaign's commands go: subprocesses (``SubprocessExecutor``), a printer for ``--dry-run``
(``DryRunExecutor``), a recorder in the tests. Each command is its own process, so a crash ends only it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol


class Background(Protocol):
    def stop(self) -> None: ...


class Executor(Protocol):
    dry_run: bool

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        """Run to completion and return the exit status; ``discard``: "stdout", "both" or "" (nothing).
        ``env`` is added to this process's environment."""
        ...

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background: ...

    def say(self, line: str) -> None: ...


class _Process:
    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc

    def stop(self) -> None:
        # SIGTERM, then wait, so no zombie outlives the step; SIGKILL if it does not go.
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SubprocessExecutor:
    dry_run = False

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        sys.stdout.flush()  # our lines before the child's, in one captured output
        out = subprocess.DEVNULL if discard in ("stdout", "both") else None
        err = subprocess.DEVNULL if discard == "both" else None
        try:
            return subprocess.run(list(argv), env={**os.environ, **env}, stdout=out, stderr=err, check=False).returncode
        except OSError as exc:  # a missing program is that command's failure, not the campaign's end
            print(f"error: cannot run {shlex.join(argv)}: {exc}", file=sys.stderr, flush=True)
            return 127

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            return _Process(subprocess.Popen(list(argv), env={**os.environ, **env}, stdout=log, stderr=log))

    def say(self, line: str) -> None:
        print(line, flush=True)


class DryRunExecutor:
    """Prints every command it is given, runs none (each 'succeeds', so the whole plan is shown)."""

    dry_run = True

    def __init__(self, write: Callable[[str], None] = print):
        self.write = write

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        redirect = {"": "", "stdout": " >/dev/null", "both": " >/dev/null 2>&1"}[discard]
        self.write("  " + shown(argv, env) + redirect)
        return 0

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background:
        self.write(f"  {shown(argv, env)} >{log_path} 2>&1 &")
        return _NoProcess()

    def say(self, line: str) -> None:
        self.write(line)


class _NoProcess:
    def stop(self) -> None:
        pass


def shown(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The command as a shell line, its extra environment in front."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (prefix + " " if prefix else "") + shlex.join(argv)
