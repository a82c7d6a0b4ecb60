from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from coldstart.storage.store import (
    BucketNotFound,
    CredentialsError,
    EndpointUnreachable,
    InvalidKey,
    InvalidStoreURI,
    LocalStore,
    ObjectInfo,
    ObjectNotFound,
    RetryPolicy,
    S3Store,
    Store,
    StoreError,
    TransferSettings,
    default_store_uri,
    open_store,
    parse_store_uri,
    translate_s3_error,
)

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=1.0)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ URIs


@pytest.mark.parametrize(
    ("uri", "scheme", "bucket", "prefix"),
    [
        ("s3://bucket", "s3", "bucket", ""),
        ("s3://my-bucket/a/b/", "s3", "my-bucket", "a/b"),
        ("S3://bucket.x/p", "s3", "bucket.x", "p"),
    ],
)
def test_parse_s3_uri(uri: str, scheme: str, bucket: str, prefix: str) -> None:
    loc = parse_store_uri(uri)
    assert (loc.scheme, loc.bucket, loc.prefix) == (scheme, bucket, prefix)


def test_parse_file_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_store_uri(f"file://{tmp_path}/a%20b").path == tmp_path / "a b"
    assert parse_store_uri(f"file://localhost{tmp_path}").path == tmp_path
    monkeypatch.chdir(tmp_path)
    assert parse_store_uri("rel/dir").path == tmp_path / "rel" / "dir"
    assert parse_store_uri("./s3:x").path == tmp_path / "s3:x"  # a folder that merely has a colon: say ./


@pytest.mark.parametrize(
    "uri",
    [
        "s3://",
        "s3:///x",
        "ftp://x",
        "",
        "   ",
        "s3://b",
        "s3://bad_bucket!/x",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket/p?x=1",
        "file://remotehost/x",
        "file://relative",
        "s3:/x",  # one slash short: before, a folder "s3:/x" under the working directory
        "s3:bucket",
        "S3:/bucket/p",
        "file:/abs",
    ],
)
def test_malformed_uri_is_rejected(uri: str) -> None:
    with pytest.raises(InvalidStoreURI) as info:
        open_store(uri)
    assert isinstance(info.value, StoreError)
    assert "s3://" in str(info.value) or "file://" in str(info.value)  # says what a valid URI looks like


def test_endpoint_url_only_for_s3(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURI, match="only applies to s3"):
        open_store(str(tmp_path), endpoint_url="http://127.0.0.1:9000")


def test_bad_endpoint_url_is_rejected(aws_env: Path) -> None:
    with pytest.raises(InvalidStoreURI, match="http"):
        open_store("s3://bucket", endpoint_url="127.0.0.1:9000")


def test_default_store_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLDSTART_STORE", "s3://team-bucket/coldstart")
    assert default_store_uri() == "s3://team-bucket/coldstart"
    monkeypatch.delenv("COLDSTART_STORE")
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "lab"))
    assert default_store_uri() == (tmp_path / "lab" / "store").as_uri()
    monkeypatch.delenv("COLDSTART_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_uri() == (tmp_path / "xdg" / "coldstart" / "store").as_uri()
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_uri() == (tmp_path / "home" / ".cache" / "coldstart" / "store").as_uri()
    assert isinstance(open_store(default_store_uri()), LocalStore)


# ------------------------------------------------------------------------------------- both backends


def test_round_trip(store: Store, tmp_path: Path) -> None:
    store.check()
    src = _write(tmp_path / "src.bin", os.urandom(3000))
    store.upload_file(src, "models/m/weights.bin")
    store.put_bytes("models/m/config.json", b'{"a": 1}')
    store.put_bytes("models/mx/other", b"x")

    assert store.exists("models/m/weights.bin")
    assert not store.exists("models/m/nope")
    assert store.get_bytes("models/m/config.json") == b'{"a": 1}'
    assert store.list("models/m/") == [ObjectInfo("models/m/config.json", 8), ObjectInfo("models/m/weights.bin", 3000)]
    # S3 string-prefix semantics, on both backends.
    assert [o.key for o in store.list("models/m")] == [
        "models/m/config.json",
        "models/m/weights.bin",
        "models/mx/other",
    ]
    assert len(store.list()) == 3

    dest = tmp_path / "out" / "deep" / "w.bin"
    store.download_file("models/m/weights.bin", dest)
    assert dest.read_bytes() == src.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in dest.parent.iterdir()] == ["w.bin"]  # no temp file left behind

    store.put_bytes("models/m/config.json", b"{}")  # overwrite
    assert store.get_bytes("models/m/config.json") == b"{}"
    store.delete("models/m/config.json")
    store.delete("models/m/config.json")  # deleting a missing key is not an error
    assert not store.exists("models/m/config.json")
    assert [o.key for o in store.list("models/m/")] == ["models/m/weights.bin"]


