"""Model folders in a store, each sealed by a manifest.

Layout: ``models/<model_name>/...`` holds a Hugging Face-format folder, ``sharded/<model_name>/tp<N>/...``
holds vLLM sharded state for tensor-parallel size N. Each folder's ``coldstart-manifest.json`` (relative
path, size, sha256 of every file) is written last and removed first on re-upload, so a folder without it is
by definition incomplete: a half-uploaded model is never mistaken for a staged one.

CLI (vLLM benchmarks style: ``add_cli_args`` + ``main``; mounted as ``python -m coldstart stage``)::

    put <model_name> --from <dir>    ls    verify <model_name> [--deep]    get <model_name> --to <dir>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import Progress

from coldstart.progress import byte_progress
from coldstart.storage.store import (
    InvalidKey,
    InvalidStoreURI,
    LocalStore,
    ObjectNotFound,
    Store,
    StoreError,
    check_key,
    default_store_uri,
    open_store,
)

MANIFEST_NAME = "coldstart-manifest.json"
MANIFEST_FORMAT = 1
_HASH_CHUNK_BYTES = 8 * 1024 * 1024
# Top-level directories that are tooling metadata, not model content: git, and the .cache/huggingface
# folder that `huggingface-cli download --local-dir` leaves behind.
_SKIPPED_TOP_DIRS = frozenset({".git", ".cache"})
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class InvalidInput(ValueError):
    """Bad user input (model name, source or destination directory); the CLI maps it to exit code 2."""


class InvalidManifest(StoreError):
    """A manifest exists but cannot be parsed or names unsafe paths."""


class IntegrityError(StoreError):
    """Downloaded bytes do not match the manifest (size or sha256)."""


# -------------------------------------------------------------------------------------------------- layout


def check_model_name(name: str) -> str:
    """A model name is one key segment (the registry decides which names exist; this only keeps keys safe)."""
    if not isinstance(name, str) or not _MODEL_NAME_RE.match(name) or name in (".", ".."):
        raise InvalidInput(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' only (no '/'), "
            "starting with a letter or digit"
        )
    return name


def model_prefix(name: str) -> str:
    return f"models/{check_model_name(name)}"


def sharded_prefix(name: str, tp: int) -> str:
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise InvalidInput(f"tensor-parallel size must be a positive integer, got {tp!r}")
    return f"sharded/{check_model_name(name)}/tp{tp}"


def manifest_key(prefix: str) -> str:
    return f"{check_key(prefix)}/{MANIFEST_NAME}"


# ------------------------------------------------------------------------------------------------ manifest


def tool_version() -> str:
    try:
        return metadata.version("coldstart")
    except metadata.PackageNotFoundError:
        # Running from a source checkout on PYTHONPATH: the manifest still records which tool wrote it.
        return "0+unknown"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, '/'-separated
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ModelManifest:
    files: tuple[FileEntry, ...]
    created_at: str  # ISO 8601 UTC
    tool_version: str
    format: int = MANIFEST_FORMAT

    @property
    def total_size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def same_files(self, other: ModelManifest) -> bool:
        return sorted(self.files, key=lambda f: f.path) == sorted(other.files, key=lambda f: f.path)

    def to_json_bytes(self) -> bytes:
        body = {
            "format": self.format,
            "tool": "coldstart",
            "tool_version": self.tool_version,
            "created_at": self.created_at,
            "total_size_bytes": self.total_size_bytes,
            "files": [{"path": f.path, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in self.files],
        }
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, data: bytes, *, source: str = "manifest") -> ModelManifest:
        """Parse and validate; the manifest comes from a store, so its paths are untrusted."""
        try:
            body = json.loads(data)
            if not isinstance(body, dict):
                raise TypeError("top level is not an object")
            if body.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unsupported format {body.get('format')!r} (this tool reads {MANIFEST_FORMAT})")
            files = []
            for item in body["files"]:
                path, size_bytes, sha = item["path"], item["size_bytes"], item["sha256"]
                check_key(path)
                if not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes < 0:
                    raise ValueError(f"bad size_bytes {size_bytes!r} for {path}")
                if not isinstance(sha, str) or not _SHA256_RE.match(sha):
                    raise ValueError(f"bad sha256 for {path}")
                files.append(FileEntry(path=path, size_bytes=size_bytes, sha256=sha))
            if len({f.path for f in files}) != len(files):
                raise ValueError("duplicate paths")
            return cls(
                files=tuple(files),
                created_at=str(body["created_at"]),
                tool_version=str(body["tool_version"]),
                format=MANIFEST_FORMAT,
            )
        except (ValueError, TypeError, KeyError, InvalidKey) as e:
            raise InvalidManifest(f"{source} is not a valid coldstart manifest: {e}") from e


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def scan_local_dir(local_dir: Path) -> list[tuple[str, Path]]:
    """(relative key, path) of every file to stage, sorted. Symlinks are followed: a Hugging Face cache
    snapshot is a tree of symlinks into blobs/, and the store must hold the bytes."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(local_dir, followlinks=True):
        here = Path(dirpath)
        if here == local_dir:
            dirnames[:] = [d for d in dirnames if d not in _SKIPPED_TOP_DIRS]
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(local_dir).as_posix()
            if rel == MANIFEST_NAME or not path.is_file():
                continue
            try:
                check_key(rel)
            except InvalidKey as e:
                raise InvalidInput(f"cannot stage {path}: {e}") from e
            out.append((rel, path))
    return out


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
        new = ModelManifest(files=tuple(entries), created_at=_utc_now_iso(), tool_version=tool_version())

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
                store.download_file(f"{prefix}/{e.path}", local, progress=on_bytes)
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


