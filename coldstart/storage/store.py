"""Where model weights live between runs: one ``Store`` interface over S3 (or any S3-compatible endpoint)
and a local directory.

A cold start is measured from the store, so the store must fail loudly and early: ``check()`` is the
preflight, and every backend error is translated into one of the ``StoreError`` subclasses below with a
message that says what to fix (and never echoes a credential).

Keys are '/'-separated and relative to the store's own prefix; ``url_for`` turns a key into what vLLM and
the Run:ai streamer are given (``s3://bucket/prefix/key`` or an absolute local path).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from coldstart import paths

MiB = 1024 * 1024
GiB = 1024 * MiB

# S3 refuses single PUTs above 5 GiB and multipart parts below 5 MiB (except the last one).
_S3_MAX_SINGLE_PUT_BYTES = 5 * GiB
_S3_MIN_PART_BYTES = 5 * MiB

# Temp files share the target's directory so os.replace/os.link stay on one filesystem (atomic); the mark
# lets list() hide them and is reserved in keys so a real object can never look like one.
_TMP_MARK = ".coldstart-tmp-"
# mkstemp creates 0600 files; a shared store and a model folder that vLLM (maybe another user) reads need
# the usual world-readable mode.
_FILE_MODE = 0o644
_COPY_CHUNK_BYTES = 8 * MiB


class StoreError(Exception):
    """Anything the store cannot do; the message says what to fix."""


class InvalidStoreURI(StoreError, ValueError):
    """The store URI (or endpoint URL) is malformed or uses an unsupported scheme."""


class InvalidKey(StoreError, ValueError):
    """A key is empty, absolute, contains '..'/'.'/empty segments, or uses the reserved temp mark."""


class BucketNotFound(StoreError):
    """The S3 bucket does not exist (or the local store path is not a directory)."""


class ObjectNotFound(StoreError):
    """The key does not exist in the store."""


class CredentialsError(StoreError):
    """No credentials were found, or they were refused (access denied)."""


class EndpointUnreachable(StoreError):
    """The S3 endpoint did not answer after bounded retries."""

    def __init__(self, message: str, *, endpoint_url: str, attempts: int) -> None:
        super().__init__(message)
        self.endpoint_url = endpoint_url
        self.attempts = attempts


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size_bytes: int


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for an unreachable endpoint: ``attempts`` tries, exponential backoff between them."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.connect_timeout_s <= 0:
            raise ValueError(f"RetryPolicy times must be non-negative (connect timeout positive): {self}")

    def delay_s(self, failed_attempts: int) -> float:
        """Sleep before the next try, after ``failed_attempts`` (>= 1) tries failed."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (failed_attempts - 1))


