"""The page cache: evict the pages of files kept on disk (a checkpoint) with POSIX_FADV_DONTNEED, per file and
unprivileged, or drop the whole machine's page cache where the process may."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart.lab.caches.policy import check_evictable, is_within
from coldstart.lab.caches.roots import CacheRoot, cache_roots, data_roots

DROP_CACHES_PATH = Path("/proc/sys/vm/drop_caches")


@dataclass(frozen=True)
class DropCachesResult:
    done: bool
    detail: str


@dataclass(frozen=True)
class EvictReport:
    paths: tuple[Path, ...]
    files: int
    size_bytes: int
    errors: tuple[str, ...] = ()
    drop_caches: DropCachesResult | None = None
    skipped: tuple[str, ...] = ()  # symlinks whose target lies outside every known root: not opened

    @property
    def ok(self) -> bool:
        return not self.errors


def _iter_files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        # followlinks=False avoids loops; symlinked files (HF snapshots -> blobs) are opened by the caller
        # only when their target is inside a known root too.
        for dirpath, _dirs, files in os.walk(path, followlinks=False):
            for name in sorted(files):
                yield Path(dirpath) / name
    else:
        yield path


def evict_page_cache(
    paths: Iterable[os.PathLike[str] | str],
    *,
    drop_page_cache: bool = False,
    dry_run: bool = False,
    proc_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_roots: Sequence[os.PathLike[str] | str] = (),
) -> EvictReport:
    """Drop the cached pages of every file under ``paths`` (kept on disk) with POSIX_FADV_DONTNEED.

    Every path must lie inside a cache root, a data root (``data_roots``: the lab's home, a local store) or
    ``extra_roots``, else OutsideCacheRootError before any file is opened; a symlinked file whose target lies
    outside all of them is skipped (listed in ``skipped``). Works unprivileged, per file. ``drop_page_cache``
    additionally drops the whole page cache where the process may (root, writable /proc); not being allowed
    is reported, never an error.
    """
    env = os.environ if env is None else env
    known = [*cache_roots(env), *data_roots(env), *(CacheRoot("allowed", Path(a), "--allow-root") for a in extra_roots)]
    path_list = tuple(Path(p) for p in paths)
    for top in path_list:
        check_evictable(top, known, env)
    real_roots = [k.path.resolve() for k in known]
    files = size_bytes = 0
    errors: list[str] = []
    skipped: list[str] = []
    fadvise = getattr(os, "posix_fadvise", None)
    for top in path_list:
        if not top.exists():
            errors.append(f"{top}: no such file or folder to evict")
            continue
        for file in _iter_files(top):
            if file.is_symlink():
                target = file.resolve()
                if not any(is_within(target, r) for r in real_roots):
                    skipped.append(f"{file} -> {target}: outside every known root, not opened")
                    continue
            try:
                st = os.stat(file)
            except OSError as exc:
                errors.append(f"{file}: {exc}")
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            files += 1
            size_bytes += st.st_size
            if dry_run:
                continue
            if fadvise is None:
                errors.append(f"{file}: os.posix_fadvise is not available on this platform")
                continue
            try:
                fd = os.open(file, os.O_RDONLY)
                try:
                    # DONTNEED skips dirty pages; flushing first makes a freshly written checkpoint go too.
                    os.fdatasync(fd)
                    fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
            except OSError as exc:
                errors.append(f"{file}: {exc}")
    drop = None
    if drop_page_cache:
        drop = DropCachesResult(False, "dry run") if dry_run else drop_caches(proc_path)
    return EvictReport(path_list, files, size_bytes, tuple(errors), drop, tuple(skipped))


def drop_caches(proc_path: Path | None = None) -> DropCachesResult:
    """sync, then echo 3 > /proc/sys/vm/drop_caches (page cache, dentries, inodes) when allowed."""
    proc_path = DROP_CACHES_PATH if proc_path is None else proc_path
    if os.geteuid() != 0:
        return DropCachesResult(False, "not root: only the listed files were evicted")
    # drop_caches only drops clean pages; sync first so freshly written checkpoints go too.
    os.sync()
    try:
        with open(proc_path, "w") as f:
            f.write("3\n")
    except OSError as exc:
        # Containers mount /proc/sys read-only even for root.
        return DropCachesResult(False, f"cannot write {proc_path}: {exc.strerror or exc}")
    return DropCachesResult(True, f"wrote 3 to {proc_path}")
