from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from coldstart.storage.staging import (
    MANIFEST_NAME,
    IntegrityError,
    InvalidInput,
    InvalidManifest,
    ModelManifest,
    download_dir,
    is_complete,
    list_staged,
    model_prefix,
    read_manifest,
    sharded_prefix,
    upload_dir,
    verify,
)
from coldstart.storage.staging_cli import add_cli_args, main
from coldstart.storage.store import LocalStore, ObjectNotFound, Store

PREFIX = "models/tiny"


class CountingStore:
    """Delegates to a real store, counting transfers; optionally fails the Nth upload (a crash mid-upload)."""

    def __init__(self, inner: Store, *, fail_on_upload: int | None = None) -> None:
        self._inner = inner
        self._fail_on_upload = fail_on_upload
        self.calls: Counter[str] = Counter()
        self.uri = inner.uri

    def __getattr__(self, name: str) -> Callable:
        return getattr(self._inner, name)

    def upload_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> None:
        self.calls["upload_file"] += 1
        if self._fail_on_upload is not None and self.calls["upload_file"] >= self._fail_on_upload:
            raise ConnectionResetError(f"injected failure uploading {key}")
        self._inner.upload_file(local, key, progress=progress)

    def download_file(self, key: str, local: Path, *, progress: Callable[[int], None] | None = None) -> None:
        self.calls["download_file"] += 1
        self._inner.download_file(key, local, progress=progress)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A tiny HF-style folder: nested files, a symlinked blob (HF cache style), and tool metadata to skip."""
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "tiny"}')
    (root / "model-00001-of-00002.safetensors").write_bytes(os.urandom(3000))
    (root / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}')
    blob = tmp_path / "blobs" / "abc123"
    blob.parent.mkdir()
    blob.write_bytes(os.urandom(2000))
    (root / "model-00002-of-00002.safetensors").symlink_to(blob)
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "download.lock").write_text("metadata, not model content")
    return root


def _local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


EXPECTED_FILES = [
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "tokenizer/tokenizer.json",
]


def test_layout() -> None:
    assert model_prefix("qwen2.5-0.5b") == "models/qwen2.5-0.5b"
    assert sharded_prefix("qwen2.5-0.5b", 2) == "sharded/qwen2.5-0.5b/tp2"
    for bad in ("", "a/b", "..", ".", "-x", "a b", "x/../y"):
        with pytest.raises(InvalidInput):
            model_prefix(bad)
    for tp in (0, -1, True):
        with pytest.raises(InvalidInput):
            sharded_prefix("m", tp)


def test_round_trip_with_manifest(store: Store, model_dir: Path, tmp_path: Path) -> None:
    assert not is_complete(store, PREFIX)
    result = upload_dir(store, PREFIX, model_dir, workers=4, show_progress=False)
    assert (result.uploaded_files, result.skipped_files, result.deleted_files) == (4, 0, 0)
    assert result.uploaded_bytes == 3000 + 2000 + 22 + 13

    assert is_complete(store, PREFIX)
    manifest = read_manifest(store, PREFIX)
    assert manifest == result.manifest
    assert [f.path for f in manifest.files] == EXPECTED_FILES
    local = _local_files(model_dir)
    for f in manifest.files:
        assert f.size_bytes == len(local[f.path])
        assert f.sha256 == hashlib.sha256(local[f.path]).hexdigest()
    assert sorted(o.key for o in store.list(PREFIX + "/")) == sorted(
        [f"{PREFIX}/{p}" for p in EXPECTED_FILES] + [f"{PREFIX}/{MANIFEST_NAME}"]
    )

    assert verify(store, PREFIX).ok
    assert verify(store, PREFIX, deep=True).ok

    dest = download_dir(store, PREFIX, tmp_path / "dl" / "tiny", show_progress=False)
    assert dest == tmp_path / "dl" / "tiny"
    got = _local_files(dest)
    assert got.pop(MANIFEST_NAME) == manifest.to_json_bytes()
    assert got == {p: local[p] for p in EXPECTED_FILES}  # .cache/ skipped, symlink materialised
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]  # no temp dir left behind

    [staged] = list_staged(store)
    assert (staged.model_name, staged.layout, staged.complete, staged.files) == ("tiny", "model", True, 4)


def test_interrupted_upload_is_never_complete(store: Store, model_dir: Path, tmp_path: Path) -> None:
    flaky = CountingStore(store, fail_on_upload=3)
    with pytest.raises(ConnectionResetError, match="injected"):
        upload_dir(flaky, PREFIX, model_dir, workers=1, show_progress=False)
    assert 0 < len(store.list(PREFIX + "/")) < 4  # some files did land...
    assert not is_complete(store, PREFIX)  # ...but the folder is not sealed
    with pytest.raises(ObjectNotFound, match="not staged"):
        read_manifest(store, PREFIX)
    with pytest.raises(ObjectNotFound, match="upload did not finish"):
        download_dir(store, PREFIX, tmp_path / "dl", show_progress=False)
    assert not (tmp_path / "dl").exists()
    with pytest.raises(ObjectNotFound):
        verify(store, PREFIX)
    assert [(s.model_name, s.complete) for s in list_staged(store)] == [("tiny", False)]

    # Resuming completes it.
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    assert is_complete(store, PREFIX)


def test_interrupted_reupload_unseals_the_old_version(store: Store, model_dir: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    (model_dir / "config.json").write_text('{"model_type": "tiny", "v": 2}')
    (model_dir / "tokenizer" / "tokenizer.json").write_text('{"vocab": {"a": 1}}')
    with pytest.raises(ConnectionResetError):
        upload_dir(CountingStore(store, fail_on_upload=2), PREFIX, model_dir, workers=1, show_progress=False)
    # One changed file may already be in the store: the old manifest must not vouch for the mix.
    assert not is_complete(store, PREFIX)


def test_reupload_skips_matching_files(store: Store, model_dir: Path, tmp_path: Path) -> None:
    first = upload_dir(store, PREFIX, model_dir, show_progress=False)

    counting = CountingStore(store)
    again = upload_dir(counting, PREFIX, model_dir, show_progress=False)
    assert (again.uploaded_files, again.skipped_files, again.deleted_files) == (0, 4, 0)
    assert counting.calls["upload_file"] == 0
    assert again.manifest == first.manifest  # untouched, not rewritten

    # Same size, different bytes: only a hash can tell, and only that file goes up again.
    shard = model_dir / "model-00001-of-00002.safetensors"
    shard.write_bytes(os.urandom(3000))
    (model_dir / "tokenizer" / "tokenizer.json").unlink()
    counting = CountingStore(store)
    changed = upload_dir(counting, PREFIX, model_dir, show_progress=False)
    assert (changed.uploaded_files, changed.skipped_files, changed.deleted_files) == (1, 2, 1)
    assert counting.calls["upload_file"] == 1
    assert not store.exists(f"{PREFIX}/tokenizer/tokenizer.json")
    assert verify(store, PREFIX, deep=True).ok
    dest = download_dir(store, PREFIX, tmp_path / "dl", show_progress=False)
    assert (dest / shard.name).read_bytes() == shard.read_bytes()
    assert not (dest / "tokenizer").exists()


def test_reupload_repairs_a_missing_object(store: Store, model_dir: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    store.delete(f"{PREFIX}/config.json")
    assert verify(store, PREFIX).missing == ("config.json",)
    result = upload_dir(store, PREFIX, model_dir, show_progress=False)
    assert (result.uploaded_files, result.skipped_files) == (1, 3)
    assert verify(store, PREFIX).ok


def test_verify_finds_damage(store: Store, model_dir: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    store.put_bytes(f"{PREFIX}/model-00001-of-00002.safetensors", os.urandom(3000))  # same size, new bytes
    store.put_bytes(f"{PREFIX}/config.json", b"{}")  # wrong size
    store.put_bytes(f"{PREFIX}/stray.safetensors", b"x")
    store.delete(f"{PREFIX}/tokenizer/tokenizer.json")

    shallow = verify(store, PREFIX)
    assert not shallow.ok
    assert shallow.missing == ("tokenizer/tokenizer.json",)
    assert shallow.size_mismatch == ("config.json",)
    assert shallow.extra == ("stray.safetensors",)
    assert shallow.hash_mismatch == ()  # only a deep verify reads the bytes

    deep = verify(store, PREFIX, deep=True)
    assert deep.hash_mismatch == ("model-00001-of-00002.safetensors",)
    assert "wrong sha256" in deep.summary()


def test_download_rejects_corrupt_store_copy(store: Store, model_dir: Path, tmp_path: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    store.put_bytes(f"{PREFIX}/model-00002-of-00002.safetensors", os.urandom(2000))
    with pytest.raises(IntegrityError, match="sha256"):
        download_dir(store, PREFIX, tmp_path / "dl" / "tiny", show_progress=False)
    assert list((tmp_path / "dl").iterdir()) == []  # neither dest nor the temp dir


def test_download_skips_a_matching_dest_and_replaces_a_stale_one(store: Store, model_dir: Path, tmp_path: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    dest = tmp_path / "dl" / "tiny"
    download_dir(store, PREFIX, dest, show_progress=False)

    counting = CountingStore(store)
    assert download_dir(counting, PREFIX, dest, show_progress=False) == dest
    assert counting.calls["download_file"] == 0

    (model_dir / "config.json").write_text('{"model_type": "tiny", "v": 2}')
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    download_dir(store, PREFIX, dest, show_progress=False)
    assert (dest / "config.json").read_text() == '{"model_type": "tiny", "v": 2}'
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]  # old copy and temp dir both gone


def test_download_refuses_to_replace_a_foreign_dir(store: Store, model_dir: Path, tmp_path: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="refusing"):
        download_dir(store, PREFIX, precious, show_progress=False)
    assert (precious / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (download_dir(store, PREFIX, empty, show_progress=False) / "config.json").is_file()


def test_sharded_layout_is_separate(store: Store, model_dir: Path) -> None:
    upload_dir(store, sharded_prefix("tiny", 2), model_dir, show_progress=False)
    assert is_complete(store, "sharded/tiny/tp2")
    assert not is_complete(store, model_prefix("tiny"))
    assert [(s.model_name, s.layout, s.prefix) for s in list_staged(store)] == [("tiny", "tp2", "sharded/tiny/tp2")]


def test_empty_or_missing_source_dir(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        upload_dir(store, PREFIX, tmp_path / "absent", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no files"):
        upload_dir(store, PREFIX, tmp_path / "empty", show_progress=False)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(format=99),
        lambda b: b["files"][0].update(path="../../etc/passwd"),
        lambda b: b["files"][0].update(path="/abs"),
        lambda b: b["files"][0].update(sha256="zz"),
        lambda b: b["files"][0].update(size_bytes=-1),
        lambda b: b["files"].append(dict(b["files"][0])),
        lambda b: b.pop("files"),
    ],
)
def test_manifest_from_store_is_validated(mutate: Callable[[dict], None]) -> None:
    good = ModelManifest.from_json_bytes(
        json.dumps(
            {
                "format": 1,
                "created_at": "2025-01-01T00:00:00Z",
                "tool_version": "0.1.0",
                "files": [{"path": "a/b.json", "size_bytes": 3, "sha256": "0" * 64}],
            }
        ).encode()
    )
    body = json.loads(good.to_json_bytes())
    mutate(body)
    with pytest.raises(InvalidManifest):
        ModelManifest.from_json_bytes(json.dumps(body).encode())
    with pytest.raises(InvalidManifest):
        ModelManifest.from_json_bytes(b"not json")


def test_corrupt_manifest_is_incomplete_and_reupload_fixes_it(store: Store, model_dir: Path) -> None:
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    store.put_bytes(f"{PREFIX}/{MANIFEST_NAME}", b"{torn")
    assert not is_complete(store, PREFIX)
    with pytest.raises(InvalidManifest):
        read_manifest(store, PREFIX)
    upload_dir(store, PREFIX, model_dir, show_progress=False)
    assert is_complete(store, PREFIX)


# --------------------------------------------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    return main(add_cli_args(argparse.ArgumentParser()).parse_args(list(argv)))


def _store_argv(store: Store) -> list[str]:
    if isinstance(store, LocalStore):
        return ["--store", store.uri]
    return ["--store", store.uri, "--endpoint-url", store.endpoint_url]


def test_cli_put_ls_verify_get(
    store: Store, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = _store_argv(store)
    assert _cli("put", "tiny", "--from", str(model_dir), *s, "--no-progress") == 0
    assert "uploaded 4" in capsys.readouterr().out
    assert _cli("put", "tiny", "--from", str(model_dir), *s, "--no-progress") == 0
    assert "skipped 4" in capsys.readouterr().out
    assert _cli("ls", *s) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "complete" in out
    assert _cli("verify", "tiny", "--deep", *s) == 0
    assert "ok" in capsys.readouterr().out
    assert _cli("get", "tiny", "--to", str(tmp_path / "dl"), *s, "--no-progress") == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dl")
    assert (tmp_path / "dl" / "config.json").is_file()

    store.delete(f"{PREFIX}/config.json")
    assert _cli("verify", "tiny", *s) == 1
    assert "missing: config.json" in capsys.readouterr().out


def test_cli_exit_codes(store: Store, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = _store_argv(store)
    assert _cli("get", "absent-model", "--to", str(tmp_path / "dl"), *s) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not staged" in err and err.count("\n") == 1

    assert _cli("put", "bad/name", "--from", str(model_dir), *s) == 2
    assert "invalid model name" in capsys.readouterr().err
    assert _cli("put", "tiny", "--from", str(tmp_path / "nope"), *s, "--no-progress") == 2
    assert "not a directory" in capsys.readouterr().err
    assert _cli("ls", "--store", "ftp://x") == 2
    assert "unsupported store URI scheme" in capsys.readouterr().err
    assert _cli("verify", "tiny", "--tp", "0", *s) == 2


def test_cli_missing_bucket(s3_server: str, aws_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("ls", "--store", "s3://no-such-bucket-coldstart", "--endpoint-url", s3_server) == 1
    err = capsys.readouterr().err
    assert "no-such-bucket-coldstart" in err and "does not exist" in err


def test_cli_default_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLDSTART_STORE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _cli("put", "tiny", "--from", str(model_dir), "--no-progress") == 0
    assert (tmp_path / "cache" / "coldstart" / "store" / "models" / "tiny" / MANIFEST_NAME).is_file()
    capsys.readouterr()


def test_cli_put_defaults_to_the_checkpoint_tools_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `coldstart checkpoint tiny && coldstart stage put tiny`: the second finds what the first wrote.
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "checkpoints").mkdir(parents=True)
    model_dir.rename(tmp_path / "home" / "checkpoints" / "tiny")
    store = LocalStore(tmp_path / "store")
    assert _cli("put", "tiny", "--store", store.uri, "--no-progress") == 0
    assert is_complete(store, PREFIX)
    assert _cli("put", "absent", "--store", store.uri, "--no-progress") == 2
    assert "not a directory" in capsys.readouterr().err
    assert _cli("put", "tiny", "--tp", "2", "--store", store.uri) == 2
    assert "--tp needs --from" in capsys.readouterr().err


def test_progress_bar_reports_bytes(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upload_dir(LocalStore(tmp_path / "store"), PREFIX, model_dir, show_progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""  # progress goes to stderr; stdout is for results
    assert "uploading" in captured.err and "5.0 kB" in captured.err


# ------------------------------------------------------------------------------- --link (one copy on disk)


def test_link_stages_the_same_files_without_a_second_copy(model_dir: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    r = upload_dir(store, PREFIX, model_dir, show_progress=False, link=True)
    assert r.uploaded_files == 4 and is_complete(store, PREFIX)
    staged = tmp_path / "store" / PREFIX / "model-00001-of-00002.safetensors"
    assert staged.stat().st_ino == (model_dir / "model-00001-of-00002.safetensors").stat().st_ino
    # The HF-cache symlink is followed: the store holds the blob's bytes, not a link to a link.
    blob = (tmp_path / "store" / PREFIX / "model-00002-of-00002.safetensors").resolve()
    assert not blob.is_symlink() and blob.stat().st_ino == (tmp_path / "blobs" / "abc123").stat().st_ino
    assert verify(store, PREFIX, deep=True).ok
    again = upload_dir(store, PREFIX, model_dir, show_progress=False, link=True)
    assert (again.uploaded_files, again.skipped_files) == (0, 4)


def test_link_refuses_a_store_that_is_not_a_local_directory(model_dir: Path, tmp_path: Path) -> None:
    class NotLocal(CountingStore):
        pass

    with pytest.raises(InvalidInput, match="--link needs a local directory store"):
        upload_dir(NotLocal(LocalStore(tmp_path / "s")), PREFIX, model_dir, show_progress=False, link=True)  # type: ignore[arg-type]


def test_link_across_filesystems_says_to_copy_and_leaves_the_folder_unsealed(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    def exdev(src: object, dst: object, **_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", exdev)
    store = LocalStore(tmp_path / "store")
    assert _cli("put", "tiny", "--from", str(model_dir), "--store", store.uri, "--link", "--no-progress") == 1
    assert "another filesystem; stage without --link" in capsys.readouterr().err
    assert not is_complete(store, PREFIX)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]  # no temp names left behind
