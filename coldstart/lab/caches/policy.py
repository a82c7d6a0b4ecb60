"""Which roots may be cleared and which paths evicted: before anything is touched, every root must look like a
cache (not a system folder, not the repo, not home or above) and every path lie inside a known root, checked
as written, never resolved through a symlink."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from coldstart import paths
from coldstart.lab.caches.roots import CacheRoot, OutsideCacheRootError, home_folder, temp_folder

# A root inside one of these, or holding one, would clear part of the system.
_SYSTEM_DIRS = tuple(
    Path(p)
    for p in ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys")
)
# Shared top-level folders: something inside may be a cache (/var/cache/x, /mnt/disk/hf_cache), they never are.
_SHARED_TOPS = tuple(
    Path(p)
    for p in ("/var", "/var/tmp", "/opt", "/srv", "/home", "/root", "/mnt", "/media", "/run", "/snap", "/tmp", "/data")
)
_TEMP_TOPS = (Path("/tmp"), Path("/var/tmp"))
# The checkout this code runs from (paths.source_checkout): a root in it (or holding it) would clear the project
# itself. An installed wheel has none; the site-packages folder it sits in is as much off limits.
REPO_ROOT = paths.source_checkout() or Path(paths.__file__).resolve().parent.parent


def is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def absolute_path(path: Path, what: str) -> Path:
    """``path`` made absolute without resolving a symlink; '..' is refused, not folded.

    Folding ``a/link/..`` by hand gives ``a`` while the kernel gives the link target's parent: the check
    and the removal would disagree about which folder is meant.
    """
    if ".." in path.parts:
        raise OutsideCacheRootError(f"refusing {what} at {path}: '..' in a cache path is ambiguous next to symlinks")
    return Path(os.path.abspath(path))


def refuse_never(what: str, path: Path, env: Mapping[str, str], *, clearing: bool = True) -> None:
    """Folders no flag makes clearable: /, home and above, system folders, shared tops, tmp, the repo.

    Evicting (``clearing`` False) destroys nothing, so only /, home and above and system folders apply.
    """
    home = absolute_path(home_folder(env), "HOME")
    cwd = Path(os.path.abspath(os.getcwd()))
    if path == Path(path.anchor) or is_within(home, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is /, the home folder or holds it")
    for top in _SYSTEM_DIRS:
        if is_within(path, top) or is_within(top, path):
            raise OutsideCacheRootError(f"refusing {what} at {path}: a system folder ({top})")
    if not clearing:
        return
    for top in _SHARED_TOPS:
        if is_within(top, path):
            raise OutsideCacheRootError(f"refusing {what} at {path}: a shared top-level folder, not a cache")
    tmp = absolute_path(temp_folder(env), "the temp folder")
    if is_within(tmp, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is the temp folder or holds it")
    if is_within(path, REPO_ROOT) or is_within(REPO_ROOT, path) or is_within(cwd, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is in (or holds) the repo or working folder")


def check_plausible_root(root: CacheRoot, env: Mapping[str, str], allowed: Sequence[Path] = ()) -> Path:
    """The root's absolute path, once it looks like a cache folder; else OutsideCacheRootError.

    A cache lives under home, under a temp folder or in a folder named like one (``~/.nv/ComputeCache``,
    ``/mnt/hf_cache``); a root anywhere else is cleared only when ``allowed`` (``--allow-root``) names it.
    """
    path = absolute_path(root.path, f"{root.name!r}")
    what = f"{root.name!r}"
    refuse_never(what, path, env)
    if os.path.islink(path):
        # Following it would clear wherever the link points; the env var can name the target instead.
        raise OutsideCacheRootError(
            f"refusing {what} at {path}: it is a symlink (to {os.readlink(path)}), not followed; "
            "point its env var at the target if that is the cache"
        )
    home = absolute_path(home_folder(env), "HOME")
    temps = (absolute_path(temp_folder(env), "the temp folder"), *_TEMP_TOPS)
    plausible = (
        is_within(path, home)
        or any(is_within(path, t) for t in temps)
        or any("cache" in part.lower() for part in path.parts[1:])
        or any(is_within(path, absolute_path(Path(a), "--allow-root")) for a in allowed)
    )
    if not plausible:
        raise OutsideCacheRootError(
            f"refusing {what} at {path}: not under home, a temp folder or a folder named like a cache; "
            f"if it is a cache, say so with --allow-root {path}"
        )
    return path


def _symlink_between(top: Path, path: Path) -> Path | None:
    """The first symlink on the way from ``top`` (inclusive) down to ``path`` (inclusive), if any."""
    step = top
    for part in (None, *path.relative_to(top).parts):
        step = top if part is None else step / part
        if os.path.islink(step):
            return step
    return None


def check_inside(what: str, path: Path, known: Sequence[CacheRoot]) -> Path:
    """``path`` made absolute, after checking it lies inside a known root without crossing a symlink."""
    absolute = absolute_path(path, what)
    tops = [(k, Path(os.path.abspath(k.path))) for k in known]
    inside = [(k, top) for k, top in tops if is_within(absolute, top)]
    if not inside:
        raise OutsideCacheRootError(
            f"refusing {what} at {path}: not inside a known cache root "
            f"({', '.join(f'{k.name}={top}' for k, top in tops)})"
        )
    for _k, top in inside:
        link = _symlink_between(top, absolute)
        if link is not None:
            raise OutsideCacheRootError(f"refusing {what} at {path}: {link} is a symlink, not followed")
    return absolute


def check_evictable(path: Path, known: Sequence[CacheRoot], env: Mapping[str, str]) -> Path:
    """``path`` made absolute, once it lies inside a known root that is itself no system folder, home or /
    (``COLDSTART_HOME=/`` must not make every file evictable)."""
    absolute = check_inside("to evict", path, known)
    refuse_never("to evict", absolute, env, clearing=False)
    refusals = []
    for k in known:
        top = Path(os.path.abspath(k.path))
        if is_within(absolute, top):
            try:
                refuse_never(f"{k.name!r} as a root to evict in", top, env, clearing=False)
                return absolute
            except OutsideCacheRootError as exc:
                refusals.append(str(exc))
    raise OutsideCacheRootError("; ".join(refusals))


def check_known(
    root: CacheRoot, known: Sequence[CacheRoot], env: Mapping[str, str], allowed: Sequence[Path] = ()
) -> Path:
    """The root's absolute path, after checking it is a known root or inside one, and a plausible cache."""
    path = check_inside(f"to clear {root.name!r}", root.path, known)
    for k in known:
        if is_within(path, Path(os.path.abspath(k.path))):
            check_plausible_root(k, env, allowed)
    return check_plausible_root(root, env, allowed)
