"""A staged folder's layout and its seal: where a model lives in a store, and the manifest that proves it is
complete.

Layout: ``models/<model_name>/...`` holds a Hugging Face-format folder, ``sharded/<model_name>/tp<N>/...``
holds vLLM sharded state for tensor-parallel size N. Each folder's ``coldstart-manifest.json`` (relative
path, size, sha256 of every file) is written last and removed first on re-upload, so a folder without it is
by definition incomplete: a half-uploaded model is never mistaken for a staged one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from coldstart.storage.store import InvalidKey, StoreError, check_key

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


def utc_now_iso() -> str:
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
