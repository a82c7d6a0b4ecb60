"""Model folders in a store, each sealed by a manifest (``coldstart.storage.manifest``): upload a local
folder, verify a staged one, download it back (sha256-checked, atomic), list what is staged.

The CLI is ``coldstart.storage.staging_cli`` (``python -m coldstart stage``). The layout and manifest names are
re-exported here: ``staging.model_prefix``, ``staging.MANIFEST_NAME`` and the rest stay importable from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import Progress

from coldstart.progress import byte_progress
from coldstart.storage.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    FileEntry,
    IntegrityError,
    InvalidInput,
    InvalidManifest,
    ModelManifest,
    check_model_name,
    manifest_key,
    model_prefix,
    scan_local_dir,
    sha256_file,
    sharded_prefix,
    tool_version,
    utc_now_iso,
)
from coldstart.storage.store import LocalStore, ObjectNotFound, Store, check_key

# ------------------------------------------------------------------------------------------------ helpers

T = TypeVar("T")
R = TypeVar("R")


def _run_parallel(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """fn over items on a thread pool; results in input order; the first failure cancels what has not started
    and is re-raised (transfers already in flight finish first)."""
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="coldstart-staging")
    futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
    try:
        for fut in as_completed(futures):
            fut.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [f.result() for f in futures]


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    progress = byte_progress(enabled=enabled)
    with progress:
        yield progress


def _advance(progress: Progress, task_id: Any) -> Callable[[int], None]:
    # rich's Progress.update takes its own lock, so transfer threads may call this concurrently.
    return lambda n: progress.update(task_id, advance=n)


def _try_read_manifest(store: Store, prefix: str) -> ModelManifest | None:
    try:
        return read_manifest(store, prefix)
    except ObjectNotFound:
        return None
    except InvalidManifest:
        # A corrupt manifest seals nothing; the upload that follows replaces it.
        return None


# ---------------------------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class UploadResult:
    manifest: ModelManifest
    uploaded_files: int
    skipped_files: int
    deleted_files: int  # objects under the prefix that are no longer in the local folder
    uploaded_bytes: int
    elapsed_s: float


def upload_dir(
    store: Store,
    prefix: str,
    local_dir: Path,
    *,
    workers: int = 8,
    show_progress: bool = True,
    link: bool = False,
) -> UploadResult:
    """Make ``prefix`` in the store mirror ``local_dir``, then seal it with a manifest written last.

    Files whose (size, sha256) already match a complete manifest, and whose object is present with that
    size, are skipped. Objects under the prefix that are not in ``local_dir`` are deleted: a stale extra
    safetensors shard would be loaded by anything that lists the prefix. ``link``: a local directory store on
    the folder's filesystem takes hard links instead of copies (``LocalStore.link_file``).
    """
    start_s = time.monotonic()
    local_dir = Path(local_dir)
    check_key(prefix)
    if link and not isinstance(store, LocalStore):
        raise InvalidInput(f"--link needs a local directory store, not {store.uri}")
    if not local_dir.is_dir():
        raise InvalidInput(f"source {local_dir} is not a directory")
    files = scan_local_dir(local_dir)
    if not files:
        raise InvalidInput(f"source {local_dir} has no files to upload")
    mkey = manifest_key(prefix)
    total_bytes = sum(p.stat().st_size for _, p in files)

    with _progress(show_progress) as progress:
        hash_task = progress.add_task("hashing", total=total_bytes)
        on_hash = _advance(progress, hash_task)

        def entry(item: tuple[str, Path]) -> FileEntry:
            rel, path = item
            size_bytes = path.stat().st_size
            return FileEntry(path=rel, size_bytes=size_bytes, sha256=sha256_file(path, on_hash))

        entries = _run_parallel(entry, files, workers)
        new = ModelManifest(files=tuple(entries), created_at=utc_now_iso(), tool_version=tool_version())

        old = _try_read_manifest(store, prefix)
        remote = {o.key: o.size_bytes for o in store.list(prefix + "/")}
        old_by_path = {f.path: f for f in old.files} if old else {}
        wanted = {f"{prefix}/{e.path}" for e in entries}
        todo = [e for e in entries if old_by_path.get(e.path) != e or remote.get(f"{prefix}/{e.path}") != e.size_bytes]
        stale = sorted(k for k in remote if k not in wanted and k != mkey)

        if old is not None and not todo and not stale and old.same_files(new):
            return UploadResult(
                manifest=old,
                uploaded_files=0,
                skipped_files=len(entries),
                deleted_files=0,
                uploaded_bytes=0,
                elapsed_s=time.monotonic() - start_s,
            )

        # Unseal before touching any file: from here until the new manifest lands the folder is incomplete,
        # never "complete with a mix of old and new files".
        if mkey in remote or old is not None:
            store.delete(mkey)

        upload_bytes = sum(e.size_bytes for e in todo)
        up_task = progress.add_task("uploading", total=upload_bytes)
        on_upload = _advance(progress, up_task)
        paths = dict(files)

        def upload(e: FileEntry) -> None:
            if link:
                assert isinstance(store, LocalStore)
                store.link_file(paths[e.path], f"{prefix}/{e.path}")
                on_upload(e.size_bytes)
            else:
                store.upload_file(paths[e.path], f"{prefix}/{e.path}", progress=on_upload)

        _run_parallel(upload, todo, workers)
        for key in stale:
            store.delete(key)
        store.put_bytes(mkey, new.to_json_bytes())

    return UploadResult(
        manifest=new,
        uploaded_files=len(todo),
        skipped_files=len(entries) - len(todo),
        deleted_files=len(stale),
        uploaded_bytes=upload_bytes,
        elapsed_s=time.monotonic() - start_s,
    )


def read_manifest(store: Store, prefix: str) -> ModelManifest:
    mkey = manifest_key(prefix)
    try:
        data = store.get_bytes(mkey)
    except ObjectNotFound as e:
        raise ObjectNotFound(
            f"{store.url_for(prefix)} is not staged: no {MANIFEST_NAME} (never uploaded, or the upload did not "
            "finish): run `python -m coldstart stage put` again"
        ) from e
    return ModelManifest.from_json_bytes(data, source=store.url_for(mkey))


def is_complete(store: Store, prefix: str) -> bool:
    """True when the folder is sealed by a readable manifest (cheap: one small read, no hashing)."""
    return _try_read_manifest(store, prefix) is not None


@dataclass(frozen=True)
class VerifyReport:
    prefix: str
    deep: bool
    checked_files: int
    missing: tuple[str, ...] = ()
    size_mismatch: tuple[str, ...] = ()
    hash_mismatch: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()  # objects under the prefix the manifest does not list

    @property
    def ok(self) -> bool:
        return not (self.missing or self.size_mismatch or self.hash_mismatch or self.extra)

    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.checked_files} files match the manifest{' (sha256 re-checked)' if self.deep else ''}"
        parts = [
            f"{name}: {', '.join(vals)}"
            for name, vals in (
                ("missing", self.missing),
                ("wrong size", self.size_mismatch),
                ("wrong sha256", self.hash_mismatch),
                ("not in manifest", self.extra),
            )
            if vals
        ]
        return "FAILED: " + "; ".join(parts)


def verify(store: Store, prefix: str, *, deep: bool = False, workers: int = 8) -> VerifyReport:
    """Every manifest file present with the right size; ``deep`` also downloads and re-hashes each one."""
    manifest = read_manifest(store, prefix)
    mkey = manifest_key(prefix)
    remote = {o.key: o.size_bytes for o in store.list(prefix + "/")}
    missing, size_mismatch, present = [], [], []
    for e in manifest.files:
        size_bytes = remote.get(f"{prefix}/{e.path}")
        if size_bytes is None:
            missing.append(e.path)
        elif size_bytes != e.size_bytes:
            size_mismatch.append(e.path)
        else:
            present.append(e)
    listed = {f"{prefix}/{e.path}" for e in manifest.files} | {mkey}
    extra = sorted(k[len(prefix) + 1 :] for k in remote if k not in listed)

    hash_mismatch: list[str] = []
    if deep and present:
        with tempfile.TemporaryDirectory(prefix="coldstart-verify-") as tmp:

            def rehash(e: FileEntry) -> bool:
                local = Path(tmp) / uuid.uuid4().hex
                store.download_file(f"{prefix}/{e.path}", local)
                try:
                    return sha256_file(local) == e.sha256
                finally:
                    local.unlink()

            matches = _run_parallel(rehash, present, workers)
            hash_mismatch = [e.path for e, good in zip(present, matches, strict=True) if not good]

    return VerifyReport(
        prefix=prefix,
        deep=deep,
        checked_files=len(manifest.files),
        missing=tuple(missing),
        size_mismatch=tuple(size_mismatch),
        hash_mismatch=tuple(hash_mismatch),
        extra=tuple(extra),
    )


def _local_copy_matches(dest: Path, manifest: ModelManifest) -> bool:
    """dest is a finished download of this manifest. Sizes only: sha256 was checked when dest was written."""
    try:
        local = ModelManifest.from_json_bytes((dest / MANIFEST_NAME).read_bytes(), source=str(dest))
    except (OSError, InvalidManifest):
        return False
    if not local.same_files(manifest):
        return False
    for e in manifest.files:
        path = dest.joinpath(*e.path.split("/"))
        if not path.is_file() or path.stat().st_size != e.size_bytes:
            return False
    return True


def download_dir(store: Store, prefix: str, dest: Path, *, workers: int = 8, show_progress: bool = True) -> Path:
    """Download a sealed folder to ``dest`` (checking every sha256) and return dest's absolute path.

    The files land in ``<dest>.tmp-*`` and are renamed into place at the end, so ``dest`` is either absent,
    the previous copy, or complete. A ``dest`` that already matches the manifest is left alone. A non-empty
    ``dest`` that is not a coldstart download is refused rather than replaced.
    """
    manifest = read_manifest(store, prefix)
    dest = Path(dest).expanduser().absolute()
    if _local_copy_matches(dest, manifest):
        return dest
    if dest.exists():
        if not dest.is_dir():
            raise InvalidInput(f"destination {dest} exists and is not a directory")
        if any(dest.iterdir()) and not (dest / MANIFEST_NAME).is_file():
            raise InvalidInput(
                f"destination {dest} is a non-empty directory that is not a coldstart download; "
                "refusing to replace it (choose an empty or new directory)"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
    try:
        with _progress(show_progress) as progress:
            task = progress.add_task("downloading", total=manifest.total_size_bytes)
            on_bytes = _advance(progress, task)

            def fetch(e: FileEntry) -> None:
                local = tmp.joinpath(*e.path.split("/"))
                try:
                    store.download_file(f"{prefix}/{e.path}", local, progress=on_bytes)
                except OSError as exc:
                    # The local side (a full disk): a write cut short names no file, so name the one it was.
                    if exc.filename is None and exc.errno is not None:
                        raise OSError(exc.errno, exc.strerror, str(local)) from exc
                    raise
                size_bytes = local.stat().st_size
                if size_bytes != e.size_bytes:
                    raise IntegrityError(
                        f"{store.url_for(prefix)}/{e.path}: got {size_bytes} bytes, manifest "
                        f"says {e.size_bytes}; the store copy is damaged, stage it again"
                    )
                if sha256_file(local) != e.sha256:
                    raise IntegrityError(
                        f"{store.url_for(prefix)}/{e.path}: sha256 does not match the manifest; "
                        "the store copy is damaged, stage it again"
                    )

            _run_parallel(fetch, manifest.files, workers)
        (tmp / MANIFEST_NAME).write_bytes(manifest.to_json_bytes())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _move_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _move_into_place(tmp: Path, dest: Path) -> None:
    try:
        # rename(2) replaces a missing or empty directory atomically.
        os.rename(tmp, dest)
        return
    except OSError:
        if not dest.exists():
            raise
    # A previous (stale) download is in the way: two renames, a short window with dest absent.
    old = dest.with_name(f"{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class StagedFolder:
    model_name: str
    layout: str  # "model" or "tp<N>"
    prefix: str
    complete: bool
    files: int
    size_bytes: int


def list_staged(store: Store) -> list[StagedFolder]:
    """Every model folder and sharded-state folder in the store, complete or not."""
    groups: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for obj in store.list("models/"):
        parts = obj.key.split("/", 2)
        if len(parts) == 3:
            groups.setdefault((parts[1], "model", f"models/{parts[1]}"), []).append((parts[2], obj.size_bytes))
    for obj in store.list("sharded/"):
        parts = obj.key.split("/", 3)
        if len(parts) == 4:
            prefix = f"sharded/{parts[1]}/{parts[2]}"
            groups.setdefault((parts[1], parts[2], prefix), []).append((parts[3], obj.size_bytes))
    out = []
    for (name, layout, prefix), objs in sorted(groups.items()):
        content = [(rel, size) for rel, size in objs if rel != MANIFEST_NAME]
        out.append(
            StagedFolder(
                model_name=name,
                layout=layout,
                prefix=prefix,
                complete=any(rel == MANIFEST_NAME for rel, _ in objs),
                files=len(content),
                size_bytes=sum(size for _, size in content),
            )
        )
    return out


def format_bytes(size_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size_bytes) < 1024:
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024
    return f"{size_bytes:.1f} TiB"


__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "FileEntry",
    "IntegrityError",
    "InvalidInput",
    "InvalidManifest",
    "ModelManifest",
    "StagedFolder",
    "UploadResult",
    "VerifyReport",
    "check_model_name",
    "download_dir",
    "format_bytes",
    "is_complete",
    "list_staged",
    "manifest_key",
    "model_prefix",
    "read_manifest",
    "scan_local_dir",
    "sha256_file",
    "sharded_prefix",
    "tool_version",
    "upload_dir",
    "verify",
]