def test_progress_callbacks_count_every_byte(store: Store, tmp_path: Path) -> None:
    src = _write(tmp_path / "src.bin", os.urandom(5000))
    up: list[int] = []
    store.upload_file(src, "p/f", progress=up.append)
    down: list[int] = []
    store.download_file("p/f", tmp_path / "dst.bin", progress=down.append)
    assert sum(up) == 5000
    assert sum(down) == 5000


def test_missing_objects(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get_bytes("models/nope")
    dest = _write(tmp_path / "dl" / "keep.bin", b"previous")
    with pytest.raises(ObjectNotFound):
        store.download_file("models/nope", dest)
    assert dest.read_bytes() == b"previous"  # a failed download leaves the old file alone
    assert [p.name for p in dest.parent.iterdir()] == ["keep.bin"]
    assert store.list("models/") == []


@pytest.mark.parametrize(
    "key", ["", "/abs", "../escape", "a/../../b", "a//b", "a/./b", "a/", "a\\b", "a/.x.coldstart-tmp-1"]
)
def test_bad_keys_are_rejected(store: Store, key: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "f", b"x")
    for call in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.exists(key),
        lambda: store.upload_file(src, key),
        lambda: store.put_file_if_absent(src, key),
        lambda: store.delete(key),
    ):
        with pytest.raises(InvalidKey):
            call()
    with pytest.raises(InvalidKey):
        store.list("../x")
    assert not (tmp_path / "escape").exists()


def test_url_for(store: Store) -> None:
    if isinstance(store, LocalStore):
        assert store.url_for("models/m") == str(store.root / "models" / "m")
        assert Path(store.url_for("models/m/")).is_absolute()
        assert store.uri == store.root.as_uri()
    else:
        assert isinstance(store, S3Store)
        assert store.url_for("models/m") == f"s3://{store.bucket}/lab/models/m"
        assert store.url_for("") == f"s3://{store.bucket}/lab"
        assert store.uri == f"s3://{store.bucket}/lab"
    with pytest.raises(InvalidKey):
        store.url_for("../x")


def test_put_file_if_absent_creates_once(store: Store, tmp_path: Path) -> None:
    first = _write(tmp_path / "a", b"first")
    second = _write(tmp_path / "b", b"second")
    assert store.put_file_if_absent(first, "locks/k") is True
    assert store.put_file_if_absent(second, "locks/k") is False
    assert store.get_bytes("locks/k") == b"first"
    assert store.list("locks/") == [ObjectInfo("locks/k", 5)]


def _contenders(tmp_path: Path, n: int) -> list[Path]:
    # Distinct contents and sizes, so the survivor identifies its writer and a torn mix is detectable.
    return [_write(tmp_path / f"c{i}", bytes([65 + i]) * (4096 + i)) for i in range(n)]


def test_put_file_if_absent_race_threads(store: Store, tmp_path: Path) -> None:
    files = _contenders(tmp_path, 8)
    barrier = threading.Barrier(len(files))
    results: list[bool | None] = [None] * len(files)
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            barrier.wait()
            results[i] = store.put_file_if_absent(files[i], "race/key")
        except BaseException as e:  # surfaced by the assert below, with the thread's exception
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results.count(True) == 1
    assert results.count(False) == len(files) - 1
    assert store.get_bytes("race/key") == files[results.index(True)].read_bytes()
    assert [o.key for o in store.list("race/")] == ["race/key"]


def _race_worker(uri: str, endpoint_url: str | None, local: str, barrier, out) -> None:
    store = open_store(uri, endpoint_url=endpoint_url)
    barrier.wait()
    out.put((local, store.put_file_if_absent(Path(local), "race/proc")))


def test_put_file_if_absent_race_processes(store: Store, tmp_path: Path) -> None:
    files = _contenders(tmp_path, 8)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited boto3 clients or locks
    barrier, out = ctx.Barrier(len(files)), ctx.Queue()
    endpoint_url = store.endpoint_url if isinstance(store, S3Store) else None
    procs = [ctx.Process(target=_race_worker, args=(store.uri, endpoint_url, str(f), barrier, out)) for f in files]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    winners = [local for local, created in results if created]
    assert len(winners) == 1
    assert store.get_bytes("race/proc") == Path(winners[0]).read_bytes()


# ------------------------------------------------------------------------------------------------ local


