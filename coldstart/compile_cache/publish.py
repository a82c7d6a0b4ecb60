"""Publish: archive then manifest into the store, create-only, so exactly one publisher wins.

An entry that fails verification (manifest unreadable, archive missing, of the wrong size or checksum) is
replaced, not skipped: otherwise one torn upload would make every later restore fail CORRUPT for good. So is a
sound entry that holds fewer files than this node's capture, all of which the capture also holds: restoring it
left vLLM compiling the rest (campaign 2026-11-30-h200x1: an entry published under a key that lacked a hashed
env var held another config's graphs, and every run restored it as SUCCESS and then compiled for 20 s).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coldstart.compile_cache.archive import CacheManifest, entry_prefix, sha256_file
from coldstart.compile_cache.common import (
    _SINGLE_PUT_LIMIT_BYTES,
    KEY_PREFIX,
    MANIFEST_NAME,
    CompileCacheError,
    ManifestError,
    PublishStatus,
)
from coldstart.compile_cache.fingerprint import Fingerprint, _diff_dicts
from coldstart.storage.store import ObjectNotFound, Store, StoreError


@dataclass(frozen=True)
class PublishResult:
    status: PublishStatus
    key: str  # the entry prefix
    detail: str = ""


@dataclass(frozen=True)
class EntryCheck:
    """One store entry checked against its manifest: the manifest parses, its archive is there with the
    manifest's size and sha256."""

    entry: str  # the entry prefix
    problems: tuple[str, ...]
    manifest: CacheManifest | None = None
    manifest_bytes: bytes | None = None  # what was checked: a repair replaces only this manifest

    @property
    def ok(self) -> bool:
        return not self.problems


def _object_problem(store: Store, key: str, sha256: str, size_bytes: int, *, checksum: bool = True) -> str | None:
    """Why the object at ``key`` is not ``size_bytes`` bytes hashing to ``sha256``; None when it is."""
    found = [o for o in store.list(key) if o.key == key]
    if not found:
        return f"{key} is missing"
    if found[0].size_bytes != size_bytes:
        return f"{key} is {found[0].size_bytes} bytes, its manifest says {size_bytes}"
    if not checksum:
        return None
    with tempfile.TemporaryDirectory(prefix="coldstart-verify-") as tmp:
        local = Path(tmp, "archive")
        try:
            store.download_file(key, local)
        except ObjectNotFound:
            return f"{key} is missing"
        got, _ = sha256_file(local)
    if got != sha256:
        return f"{key} has sha256 {got[:16]}…, its manifest says {sha256[:16]}…"
    return None


def verify_entry(store: Store, entry: str, *, checksum: bool = True) -> EntryCheck:
    """Check one entry (``compile-cache/<model>/<key>/``); StoreError only for a store that cannot answer."""
    manifest_key = entry + MANIFEST_NAME
    try:
        data = store.get_bytes(manifest_key)
    except ObjectNotFound:
        return EntryCheck(entry, (f"{manifest_key} is missing",))
    try:
        manifest = CacheManifest.from_json(data)
    except ManifestError as e:
        return EntryCheck(entry, (f"{manifest_key} is unreadable: {e}",), manifest_bytes=data)
    problem = _object_problem(
        store, entry + manifest.archive_name, manifest.archive_sha256, manifest.size_bytes, checksum=checksum
    )
    return EntryCheck(entry, (problem,) if problem else (), manifest, data)


def files_missing_from(published: CacheManifest, ours: CacheManifest) -> list[str]:
    """The files of ``ours`` that ``published`` lacks, as ``root/path``, when ``ours`` holds every file of
    ``published`` and more; else none. Only a strict superset replaces an entry: two publishers whose captures
    each hold files the other lacks would otherwise replace each other in turn."""

    def files(m: CacheManifest) -> set[str]:
        return {f"{root.name}/{path}" for root in m.roots for path in root.files}

    theirs, mine = files(published), files(ours)
    return sorted(mine - theirs) if theirs < mine else []


def check_entry_prefix(entry: str) -> str:
    """``compile-cache/<model>/<key>/`` exactly (as `compile-cache show` prints it); ValueError otherwise."""
    parts = entry.rstrip("/").split("/")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a compile-cache entry: {entry!r} (expected {KEY_PREFIX}/<model>/<key>/)")
    return "/".join(parts) + "/"


def remove_entry(store: Store, entry: str, *, dry_run: bool = False) -> list[str]:
    """Delete one entry: its manifest first (restores stop seeing it at once), then the rest. Returns the keys."""
    entry = check_entry_prefix(entry)
    keys = [o.key for o in store.list(entry)]
    if not keys:
        raise CompileCacheError(f"no compile-cache entry at {entry}")
    manifest_key = entry + MANIFEST_NAME
    ordered = sorted(keys, key=lambda k: k != manifest_key)  # the commit point goes first
    if not dry_run:
        for key in ordered:
            store.delete(key)
    return ordered


