"""An S3 bucket (or any S3-compatible endpoint: MinIO, Ceph, moto) as a store, through boto3 and its standard
credential chain; every boto3/botocore error becomes a ``StoreError`` that says what to fix."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from coldstart.storage.store_core import (
    FILE_MODE,
    BucketNotFound,
    CredentialsError,
    EndpointUnreachable,
    GiB,
    ObjectInfo,
    ObjectNotFound,
    RetryPolicy,
    StoreError,
    TransferSettings,
    check_bucket_name,
    check_endpoint_url,
    check_key,
    check_prefix,
    redact_url,
    temp_beside,
)

# S3 refuses single PUTs above 5 GiB.
_S3_MAX_SINGLE_PUT_BYTES = 5 * GiB
# Frozen, so one shared default instance is safe (the retry bounds are read from the environment per store).
_DEFAULT_TRANSFER = TransferSettings()

_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, TokenRetrievalError)
_UNREACHABLE_ERRORS = (BotoConnectionError, ConnectionClosedError)
# The socket's own errors: boto3's transfer manager re-reads a part whose stream broke and, when it gives up,
# raises what the socket said (a server that died mid-object, hung, or a network that dropped it).
_SOCKET_ERRORS = (TimeoutError, ConnectionError)
# The server answered, then went quiet or cut the object short.
_STALLED_ERRORS = (ReadTimeoutError, ResponseStreamingError, IncompleteReadError, *_SOCKET_ERRORS)
# A part whose stream broke is fetched again once: botocore retries requests, not a body cut mid-read, and more
# tries would multiply with botocore's own (a stalled store then took 9 minutes to fail a 40 MB download).
_STREAM_ATTEMPTS = 2
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
        if isinstance(exc, (ClientError, *_CREDENTIAL_ERRORS, *_UNREACHABLE_ERRORS, *_STALLED_ERRORS)):
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
    endpoint = redact_url(endpoint_url)
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
    if isinstance(exc, _STALLED_ERRORS):
        return EndpointUnreachable(
            f"S3 endpoint {endpoint} stopped answering during {op} on {where} after {attempts} attempt(s) "
            f"({type(exc).__name__}): check that the server is up and reachable (AWS_ENDPOINT_URL / --endpoint-url)",
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
    # Anything else boto3 raised (or wrapped): still a StoreError naming the store, never a crash of its own.
    return StoreError(f"S3 {op} on {where} at {endpoint} failed: {type(exc).__name__}: {exc}")


def _resolve_endpoint_url(endpoint_url: str | None) -> str | None:
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return check_endpoint_url(url) if url else None


class S3Store:
    """An S3 bucket (and optional prefix) as a store, through boto3 and its standard credential chain."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        retry: RetryPolicy | None = None,
        transfer: TransferSettings = _DEFAULT_TRANSFER,
    ) -> None:
        check_bucket_name(bucket)
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._retry = retry if retry is not None else RetryPolicy.from_env()
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
                connect_timeout=self._retry.connect_timeout_s,
                read_timeout=read_timeout_s,
                max_pool_connections=64,
                **extra,
            )
            return session.client("s3", endpoint_url=custom_endpoint, config=cfg)

        try:
            self._client = client(self._retry.attempts, self._retry.read_timeout_s)
            # check() runs its own backoff loop, so its client must not retry underneath it; a HEAD is answered at
            # once by a live store, so it waits no longer than a connect (nor than any read may).
            self._probe = client(1, min(self._retry.read_timeout_s, self._retry.connect_timeout_s * 2))
        except (BotoCoreError, Boto3Error) as e:
            raise StoreError(f"cannot configure an S3 client for {self.uri}: {type(e).__name__}: {e}") from e
        self.endpoint_url = self._client.meta.endpoint_url
        self._transfer = TransferConfig(
            multipart_threshold=transfer.multipart_threshold_bytes,
            multipart_chunksize=transfer.multipart_chunksize_bytes,
            max_concurrency=transfer.max_concurrency,
            num_download_attempts=_STREAM_ATTEMPTS,
            use_threads=True,
            preferred_transfer_client="classic",  # CRT would ignore the knobs above if awscrt is installed
        )

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint_url={redact_url(self.endpoint_url)!r})"

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, op: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (BotoCoreError, Boto3Error, ClientError, *_SOCKET_ERRORS) as e:
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
        endpoint = redact_url(self.endpoint_url)
        # A server that takes the connection and then says nothing is up but hung (or overloaded): "is it up?"
        # would send the user the wrong way.
        hint = (
            "it accepts connections but does not answer: the server hangs or is overloaded (longer waits: "
            "$COLDSTART_S3_READ_TIMEOUT_S)"
            if isinstance(last, ReadTimeoutError)
            else "check AWS_ENDPOINT_URL / --endpoint-url and that the server is up"
        )
        raise EndpointUnreachable(
            f"cannot reach S3 endpoint {endpoint} for {self.uri}: {attempts_made} attempt(s) over "
            f"{elapsed_s:.1f}s failed ({type(last).__name__}); {hint}",
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
        with self._errors("download", key), temp_beside(local) as (dst, tmp):
            dst.close()
            self._client.download_file(self.bucket, full, str(tmp), Callback=progress, Config=self._transfer)
            os.chmod(tmp, FILE_MODE)  # s3transfer writes its own temp file and renames it onto ours
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
