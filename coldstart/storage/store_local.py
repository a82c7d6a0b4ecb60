"""A local directory as a store (the embedded default): every write lands in a temp file beside its target
and is renamed into place, so a reader never sees a torn file."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from coldstart.storage.store_core import (
    TMP_MARK,
    BucketNotFound,
    CredentialsError,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    check_key,
    check_prefix,
    copy_stream,
    os_error_text,
    temp_beside,
)


class LocalStore:
    """A directory as a store. Writers go through a temp file + os.replace, so readers never see a torn file."""

    def __init__(self, root: Path) -> None:
        root = Path(root).expanduser()
        self.root = root if root.is_absolute() else root.absolute()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def _errors(self, op: str, key: str | None) -> Iterator[None]:
        where = f"{self.uri}/{key}" if key else self.uri
        try:
            yield
        except StoreError:
            raise
        except FileNotFoundError as e:
            raise ObjectNotFound(f"{where} not found in store ({op})") from e
        except PermissionError as e:
            raise CredentialsError(f"permission denied for {op} on {where}: {e.strerror}") from e
        except OSError as e:
            raise StoreError(f"local store {op} failed on {where}: {os_error_text(e)}") from e

    def check(self) -> None:
        # A store directory that does not exist yet is an empty store: the first write creates it.
        if self.root.exists():
            if not self.root.is_dir():
                raise BucketNotFound(f"store path {self.root} exists but is not a directory")
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise CredentialsError(f"permission denied: cannot read store directory {self.root}")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = check_prefix(prefix)
        # S3 semantics: a plain string prefix, so "models/a" also matches "models/ab/x". Only the directory
        # part of the prefix narrows the walk.
        dir_part = prefix.rpartition("/")[0]
        base = self.root.joinpath(*dir_part.split("/")) if dir_part else self.root
        out: list[ObjectInfo] = []
        with self._errors("list", prefix):
            if not base.is_dir():
                return []
            for dirpath, _dirnames, filenames in os.walk(base):
                for name in filenames:
                    if TMP_MARK in name:
                        continue
                    path = Path(dirpath, name)
                    key = path.relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        size_bytes = path.stat().st_size
                    except FileNotFoundError:
                        # Deleted by a concurrent writer between walk and stat: it is simply not there.
                        continue
                    out.append(ObjectInfo(key=key, size_bytes=size_bytes))
        return sorted(out, key=lambda o: o.key)

    def upload_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> None:
        target = self._path(key)
        with open(local, "rb") as src, self._errors("upload", key), temp_beside(target) as (dst, tmp):
            copy_stream(src, dst, progress)
            dst.close()
            os.replace(tmp, target)

    def link_file(self, local: Path, key: str) -> None:
        """``local`` put under ``key`` as a hard link: no second copy of its bytes (a 141 GB checkpoint and its
        staged folder on one 235 GiB disk). The two names share the file from then on, so ``local`` must not be
        rewritten in place (the checkpoint writer never does: it writes beside and renames)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{TMP_MARK}link-{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)
            os.link(local, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.EXDEV:
                raise StoreError(
                    f"cannot hard-link {local} into {self.uri}: another filesystem; stage without --link (a copy)"
                ) from None
            raise StoreError(f"link {local} -> {self.uri}/{key}: {exc.strerror or exc}") from None

    def download_file(self, key: str, local: Path, *, progress: Callable[[int], None] | None = None) -> None:
        source = self._path(key)
        local = Path(local)
        with self._errors("download", key):
            src = open(source, "rb")  # noqa: SIM115 - closed below; opened first so a missing key is ObjectNotFound
        with src, temp_beside(local) as (dst, tmp):
            copy_stream(src, dst, progress)
            dst.close()
            os.replace(tmp, local)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with self._errors("put", key), temp_beside(target) as (dst, tmp):
            dst.write(data)
            dst.close()
            os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors("get", key):
            return path.read_bytes()

    def put_file_if_absent(self, local: Path, key: str) -> bool:
        target = self._path(key)
        with open(local, "rb") as src, self._errors("create", key), temp_beside(target) as (dst, tmp):
            copy_stream(src, dst, None)
            dst.close()
            # link(2) fails with EEXIST if the name exists: an atomic create-only publish of a complete file.
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            return True

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error (same as S3)."""
        path = self._path(key)
        with self._errors("delete", key):
            path.unlink(missing_ok=True)

    def url_for(self, key: str) -> str:
        key = check_prefix(key).rstrip("/")
        return str(self.root.joinpath(*key.split("/"))) if key else str(self.root)