# --------------------------------------------------------------------------------------------------- CLI


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=None,
        help="store URI: s3://bucket[/prefix], file:///abs/path or a path "
        "(default: $COLDSTART_STORE, else ~/.cache/coldstart/store)",
    )
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)")


def _folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_name", help="model name (one path segment, e.g. qwen2.5-0.5b-instruct)")
    p.add_argument(
        "--tp",
        type=int,
        default=None,
        help="use the vLLM sharded-state folder for this tensor-parallel size instead of the HF folder",
    )


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=8, help="files transferred in parallel (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    put = sub.add_parser("put", help="upload a local model folder, sealed by a manifest")
    _folder_args(put)
    put.add_argument("--from", dest="from_dir", type=Path, required=True, help="local model folder")
    put.add_argument(
        "--link",
        action="store_true",
        help="a local directory store on the folder's filesystem takes hard links, not copies (one copy of a "
        "70B checkpoint on disk); the folder's files must not be rewritten in place afterwards",
    )
    _store_args(put)
    _transfer_args(put)
    ls = sub.add_parser("ls", help="list staged model folders")
    _store_args(ls)
    ver = sub.add_parser("verify", help="check a staged folder against its manifest")
    _folder_args(ver)
    ver.add_argument("--deep", action="store_true", help="also download and re-hash every file")
    ver.add_argument("--workers", type=int, default=8, help="files re-hashed in parallel (default: 8)")
    _store_args(ver)
    get = sub.add_parser("get", help="download a staged folder (sha256-checked, atomic)")
    _folder_args(get)
    get.add_argument("--to", dest="to_dir", type=Path, required=True, help="local destination folder")
    _store_args(get)
    _transfer_args(get)
    return parser


def _prefix_for(args: argparse.Namespace) -> str:
    return model_prefix(args.model_name) if args.tp is None else sharded_prefix(args.model_name, args.tp)


def _cmd_put(store: Store, args: argparse.Namespace) -> int:
    prefix = _prefix_for(args)
    r = upload_dir(
        store, prefix, args.from_dir, workers=args.workers, show_progress=not args.no_progress, link=args.link
    )
    print(
        f"staged {store.url_for(prefix)}: {len(r.manifest.files)} files, "
        f"{format_bytes(r.manifest.total_size_bytes)}; {'linked' if args.link else 'uploaded'} {r.uploaded_files} "
        f"({format_bytes(r.uploaded_bytes)}), skipped {r.skipped_files}, deleted {r.deleted_files} stale "
        f"in {r.elapsed_s:.1f}s"
    )
    return 0


def _cmd_ls(store: Store, args: argparse.Namespace) -> int:
    folders = list_staged(store)
    if not folders:
        print(f"no models staged in {store.uri}")
        return 0
    width = max(len(f.model_name) for f in folders)
    print(f"{'MODEL':<{width}}  {'LAYOUT':<6}  {'STATUS':<10}  {'FILES':>5}  SIZE")
    for f in folders:
        status = "complete" if f.complete else "incomplete"
        print(f"{f.model_name:<{width}}  {f.layout:<6}  {status:<10}  {f.files:>5}  {format_bytes(f.size_bytes)}")
    return 0


def _cmd_verify(store: Store, args: argparse.Namespace) -> int:
    report = verify(store, _prefix_for(args), deep=args.deep, workers=args.workers)
    print(f"{store.url_for(report.prefix)}: {report.summary()}")
    return 0 if report.ok else 1


def _cmd_get(store: Store, args: argparse.Namespace) -> int:
    path = download_dir(store, _prefix_for(args), args.to_dir, workers=args.workers, show_progress=not args.no_progress)
    print(path)
    return 0


_COMMANDS: dict[str, Callable[[Store, argparse.Namespace], int]] = {
    "put": _cmd_put,
    "ls": _cmd_ls,
    "verify": _cmd_verify,
    "get": _cmd_get,
}


def main(args: argparse.Namespace) -> int:
    """Run one subcommand: 0 ok, 2 bad input, 1 store error (or a failed verify)."""
    try:
        if getattr(args, "model_name", None) is not None:
            _prefix_for(args)  # reject a bad name or --tp before touching the store
        store = open_store(args.store or default_store_uri(), endpoint_url=args.endpoint_url)
        store.check()
        return _COMMANDS[args.command](store, args)
    except (InvalidInput, InvalidStoreURI, InvalidKey) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
