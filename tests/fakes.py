"""Test doubles shared by several test files."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps: waits run instantly, exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def write_env_var(name: str, path: str) -> None:
    """A child process's target: write what it sees of one environment variable (importable by a forkserver)."""
    import os
    from pathlib import Path

    Path(path).write_text(os.environ.get(name, "<unset>"))
