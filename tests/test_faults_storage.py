"""Storage faults during the lab's transfers, against real servers and real disks (no vLLM engine):

* the object store goes away mid-stream: a moto server of the test's own is killed (connections refused) or
  frozen with SIGSTOP (connections accepted, nothing answered) while ``stage get``/``stage put`` move a model,
  a compile cache is restored or published, and the Run:ai streamer reads safetensors from it. Each ends within
  a bound the test enforces, with an error naming the endpoint and the bucket/prefix, and leaves nothing
  half-written that a later run could take for complete (a frozen server is thawed and the later run checked).
* the disk fills (a small tmpfs; skipped where it cannot be mounted) while a checkpoint is written, a model is
  staged into a local-folder store, a compile cache is captured, published or restored, and a result row is
  appended: a clear error naming the path and ENOSPC, nothing half-written left, and the next run after the
  space returns works.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import boto3
import pytest
from conftest import _wait_for_moto, free_port

from coldstart import compile_cache as cc
from coldstart.analysis.jsonl_append import lock_path
from coldstart.analysis.results import SCHEMA_VERSION, ResultRow, load_rows
from coldstart.lab.llm_config import runai_s3_env
from coldstart.lab.matrix.results_file import ResultsNotWritable, save_row
from coldstart.storage import checkpoints, staging_cli
from coldstart.storage.staging import MANIFEST_NAME, is_complete, list_staged, model_prefix, upload_dir, verify
from coldstart.storage.store import LocalStore, RetryPolicy, Store, TransferSettings, open_store
from coldstart.storage.store_core import TMP_MARK

BUCKET = "cs-faults"
MiB = 1024 * 1024
# Small parts: several ranged GETs / multipart PUTs per file, so a fault at the first bytes is mid-stream.
SMALL_PARTS = TransferSettings(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB, max_concurrency=2)
# Bounded and short: each request waits at most a second for its next byte, two tries.
FAST_RETRY = RetryPolicy(attempts=2, backoff_s=0.1, max_backoff_s=0.5, connect_timeout_s=1.0, read_timeout_s=1.0)
# The test's own timeout: a fault must reach its clear outcome well within it (a hang fails the test).
FAULT_BOUND_S = 60.0
FAULTS = ("dies", "hangs")


# ------------------------------------------------------------------------------------------ object store


class MotoServer:
    """A moto S3 server of one test's own, so killing or freezing it hurts no other test."""

    def __init__(self, log: Path) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.endpoint = f"http://{self.host}:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    def __enter__(self) -> MotoServer:
        with open(self._log, "wb") as log_f:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log_f,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_moto(self._proc, self.host, self.port, 30.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        assert self._proc is not None
        if self._proc.poll() is None:
            self.thaw()  # a stopped process takes SIGKILL too, but a thawed one releases its sockets at once
            self._proc.kill()
        self._proc.wait()

    def kill(self) -> None:
        """The store goes away: every connection is refused from now on."""
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()

    def freeze(self) -> None:
        """The store stops answering: the kernel still accepts connections, nothing replies."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        assert self._proc is not None
        if self._frozen:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._frozen = False

    def fault(self, kind: str) -> Callable[[], None]:
        return {"dies": self.kill, "hangs": self.freeze}[kind]


@pytest.fixture
def moto(aws_env: Path, tmp_path: Path) -> Iterator[MotoServer]:
    with MotoServer(tmp_path / "moto.log") as server:
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield server


def _s3(moto: MotoServer) -> Store:
    return open_store(f"s3://{BUCKET}/lab", endpoint_url=moto.endpoint, retry=FAST_RETRY, transfer=SMALL_PARTS)


class FaultAtFirstBytes:
    """A store that runs ``fault`` once, as the first bytes of a transfer of a key ending in ``suffix`` go by
    (or as a create-only PUT of such a key starts): the store fails in the middle of the work, not before it."""

    def __init__(self, inner: Store, suffix: str, fault: Callable[[], None]) -> None:
        self._inner = inner
        self._suffix = suffix
        self._fault = fault
        self._lock = threading.Lock()
        self.fired = False
        self.uri = inner.uri

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def _fire(self) -> None:
        with self._lock:
            if not self.fired:
                self.fired = True
                self._fault()

    def _hooked(self, key: str, progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
        if not key.endswith(self._suffix):
            return progress

        def on_bytes(n: int) -> None:
            self._fire()
            if progress is not None:
                progress(n)

        return on_bytes

    def download_file(self, key: str, local: Path, *, progress: Callable[[int], None] | None = None) -> None:
        self._inner.download_file(key, local, progress=self._hooked(key, progress))

    def upload_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> None:
        self._inner.upload_file(local, key, progress=self._hooked(key, progress))

    def put_file_if_absent(self, local: Path, key: str) -> bool:
        if key.endswith(self._suffix):
            self._fire()
        return self._inner.put_file_if_absent(local, key)


@dataclass
class Outcome:
    error: BaseException | None
    value: object
    elapsed_s: float


def _within(limit_s: float, fn: Callable[[], object]) -> Outcome:
    """Run ``fn`` and fail the test if it has not ended after ``limit_s`` (a hang), else say how it ended."""
    done: list[Outcome] = []

    def run() -> None:
        start_s = time.monotonic()
        try:
            done.append(Outcome(None, fn(), time.monotonic() - start_s))
        except BaseException as exc:
            done.append(Outcome(exc, None, time.monotonic() - start_s))

    thread = threading.Thread(target=run, name="fault-under-test", daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"no outcome after {limit_s:.0f} s: the transfer hangs on a store that went away"
    return done[0]


def _model_dir(root: Path) -> Path:
    """A model folder whose weights take three 5 MiB parts."""
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "model.safetensors").write_bytes(os.urandom(12 * MiB))
    return root


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _stage_cli(argv: list[str]) -> int:
    return staging_cli.main(staging_cli.add_cli_args(argparse.ArgumentParser()).parse_args(argv))


def _assert_names_the_store(message: str, moto: MotoServer, key: str = "") -> None:
    assert moto.endpoint in message, message
    assert f"s3://{BUCKET}/lab/{key}" in message, message


@pytest.mark.parametrize("fault", FAULTS)
def test_stage_get_when_the_store_goes_away_mid_download(
    fault: str, moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _model_dir(tmp_path / "model")
    upload_dir(_s3(moto), model_prefix("tiny"), src, show_progress=False)
    faulty = FaultAtFirstBytes(_s3(moto), "model.safetensors", moto.fault(fault))
    monkeypatch.setattr(staging_cli, "open_store", lambda uri, endpoint_url=None: faulty)
    dest = tmp_path / "node" / "tiny"
    argv = ["get", "tiny", "--to", str(dest), "--store", f"s3://{BUCKET}/lab", "--no-progress", "--workers", "1"]

    outcome = _within(FAULT_BOUND_S, lambda: _stage_cli(argv))
    assert outcome.error is None and outcome.value == 1 and faulty.fired
    _assert_names_the_store(capsys.readouterr().err, moto, "models/tiny/model.safetensors")
    # Nothing half-written: the folder is not there, and neither is its temp build beside it.
    assert list((tmp_path / "node").iterdir()) == []

    if fault == "hangs":
        moto.thaw()  # the store is back: a later run fetches the whole folder, checked
        assert _within(FAULT_BOUND_S, lambda: _stage_cli(argv)).value == 0
        assert {name: digest for name, digest in _tree(dest).items() if name != MANIFEST_NAME} == _tree(src)


def test_a_hung_store_is_given_up_within_the_bounds_the_environment_sets(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No retry policy passed in: the CLI's store takes its bounds from $COLDSTART_S3_*; a hung store (connections
    accepted, nothing answered) is an error naming it within them, where the defaults would take minutes."""
    upload_dir(_s3(moto), model_prefix("tiny"), _model_dir(tmp_path / "model"), show_progress=False)
    monkeypatch.setenv("COLDSTART_S3_READ_TIMEOUT_S", "1")
    monkeypatch.setenv("COLDSTART_S3_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    moto.freeze()
    argv = ["get", "tiny", "--to", str(tmp_path / "node" / "tiny"), "--store", f"s3://{BUCKET}/lab", "--no-progress"]
    outcome = _within(FAULT_BOUND_S, lambda: _stage_cli(argv))
    assert outcome.error is None and outcome.value == 1
    assert outcome.elapsed_s < 15.0, outcome  # 2 tries of 1 s reads, backoff and the transfer's re-read included
    said = capsys.readouterr().err
    assert moto.endpoint in said and f"s3://{BUCKET}/lab" in said and "ReadTimeoutError" in said, said
    assert "accepts connections but does not answer" in said and "that the server is up" not in said, said


def test_retry_bounds_from_the_environment_are_checked_and_named() -> None:
    policy = RetryPolicy.from_env({"COLDSTART_S3_READ_TIMEOUT_S": "2.5", "COLDSTART_S3_ATTEMPTS": "3"})
    assert (policy.read_timeout_s, policy.attempts, policy.connect_timeout_s) == (
        2.5,
        3,
        RetryPolicy().connect_timeout_s,
    )
    assert RetryPolicy.from_env({"COLDSTART_S3_ATTEMPTS": " "}) == RetryPolicy()
    with pytest.raises(ValueError, match=r"\$COLDSTART_S3_READ_TIMEOUT_S='soon' is not a number"):
        RetryPolicy.from_env({"COLDSTART_S3_READ_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match=r"attempts must be >= 1.*\$COLDSTART_S3_ATTEMPTS"):
        RetryPolicy.from_env({"COLDSTART_S3_ATTEMPTS": "0"})


@pytest.mark.parametrize("fault", FAULTS)
def test_stage_put_when_the_store_goes_away_mid_upload(
    fault: str, moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _model_dir(tmp_path / "model")
    faulty = FaultAtFirstBytes(_s3(moto), "model.safetensors", moto.fault(fault))
    monkeypatch.setattr(staging_cli, "open_store", lambda uri, endpoint_url=None: faulty)
    argv = ["put", "tiny", "--from", str(src), "--store", f"s3://{BUCKET}/lab", "--no-progress", "--workers", "1"]

    outcome = _within(FAULT_BOUND_S, lambda: _stage_cli(argv))
    assert outcome.error is None and outcome.value == 1 and faulty.fired
    _assert_names_the_store(capsys.readouterr().err, moto, "models/tiny/model.safetensors")

    if fault == "hangs":
        moto.thaw()
        store = _s3(moto)
        assert not is_complete(store, model_prefix("tiny"))  # whatever landed, the folder is not sealed
        assert [f.complete for f in list_staged(store)] in ([], [False])
        assert _within(FAULT_BOUND_S, lambda: _stage_cli(argv)).value == 0
        assert verify(store, model_prefix("tiny"), deep=True).ok


def _engine_caches(root: Path) -> Path:
    """A vLLM cache root holding a 12 MiB compile artifact (three parts in the store)."""
    model = root / "torch_compile_cache" / "0a1b2c3d4e" / "rank_0_0" / "backbone" / "model"
    model.parent.mkdir(parents=True)
    model.write_bytes(os.urandom(12 * MiB))
    return root


FINGERPRINT = cc.fingerprint_from_environment(
    "tiny",
    "/srv/models/tiny",
    1,
    1,
    "bfloat16",
    {"mode": 3},
    engine_args={"max_model_len": 256},
    environ={"PATH": "/usr/bin"},
    device=cc.DeviceInfo("cpu", "test"),
)


def _captured(tmp_path: Path) -> tuple[Path, cc.CacheManifest]:
    archive = tmp_path / "cache.tar"
    manifest = cc.capture(
        _engine_caches(tmp_path / "src"), None, None, archive, fingerprint=FINGERPRINT, compression="none"
    )
    return archive, manifest


@pytest.mark.parametrize("fault", FAULTS)
def test_compile_cache_restore_when_the_store_goes_away_mid_download(
    fault: str, moto: MotoServer, tmp_path: Path
) -> None:
    archive, manifest = _captured(tmp_path)
    assert cc.publish(_s3(moto), FINGERPRINT, archive, manifest).status == cc.PublishStatus.SUCCESS
    faulty = FaultAtFirstBytes(_s3(moto), manifest.archive_name, moto.fault(fault))
    node = tmp_path / "node" / "vllm"

    outcome = _within(FAULT_BOUND_S, lambda: cc.restore(faulty, FINGERPRINT, node, None))
    assert outcome.error is None and faulty.fired  # a status, never an exception into the replica
    result = outcome.value
    assert isinstance(result, cc.RestoreResult) and result.status == cc.RestoreStatus.ERROR
    _assert_names_the_store(result.detail, moto, "compile-cache/tiny/")
    assert not node.exists()  # rolled back: no staging folder, no half-restored cache for vLLM to trust

    if fault == "hangs":
        moto.thaw()
        later = _within(FAULT_BOUND_S, lambda: cc.restore(_s3(moto), FINGERPRINT, node, None)).value
        assert isinstance(later, cc.RestoreResult) and later.status == cc.RestoreStatus.SUCCESS
        assert _tree(node / "torch_compile_cache") == _tree(tmp_path / "src" / "torch_compile_cache")


def test_compile_cache_publish_when_the_store_goes_away_before_its_commit(moto: MotoServer, tmp_path: Path) -> None:
    """The archive is up, the manifest (the entry's commit point) is not: the publish says so and keeps the
    local archive for the next try."""
    archive, manifest = _captured(tmp_path)
    faulty = FaultAtFirstBytes(_s3(moto), cc.MANIFEST_NAME, moto.kill)
    before = hashlib.sha256(archive.read_bytes()).hexdigest()

    outcome = _within(FAULT_BOUND_S, lambda: cc.publish(faulty, FINGERPRINT, archive, manifest))
    assert outcome.error is None and faulty.fired
    result = outcome.value
    assert isinstance(result, cc.PublishResult) and result.status == cc.PublishStatus.ERROR
    _assert_names_the_store(result.detail, moto, "compile-cache/tiny/")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before


# Streams a safetensors file from the store with the env the lab gives a replica, and lets the test kill the
# store once the first tensor is in (it says so on stdout and waits for a line back).
_RUNAI_READER = """
import sys
from runai_model_streamer import SafetensorsStreamer
got = 0
try:
    with SafetensorsStreamer() as streamer:
        streamer.stream_file(sys.argv[1])
        for _name, _tensor in streamer.get_tensors():
            got += 1
            if got == 1:
                print("first tensor", flush=True)
                sys.stdin.readline()
except Exception as exc:
    print(f"tensors {got}; error {type(exc).__name__}: {exc}", flush=True)
    sys.exit(3)
print(f"tensors {got}; no error", flush=True)
"""
_RUNAI_TENSORS = 16


def test_runai_streamer_when_the_store_goes_away_mid_stream(moto: MotoServer, tmp_path: Path) -> None:
    pytest.importorskip("runai_model_streamer")
    size = 2 * MiB
    header = {
        f"t{i}": {"dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size]}
        for i in range(_RUNAI_TENSORS)
    }
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    body = struct.pack("<Q", len(head)) + head + os.urandom(_RUNAI_TENSORS * size)
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key="lab/models/tiny/model.safetensors", Body=body)
    # What the replica gets (llm_config.runai_s3_env), the credentials its node has, and small reads so the
    # stream is still going when the store dies.
    env = {
        **os.environ,
        **runai_s3_env({**os.environ, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_REGION": "us-east-1"}),
        "RUNAI_STREAMER_CONCURRENCY": "2",
        "RUNAI_STREAMER_CHUNK_BYTESIZE": str(5 * MiB),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNAI_READER, f"s3://{BUCKET}/lab/models/tiny/model.safetensors"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline()
        assert first == "first tensor\n", first + proc.stdout.read()
        moto.kill()
        start_s = time.monotonic()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=FAULT_BOUND_S)
        elapsed_s = time.monotonic() - start_s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # The streamer fails (its own words: it names neither endpoint nor bucket) within its bounded retries, and
    # hands out no tensor it did not read whole.
    assert proc.returncode == 3, out
    got = int(out.rsplit("tensors ", 1)[1].split(";")[0])
    assert got < _RUNAI_TENSORS, out
    assert elapsed_s < FAULT_BOUND_S


# --------------------------------------------------------------------------------------------- full disk


@contextmanager
def _small_disk(base: Path, size_mib: int = 8) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB mounted under ``base``, unmounted whatever happens in the block."""
    disk = base / f"disk-{size_mib}m"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(disk)], capture_output=True, text=True
        )
    except FileNotFoundError:
        mounted = subprocess.CompletedProcess([], 1, "", "no mount command")
    if mounted.returncode != 0:
        disk.rmdir()
        pytest.skip(f"cannot mount a tmpfs (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)
        disk.rmdir()


def _fill(disk: Path, leave_bytes: int = 0) -> Path:
    """A file taking the free space of ``disk`` but about ``leave_bytes`` (tmpfs counts whole pages)."""
    filler = disk / "filler"
    chunk = b"\xa5" * MiB
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while (free := shutil.disk_usage(disk).free) > leave_bytes:
            os.write(fd, chunk[: min(len(chunk), free - leave_bytes)])
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def _leftovers(root: Path) -> list[str]:
    """Temp files and folders a failed write could leave behind."""
    return [str(p) for p in root.rglob("*") if TMP_MARK in p.name or ".tmp-" in p.name]


def test_checkpoint_on_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for needed in ("torch", "tokenizers", "transformers"):  # what writing weights and a tokenizer imports
        pytest.importorskip(needed)
    parser = checkpoints.add_cli_args(argparse.ArgumentParser())
    with _small_disk(tmp_path) as disk:
        out = disk / "ckpt" / "tiny"
        args = parser.parse_args(["tiny", "--out", str(out), "--no-progress"])
        filler = _fill(disk, leave_bytes=2 * MiB)  # tiny's folder is 6.8 MB

        assert checkpoints.main(args) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "No space left on device (ENOSPC)" in err, err
        assert not out.exists() and _leftovers(disk) == [] and [p.name for p in disk.iterdir()] == ["ckpt", "filler"]

        filler.unlink()  # space is back: the next run writes it whole
        assert checkpoints.main(args) == 0
        assert checkpoints.read_marker(out) is not None


def test_staging_into_a_local_store_on_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(os.urandom(3 * MiB))
    with _small_disk(tmp_path) as disk:
        store_root = disk / "store"
        argv = ["put", "tiny", "--from", str(src), "--store", str(store_root), "--no-progress"]
        filler = _fill(disk, leave_bytes=MiB)

        assert _stage_cli(argv) == 1
        err = capsys.readouterr().err
        assert f"{store_root.as_uri()}/models/tiny/model.safetensors" in err and "(ENOSPC)" in err, err
        assert not is_complete(LocalStore(store_root), model_prefix("tiny")) and _leftovers(disk) == []

        filler.unlink()
        assert _stage_cli(argv) == 0
        assert verify(LocalStore(store_root), model_prefix("tiny"), deep=True).ok

        # And back out of it onto the full disk: `stage get` names where, and leaves no partial folder.
        dest = disk / "node" / "tiny"
        get = ["get", "tiny", "--to", str(dest), "--store", str(store_root), "--no-progress"]
        filler = _fill(disk, leave_bytes=MiB)
        assert _stage_cli(get) == 1
        err = capsys.readouterr().err
        assert f"{dest.parent}/" in err and "(ENOSPC)" in err, err
        assert list(dest.parent.iterdir()) == []
        filler.unlink()
        assert _stage_cli(get) == 0
        assert {name: digest for name, digest in _tree(dest).items() if name != MANIFEST_NAME} == _tree(src)


def _cc_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cc.add_cli_args(parser)
    return cc.main(parser.parse_args(argv))


def test_compile_cache_capture_on_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, manifest = _captured(tmp_path)
    capture = [
        *("capture", "--model", "tiny", "--no-triton", "--compression", "none"),
        *("--vllm-cache-root", str(tmp_path / "src"), "--inductor-cache-dir", str(tmp_path / "no-inductor")),
    ]
    with _small_disk(tmp_path, size_mib=16) as disk:
        out = disk / "out" / "cache.tar"
        filler = _fill(disk, leave_bytes=MiB)  # the archive is 12 MiB

        assert _cc_cli([*capture, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert f"cannot write the archive {out}" in err and "(ENOSPC)" in err, err
        assert list(out.parent.iterdir()) == []

        # The manifest beside an archive: whole or absent, never a torn temp file next to it.
        _fill(disk)
        manifest_path = out.with_name(out.name + ".manifest.json")
        with pytest.raises(OSError, match=r"No space left on device") as info:
            cc.write_manifest(manifest, manifest_path)
        assert info.value.filename == str(manifest_path)
        assert list(out.parent.iterdir()) == [] and _leftovers(disk) == []

        filler.unlink()  # space is back: the next capture writes the archive and its manifest
        assert _cc_cli([*capture, "--out", str(out)]) == 0
        assert sorted(p.name for p in out.parent.iterdir()) == ["cache.tar", "cache.tar.manifest.json"]


def test_compile_cache_publish_and_restore_on_a_full_disk(tmp_path: Path) -> None:
    archive, manifest = _captured(tmp_path)
    # Room for the store's copy and a restore (the fetched archive and its extracted files: 12 MiB each).
    with _small_disk(tmp_path, size_mib=48) as disk:
        store = LocalStore(disk / "store")
        filler = _fill(disk, leave_bytes=MiB)
        result = cc.publish(store, FINGERPRINT, archive, manifest)
        assert result.status == cc.PublishStatus.ERROR
        assert f"{store.uri}/compile-cache/tiny/" in result.detail and "(ENOSPC)" in result.detail, result.detail
        assert not any(o.key.endswith(cc.MANIFEST_NAME) for o in store.list("")) and _leftovers(disk) == []
        filler.unlink()
        assert cc.publish(store, FINGERPRINT, archive, manifest).status == cc.PublishStatus.SUCCESS

        # Restoring onto the full disk: an error naming where, the caches as they were (none), nothing left.
        node = disk / "node" / "vllm"
        filler = _fill(disk, leave_bytes=MiB)
        restored = cc.restore(store, FINGERPRINT, node, None)
        assert restored.status == cc.RestoreStatus.ERROR
        assert str(node) in restored.detail and "(ENOSPC)" in restored.detail, restored.detail
        assert not node.exists() and _leftovers(disk) == []
        filler.unlink()
        assert cc.restore(store, FINGERPRINT, node, None).status == cc.RestoreStatus.SUCCESS


def _result_row(run_id: str, log_dir: Path, pad_chars: int) -> ResultRow:
    return ResultRow.from_dict(
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "model": "tiny",
            "experiment": "baseline",
            "repeat": 0,
            "status": "ok",
            "ttft_s": 3.0,
            "log_path": str(log_dir / f"{run_id}.log"),
            "extra": {"pad": "x" * pad_chars},
        }
    )


def test_a_result_row_appended_on_a_full_disk(tmp_path: Path) -> None:
    logs = tmp_path / "logs"  # on another disk: where a row that cannot be appended is kept
    logs.mkdir()
    with _small_disk(tmp_path) as disk:
        results = disk / "results.jsonl"
        save_row(results, _result_row("first", logs, 500))
        kept = results.read_bytes()
        filler = _fill(disk)  # the rest of the file's last page is all the space left: the next row tears

        with pytest.raises(ResultsNotWritable, match=r"No space left on device.*\(ENOSPC\)") as info:
            save_row(results, _result_row("torn", logs, 8000))
        assert str(results) in str(info.value) and str(logs / "torn.row.jsonl") in str(info.value)
        assert results.read_bytes() == kept  # not half in the file: taken back whole
        assert json.loads((logs / "torn.row.jsonl").read_text())["run_id"] == "torn"

        filler.unlink()
        save_row(results, _result_row("after", logs, 500))
        skipped: list[str] = []
        assert [r.run_id for r in load_rows(results, skipped=skipped)] == ["first", "after"] and skipped == []
        assert lock_path(results).is_file()
