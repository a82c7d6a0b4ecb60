"""Clearing a root removes its contents (the folder stays: it may be a mount point or carry permissions) and
never follows a symlink found inside it: the link is removed, its target is not touched."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coldstart.lab.caches.page_cache import EvictReport, evict_page_cache
from coldstart.lab.caches.policy import absolute_path, check_evictable, check_known, refuse_never
from coldstart.lab.caches.roots import CacheRoot, cache_roots, data_roots


class CacheClearError(RuntimeError):
    """Something in a cache root could not be removed (or evicted); the message lists every failure."""


@dataclass(frozen=True)
class RootResult:
    name: str
    path: Path
    existed: bool
    removed: bool  # contents gone (False in a dry run, when absent, or after an error)
    size_bytes: int  # regular-file bytes found (a dry run reports what would go)
    files: int  # non-folder entries found, symlinks included
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ClearReport:
    roots: tuple[RootResult, ...]
    dry_run: bool
    evict: EvictReport | None = None

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.roots) and (self.evict is None or self.evict.ok)

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.roots)

    def errors(self) -> list[str]:
        errs = [f"{r.name} ({r.path}): {r.error}" for r in self.roots if r.error]
        return errs + (list(self.evict.errors) if self.evict else [])

    def raise_if_failed(self) -> ClearReport:
        """For callers that cannot start a cold run on a half-cleared node: raise instead of inspecting."""
        if not self.ok:
            raise CacheClearError("caches not fully cleared: " + "; ".join(self.errors()))
        return self


@dataclass
class _Tally:
    size_bytes: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)


def _remove_entry(path: Path, tally: _Tally, dry_run: bool) -> None:
    """Remove one entry; folders depth-first. lstat throughout, so a symlink is removed, never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        tally.errors.append(f"{path}: {exc}")
        return
    if not stat.S_ISDIR(st.st_mode):
        tally.files += 1
        if stat.S_ISREG(st.st_mode):
            tally.size_bytes += st.st_size
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                tally.errors.append(f"{path}: {exc}")
        return
    try:
        children = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        tally.errors.append(f"{path}: {exc}")
        return
    for child in children:
        _remove_entry(Path(child.path), tally, dry_run)
    if not dry_run:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            tally.errors.append(f"{path}: {exc}")


def _clear_contents(folder: Path, skip: Sequence[Path], tally: _Tally, dry_run: bool) -> None:
    """Remove what is inside ``folder`` except the ``skip`` folders (other roots, cleared on their own)."""
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        tally.errors.append(f"{folder}: {exc}")
        return
    for child in children:
        path = Path(child.path)
        if path in skip:
            continue
        if child.is_dir(follow_symlinks=False) and any(path in s.parents for s in skip):
            _clear_contents(path, skip, tally, dry_run)
            continue
        _remove_entry(path, tally, dry_run)


def clear(
    roots: Sequence[CacheRoot],
    *,
    dry_run: bool = False,
    evict_paths: Iterable[os.PathLike[str] | str] = (),
    drop_page_cache: bool = False,
    env: Mapping[str, str] | None = None,
    allowed_roots: Sequence[os.PathLike[str] | str] = (),
    weights_roots: Sequence[os.PathLike[str] | str] = (),
) -> ClearReport:
    """Remove the contents of ``roots``, then evict ``evict_paths`` from the page cache.

    Every root must be a known root (``cache_roots(env)``) or inside one, and look like a cache
    (``check_plausible_root``; ``allowed_roots`` vouches for roots elsewhere); every evict path must lie inside
    a known or data root, or in ``weights_roots`` (folders of weights outside the lab, a user's own model: evicted
    in, never cleared). Else OutsideCacheRootError is raised before anything is touched. Failures to remove
    are collected, not raised: the report says what is left (``ok`` False), so a caller sees every failure.
    """
    env = os.environ if env is None else env
    known = cache_roots(env)
    allowed = [Path(a) for a in allowed_roots]
    for a in allowed:
        refuse_never("--allow-root", absolute_path(a, "--allow-root"), env)
    # Evicting destroys nothing, so a weights root is refused only where evicting is (/, home, system folders).
    weights = [Path(w) for w in weights_roots]
    for w in weights:
        refuse_never("--weights-root", absolute_path(w, "--weights-root"), env, clearing=False)
    resolved = [check_known(root, known, env, allowed) for root in roots]
    evict_list = [Path(p) for p in evict_paths]
    if evict_list:  # data roots read COLDSTART_STORE: a clear alone must not depend on it
        evict_known = [
            *known,
            *data_roots(env),
            *(CacheRoot("allowed", a, "--allow-root") for a in allowed),
            *(CacheRoot("weights", w, "--weights-root") for w in weights),
        ]
        for p in evict_list:
            check_evictable(p, evict_known, env)
    results: list[RootResult] = []
    seen: dict[Path, str] = {}
    for root, path in zip(roots, resolved, strict=True):
        if path in seen:
            results.append(RootResult(root.name, root.path, path.exists(), False, 0, 0, note=f"same as {seen[path]}"))
            continue
        seen[path] = root.name
        if not path.exists():
            results.append(RootResult(root.name, root.path, False, False, 0, 0, note="absent"))
            continue
        if not path.is_dir():
            results.append(RootResult(root.name, root.path, True, False, 0, 0, error="exists but is not a folder"))
            continue
        # A root nested in another selected root is cleared (and counted) once, as itself.
        nested = [p for p in resolved if p != path and path in p.parents]
        tally = _Tally()
        _clear_contents(path, nested, tally, dry_run)
        error = None
        if tally.errors:
            shown = "; ".join(tally.errors[:3])
            error = f"{len(tally.errors)} entries not removed: {shown}" + (" ..." if len(tally.errors) > 3 else "")
        results.append(
            RootResult(
                root.name,
                root.path,
                existed=True,
                removed=not dry_run and error is None,
                size_bytes=tally.size_bytes,
                files=tally.files,
                error=error,
                note="dry run" if dry_run else None,
            )
        )
    evict = None
    if evict_list or drop_page_cache:
        evict = evict_page_cache(
            evict_list, drop_page_cache=drop_page_cache, dry_run=dry_run, env=env, extra_roots=[*allowed, *weights]
        )
    return ClearReport(tuple(results), dry_run=dry_run, evict=evict)