@dataclass(frozen=True)
class TransferSettings:
    """Parallel multipart transfer knobs for S3 (boto3 TransferConfig)."""

    multipart_threshold_bytes: int = 64 * MiB
    multipart_chunksize_bytes: int = 64 * MiB
    max_concurrency: int = 16

    def __post_init__(self) -> None:
        if self.multipart_chunksize_bytes < _S3_MIN_PART_BYTES:
            raise ValueError(
                f"multipart_chunksize_bytes must be >= 5 MiB (S3 minimum part size), got "
                f"{self.multipart_chunksize_bytes}"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")


@runtime_checkable
class Store(Protocol):
    uri: str

    def check(self) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def upload_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> None: ...

    def download_file(self, key: str, local: Path, *, progress: Callable[[int], None] | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def put_file_if_absent(self, local: Path, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def url_for(self, key: str) -> str: ...


# ---------------------------------------------------------------------------------------------- keys & URIs


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidKey."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"empty object key: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key must be relative to the store, got absolute {key!r}")
    if "\\" in key or "\x00" in key:
        raise InvalidKey(f"object key must use '/' separators and no NUL bytes: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
        if _TMP_MARK in part:
            raise InvalidKey(f"object key uses the reserved temp mark {_TMP_MARK!r}: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Like check_key, but also allows "" and one trailing '/' (S3 string-prefix semantics)."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URI: ``scheme`` is "s3" (bucket, prefix) or "file" (path)."""

    scheme: str
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None


_URI_HELP = "use s3://bucket[/prefix], file:///absolute/path, or a plain local path"


# A URI scheme (RFC 3986: a letter, then letters, digits, "+", "-", ".") and a colon at the start of the string.
_SCHEME_LIKE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def parse_store_uri(uri: str) -> StoreLocation:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidStoreURI(f"empty store URI; {_URI_HELP}")
    if "://" not in uri:
        if _SCHEME_LIKE_RE.match(uri):
            # "s3:/bucket", "s3:bucket", "file:/x": a mistyped URI, not a folder named "s3:" in the cwd.
            raise InvalidStoreURI(f"store URI {uri!r} looks like a mistyped URI (scheme:// expected); {_URI_HELP}")
        return StoreLocation(scheme="file", path=Path(uri).expanduser().absolute())
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise InvalidStoreURI(f"store URI {uri!r} has no bucket; {_URI_HELP}")
        if not _BUCKET_RE.match(bucket):
            raise InvalidStoreURI(f"store URI {uri!r}: {bucket!r} is not a valid bucket name")
        if parts.query or parts.fragment:
            raise InvalidStoreURI(f"store URI {uri!r} must not have a query or fragment")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except InvalidKey as e:
                raise InvalidStoreURI(f"store URI {uri!r} has an invalid prefix: {e}") from e
        return StoreLocation(scheme="s3", bucket=bucket, prefix=prefix)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidStoreURI(
                f"store URI {uri!r} names a remote host; file:// stores must be local (file:///absolute/path)"
            )
        if not parts.path.startswith("/"):
            raise InvalidStoreURI(f"store URI {uri!r} must have an absolute path (file:///absolute/path)")
        return StoreLocation(scheme="file", path=Path(unquote(parts.path)))
    raise InvalidStoreURI(f"unsupported store URI scheme {scheme!r} in {uri!r}; {_URI_HELP}")


def _redact_url(url: str) -> str:
    """Drop user:password from an endpoint URL before it goes into a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _check_endpoint_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidStoreURI(f"endpoint URL {_redact_url(url)!r} must look like http(s)://host[:port]")
    return url


def default_store_uri() -> str:
    """``$COLDSTART_STORE``, else a directory store under the lab's home (the embedded default)."""
    env = os.environ.get("COLDSTART_STORE", "").strip()
    if env:
        return env
    return (paths.coldstart_home() / "store").as_uri()


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    retry: RetryPolicy | None = None,
    transfer: TransferSettings | None = None,
) -> Store:
    loc = parse_store_uri(uri)
    if loc.scheme == "s3":
        return S3Store(
            loc.bucket,
            loc.prefix,
            endpoint_url=endpoint_url,
            retry=retry or RetryPolicy(),
            transfer=transfer or TransferSettings(),
        )
    if endpoint_url is not None:
        raise InvalidStoreURI(f"an endpoint URL only applies to s3:// stores, not {uri!r}")
    assert loc.path is not None
    return LocalStore(loc.path)


# ------------------------------------------------------------------------------------------- local files


def _copy_stream(src: BinaryIO, dst: BinaryIO, progress: Callable[[int], None] | None) -> None:
    while chunk := src.read(_COPY_CHUNK_BYTES):
        dst.write(chunk)
        if progress is not None:
            progress(len(chunk))


@contextlib.contextmanager
def _temp_beside(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """An open temp file next to ``target`` (same filesystem); removed unless the caller moved it away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{_TMP_MARK}")
    tmp = Path(name)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        tmp.unlink(missing_ok=True)


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
            raise StoreError(f"local store {op} failed on {where}: {e.strerror or e}") from e

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
                    if _TMP_MARK in name:
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
        with open(local, "rb") as src, self._errors("upload", key), _temp_beside(target) as (dst, tmp):
            _copy_stream(src, dst, progress)
            dst.close()
            os.replace(tmp, target)

    def link_file(self, local: Path, key: str) -> None:
        """``local`` put under ``key`` as a hard link: no second copy of its bytes (a 141 GB checkpoint and its
        staged folder on one 235 GiB disk). The two names share the file from then on, so ``local`` must not be
        rewritten in place (the checkpoint writer never does: it writes beside and renames)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{_TMP_MARK}link-{os.getpid()}")
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
        with src, _temp_beside(local) as (dst, tmp):
            _copy_stream(src, dst, progress)
            dst.close()
            os.replace(tmp, local)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with self._errors("put", key), _temp_beside(target) as (dst, tmp):
            dst.write(data)
            dst.close()
            os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors("get", key):
            return path.read_bytes()

    def put_file_if_absent(self, local: Path, key: str) -> bool:
        target = self._path(key)
        with open(local, "rb") as src, self._errors("create", key), _temp_beside(target) as (dst, tmp):
            _copy_stream(src, dst, None)
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


# ---------------------------------------------------------------------------------------------------- S3

_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, TokenRetrievalError)
_UNREACHABLE_ERRORS = (BotoConnectionError, ConnectionClosedError)
_ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "403",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def _root_cause(exc: BaseException) -> BaseException:
    """boto3 wraps ClientErrors in S3UploadFailedError / RetriesExceededError; dig the real one out."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ClientError, *_CREDENTIAL_ERRORS, *_UNREACHABLE_ERRORS)):
            return exc
        inner = getattr(exc, "last_exception", None) or exc.__cause__ or exc.__context__
        if inner is None:
            return exc
        exc = inner
    return exc


def translate_s3_error(
    exc: BaseException,
    *,
    op: str,
    uri: str,
    bucket: str,
    endpoint_url: str,
    key: str | None = None,
    attempts: int = 1,
) -> StoreError:
    """Map a boto3/botocore exception to a StoreError with an actionable message (no secrets in it)."""
    exc = _root_cause(exc)
    where = f"{uri}/{key}" if key else uri
    endpoint = _redact_url(endpoint_url)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return CredentialsError(
            f"no usable AWS credentials for {op} on {where} ({type(exc).__name__}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run on a host with an instance/pod role"
        )
    if isinstance(exc, _UNREACHABLE_ERRORS):
        return EndpointUnreachable(
            f"cannot reach S3 endpoint {endpoint} for {op} on {where} after {attempts} attempt(s) "
            f"({type(exc).__name__}): check AWS_ENDPOINT_URL / --endpoint-url and that the server is up",
            endpoint_url=endpoint,
            attempts=attempts,
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (key is None and (code in _NOT_FOUND_CODES or status == 404)):
            return BucketNotFound(
                f"bucket {bucket!r} does not exist at {endpoint}: create it or fix the store URI ({uri})"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFound(f"{where} not found in store ({op})")
        if code in _ACCESS_DENIED_CODES or status == 403:
            return CredentialsError(
                f"access denied ({code or status}) for {op} on {where} at {endpoint}: check "
                "the credentials and the bucket policy"
            )
        return StoreError(f"S3 {op} on {where} failed: {code or 'error'} (HTTP {status})")
    if isinstance(exc, (BotoCoreError, Boto3Error)):
        return StoreError(f"S3 {op} on {where} failed: {type(exc).__name__}: {exc}")
    raise TypeError(f"not a boto3/botocore error: {type(exc).__name__}") from exc


def _resolve_endpoint_url(endpoint_url: str | None) -> str | None:
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return _check_endpoint_url(url) if url else None


class S3Store:
    """An S3 bucket (and optional prefix) as a store, through boto3 and its standard credential chain."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so a shared default is safe
        transfer: TransferSettings = TransferSettings(),
    ) -> None:
        if not _BUCKET_RE.match(bucket):
            raise InvalidStoreURI(f"{bucket!r} is not a valid bucket name")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._retry = retry
        custom_endpoint = _resolve_endpoint_url(endpoint_url)
        extra: dict = {}
        if custom_endpoint:
            # Most S3-compatible servers (MinIO, Ceph, moto) have no per-bucket DNS: path-style addressing.
            # Newer botocore also sends CRC checksums on every upload, which several of them reject; only
            # send them where the API requires them.
            extra = {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        session = boto3.session.Session()

        def client(max_attempts: int, read_timeout_s: float) -> Any:  # boto3 clients are built at runtime, untyped
            cfg = Config(
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                connect_timeout=retry.connect_timeout_s,
                read_timeout=read_timeout_s,
                max_pool_connections=64,
                **extra,
            )
            return session.client("s3", endpoint_url=custom_endpoint, config=cfg)

        try:
            self._client = client(retry.attempts, 60.0)
            # check() runs its own backoff loop, so its client must not retry underneath it.
            self._probe = client(1, retry.connect_timeout_s * 2)
        except (BotoCoreError, Boto3Error) as e:
            raise StoreError(f"cannot configure an S3 client for {self.uri}: {type(e).__name__}: {e}") from e
        self.endpoint_url = self._client.meta.endpoint_url
        self._transfer = TransferConfig(
            multipart_threshold=transfer.multipart_threshold_bytes,
            multipart_chunksize=transfer.multipart_chunksize_bytes,
            max_concurrency=transfer.max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",  # CRT would ignore the knobs above if awscrt is installed
        )

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint_url={_redact_url(self.endpoint_url)!r})"

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, op: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (BotoCoreError, Boto3Error, ClientError) as e:
            raise translate_s3_error(
                e,
                op=op,
                uri=self.uri,
                bucket=self.bucket,
                endpoint_url=self.endpoint_url,
                key=key,
                attempts=self._retry.attempts,
            ) from e

    def check(self) -> None:
        start_s = time.monotonic()
        last: BaseException | None = None
        attempts_made = 0
        while attempts_made < self._retry.attempts:
            attempts_made += 1
            try:
                with self._errors("check"):
                    self._probe.head_bucket(Bucket=self.bucket)
                return
            except EndpointUnreachable as e:
                last = e.__cause__
                if attempts_made < self._retry.attempts:
                    time.sleep(self._retry.delay_s(attempts_made))
        elapsed_s = time.monotonic() - start_s
        endpoint = _redact_url(self.endpoint_url)
        raise EndpointUnreachable(
            f"cannot reach S3 endpoint {endpoint} for {self.uri}: {attempts_made} attempt(s) over "
            f"{elapsed_s:.1f}s failed ({type(last).__name__}); check AWS_ENDPOINT_URL / --endpoint-url and "
            "that the server is up",
            endpoint_url=endpoint,
            attempts=attempts_made,
        ) from last

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            with self._errors("exists", key):
                self._client.head_object(Bucket=self.bucket, Key=full)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = check_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: list[ObjectInfo] = []
        with self._errors("list"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    out.append(ObjectInfo(key=obj["Key"][strip:], size_bytes=int(obj["Size"])))
        return sorted(out, key=lambda o: o.key)

    def upload_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> None:
        full = self._full(key)
        if not Path(local).is_file():
            raise FileNotFoundError(f"no such local file to upload: {local}")
        with self._errors("upload", key):
            self._client.upload_file(str(local), self.bucket, full, Callback=progress, Config=self._transfer)

    def download_file(self, key: str, local: Path, *, progress: Callable[[int], None] | None = None) -> None:
        full = self._full(key)
        local = Path(local)
        with self._errors("download", key), _temp_beside(local) as (dst, tmp):
            dst.close()
            self._client.download_file(self.bucket, full, str(tmp), Callback=progress, Config=self._transfer)
            os.chmod(tmp, _FILE_MODE)  # s3transfer writes its own temp file and renames it onto ours
            os.replace(tmp, local)

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._full(key)
        with self._errors("put", key):
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)
        with self._errors("get", key):
            return self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read()

    def put_file_if_absent(self, local: Path, key: str) -> bool:
        full = self._full(key)
        size_bytes = Path(local).stat().st_size
        if size_bytes > _S3_MAX_SINGLE_PUT_BYTES:
            raise ValueError(
                f"put_file_if_absent is a single conditional PUT, limited to 5 GiB; {local} is {size_bytes} bytes"
            )
        for attempt in range(1, self._retry.attempts + 1):
            try:
                with open(local, "rb") as body:
                    # S3 conditional write: the server refuses (412) if the key exists, atomically. Caveat: if
                    # botocore retries a PUT whose first try did land, the retry sees 412 and we report False.
                    self._client.put_object(Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
                return True
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "PreconditionFailed" or status == 412:
                    return False
                # 409: another conditional write to this key is in flight; AWS says retry, then it is 412.
                if (code == "ConditionalRequestConflict" or status == 409) and attempt < self._retry.attempts:
                    time.sleep(self._retry.delay_s(attempt))
                    continue
                raise translate_s3_error(
                    e, op="create", uri=self.uri, bucket=self.bucket, endpoint_url=self.endpoint_url, key=key
                ) from e
            except (BotoCoreError, Boto3Error) as e:
                raise translate_s3_error(
                    e,
                    op="create",
                    uri=self.uri,
                    bucket=self.bucket,
                    endpoint_url=self.endpoint_url,
                    key=key,
                    attempts=self._retry.attempts,
                ) from e
        raise AssertionError("unreachable: the last attempt returns or raises")

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error (S3 semantics)."""
        full = self._full(key)
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def url_for(self, key: str) -> str:
        key = check_prefix(key).rstrip("/")
        path = "/".join(p for p in (self.prefix, key) if p)
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"


__all__ = [
    "BucketNotFound",
    "CredentialsError",
    "EndpointUnreachable",
    "InvalidKey",
    "InvalidStoreURI",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "RetryPolicy",
    "S3Store",
    "Store",
    "StoreError",
    "StoreLocation",
    "TransferSettings",
    "check_key",
    "check_prefix",
    "default_store_uri",
    "open_store",
    "parse_store_uri",
    "translate_s3_error",
]
