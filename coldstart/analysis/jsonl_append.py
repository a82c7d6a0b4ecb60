"""Whole lines appended to a JSONL file that several processes write at once (two matrix runs on one results
file, an ``import-runs`` beside them), and that a full disk or a killed writer may leave torn.

The lock is a file beside the data (``results.jsonl.lock``), not the data file itself: a results file replaced
by rename (restored from a copy, rewritten by a migration) would leave two writers holding locks on two
different inodes. It is held only while a writer appends (and, for an import, reads the ids it must not add
twice), never while a cold start runs.

Under the lock a writer can also repair what it finds: a last line without its newline (a writer killed
mid-row) gets one before the new rows, so it stays a torn line of its own that readers skip instead of
swallowing the next row; and a write the disk cuts short is truncated back to where it began, so a row that
was not saved is never half in the file. Both need the lock: cutting back to the start offset without it could
cut another writer's row.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

LOCK_SUFFIX = ".lock"
_FILE_MODE = 0o644


def lock_path(path: Path) -> Path:
    """The lock file of the JSONL file ``path``: beside it, ``<name>.lock``."""
    return path.with_name(path.name + LOCK_SUFFIX)


class LockedJsonl:
    """A JSONL file whose lock this process holds (from ``locked_for_append``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, lines: Sequence[str]) -> None:
        """Append each of ``lines`` (JSON, no newline in it) as one line; all of them or none.

        Raises the OSError of a failed write with the file named in it (a write error carries no file name);
        the file then ends where it ended before."""
        if any("\n" in line for line in lines):
            raise ValueError("a JSONL line must not hold a newline")
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            if start and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                try:
                    os.ftruncate(fd, start)
                except OSError as undo:
                    exc.add_note(f"cutting {self.path} back to its {start} bytes failed too: {undo}")
                if exc.filename is None:
                    raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
                raise
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked_for_append(path: Path) -> Iterator[LockedJsonl]:
    """Hold the lock of the JSONL file ``path`` (created with its folder as needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield LockedJsonl(path)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
