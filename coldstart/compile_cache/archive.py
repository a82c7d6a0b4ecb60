"""The archive: its manifest (the entry's commit point) and its compression."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart.compile_cache.common import (
    _COPY_CHUNK_BYTES,
    COMPRESSIONS,
    FORMAT_VERSION,
    KEY_PREFIX,
    CaptureError,
    CompileCacheError,
    CorruptArchive,
    ManifestError,
)
from coldstart.compile_cache.fingerprint import Fingerprint, model_slug
from coldstart.storage import staging


@dataclass(frozen=True)
class RootLayout:
    """One cache directory inside the archive, under the top-level folder ``name``."""

    name: str  # vllm | inductor | triton
    source_dir: str  # where it was at capture (information only: restore takes new roots)
    file_count: int
    size_bytes: int  # sum of the file sizes
    files: tuple[str, ...]  # relative POSIX paths, sorted
    nested_in: str | None = None  # inside another captured root: archived as part of that one


@dataclass(frozen=True)
class CacheManifest:
    archive_name: str  # the store object name: content-addressed
    compression: str  # zstd | gzip | none
    archive_sha256: str
    size_bytes: int  # the archive's size
    file_count: int
    content_bytes: int  # sum of all file sizes: the most a restore may write
    roots: tuple[RootLayout, ...]
    created_at: str  # ISO 8601, UTC
    fingerprint: Mapping[str, Any] | None = None
    skipped: tuple[str, ...] = ()  # symlinks and special files the capture left out
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fingerprint"] = None if self.fingerprint is None else dict(self.fingerprint)
        d["fingerprint_key"] = self.fingerprint_key()
        return d

    def fingerprint_key(self) -> str | None:
        if self.fingerprint is None:
            return None
        try:
            return Fingerprint.from_dict(self.fingerprint).key()
        except (ValueError, TypeError):
            return None  # another format version's fingerprint: the manifest stays listable

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> CacheManifest:
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
            roots = tuple(
                RootLayout(
                    name=r["name"],
                    source_dir=r["source_dir"],
                    file_count=int(r["file_count"]),
                    size_bytes=int(r["size_bytes"]),
                    files=tuple(r["files"]),
                    nested_in=r.get("nested_in"),
                )
                for r in d["roots"]
            )
            manifest = cls(
                archive_name=str(d["archive_name"]),
                compression=str(d["compression"]),
                archive_sha256=str(d["archive_sha256"]),
                size_bytes=int(d["size_bytes"]),
                file_count=int(d["file_count"]),
                content_bytes=int(d["content_bytes"]),
                roots=roots,
                created_at=str(d["created_at"]),
                fingerprint=d.get("fingerprint"),
                skipped=tuple(d.get("skipped", ())),
                format_version=int(d["format_version"]),
            )
        except ManifestError:
            raise
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise ManifestError(f"not a compile-cache manifest ({type(e).__name__}: {e})") from e
        if manifest.compression not in COMPRESSIONS:
            raise ManifestError(f"unknown compression {manifest.compression!r}; known: {', '.join(COMPRESSIONS)}")
        if "/" in manifest.archive_name or not manifest.archive_name.startswith("cache-"):
            raise ManifestError(f"manifest names an archive outside its entry: {manifest.archive_name!r}")
        return manifest


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole or is as it was: a write the disk cuts short leaves no temp file behind,
    and the OSError names ``path`` (a short write names no file)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_manifest(manifest: CacheManifest, path: Path) -> None:
    _write_atomically(path, manifest.to_json())


def read_manifest(path: Path) -> CacheManifest:
    return CacheManifest.from_json(Path(path).read_bytes())


def entry_prefix(fingerprint: Fingerprint) -> str:
    """``compile-cache/<model>/<fingerprint key>/``: one entry per fingerprint."""
    return f"{KEY_PREFIX}/{model_slug(fingerprint.model_name)}/{fingerprint.key()}/"


# ----------------------------------------------------------------------------------------- compression


def _zstandard() -> Any | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def resolve_compression(requested: str = "auto") -> str:
    """ "auto": zstd when ``zstandard`` is importable (fast both ways), else gzip at level 1."""
    if requested == "auto":
        return "zstd" if _zstandard() is not None else "gzip"
    if requested not in COMPRESSIONS:
        raise CaptureError(f"unknown compression {requested!r}; valid: auto, {', '.join(COMPRESSIONS)}")
    if requested == "zstd" and _zstandard() is None:
        raise CaptureError("zstd compression needs the zstandard package (pip install zstandard)")
    return requested


@contextlib.contextmanager
def _compressing(raw: io.BufferedIOBase, compression: str) -> Iterator[io.BufferedIOBase]:
    if compression == "none":
        yield raw
    elif compression == "gzip":
        # Level 1: compile caches restore on the critical path; speed over ratio. mtime=0: stable bytes.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            yield gz
    elif compression == "zstd":
        zstd = _zstandard()
        assert zstd is not None, "resolve_compression checked this"
        with zstd.ZstdCompressor(level=3, threads=-1).stream_writer(raw, closefd=False) as writer:
            yield writer
    else:
        raise CaptureError(f"unknown compression {compression!r}")


def _decompressing(raw: io.BufferedIOBase, compression: str) -> io.BufferedIOBase:
    if compression == "none":
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        zstd = _zstandard()
        if zstd is None:
            raise CompileCacheError(
                "this archive is zstd-compressed and the zstandard package is missing here (pip install zstandard)"
            )
        return zstd.ZstdDecompressor().stream_reader(raw, closefd=False)
    raise CorruptArchive(f"unknown compression {compression!r}")


def _corrupt_stream_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile]
    zstd = _zstandard()
    if zstd is not None:
        errors.append(zstd.ZstdError)
    return tuple(errors)


class _HashingReader(io.RawIOBase):
    """Hashes the raw archive bytes as the extractor pulls them: one pass instead of hash-then-extract."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)
        if n:
            self._sha.update(memoryview(b)[:n])
            self.size_bytes += n
        return n or 0

    def drain(self) -> None:
        # The tar reader stops at the end-of-archive marker; the padding after it is part of the file.
        while chunk := self._raw.read(_COPY_CHUNK_BYTES):
            self._sha.update(chunk)
            self.size_bytes += len(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, bytes) of one file: the storage wing's hash, with the size counted on the way."""
    size_bytes = 0

    def count(n: int) -> None:
        nonlocal size_bytes
        size_bytes += n

    return staging.sha256_file(path, progress=count), size_bytes
