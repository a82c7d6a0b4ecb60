"""Restore: fetch, verify and merge an entry into this node's engine caches (and the replica's entry point)."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.compile_cache.archive import (
    CacheManifest,
    _corrupt_stream_errors,
    _decompressing,
    _HashingReader,
    entry_prefix,
)
from coldstart.compile_cache.common import (
    _COPY_CHUNK_BYTES,
    _MAX_NEIGHBOURS,
    _STAGING_PREFIX,
    KEY_PREFIX,
    MANIFEST_NAME,
    ROOT_INDUCTOR,
    ROOT_NAMES,
    ROOT_TRITON,
    ROOT_VLLM,
    VLLM_ARCHIVED_SUBDIRS,
    CompileCacheError,
    CorruptArchive,
    ManifestError,
    RestoreConflict,
    RestoreStatus,
)
from coldstart.compile_cache.fingerprint import (
    Fingerprint,
    _describe_diff,
    _diff_dicts,
    fingerprint_for_engine,
    model_slug,
    stable_model_path,
)
from coldstart.storage.store import ObjectNotFound, Store, StoreError, open_store
from coldstart.storage.store_core import os_error_text

logger = logging.getLogger("coldstart.compile_cache")  # the name the logs and their parsers know


@dataclass(frozen=True)
class RestoreResult:
    status: RestoreStatus
    key: str  # the entry prefix that was looked up
    restore_s: float
    size_bytes: int = 0  # archive bytes fetched
    detail: str = ""
    mismatched_fields: tuple[str, ...] = ()
    file_count: int = 0  # files now in place from the archive

    @property
    def ok(self) -> bool:
        return self.status == RestoreStatus.SUCCESS


@dataclass
class _Outcome:
    # Mutable on purpose: the restore steps fill it in; RestoreResult is built from it at the end.
    status: RestoreStatus
    detail: str
    size_bytes: int = 0
    mismatched_fields: tuple[str, ...] = ()
    file_count: int = 0


def _find_near_miss(store: Store, fingerprint: Fingerprint) -> _Outcome:
    """No entry under our key: report the closest entry of the same model as MISMATCH, else DOES_NOT_EXIST."""
    model_prefix = f"{KEY_PREFIX}/{model_slug(fingerprint.model_name)}/"
    manifests = [o.key for o in store.list(model_prefix) if o.key.endswith("/" + MANIFEST_NAME)]
    if not manifests:
        return _Outcome(RestoreStatus.DOES_NOT_EXIST, f"no compile cache for {fingerprint.model_name!r}")
    want = fingerprint.to_dict()
    candidates: list[tuple[str, CacheManifest, tuple[str, ...]]] = []
    unreadable = 0
    for key in manifests[:_MAX_NEIGHBOURS]:
        try:
            m = CacheManifest.from_json(store.get_bytes(key))
        except (ManifestError, ObjectNotFound):  # torn by hand, or deleted since the listing
            unreadable += 1
            continue
        candidates.append((key, m, _diff_dicts(want, m.fingerprint or {})))
    if not candidates:
        return _Outcome(
            RestoreStatus.DOES_NOT_EXIST,
            f"{len(manifests)} entries for model {fingerprint.model_name!r}, none readable",
        )
    # Fewest differing fields wins; among equals the newest capture (ISO timestamps sort as text).
    candidates.sort(key=lambda c: c[1].created_at, reverse=True)
    key, m, fields = min(candidates, key=lambda c: len(c[2]))
    have = m.fingerprint or {}
    note = f" ({unreadable} unreadable manifests ignored)" if unreadable else ""
    return _Outcome(
        RestoreStatus.MISMATCH,
        f"entry {key.rsplit('/', 1)[0]}/ was captured under a different config: "
        f"{_describe_diff(want, have, fields)}{note}",
        mismatched_fields=fields,
    )


def _check_member(member: tarfile.TarInfo) -> tuple[str, ...]:
    name = member.name
    if not (member.isreg() or member.isdir()):
        kind = "symlink" if member.issym() else "hard link" if member.islnk() else f"type {member.type!r}"
        raise CorruptArchive(f"unsafe archive member {name!r} ({kind}): only files and directories allowed")
    parts = tuple(name.rstrip("/").split("/"))
    if name.startswith("/") or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise CorruptArchive(f"unsafe archive member {name!r}: absolute path or '..'/'.'/empty segment")
    if parts[0] not in ROOT_NAMES:
        raise CorruptArchive(f"archive member {name!r} is outside the known roots {', '.join(ROOT_NAMES)}")
    if parts[0] == ROOT_VLLM and (len(parts) < 2 or parts[1] not in VLLM_ARCHIVED_SUBDIRS):
        # The vLLM root lands in VLLM_CACHE_ROOT itself: nothing but the compile and model-info caches may go there.
        raise CorruptArchive(
            f"archive member {name!r} is outside {' and '.join(f'vllm/{d}/' for d in VLLM_ARCHIVED_SUBDIRS)}"
        )
    return parts


def _extract(archive: Path, manifest: CacheManifest, dest: Path) -> dict[str, set[str]]:
    """Stream-extract into ``dest`` (a fresh staging dir), hashing the raw bytes on the way. Returns the files
    per root. Raises CorruptArchive for anything that does not match the manifest or could escape ``dest``."""
    budget_bytes = manifest.content_bytes
    found: dict[str, set[str]] = {n: set() for n in ROOT_NAMES}
    with open(archive, "rb") as raw:
        hashing = _HashingReader(raw)
        buffered = io.BufferedReader(hashing, buffer_size=_COPY_CHUNK_BYTES)
        try:
            stream = _decompressing(buffered, manifest.compression)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    parts = _check_member(member)
                    target = dest.joinpath(*parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    if member.size > budget_bytes:
                        raise CorruptArchive(
                            f"archive holds more than the {manifest.content_bytes} bytes its manifest declares"
                        )
                    budget_bytes -= member.size
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None, "regular members always have data"
                    with open(target, "xb") as out:
                        while chunk := src.read(_COPY_CHUNK_BYTES):
                            out.write(chunk)
                    os.chmod(target, 0o644 | (member.mode & 0o111))
                    os.utime(target, (member.mtime, member.mtime))
                    found[parts[0]].add("/".join(parts[1:]))
            hashing.drain()
        except (FileExistsError, NotADirectoryError) as e:
            raise CorruptArchive(f"archive has a duplicate or conflicting member: {e}") from e
        except _corrupt_stream_errors() as e:
            raise CorruptArchive(f"archive is truncated or unreadable ({type(e).__name__}: {e})") from e
    if hashing.hexdigest() != manifest.archive_sha256:
        raise CorruptArchive(
            f"archive sha256 {hashing.hexdigest()[:16]}… does not match the manifest's {manifest.archive_sha256[:16]}…"
        )
    return found


def _verify_layout(manifest: CacheManifest, found: Mapping[str, set[str]]) -> None:
    for root in manifest.roots:
        # The vLLM root's paths are relative to VLLM_CACHE_ROOT; the others to their own dir.
        want = set(root.files)
        if found.get(root.name, set()) != want:
            missing = sorted(want - found.get(root.name, set()))[:3]
            extra = sorted(found.get(root.name, set()) - want)[:3]
            raise CorruptArchive(
                f"root {root.name!r} does not match its manifest (missing {missing}, unexpected {extra})"
            )
    unknown = {n for n, files in found.items() if files} - {r.name for r in manifest.roots}
    if unknown:
        raise CorruptArchive(f"archive has roots its manifest does not list: {sorted(unknown)}")


@dataclass
class _Journal:
    """What a restore created, so a failure can put the targets back as they were."""

    moved: list[Path] = field(default_factory=list)  # whole files/trees we moved into place
    made_dirs: list[Path] = field(default_factory=list)  # empty parents we created

    def rollback(self) -> None:
        for path in reversed(self.moved):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for path in reversed(self.made_dirs):
            # Another process may have put something into a parent we created: only remove it if empty.
            with contextlib.suppress(OSError):
                path.rmdir()


def _make_dirs(path: Path, journal: _Journal) -> None:
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # a concurrent restore made it: not ours to remove
        journal.made_dirs.append(d)


def _move_new(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` only if ``dst`` does not exist (atomically on one filesystem). False if it
    appeared meanwhile; copies through a temp sibling across filesystems."""
    try:
        if src.is_dir():
            os.rename(src, dst)  # fails if dst is a non-empty directory; an empty one is simply replaced
        else:
            os.link(src, dst)  # create-only, unlike rename
            src.unlink()
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno == errno.ENOTEMPTY:
            return False
        if e.errno != errno.EXDEV:
            raise
    tmp = dst.with_name(f".{dst.name}{_STAGING_PREFIX}{secrets.token_hex(4)}")
    try:
        if src.is_dir():
            shutil.copytree(src, tmp, symlinks=False)
        else:
            shutil.copy2(src, tmp)
        return _move_new(tmp, dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _merge_into(src: Path, dst: Path, journal: _Journal) -> int:
    """Put the tree ``src`` at ``dst``: absent paths are moved in whole (O(1) on a fresh node), existing
    directories are merged, existing files are kept (same key, same content). Returns files kept."""
    if not dst.exists() and not dst.is_symlink():
        _make_dirs(dst.parent, journal)
        if _move_new(src, dst):
            journal.moved.append(dst)
            return 0
    if dst.is_dir() and src.is_dir():
        return sum(_merge_into(child, dst / child.name, journal) for child in sorted(src.iterdir()))
    if dst.is_file() and src.is_file():
        return 1

    def kind(p: Path) -> str:
        return "directory" if p.is_dir() else "file"

    raise RestoreConflict(f"cannot restore {dst}: it is a {kind(dst)} and the archive has a {kind(src)}")


def restore(
    store: Store,
    fingerprint: Fingerprint,
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None = None,
) -> RestoreResult:
    """Put the cache captured for ``fingerprint`` in place; all or nothing.

    Extracts into a staging dir inside ``vllm_cache_root``, verifies every byte against the manifest, then
    moves the roots into place. Anything but SUCCESS leaves the target caches as they were, and is logged
    as one line saying the engine falls back to a normal compile.
    """
    start_s = time.monotonic()
    prefix = entry_prefix(fingerprint)
    try:
        outcome = _restore(
            store,
            fingerprint,
            prefix,
            Path(vllm_cache_root),
            None if inductor_cache_dir is None else Path(inductor_cache_dir),
            None if triton_cache_dir is None else Path(triton_cache_dir),
        )
    except StoreError as e:
        outcome = _Outcome(RestoreStatus.ERROR, f"store error: {e}")
    return _logged(
        RestoreResult(
            status=outcome.status,
            key=prefix,
            restore_s=time.monotonic() - start_s,
            size_bytes=outcome.size_bytes,
            detail=outcome.detail,
            mismatched_fields=outcome.mismatched_fields,
            file_count=outcome.file_count,
        )
    )


def _logged(result: RestoreResult) -> RestoreResult:
    """One line for every restore that did not happen: the operator must see why the engine compiles."""
    if result.status != RestoreStatus.SUCCESS:
        why = f"fields: {', '.join(result.mismatched_fields)}" if result.mismatched_fields else result.detail
        logger.warning("compile cache restore: %s (%s) — falling back to a normal compile", result.status, why)
    return result


def _restore(
    store: Store,
    fingerprint: Fingerprint,
    prefix: str,
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None,
) -> _Outcome:
    try:
        raw_manifest = store.get_bytes(prefix + MANIFEST_NAME)
    except ObjectNotFound:
        return _find_near_miss(store, fingerprint)
    try:
        manifest = CacheManifest.from_json(raw_manifest)
    except ManifestError as e:
        return _Outcome(RestoreStatus.CORRUPT, f"manifest {prefix}{MANIFEST_NAME}: {e}")
    want = fingerprint.to_dict()
    if fields := _diff_dicts(want, manifest.fingerprint or {}):
        # Only a hand-edited manifest or a key-scheme change lands here: the key covers every field.
        return _Outcome(
            RestoreStatus.MISMATCH,
            f"entry {prefix} holds a cache for a different config: "
            f"{_describe_diff(want, manifest.fingerprint or {}, fields)}",
            mismatched_fields=fields,
        )
    targets = {ROOT_VLLM: vllm_cache_root, ROOT_INDUCTOR: inductor_cache_dir, ROOT_TRITON: triton_cache_dir}
    journal = _Journal()
    ok = False
    staging: Path | None = None
    try:
        _make_dirs(vllm_cache_root, journal)
        # Staging beside the vLLM cache: the common case (fresh node) then commits by rename, not copy.
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=vllm_cache_root))
        archive = staging / manifest.archive_name
        try:
            store.download_file(prefix + manifest.archive_name, archive)
        except ObjectNotFound:
            return _Outcome(RestoreStatus.CORRUPT, f"the manifest names {manifest.archive_name}: missing")
        size_bytes = archive.stat().st_size
        if size_bytes != manifest.size_bytes:
            return _Outcome(
                RestoreStatus.CORRUPT,
                f"archive is {size_bytes} bytes, its manifest says {manifest.size_bytes} (truncated upload?)",
                size_bytes,
            )
        tree = staging / "tree"
        tree.mkdir()
        try:
            found = _extract(archive, manifest, tree)
            _verify_layout(manifest, found)
        except CorruptArchive as e:
            return _Outcome(RestoreStatus.CORRUPT, str(e), size_bytes)
        archive.unlink()
        notes = []
        kept = 0
        restored_files = 0
        for root in manifest.roots:
            if root.nested_in is not None or root.file_count == 0:
                continue
            target = targets[root.name]
            if target is None:
                notes.append(f"{root.name} root not restored (no target dir given)")
                continue
            src = tree / root.name
            kept += _merge_into(src, target, journal)
            restored_files += root.file_count
        notes.insert(0, f"{restored_files - kept} files restored, {kept} already present")
        ok = True
        return _Outcome(RestoreStatus.SUCCESS, "; ".join(notes), size_bytes, file_count=restored_files)
    except OSError as e:
        # A write the disk cut short names no file: name the cache it was restoring into (a full disk there).
        where = f" at {e.filename}" if e.filename else f" restoring into {vllm_cache_root}"
        return _Outcome(RestoreStatus.ERROR, f"{type(e).__name__}: {os_error_text(e)}{where}")
    except (RestoreConflict, CompileCacheError) as e:
        return _Outcome(RestoreStatus.ERROR, f"{type(e).__name__}: {e}")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            journal.rollback()