def test_local_store_hides_temp_files_and_checks_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not-yet")
    store.check()  # a store directory that does not exist yet is an empty store
    assert store.list() == []
    store.put_bytes("a/b", b"x")
    _write(tmp_path / "not-yet" / "a" / ".b.coldstart-tmp-abc", b"partial")
    assert store.list() == [ObjectInfo("a/b", 1)]

    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(BucketNotFound, match="not a directory"):
        LocalStore(tmp_path / "file").check()


def test_local_store_from_file_uri(tmp_path: Path) -> None:
    store = open_store((tmp_path / "s").as_uri())
    assert isinstance(store, LocalStore)
    store.put_bytes("k", b"v")
    assert (tmp_path / "s" / "k").read_bytes() == b"v"


# --------------------------------------------------------------------------------------------------- S3


def test_s3_multipart_transfer(s3_server: str, s3_bucket: str, tmp_path: Path) -> None:
    mib = 1024 * 1024
    settings = TransferSettings(multipart_threshold_bytes=5 * mib, multipart_chunksize_bytes=5 * mib, max_concurrency=4)
    store = open_store(f"s3://{s3_bucket}", endpoint_url=s3_server, transfer=settings)
    src = _write(tmp_path / "big.bin", os.urandom(6 * mib))
    store.upload_file(src, "big.bin")
    etag = boto3.client("s3", endpoint_url=s3_server).head_object(Bucket=s3_bucket, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")  # two parts: it really went multipart
    store.download_file("big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_s3_endpoint_from_env(s3_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    store = open_store(f"s3://{s3_bucket}/p")
    store.check()
    store.put_bytes("k", b"v")
    assert boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=s3_bucket, Key="p/k")["Body"].read() == b"v"


def test_s3_missing_bucket(s3_server: str, aws_env: Path) -> None:
    store = open_store("s3://no-such-bucket-coldstart", endpoint_url=s3_server)
    with pytest.raises(BucketNotFound, match="no-such-bucket-coldstart"):
        store.check()
    with pytest.raises(BucketNotFound):
        store.list("models/")
    with pytest.raises(BucketNotFound):
        store.put_bytes("k", b"v")


def test_s3_no_credentials(s3_server: str, s3_bucket: str, no_aws_credentials: None, tmp_path: Path) -> None:
    store = open_store(f"s3://{s3_bucket}", endpoint_url=s3_server, retry=FAST_RETRY)
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        store.check()
    with pytest.raises(CredentialsError):
        store.upload_file(_write(tmp_path / "f", b"x"), "k")
    with pytest.raises(CredentialsError):
        store.download_file("k", tmp_path / "g")


def test_s3_endpoint_unreachable_is_bounded(closed_endpoint: str) -> None:
    endpoint = closed_endpoint
    store = open_store("s3://bucket", endpoint_url=endpoint, retry=FAST_RETRY)
    start_s = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        store.check()
    assert time.monotonic() - start_s < 10
    assert info.value.attempts == 3
    assert endpoint in str(info.value)
    assert "3 attempt" in str(info.value)
    with pytest.raises(EndpointUnreachable, match=r"127\.0\.0\.1"):
        store.get_bytes("k")


def test_endpoint_credentials_never_in_messages(closed_endpoint: str) -> None:
    endpoint = closed_endpoint.replace("http://", "http://user:s3cr3t@")
    store = open_store("s3://bucket", endpoint_url=endpoint, retry=FAST_RETRY)
    with pytest.raises(EndpointUnreachable) as info:
        store.check()
    assert "s3cr3t" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


@pytest.mark.parametrize(
    ("code", "status", "key", "expected"),
    [
        ("AccessDenied", 403, "k", CredentialsError),
        ("InvalidAccessKeyId", 403, None, CredentialsError),
        ("403", 403, None, CredentialsError),
        ("NoSuchBucket", 404, "k", BucketNotFound),
        ("404", 404, None, BucketNotFound),
        ("404", 404, "k", ObjectNotFound),
        ("NoSuchKey", 404, "k", ObjectNotFound),
        ("InternalError", 500, "k", StoreError),
    ],
)
def test_translate_client_errors(code: str, status: int, key: str | None, expected: type) -> None:
    secret = "AKIASECRETSECRET"
    err = ClientError(
        {"Error": {"Code": code, "Message": f"key {secret} refused"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )
    out = translate_s3_error(err, op="get", uri="s3://b/p", bucket="b", endpoint_url="https://s3.example", key=key)
    assert type(out) is expected
    assert secret not in str(out)
    assert "s3://b/p" in str(out)
