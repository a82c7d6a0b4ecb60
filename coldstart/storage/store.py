"""Where model weights live between runs: one ``Store`` interface over S3 (or any S3-compatible endpoint)
and a local directory. This module opens a store from its URI; the contract (errors, keys, URIs) is in
``store_core``, the backends in ``store_local`` and ``store_s3``, and every public name is re-exported here,
so ``from coldstart.storage.store import ...`` is the one import path the rest of the lab uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from coldstart import paths
from coldstart.storage.store_core import (
    BucketNotFound,
    CredentialsError,
    EndpointUnreachable,
    InvalidKey,
    InvalidStoreURI,
    ObjectInfo,
    ObjectNotFound,
    RetryPolicy,
    Store,
    StoreError,
    StoreLocation,
    TransferSettings,
    check_bucket_name,
    check_key,
    check_prefix,
    parse_store_uri,
)
from coldstart.storage.store_local import LocalStore
from coldstart.storage.store_s3 import S3Store, translate_s3_error


def lab_store_root() -> Path:
    """The embedded default store: a folder under the lab's home, created by the first write."""
    return (paths.coldstart_home() / "store").absolute()


def default_store_uri() -> str:
    """``$COLDSTART_STORE``, else a directory store under the lab's home (the embedded default)."""
    env = os.environ.get("COLDSTART_STORE", "").strip()
    if env:
        return env
    return lab_store_root().as_uri()


def check_store_to_list(store: Store) -> None:
    """``store.check()`` for a command that only lists: a local store folder that does not exist is a mistyped
    path, not an empty store (writes create it, a listing would answer "nothing" for any typo), so it raises
    BucketNotFound as S3 does for a missing bucket. The lab's own default folder, which a fresh lab has not
    written yet, stays an empty store."""
    store.check()
    if isinstance(store, LocalStore) and not store.root.exists() and store.root != lab_store_root():
        raise BucketNotFound(
            f"store folder {store.root} does not exist (nothing was written there: check --store or $COLDSTART_STORE)"
        )


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    retry: RetryPolicy | None = None,
    transfer: TransferSettings | None = None,
) -> Store:
    loc = parse_store_uri(uri)
    if loc.scheme == "s3":
        return S3Store(
            loc.bucket,
            loc.prefix,
            endpoint_url=endpoint_url,
            retry=retry or RetryPolicy.from_env(),
            transfer=transfer or TransferSettings(),
        )
    if endpoint_url is not None:
        raise InvalidStoreURI(f"an endpoint URL only applies to s3:// stores, not {uri!r}")
    assert loc.path is not None
    return LocalStore(loc.path)


__all__ = [
    "BucketNotFound",
    "CredentialsError",
    "EndpointUnreachable",
    "InvalidKey",
    "InvalidStoreURI",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "RetryPolicy",
    "S3Store",
    "Store",
    "StoreError",
    "StoreLocation",
    "TransferSettings",
    "check_bucket_name",
    "check_key",
    "check_prefix",
    "check_store_to_list",
    "default_store_uri",
    "lab_store_root",
    "open_store",
    "parse_store_uri",
    "translate_s3_error",
]