def default_cache_dirs(environ: Mapping[str, str] | None = None) -> tuple[Path, Path, Path]:
    """(VLLM_CACHE_ROOT, TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) as the lab pins them (paths.py)."""
    env = paths.engine_cache_env(os.environ if environ is None else environ)
    return Path(env["VLLM_CACHE_ROOT"]), Path(env["TORCHINDUCTOR_CACHE_DIR"]), Path(env["TRITON_CACHE_DIR"])


def restore_for_replica(
    *,
    store_uri: str,
    model_name: str,
    engine_kwargs: Mapping[str, Any],
    cache_root: str | None = None,
    model_path: str | None = None,
    endpoint_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RestoreResult:
    """The replica hook's entry point (``replica_hooks.py``): restore into this node's engine caches.

    ``cache_root`` is the engine's VLLM_CACHE_ROOT (default: the lab's pinned one); ``model_path`` the path
    the engine will be given (default: ``stable_model_path`` under the lab's home)."""
    env = os.environ if environ is None else environ
    vllm_root, inductor_dir, triton_dir = default_cache_dirs(env)
    vllm_root = Path(cache_root) if cache_root else vllm_root
    try:
        if model_path is None:
            model_path = str(stable_model_path(paths.coldstart_home(env), model_name))
        fingerprint = fingerprint_for_engine(model_name, model_path, engine_kwargs, environ=env)
    except ValueError as e:
        # Inside the replica hook: a status the hook logs beats an exception that kills the replica.
        detail = f"cannot fingerprint this engine: {e}"
        return _logged(RestoreResult(RestoreStatus.ERROR, "", 0.0, detail=detail))
    try:
        store = open_store(store_uri, endpoint_url=endpoint_url)
    except StoreError as e:
        return _logged(RestoreResult(RestoreStatus.ERROR, entry_prefix(fingerprint), 0.0, detail=f"store error: {e}"))
    return restore(store, fingerprint, vllm_root, inductor_dir, triton_dir)
