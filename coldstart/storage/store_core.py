"""The store's contract, shared by every backend: the ``Store`` protocol, its records and errors, safe keys
and store URIs, and the temp-file-beside-the-target rule that keeps writes atomic.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3 refuses multipart parts below 5 MiB (except the last one).
S3_MIN_PART_BYTES = 5 * MiB

# Temp files share the target's directory so os.replace/os.link stay on one filesystem (atomic); the mark
# lets list() hide them and is reserved in keys so a real object can never look like one.
TMP_MARK = ".coldstart-tmp-"
# mkstemp creates 0600 files; a shared store and a model folder that vLLM (maybe another user) reads need
# the usual world-readable mode.
FILE_MODE = 0o644
COPY_CHUNK_BYTES = 8 * MiB


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


# Where a store's retry bounds are set from outside (RetryPolicy.from_env): field -> environment variable.
RETRY_ENV = {
    "attempts": "COLDSTART_S3_ATTEMPTS",
    "connect_timeout_s": "COLDSTART_S3_CONNECT_TIMEOUT_S",
    "read_timeout_s": "COLDSTART_S3_READ_TIMEOUT_S",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for an unreachable endpoint: ``attempts`` tries, exponential backoff between them.

    ``read_timeout_s`` is how long a request may wait for its next byte: a store that accepts connections and
    then stops answering (a hung server, a partition that drops packets) fails each try after it, so a stalled
    download ends after at most ``2 * attempts`` reads of ``read_timeout_s`` per part (S3 transfers re-issue
    a part once when its stream breaks) instead of waiting on a socket for good."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    connect_timeout_s: float = 5.0
    # botocore's default is 60 s; the lab's requests are parts of at most 64 MiB (TransferSettings), which a
    # store answers within seconds once sent, so a hung store fails a part within 2 * 4 * 20 s, not 8 minutes.
    read_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError(f"RetryPolicy times must be non-negative (connect and read timeouts positive): {self}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The defaults, each overridden by its ``COLDSTART_S3_*`` variable where set (a store behind a slow link
        wants longer reads; a test or a latency-bound job shorter ones). A value that is no number is refused
        naming the variable."""
        env = os.environ if environ is None else environ
        given: dict[str, float | int] = {}
        for field, var in RETRY_ENV.items():
            text = env.get(var)
            if text is None or not text.strip():
                continue
            try:
                given[field] = int(text) if field == "attempts" else float(text)
            except ValueError:
                raise ValueError(f"${var}={text!r} is not a number") from None
        try:
            return cls(**given)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{exc} (from {', '.join(f'${RETRY_ENV[k]}' for k in given)})") from None

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
        if self.multipart_chunksize_bytes < S3_MIN_PART_BYTES:
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
        if TMP_MARK in part:
            raise InvalidKey(f"object key uses the reserved temp mark {TMP_MARK!r}: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Like check_key, but also allows "" and one trailing '/' (S3 string-prefix semantics)."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


# S3's bucket naming rules (general purpose buckets): 3-63 characters of lowercase letters, digits, dots and
# hyphens, a letter or digit at each end, no two dots in a row, and not an IP address. A name outside them
# (``Bad_Bucket``) reaches no bucket: refused here, offline, rather than as a confusing S3 error mid-run.
_BUCKET_CHARS_RE = re.compile(r"[a-z0-9.-]+")
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
BUCKET_NAME_RULES = (
    "3-63 lowercase letters, digits, dots or hyphens, a letter or digit at each end, no '..', not an IP address"
)


def check_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if S3 accepts it as a bucket name, else raise InvalidStoreURI saying which rule fails."""
    if not 3 <= len(bucket) <= 63:
        why = f"{len(bucket)} characters"
    elif not _BUCKET_CHARS_RE.fullmatch(bucket):
        why = f"{''.join(sorted(set(_BUCKET_CHARS_RE.sub('', bucket))))!r} not allowed"
    elif not (bucket[0].isalnum() and bucket[-1].isalnum()):
        why = "it must start and end with a letter or digit"
    elif ".." in bucket:
        why = "two dots in a row"
    elif _IPV4_RE.match(bucket):
        why = "it is formatted as an IP address"
    else:
        return bucket
    raise InvalidStoreURI(f"{bucket!r} is not a valid S3 bucket name: {why} (S3 allows {BUCKET_NAME_RULES})")


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
        try:
            check_bucket_name(bucket)
        except InvalidStoreURI as e:
            raise InvalidStoreURI(f"store URI {uri!r}: {e}") from e
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


def redact_url(url: str) -> str:
    """Drop user:password from an endpoint URL before it goes into a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def check_endpoint_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidStoreURI(f"endpoint URL {redact_url(url)!r} must look like http(s)://host[:port]")
    return url


# ------------------------------------------------------------------------------------------- local files


def os_error_text(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the system's words and the errno's name, which tells a full disk
    from a missing folder or a read-only mount at a glance (and is what a person searches for)."""
    text = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
    return f"{text} ({name})" if name else text


def copy_stream(src: BinaryIO, dst: BinaryIO, progress: Callable[[int], None] | None) -> None:
    while chunk := src.read(COPY_CHUNK_BYTES):
        dst.write(chunk)
        if progress is not None:
            progress(len(chunk))


@contextlib.contextmanager
def temp_beside(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """An open temp file next to ``target`` (same filesystem); removed unless the caller moved it away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{TMP_MARK}")
    tmp = Path(name)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        tmp.unlink(missing_ok=True)
