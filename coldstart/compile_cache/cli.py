"""``coldstart compile-cache``: capture, publish, restore, show (--verify), rm."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.compile_cache.archive import CacheManifest, read_manifest, write_manifest
from coldstart.compile_cache.capture import capture
from coldstart.compile_cache.common import (
    COMPRESSIONS,
    KEY_PREFIX,
    MANIFEST_NAME,
    CompileCacheError,
    ManifestError,
    PublishStatus,
)
from coldstart.compile_cache.fingerprint import Fingerprint, fingerprint_for_engine, model_slug, stable_model_path
from coldstart.compile_cache.publish import check_entry_prefix, publish, remove_entry, verify_entry
from coldstart.compile_cache.restore import default_cache_dirs, restore
from coldstart.storage.store import Store, StoreError, check_store_to_list, default_store_uri, open_store


def _add_fingerprint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry model name (keys the store entry)")
    p.add_argument(
        "--model-path",
        default=None,
        help="the path the engine is given (default: the stable path under the lab's home)",
    )
    p.add_argument("--tp", type=int, default=None, help="tensor_parallel_size (overrides --engine-kwargs)")
    p.add_argument("--pp", type=int, default=None, help="pipeline_parallel_size (overrides --engine-kwargs)")
    p.add_argument("--dtype", default=None, help="dtype (overrides --engine-kwargs)")
    p.add_argument("--compilation-config", default=None, help="JSON (overrides --engine-kwargs)")
    p.add_argument(
        "--engine-kwargs",
        default="{}",
        help="JSON: the LLMConfig engine_kwargs of the run (see `coldstart service --dry-run`)",
    )
    p.add_argument("--checkpoint-sha256", default=None, help="the checkpoint manifest's sha256, if known")


def _add_cache_dir_args(p: argparse.ArgumentParser) -> None:
    vllm_root, inductor_dir, triton_dir = default_cache_dirs()
    p.add_argument("--vllm-cache-root", type=Path, default=vllm_root, help=f"default {vllm_root}")
    p.add_argument("--inductor-cache-dir", type=Path, default=inductor_dir, help=f"default {inductor_dir}")
    p.add_argument("--triton-cache-dir", type=Path, default=triton_dir, help=f"default {triton_dir}")
    p.add_argument("--no-triton", action="store_true", help="leave the Triton cache out")


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None, help="store URI (default: $COLDSTART_STORE or the local store)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("capture", help="pack this node's compile caches into an archive + manifest")
    _add_fingerprint_args(p)
    _add_cache_dir_args(p)
    p.add_argument("--out", type=Path, required=True, help="archive path; the manifest goes to <out>.manifest.json")
    p.add_argument("--compression", default="auto", choices=("auto", *COMPRESSIONS))
    p = sub.add_parser("publish", help="put a captured archive into the store (race-safe)")
    _add_store_args(p)
    p.add_argument("--archive", type=Path, required=True)
    p.add_argument("--manifest", type=Path, default=None, help="default: <archive>.manifest.json")
    p = sub.add_parser("restore", help="restore the cache for this node's fingerprint from the store")
    _add_store_args(p)
    _add_fingerprint_args(p)
    _add_cache_dir_args(p)
    p = sub.add_parser("show", help="list the store's compile-cache entries")
    _add_store_args(p)
    p.add_argument("--model", default=None, help="only this model")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check each archive's size and sha256 against its manifest (downloads it); exit 1 if one fails",
    )
    p = sub.add_parser("rm", help="delete one entry (its manifest first, so restores stop using it at once)")
    _add_store_args(p)
    p.add_argument("entry", help="the entry as `compile-cache show` prints it: compile-cache/<model>/<key>/")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")


def _fingerprint_from_args(args: argparse.Namespace) -> Fingerprint:
    kwargs = json.loads(args.engine_kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError("--engine-kwargs must be a JSON object")
    for flag, name in (("tp", "tensor_parallel_size"), ("pp", "pipeline_parallel_size"), ("dtype", "dtype")):
        if getattr(args, flag) is not None:
            kwargs[name] = getattr(args, flag)
    if args.compilation_config is not None:
        kwargs["compilation_config"] = json.loads(args.compilation_config)
    model_path = args.model_path or str(stable_model_path(paths.coldstart_home(), args.model))
    return fingerprint_for_engine(args.model, model_path, kwargs, checkpoint_sha256=args.checkpoint_sha256)


def _open_store_from_args(args: argparse.Namespace) -> Store:
    return open_store(args.store or default_store_uri(), endpoint_url=args.endpoint_url)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, sort_keys=True))


def main(args: argparse.Namespace) -> int:
    """Exit codes: 0 success (publish: also SKIPPED, someone else's copy is there), 1 anything else, 2 bad input."""
    if args.command == "rm":
        try:
            check_entry_prefix(args.entry)
        except ValueError as e:
            print(f"compile-cache rm: {e}", file=sys.stderr)
            return 2
    try:
        if args.command == "capture":
            fp = _fingerprint_from_args(args)
            manifest = capture(
                args.vllm_cache_root,
                args.inductor_cache_dir,
                None if args.no_triton else args.triton_cache_dir,
                args.out,
                fingerprint=fp,
                compression=args.compression,
            )
            manifest_path = args.out.with_name(args.out.name + ".manifest.json")
            write_manifest(manifest, manifest_path)
            _print_json(
                {
                    "archive": str(args.out),
                    "manifest": str(manifest_path),
                    "key": fp.key(),
                    "files": manifest.file_count,
                    "size_bytes": manifest.size_bytes,
                    "compression": manifest.compression,
                }
            )
            return 0
        if args.command == "publish":
            manifest_path = args.manifest or args.archive.with_name(args.archive.name + ".manifest.json")
            manifest = read_manifest(manifest_path)
            if manifest.fingerprint is None:
                raise ManifestError(f"{manifest_path} has no fingerprint: use `compile-cache capture`")
            fp = Fingerprint.from_dict(manifest.fingerprint)
            result = publish(_open_store_from_args(args), fp, args.archive, manifest)
            _print_json(dataclasses.asdict(result))
            return 0 if result.status in (PublishStatus.SUCCESS, PublishStatus.SKIPPED) else 1
        if args.command == "restore":
            fp = _fingerprint_from_args(args)
            rr = restore(
                _open_store_from_args(args),
                fp,
                args.vllm_cache_root,
                args.inductor_cache_dir,
                None if args.no_triton else args.triton_cache_dir,
            )
            _print_json(dataclasses.asdict(rr))
            return 0 if rr.ok else 1
        if args.command == "show":
            store = _open_store_from_args(args)
            check_store_to_list(store)  # a mistyped --store folder must not list as "no entries"
            return _show(store, args.model, verify=args.verify)
        if args.command == "rm":
            keys = remove_entry(_open_store_from_args(args), args.entry, dry_run=args.dry_run)
            _print_json({"entry": check_entry_prefix(args.entry), "deleted": not args.dry_run, "keys": keys})
            return 0
    except (CompileCacheError, StoreError, ValueError, OSError) as e:
        print(f"compile-cache {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command!r}")


def _show(store: Store, model_name: str | None, *, verify: bool = False) -> int:
    prefix = f"{KEY_PREFIX}/{model_slug(model_name)}/" if model_name else f"{KEY_PREFIX}/"
    failed = listed = 0
    for obj in store.list(prefix):
        if not obj.key.endswith("/" + MANIFEST_NAME):
            continue
        listed += 1
        entry = obj.key[: -len(MANIFEST_NAME)]
        try:
            m = CacheManifest.from_json(store.get_bytes(obj.key))
        except ManifestError as e:
            failed += 1
            _print_json({"entry": entry, "error": str(e), **({"verified": False} if verify else {})})
            continue
        fp = m.fingerprint or {}
        summary = ("model_path", "tp_size", "dtype", "vllm_version", "torch_version", "device_name")
        checked: dict[str, Any] = {}
        if verify:
            check = verify_entry(store, entry)
            failed += not check.ok
            checked = {"verified": check.ok, "problems": list(check.problems)}
        _print_json(
            {
                "entry": entry,
                "created_at": m.created_at,
                "archive": m.archive_name,
                "size_bytes": m.size_bytes,
                "files": m.file_count,
                "compression": m.compression,
                **{k: fp.get(k) for k in summary},
                **checked,
            }
        )
    if not listed:
        # stdout stays JSON lines (none here); the person reading the terminal still gets an answer.
        which = f" of {model_name}" if model_name else ""
        print(f"compile-cache show: no entries{which} in {store.uri}", file=sys.stderr)
    if failed:
        what = "failed verification" if verify else "have an unreadable manifest"
        print(
            f"compile-cache show: {failed} entries {what} (repair: publish again, or `compile-cache rm`)",
            file=sys.stderr,
        )
    return 1 if failed and verify else 0
