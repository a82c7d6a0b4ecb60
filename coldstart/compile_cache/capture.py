"""Capture: the engine's cache directories -> one archive and its manifest."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import secrets
import tarfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coldstart.compile_cache.archive import (
    CacheManifest,
    RootLayout,
    _compressing,
    _write_atomically,
    resolve_compression,
    sha256_file,
)
from coldstart.compile_cache.common import (
    _ARCHIVE_SUFFIX,
    ROOT_INDUCTOR,
    ROOT_NAMES,
    ROOT_TRITON,
    ROOT_VLLM,
    VLLM_CACHE_SUBDIR,
    VLLM_MODELINFO_SUBDIR,
    CaptureError,
    OtherConfigCaches,
)
from coldstart.compile_cache.fingerprint import (
    DeviceInfo,
    Fingerprint,
    _describe_diff,
    _diff_dicts,
    canonical_json,
    fingerprint_for_engine,
    hashed_env,
)
from coldstart.storage.store_core import os_error_text


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk_files(base: Path, prune: tuple[Path, ...]) -> tuple[list[Path], list[Path], list[Path]]:
    """(directories, regular files, skipped entries) under ``base``, sorted; ``prune`` subtrees left out."""
    dirs: list[Path] = []
    files: list[Path] = []
    skipped: list[Path] = []

    def fail(e: OSError) -> None:
        raise CaptureError(f"cannot read {e.filename}: {e.strerror}") from e

    for dirpath, dirnames, filenames in os.walk(base, onerror=fail, followlinks=False):
        current = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            p = current / d
            if p.is_symlink():
                skipped.append(p)
            elif not any(_is_within(p.resolve(), r) for r in prune):
                keep.append(d)
                dirs.append(p)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = current / name
            if p.is_file() and not p.is_symlink():
                files.append(p)
            else:
                skipped.append(p)
    return dirs, files, skipped


ENGINE_MARKER = "coldstart-engine.json"


def write_engine_marker(
    vllm_cache_root: str | Path,
    *,
    model_name: str,
    model_path: str,
    engine_kwargs: Mapping[str, Any],
    experiment: str = "",
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Record, beside the engine's caches, which config is about to fill them (the replica hook calls this
    before every engine start). A publish later checks it: the node's caches hold whatever ran last, and
    packing another model's or config's caches under this key would poison every replica that restores it.
    Holds the fingerprint's inputs only (the compile-relevant env, no secrets), not a device probe, so it
    costs the cold start nothing measurable."""
    root = Path(vllm_cache_root)
    root.mkdir(parents=True, exist_ok=True)
    body = {
        "model_name": model_name,
        "experiment": experiment,
        "run_id": run_id,
        "model_path": str(model_path),
        "engine_kwargs": json.loads(canonical_json(dict(engine_kwargs))),
        "compile_env": hashed_env(os.environ if environ is None else environ),
    }
    path = root / ENGINE_MARKER
    _write_atomically(path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
    return path


def check_engine_marker(vllm_cache_root: Path, fingerprint: Fingerprint) -> dict[str, Any]:
    """Raise CaptureError unless the caches under ``vllm_cache_root`` were left by an engine whose config
    gives ``fingerprint`` (the marker's inputs, fingerprinted on this node's device and versions).
    Returns the marker."""
    path = Path(vllm_cache_root) / ENGINE_MARKER
    if not path.is_file():
        raise CaptureError(
            f"no {ENGINE_MARKER} in {vllm_cache_root}: no lab run of this node left these caches "
            f"(every `service.py` run writes it before its engine starts); run "
            f"`service.py {fingerprint.model_name} <experiment>` once, then publish"
        )
    try:
        marker = json.loads(path.read_text())
        left_by = fingerprint_for_engine(
            marker["model_name"],
            marker["model_path"],
            marker["engine_kwargs"],
            environ=marker["compile_env"],
            checkpoint_sha256=fingerprint.checkpoint_sha256,
            device=DeviceInfo(fingerprint.device_name, fingerprint.compute_capability),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CaptureError(
            f"unreadable {path} ({type(e).__name__}: {e}); clear the caches "
            f"(`python clear_cache.py --all`) and run the model once before publishing"
        ) from e
    fields = _diff_dicts(fingerprint.to_dict(), left_by.to_dict())
    if fields:
        detail = _describe_diff(fingerprint.to_dict(), left_by.to_dict(), fields, have_label="on node")
        raise OtherConfigCaches(
            f"the engine caches in {vllm_cache_root} were left by {marker['model_name']} "
            f"{marker.get('experiment') or ''} (run {marker.get('run_id')}), another config: {detail}. "
            f"Publishing them would poison this key; run `service.py {fingerprint.model_name} <experiment>` "
            f"with this config first"
        )
    return marker


def capture(
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None,
    out_archive: Path,
    *,
    fingerprint: Fingerprint | None = None,
    compression: str = "auto",
) -> CacheManifest:
    """Pack ``<vllm_cache_root>/torch_compile_cache`` (AOT tree included) and ``modelinfos``, the Inductor
    cache and the Triton cache into one tar at ``out_archive`` (written atomically), stored as ``vllm/``,
    ``inductor/`` and ``triton/`` so a restore can place each under a different root. A root nested inside
    another one (vLLM's AOT mode puts Inductor's cache inside its own tree) is archived once, as part of the
    outer root."""
    compression = resolve_compression(compression)
    vllm_cache_root = Path(vllm_cache_root)
    vllm_tree = vllm_cache_root / VLLM_CACHE_SUBDIR
    if not vllm_tree.is_dir():
        raise CaptureError(
            f"no vLLM compile cache at {vllm_tree}: start the engine once with "
            f"VLLM_CACHE_ROOT={vllm_cache_root} (and compilation on) before capturing"
        )
    modelinfos = vllm_cache_root / VLLM_MODELINFO_SUBDIR
    # (name, where archive paths are relative to, what to walk: the first one names the root)
    candidates: list[tuple[str, Path, tuple[Path, ...]]] = [
        (ROOT_VLLM, vllm_cache_root, (vllm_tree, *((modelinfos,) if modelinfos.is_dir() else ())))
    ]
    for name, d in ((ROOT_INDUCTOR, inductor_cache_dir), (ROOT_TRITON, triton_cache_dir)):
        if d is not None:
            candidates.append((name, Path(d), (Path(d),)))

    resolved = {name: walks[0].resolve() for name, _, walks in candidates}
    layouts: list[RootLayout] = []
    entries: list[tuple[Path, str]] = []  # (local path, archive name)
    skipped_all: list[str] = []
    captured: list[str] = []
    for name, rel_base, walks in candidates:
        walk = walks[0]
        outer = next((o for o in captured if _is_within(resolved[name], resolved[o])), None)
        if outer is not None or not walk.is_dir():
            layouts.append(RootLayout(name, str(walk), 0, 0, (), nested_in=outer))
            continue
        # A root that contains an earlier one (unusual) leaves that subtree to it.
        prune = tuple(resolved[o] for o in captured)
        dirs, files, skipped = [], [], []
        for each in walks:
            d_, f_, s_ = _walk_files(each, prune)
            dirs += d_
            files += f_
            skipped += s_
        rel_files = tuple(f.relative_to(rel_base).as_posix() for f in files)
        entries += [(d, f"{name}/{d.relative_to(rel_base).as_posix()}") for d in dirs]
        entries += [(f, f"{name}/{r}") for f, r in zip(files, rel_files, strict=True)]
        skipped_all += [f"{name}/{s.relative_to(rel_base).as_posix()}" for s in skipped]
        layouts.append(RootLayout(name, str(walk), len(files), 0, rel_files))
        captured.append(name)

    out_archive = Path(out_archive)
    out_archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_archive.with_name(out_archive.name + f".tmp-{secrets.token_hex(4)}")
    sizes: dict[str, int] = dict.fromkeys(ROOT_NAMES, 0)
    try:
        _write_archive(tmp, out_archive, entries, sizes, compression)
        archive_sha256, size_bytes = sha256_file(tmp)
        os.replace(tmp, out_archive)
    except OSError as e:
        # Past the sources' own errors (CaptureError above): the archive's side, a full disk or a read-only mount.
        raise _archive_write_error(out_archive, e) from e
    finally:
        tmp.unlink(missing_ok=True)

    layouts = [dataclasses.replace(r, size_bytes=sizes[r.name]) for r in layouts]
    return CacheManifest(
        archive_name=f"cache-{archive_sha256[:16]}{_ARCHIVE_SUFFIX[compression]}",
        compression=compression,
        archive_sha256=archive_sha256,
        size_bytes=size_bytes,
        file_count=sum(r.file_count for r in layouts),
        content_bytes=sum(r.size_bytes for r in layouts),
        roots=tuple(layouts),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        fingerprint=None if fingerprint is None else fingerprint.to_dict(),
        skipped=tuple(skipped_all),
    )


# Errors only the written side raises: reading a cache file never fills a disk.
_WRITE_SIDE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _archive_write_error(out_archive: Path, e: OSError) -> CaptureError:
    return CaptureError(
        f"cannot write the archive {out_archive}: {os_error_text(e)}; nothing was kept (free space there or "
        "capture to another --out)"
    )


def _write_archive(
    tmp: Path, out_archive: Path, entries: list[tuple[Path, str]], sizes: dict[str, int], compression: str
) -> None:
    """Stream ``entries`` into the tar at ``tmp``, counting each root's bytes into ``sizes``."""
    with (
        open(tmp, "wb") as raw,
        _compressing(raw, compression) as stream,
        tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for local, arcname in entries:
            try:
                info = tar.gettarinfo(str(local), arcname=arcname)
                # Owners are meaningless on another node and would leak user names.
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(local, "rb") as f:
                        tar.addfile(info, f)
                    sizes[arcname.split("/", 1)[0]] += info.size
                else:
                    tar.addfile(info)
            except FileNotFoundError as e:
                raise CaptureError(
                    f"{local} vanished during capture: is an engine still writing "
                    "the cache? capture after it has finished compiling"
                ) from e
            except OSError as e:
                if e.errno in _WRITE_SIDE_ERRNOS:
                    raise _archive_write_error(out_archive, e) from e
                raise CaptureError(f"cannot archive {local}: {e}") from e
