"""Shared fixtures: a real moto S3 server (a subprocess speaking HTTP, so boto3 runs its real network path),
a hermetic AWS environment (dummy credentials, no host config, no instance-metadata lookups), and every cache
root and the lab's records moved into a scratch folder for every test (so no test, nor a tool it runs, can
clear the developer's caches or append to the checkout's results and logs)."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from coldstart.lab.caches import isolated_env
from coldstart.storage.store import LocalStore, Store, open_store

_MOTO_START_TIMEOUT_S = 30.0

_AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "COLDSTART_STORE",
)


@pytest.fixture(scope="session")
def cache_isolation_base() -> Iterator[Path]:
    # Short on purpose: TMPDIR lands here, and Ray puts AF_UNIX sockets (107 bytes at most) under it.
    base = Path(tempfile.mkdtemp(prefix="cs-iso-"))
    (base / "tmp").mkdir()
    try:
        yield base
    finally:
        shutil.rmtree(base)


@pytest.fixture(autouse=True)
def _isolate_cache_roots(cache_isolation_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # HOME stays: the roots that default to it are moved by their own variables (caches.isolated_env).
    for name, value in isolated_env(cache_isolation_base).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    # The lab's records (paths.lab_dir) default to the checkout the tests run from; a tool a test runs with its
    # default paths writes here instead. COLDSTART_OUTPUT is unset so the run logs follow the lab.
    monkeypatch.setenv("COLDSTART_LAB", str(cache_isolation_base / "lab"))
    monkeypatch.delenv("COLDSTART_OUTPUT", raising=False)


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it; it is closed again on return)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_moto(proc: subprocess.Popen, host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto server exited with code {proc.returncode} before it was ready: "
                f"{proc.stderr.read().decode(errors='replace') if proc.stderr else ''}"
            )
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", "/moto-api/")
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise RuntimeError(f"moto server on {host}:{port} not ready after {timeout_s:.0f}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server running for the whole session."""
    host, port = "127.0.0.1", free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as log_f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)], stdout=log_f, stderr=subprocess.STDOUT
        )
        try:
            _wait_for_moto(proc, host, port, _MOTO_START_TIMEOUT_S)
            yield f"http://{host}:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dummy credentials and empty AWS config files, so no test can reach a real account or the host's
    profile. Returns the directory holding the empty config files."""
    aws_dir = tmp_path_factory.mktemp("aws-config")
    (aws_dir / "credentials").write_text("")
    (aws_dir / "config").write_text("")
    for name in _AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws_dir


@pytest.fixture
def s3_bucket(s3_server: str, aws_env: Path) -> str:
    """A fresh, empty bucket on the session's moto server (one per test: moto state outlives tests)."""
    name = f"cs-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def closed_endpoint(aws_env: Path) -> str:
    """An endpoint URL on a loopback port nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def no_aws_credentials(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests against both backends: a local directory, and a prefix in a moto bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/lab", endpoint_url=request.getfixturevalue("s3_server"))