def publish(store: Store, fingerprint: Fingerprint, archive: Path, manifest: CacheManifest) -> PublishResult:
    """Put one captured cache into the store under the fingerprint's key, race-safely.

    The archive goes up create-only under its content address, then the manifest create-only: the manifest
    is the commit point, so among concurrent publishers exactly one gets SUCCESS and the rest SKIPPED (each
    loser deletes the archive it uploaded unless the winner's manifest names that same archive). An entry
    already there is verified first (``verify_entry``): a good one is SKIPPED, a bad one is replaced, through
    the same commit point: our archive is checked in place (rewritten when it is the bad one: content
    addressed, so any writer writes the same bytes), then the bad manifest is deleted only if it is still the
    one that was checked, and ours put create-only.
    """
    prefix = entry_prefix(fingerprint)
    want = fingerprint.to_dict()
    if manifest.fingerprint is not None and (fields := _diff_dicts(want, manifest.fingerprint)):
        return PublishResult(
            PublishStatus.ERROR,
            prefix,
            f"the manifest was captured for another fingerprint (fields: "
            f"{', '.join(fields)}); refusing to publish it under this key",
        )
    manifest = dataclasses.replace(manifest, fingerprint=want)
    manifest_key = prefix + MANIFEST_NAME
    archive_key = prefix + manifest.archive_name
    archive = Path(archive)
    try:
        sha, size_bytes = sha256_file(archive)
    except OSError as e:
        return PublishResult(PublishStatus.ERROR, prefix, f"cannot read archive {archive}: {e}")
    if (sha, size_bytes) != (manifest.archive_sha256, manifest.size_bytes):
        return PublishResult(
            PublishStatus.ERROR,
            prefix,
            f"{archive} is not the archive its manifest describes (sha256 {sha[:16]}…, "
            f"{size_bytes} bytes; the manifest says {manifest.archive_sha256[:16]}…, "
            f"{manifest.size_bytes} bytes)",
        )
    bad: EntryCheck | None = None
    try:
        if store.exists(manifest_key):
            check = verify_entry(store, prefix)
            if check.ok and check.manifest is not None:
                missing = files_missing_from(check.manifest, manifest)
                if not missing:
                    return PublishResult(PublishStatus.SKIPPED, prefix, "already published")
                check = dataclasses.replace(
                    check,
                    problems=(
                        f"it lacks {len(missing)} of the {manifest.file_count} files this node compiled "
                        f"(e.g. {missing[0]}), so a restore of it left vLLM compiling",
                    ),
                )
            bad = check
    except StoreError as e:
        return PublishResult(PublishStatus.ERROR, prefix, f"store error: {e}")
    created_archive = False
    try:
        if bad is not None and store.exists(archive_key):
            # Ours may be the very object that failed: same name, same bytes expected. Rewrite it if so.
            if _object_problem(store, archive_key, sha, size_bytes) is not None:
                store.upload_file(archive, archive_key)
                created_archive = True
        elif size_bytes > _SINGLE_PUT_LIMIT_BYTES:
            if not store.exists(archive_key):
                store.upload_file(archive, archive_key)
                created_archive = True
        else:
            created_archive = store.put_file_if_absent(archive, archive_key)
        if bad is not None:
            try:
                current = store.get_bytes(manifest_key)
            except ObjectNotFound:
                current = None
            # Another repairer may have committed a good manifest since we checked: never delete that one.
            if current is not None and current == bad.manifest_bytes:
                store.delete(manifest_key)
        with tempfile.TemporaryDirectory(prefix="coldstart-manifest-") as tmp_dir:
            local_manifest = Path(tmp_dir, MANIFEST_NAME)
            local_manifest.write_bytes(manifest.to_json())
            won = store.put_file_if_absent(local_manifest, manifest_key)
    except StoreError as e:
        orphan = f"; {archive_key} may be left without a manifest (harmless)" if created_archive else ""
        return PublishResult(PublishStatus.ERROR, prefix, f"store error: {e}{orphan}")
    if won:
        detail = f"published {manifest.file_count} files, {size_bytes} bytes ({manifest.compression})"
        if bad is not None:
            detail += f"; replaced the entry there ({'; '.join(bad.problems)})"
            detail += _old_archive_note(bad, manifest.archive_name)
        return PublishResult(PublishStatus.SUCCESS, prefix, detail)
    detail = _clean_up_lost_race(store, prefix, manifest, created_archive)
    return PublishResult(PublishStatus.SKIPPED, prefix, detail)


def _old_archive_note(bad: EntryCheck, ours: str) -> str:
    # Not deleted: a concurrent repairer racing through the delete-then-create window may commit a manifest
    # naming it again. A stray archive costs storage, a torn entry a failed restore.
    if bad.manifest is None or bad.manifest.archive_name == ours:
        return ""
    return f"; left the old archive {bad.manifest.archive_name} in place"


def _clean_up_lost_race(store: Store, prefix: str, ours: CacheManifest, created_archive: bool) -> str:
    if not created_archive:
        return "another publisher won the race"
    try:
        winner = CacheManifest.from_json(store.get_bytes(prefix + MANIFEST_NAME))
    except (StoreError, ManifestError) as e:
        return f"another publisher won the race; kept our archive {ours.archive_name} (cannot read its: {e})"
    if winner.archive_name == ours.archive_name:
        return "another publisher won the race with an identical archive"
    try:
        store.delete(prefix + ours.archive_name)
    except StoreError as e:
        return f"another publisher won the race; could not delete our archive {ours.archive_name}: {e}"
    return "another publisher won the race; deleted our archive"
