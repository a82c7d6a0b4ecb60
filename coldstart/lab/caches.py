"""What a cold run must not inherit from the previous one: on-disk caches and the page cache.

Each root is resolved from the environment at call time, the way the library that owns it resolves it, so
clearing follows a cache wherever an env var moved it. Clearing removes a root's contents (the folder stays:
it may be a mount point or carry permissions) and never follows a symlink found inside a root: the link is
removed, its target is not touched.

An env var can point a root anywhere (``VLLM_CACHE_ROOT=/etc``), so before anything is touched every root must
look like a cache: not a system folder, not the repo, not home or above, and under home, a temp folder or a
folder named like a cache (``--allow-root`` vouches for another). Paths are checked as written, never
resolved through a symlink: a root that is a symlink is refused, and ``--evict`` takes only paths inside a
known root (a cache, the lab's home, the local store). Clearing, evicting and dropping the page cache are each
asked for by name: ``--evict`` alone evicts and clears nothing.

Ray Serve LLM (2.57.1) has no download folder of its own: a model mirrored from S3/GCS is written to
``$HF_HUB_CACHE/models--<id>/snapshots/<hash>`` (``CloudModelAccessor._get_model_path``), so the ``hf-hub``
root covers it. Its FileLocks (``~/<id>-full.lock`` etc.) sit directly in the home folder and are left alone:
they hold no data.
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coldstart import paths

if TYPE_CHECKING:
    from rich.console import Console

DROP_CACHES_PATH = Path("/proc/sys/vm/drop_caches")
# Every variable cache_roots reads: point them all into one folder and no root is left on the real machine.
ENV_VARS = (
    "HOME", "XDG_CACHE_HOME", "TMPDIR", "TEMP", "TMP", "LOGNAME", "USER", "LNAME", "USERNAME",
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE",
    "VLLM_CACHE_ROOT", "VLLM_ASSETS_CACHE", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TRITON_HOME",
    "PYTORCH_KERNEL_CACHE_PATH", "CUDA_CACHE_PATH", "FLASHINFER_WORKSPACE_BASE", "COLDSTART_HOME",
)  # fmt: skip


class OutsideCacheRootError(ValueError):
    """A path that is not one of the known cache roots (or inside one): clearing it could destroy data."""


class CacheClearError(RuntimeError):
    """Something in a cache root could not be removed (or evicted); the message lists every failure."""


class UnknownRootError(ValueError):
    """A root name that ``cache_roots`` does not know; the message lists the valid ones."""


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
# The checkout this code runs from: a root in it (or holding it) would clear the project itself.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CacheRoot:
    name: str
    path: Path
    why: str


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


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _expand(value: str, env: Mapping[str, str]) -> Path:
    # expanduser() would read os.environ's HOME; use the mapping's so a test or a caller can move it.
    if value == "~" or value.startswith("~/"):
        return _home(env) / value[2:]
    return Path(value)


def _get(env: Mapping[str, str], *names: str) -> Path | None:
    for name in names:
        if env.get(name):
            return _expand(env[name], env)
    return None


def _xdg_cache(env: Mapping[str, str]) -> Path:
    return _get(env, "XDG_CACHE_HOME") or _home(env) / ".cache"


def _tempdir(env: Mapping[str, str]) -> Path:
    # Same precedence as tempfile.gettempdir(), read from the mapping.
    return _get(env, "TMPDIR", "TEMP", "TMP") or Path(tempfile.gettempdir())


def _user(env: Mapping[str, str]) -> str:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass.getuser()'s order
        if env.get(name):
            return env[name]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


def _inductor_default(env: Mapping[str, str]) -> Path:
    # torch._inductor.runtime.cache_dir_utils.default_cache_dir
    return _tempdir(env) / ("torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", _user(env)))


def cache_roots(env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """Every cache a cold start could otherwise reuse, where its owner would look for it now.

    vLLM, Inductor and Triton appear twice when the two differ: where the lab's engine writes them
    (``paths.engine_cache_env``: the env var, else pinned under the coldstart home) and the library default
    (what anything started outside the lab, e.g. a plain ``vllm serve``, would reuse).
    """
    env = os.environ if env is None else env
    home = _home(env)
    xdg = _xdg_cache(env)
    hf_home = _get(env, "HF_HOME") or xdg / "huggingface"
    pinned = {k: _expand(v, env) for k, v in paths.engine_cache_env(env).items()}
    # vLLM defaults VLLM_ASSETS_CACHE to XDG/vllm/assets, not VLLM_CACHE_ROOT/assets: moving one does not
    # move the other.
    vllm_assets = _get(env, "VLLM_ASSETS_CACHE") or xdg / "vllm" / "assets"
    triton_home = _get(env, "TRITON_HOME") or home
    roots = [
        CacheRoot(
            "hf-hub",
            _get(env, "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") or hf_home / "hub",
            "Hub downloads; Ray LLM also mirrors S3/GCS models here (models--<id>/snapshots/<hash>)",
        ),
        CacheRoot(
            "hf-xet",
            _get(env, "HF_XET_CACHE") or hf_home / "xet",
            "Xet chunk cache: a repeated Hub download would be served from local chunks",
        ),
        CacheRoot(
            "vllm",
            pinned["VLLM_CACHE_ROOT"],
            "VLLM_CACHE_ROOT: torch_compile_cache/ (incl. torch_aot_compile/), per-hash inductor/triton caches",
        ),
        CacheRoot("vllm-default", xdg / "vllm", "vLLM's default cache root (VLLM_CACHE_ROOT unset)"),
        CacheRoot(
            "runai-streamer",
            vllm_assets / "model_streamer",
            "config/tokenizer files vLLM pulls when the model is an s3:// or gs:// path (runai_streamer)",
        ),
        CacheRoot(
            "inductor",
            pinned["TORCHINDUCTOR_CACHE_DIR"],
            "TorchInductor FX graph / kernel cache outside vLLM's own folders",
        ),
        CacheRoot("inductor-default", _inductor_default(env), "Inductor's default: <tmp>/torchinductor_<user>"),
        CacheRoot(
            "inductor-headers",
            _inductor_default(env) / "precompiled_headers",
            "Inductor's precompiled C++ headers: always under <tmp>/torchinductor_<user>, whatever the env says",
        ),
        CacheRoot("triton", pinned["TRITON_CACHE_DIR"], "compiled Triton kernels"),
        CacheRoot(
            "triton-default", triton_home / ".triton" / "cache", "Triton's default cache (TRITON_CACHE_DIR unset)"
        ),
        CacheRoot(
            "torch-kernels",
            _get(env, "PYTORCH_KERNEL_CACHE_PATH") or xdg / "torch" / "kernels",
            "PyTorch CUDA JIT (jiterator/NVRTC) kernel cache",
        ),
        CacheRoot(
            "cuda-jit",
            _get(env, "CUDA_CACHE_PATH") or home / ".nv" / "ComputeCache",
            "the CUDA driver's PTX-to-SASS JIT cache",
        ),
        CacheRoot(
            "flashinfer",
            (_get(env, "FLASHINFER_WORKSPACE_BASE") or home) / ".cache" / "flashinfer",
            "FlashInfer JIT-compiled kernels",
        ),
        CacheRoot(
            "coldstart-models",
            _expand(str(paths.coldstart_home(env)), env) / "models",
            "local model copies at compile_cache.stable_model_path (<home>/models/<slug>): a fetched checkpoint",
        ),
    ]
    # A "-default" twin equal to its pinned root would only be listed twice.
    pinned_paths = set(pinned.values())
    return [r for r in roots if not (r.name.endswith("-default") and r.path in pinned_paths)]


def isolated_env(base: Path) -> dict[str, str | None]:
    """Env changes that move every root in ``cache_roots`` and ``data_roots`` under ``base`` (None: unset).

    HOME stays (Ray and pip read it), so the roots that default to it (Triton's, the CUDA JIT's, FlashInfer's)
    are moved by their own variables; the user name stays too, so Inductor's default moves with TMPDIR.
    For tests and throwaway labs: a clear there cannot reach the developer's caches. Create ``base/tmp``.
    """
    unset: dict[str, str | None] = {
        name: None for name in ENV_VARS if name not in ("HOME", "LOGNAME", "USER", "LNAME", "USERNAME", "TEMP", "TMP")
    }
    return {
        **unset,
        "XDG_CACHE_HOME": str(base / "xdg"),
        "TMPDIR": str(base / "tmp"),
        "TRITON_HOME": str(base / "triton-home"),
        "CUDA_CACHE_PATH": str(base / "nv" / "ComputeCache"),
        "FLASHINFER_WORKSPACE_BASE": str(base / "flashinfer-home"),
    }


def select_roots(names: Iterable[str], env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """The named roots, in the order asked; raises UnknownRootError listing the valid names."""
    by_name = {r.name: r for r in cache_roots(env)}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UnknownRootError(f"unknown cache root(s) {', '.join(unknown)}; valid roots: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def data_roots(env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """Where the lab keeps weights it may evict from the page cache but never clears: its home, a local store."""
    from coldstart.storage.store import InvalidStoreURI, parse_store_uri

    env = os.environ if env is None else env
    roots = [CacheRoot("coldstart-home", _expand(str(paths.coldstart_home(env)), env), "checkpoints, store, models")]
    uri = env.get("COLDSTART_STORE", "").strip()
    if uri:
        try:
            loc = parse_store_uri(uri)
        except InvalidStoreURI as exc:
            raise OutsideCacheRootError(f"COLDSTART_STORE: {exc}") from exc
        if loc.path is not None:
            roots.append(CacheRoot("local-store", loc.path, "the lab's local store (COLDSTART_STORE)"))
    return roots


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _absolute(path: Path, what: str) -> Path:
    """``path`` made absolute without resolving a symlink; '..' is refused, not folded.

    Folding ``a/link/..`` by hand gives ``a`` while the kernel gives the link target's parent: the check
    and the removal would disagree about which folder is meant.
    """
    if ".." in path.parts:
        raise OutsideCacheRootError(f"refusing {what} at {path}: '..' in a cache path is ambiguous next to symlinks")
    return Path(os.path.abspath(path))


def _refuse_never(what: str, path: Path, env: Mapping[str, str], *, clearing: bool = True) -> None:
    """Folders no flag makes clearable: /, home and above, system folders, shared tops, tmp, the repo.

    Evicting (``clearing`` False) destroys nothing, so only /, home and above and system folders apply.
    """
    home = _absolute(_home(env), "HOME")
    cwd = Path(os.path.abspath(os.getcwd()))
    if path == Path(path.anchor) or _is_within(home, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is /, the home folder or holds it")
    for top in _SYSTEM_DIRS:
        if _is_within(path, top) or _is_within(top, path):
            raise OutsideCacheRootError(f"refusing {what} at {path}: a system folder ({top})")
    if not clearing:
        return
    for top in _SHARED_TOPS:
        if _is_within(top, path):
            raise OutsideCacheRootError(f"refusing {what} at {path}: a shared top-level folder, not a cache")
    tmp = _absolute(_tempdir(env), "the temp folder")
    if _is_within(tmp, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is the temp folder or holds it")
    if _is_within(path, REPO_ROOT) or _is_within(REPO_ROOT, path) or _is_within(cwd, path):
        raise OutsideCacheRootError(f"refusing {what} at {path}: it is in (or holds) the repo or working folder")


def check_plausible_root(root: CacheRoot, env: Mapping[str, str], allowed: Sequence[Path] = ()) -> Path:
    """The root's absolute path, once it looks like a cache folder; else OutsideCacheRootError.

    A cache lives under home, under a temp folder or in a folder named like one (``~/.nv/ComputeCache``,
    ``/mnt/hf_cache``); a root anywhere else is cleared only when ``allowed`` (``--allow-root``) names it.
    """
    path = _absolute(root.path, f"{root.name!r}")
    what = f"{root.name!r}"
    _refuse_never(what, path, env)
    if os.path.islink(path):
        # Following it would clear wherever the link points; the env var can name the target instead.
        raise OutsideCacheRootError(
            f"refusing {what} at {path}: it is a symlink (to {os.readlink(path)}), not followed; "
            "point its env var at the target if that is the cache"
        )
    home = _absolute(_home(env), "HOME")
    temps = (_absolute(_tempdir(env), "the temp folder"), *_TEMP_TOPS)
    plausible = (
        _is_within(path, home)
        or any(_is_within(path, t) for t in temps)
        or any("cache" in part.lower() for part in path.parts[1:])
        or any(_is_within(path, _absolute(Path(a), "--allow-root")) for a in allowed)
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


def _check_inside(what: str, path: Path, known: Sequence[CacheRoot]) -> Path:
    """``path`` made absolute, after checking it lies inside a known root without crossing a symlink."""
    absolute = _absolute(path, what)
    tops = [(k, Path(os.path.abspath(k.path))) for k in known]
    inside = [(k, top) for k, top in tops if _is_within(absolute, top)]
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


def _check_evictable(path: Path, known: Sequence[CacheRoot], env: Mapping[str, str]) -> Path:
    """``path`` made absolute, once it lies inside a known root that is itself no system folder, home or /
    (``COLDSTART_HOME=/`` must not make every file evictable)."""
    absolute = _check_inside("to evict", path, known)
    _refuse_never("to evict", absolute, env, clearing=False)
    refusals = []
    for k in known:
        top = Path(os.path.abspath(k.path))
        if _is_within(absolute, top):
            try:
                _refuse_never(f"{k.name!r} as a root to evict in", top, env, clearing=False)
                return absolute
            except OutsideCacheRootError as exc:
                refusals.append(str(exc))
    raise OutsideCacheRootError("; ".join(refusals))


def _check_known(
    root: CacheRoot, known: Sequence[CacheRoot], env: Mapping[str, str], allowed: Sequence[Path] = ()
) -> Path:
    """The root's absolute path, after checking it is a known root or inside one, and a plausible cache."""
    path = _check_inside(f"to clear {root.name!r}", root.path, known)
    for k in known:
        if _is_within(path, Path(os.path.abspath(k.path))):
            check_plausible_root(k, env, allowed)
    return check_plausible_root(root, env, allowed)


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
) -> ClearReport:
    """Remove the contents of ``roots``, then evict ``evict_paths`` from the page cache.

    Every root must be a known root (``cache_roots(env)``) or inside one, and look like a cache
    (``check_plausible_root``; ``allowed_roots`` vouches for roots elsewhere); every evict path must lie inside
    a known or data root. Else OutsideCacheRootError is raised before anything is touched. Failures to remove
    are collected, not raised: the report says what is left (``ok`` False), so a caller sees every failure.
    """
    env = os.environ if env is None else env
    known = cache_roots(env)
    allowed = [Path(a) for a in allowed_roots]
    for a in allowed:
        _refuse_never("--allow-root", _absolute(a, "--allow-root"), env)
    resolved = [_check_known(root, known, env, allowed) for root in roots]
    evict_list = [Path(p) for p in evict_paths]
    if evict_list:  # data roots read COLDSTART_STORE: a clear alone must not depend on it
        evict_known = [*known, *data_roots(env), *(CacheRoot("allowed", a, "--allow-root") for a in allowed)]
        for p in evict_list:
            _check_evictable(p, evict_known, env)
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
            evict_list, drop_page_cache=drop_page_cache, dry_run=dry_run, env=env, extra_roots=allowed
        )
    return ClearReport(tuple(results), dry_run=dry_run, evict=evict)


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
        _check_evictable(top, known, env)
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
                if not any(_is_within(target, r) for r in real_roots):
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


