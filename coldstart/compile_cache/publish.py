"""Publish: archive then manifest into the store, create-only, so exactly one publisher wins."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coldstart.compile_cache.archive import Manifest, entry_prefix, sha256_file
from coldstart.compile_cache.common import _SINGLE_PUT_LIMIT_BYTES, MANIFEST_NAME, ManifestError, PublishStatus
from coldstart.compile_cache.fingerprint import Fingerprint, _diff_dicts
from coldstart.storage.store import Store, StoreError


@dataclass(frozen=True)
class PublishResult:
    status: PublishStatus
    key: str  # the entry prefix
    detail: str = ""


def publish(store: Store, fingerprint: Fingerprint, archive: Path, manifest: Manifest) -> PublishResult:
    """Put one captured cache into the store under the fingerprint's key, race-safely.

    The archive goes up create-only under its content address, then the manifest create-only: the manifest
    is the commit point, so among concurrent publishers exactly one gets SUCCESS and the rest SKIPPED (each
    loser deletes the archive it uploaded unless the winner's manifest names that same archive).
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
    try:
        if store.exists(manifest_key):
            return PublishResult(PublishStatus.SKIPPED, prefix, "already published")
    except StoreError as e:
        return PublishResult(PublishStatus.ERROR, prefix, f"store error: {e}")
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
    created_archive = False
    try:
        if size_bytes > _SINGLE_PUT_LIMIT_BYTES:
            if not store.exists(archive_key):
                store.upload_file(archive, archive_key)
                created_archive = True
        else:
            created_archive = store.put_file_if_absent(archive, archive_key)
        with tempfile.TemporaryDirectory(prefix="coldstart-manifest-") as tmp_dir:
            local_manifest = Path(tmp_dir, MANIFEST_NAME)
            local_manifest.write_bytes(manifest.to_json())
            won = store.put_file_if_absent(local_manifest, manifest_key)
    except StoreError as e:
        orphan = f"; {archive_key} may be left without a manifest (harmless)" if created_archive else ""
        return PublishResult(PublishStatus.ERROR, prefix, f"store error: {e}{orphan}")
    if won:
        detail = f"published {manifest.file_count} files, {size_bytes} bytes ({manifest.compression})"
        return PublishResult(PublishStatus.SUCCESS, prefix, detail)
    detail = _clean_up_lost_race(store, prefix, manifest, created_archive)
    return PublishResult(PublishStatus.SKIPPED, prefix, detail)


def _clean_up_lost_race(store: Store, prefix: str, ours: Manifest, created_archive: bool) -> str:
    if not created_archive:
        return "another publisher won the race"
    try:
        winner = Manifest.from_json(store.get_bytes(prefix + MANIFEST_NAME))
    except (StoreError, ManifestError) as e:
        return f"another publisher won the race; kept our archive {ours.archive_name} (cannot read its: {e})"
    if winner.archive_name == ours.archive_name:
        return "another publisher won the race with an identical archive"
    try:
        store.delete(prefix + ours.archive_name)
    except StoreError as e:
        return f"another publisher won the race; could not delete our archive {ours.archive_name}: {e}"
    return "another publisher won the race; deleted our archive"