def _human_bytes(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    value = float(size_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def print_report(report: ClearReport, console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = console or Console()
    verb = "would remove" if report.dry_run else "removed"
    if report.roots:  # an --evict-only call clears nothing: no table of roots
        table = Table(title=f"cache roots ({'dry run' if report.dry_run else 'cleared'})")
        for col in ("root", "path", "files", verb, "status"):
            table.add_column(col, justify="right" if col in ("files", verb) else "left", overflow="fold")
        for r in report.roots:
            if r.error:
                status = f"[red]FAILED: {r.error}[/red]"
            elif not r.existed:
                status = "absent"
            else:
                status = r.note or ("removed" if r.removed else "kept")
            table.add_row(r.name, str(r.path), str(r.files), _human_bytes(r.size_bytes), status)
        table.add_row("total", "", str(sum(r.files for r in report.roots)), _human_bytes(report.size_bytes), "")
        out.print(table)
    ev = report.evict
    if ev is not None:
        if ev.paths:
            out.print(
                f"page cache: {'would evict' if report.dry_run else 'evicted'} {ev.files} files, "
                f"{_human_bytes(ev.size_bytes)} under {', '.join(map(str, ev.paths))}"
            )
        for err in ev.errors:
            out.print(f"[red]evict failed: {err}[/red]")
        for skip in ev.skipped:
            out.print(f"evict skipped: {skip}")
        if ev.drop_caches is not None:
            out.print(f"drop_caches: {'done' if ev.drop_caches.done else 'not done'} ({ev.drop_caches.detail})")


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # Each action is asked for by name: a bare call, or --evict alone, clears nothing it was not told to.
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--all", action="store_true", help="clear every cache root (clear_cache.py --all --dry-run lists them)"
    )
    what.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="clear only these roots")
    parser.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    parser.add_argument(
        "--evict",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="files or folders kept on disk whose pages to drop from the page cache (e.g. a checkpoint); each "
        "must lie inside a cache root, the lab's home or its local store. Evicts only: clears no root",
    )
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="also sync and drop the whole machine's page cache (/proc/sys/vm/drop_caches) when root",
    )
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="PATH",
        type=Path,
        help="a cache folder outside home, temp folders and cache-named folders that may be cleared "
        "(e.g. HF_HOME=/mnt/nvme/hf): you vouch that it holds only caches; system folders stay refused",
    )
    return parser


def main(args: argparse.Namespace) -> int:
    """0: all cleared; 1: something could not be removed or evicted; 2: bad input."""
    if not (args.all or args.only or args.evict or args.drop_caches):
        print(
            "error: nothing to do: say --all or --only NAME... to clear, --evict PATH... to evict, "
            "--drop-caches to drop the page cache (add --dry-run to see what would go)",
            file=sys.stderr,
        )
        return 2
    try:
        roots = select_roots(args.only) if args.only else cache_roots() if args.all else []
        report = clear(
            roots,
            dry_run=args.dry_run,
            evict_paths=args.evict,
            drop_page_cache=args.drop_caches,
            allowed_roots=args.allow_root,
        )
    except (UnknownRootError, OutsideCacheRootError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if not report.ok:
        for err in report.errors():
            print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(add_cli_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()))
