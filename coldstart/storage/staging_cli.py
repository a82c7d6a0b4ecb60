"""``python -m coldstart stage``: put models into the object store, list and verify them, get them back.

CLI (vLLM benchmarks style: ``add_cli_args`` + ``main``)::

    put <model_name> --from <dir>    ls    verify <model_name> [--deep]    get <model_name> --to <dir>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from coldstart.storage.checkpoints import default_checkpoint_dir
from coldstart.storage.staging import (
    InvalidInput,
    download_dir,
    format_bytes,
    list_staged,
    model_prefix,
    sharded_prefix,
    upload_dir,
    verify,
)
from coldstart.storage.store import (
    InvalidKey,
    InvalidStoreURI,
    Store,
    StoreError,
    check_store_to_list,
    default_store_uri,
    open_store,
)
from coldstart.storage.store_core import os_error_text

# --------------------------------------------------------------------------------------------------- CLI


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=None,
        help="store URI: s3://bucket[/prefix], file:///abs/path or a path "
        "(default: $COLDSTART_STORE, else store/ in $COLDSTART_HOME, ~/.cache/coldstart)",
    )
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)")


def _folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_name", help="model name (one path segment, e.g. qwen2.5-0.5b-instruct)")
    p.add_argument(
        "--tp",
        type=int,
        default=None,
        help="use the vLLM sharded-state folder for this tensor-parallel size instead of the HF folder",
    )


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=8, help="files transferred in parallel (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    put = sub.add_parser("put", help="upload a local model folder, sealed by a manifest")
    _folder_args(put)
    put.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        help="local model folder (default: the folder `coldstart checkpoint <model>` writes; needed with --tp)",
    )
    put.add_argument(
        "--link",
        action="store_true",
        help="a local directory store on the folder's filesystem takes hard links, not copies (one copy of a "
        "70B checkpoint on disk); the folder's files must not be rewritten in place afterwards",
    )
    _store_args(put)
    _transfer_args(put)
    ls = sub.add_parser("ls", help="list staged model folders")
    _store_args(ls)
    ver = sub.add_parser("verify", help="check a staged folder against its manifest")
    _folder_args(ver)
    ver.add_argument("--deep", action="store_true", help="also download and re-hash every file")
    ver.add_argument("--workers", type=int, default=8, help="files re-hashed in parallel (default: 8)")
    _store_args(ver)
    get = sub.add_parser("get", help="download a staged folder (sha256-checked, atomic)")
    _folder_args(get)
    get.add_argument("--to", dest="to_dir", type=Path, required=True, help="local destination folder")
    _store_args(get)
    _transfer_args(get)
    return parser


def _prefix_for(args: argparse.Namespace) -> str:
    return model_prefix(args.model_name) if args.tp is None else sharded_prefix(args.model_name, args.tp)


def _source_dir(args: argparse.Namespace) -> Path:
    """``--from``, else where the checkpoint tool writes the model (``checkpoint tiny && stage put tiny``)."""
    if args.from_dir is not None:
        return Path(args.from_dir)
    if args.tp is not None:
        raise InvalidInput("--tp needs --from: the sharded folder (`coldstart shard` stages its own)")
    return default_checkpoint_dir(args.model_name)


def _cmd_put(store: Store, args: argparse.Namespace) -> int:
    prefix = _prefix_for(args)
    r = upload_dir(
        store, prefix, _source_dir(args), workers=args.workers, show_progress=not args.no_progress, link=args.link
    )
    print(
        f"staged {store.url_for(prefix)}: {len(r.manifest.files)} files, "
        f"{format_bytes(r.manifest.total_size_bytes)}; {'linked' if args.link else 'uploaded'} {r.uploaded_files} "
        f"({format_bytes(r.uploaded_bytes)}), skipped {r.skipped_files}, deleted {r.deleted_files} stale "
        f"in {r.elapsed_s:.1f}s"
    )
    return 0


def _cmd_ls(store: Store, args: argparse.Namespace) -> int:
    check_store_to_list(store)  # a mistyped --store folder must not list as "no models staged"
    folders = list_staged(store)
    if not folders:
        print(f"no models staged in {store.uri}")
        return 0
    width = max(len(f.model_name) for f in folders)
    print(f"{'MODEL':<{width}}  {'LAYOUT':<6}  {'STATUS':<10}  {'FILES':>5}  SIZE")
    for f in folders:
        status = "complete" if f.complete else "incomplete"
        print(f"{f.model_name:<{width}}  {f.layout:<6}  {status:<10}  {f.files:>5}  {format_bytes(f.size_bytes)}")
    return 0


def _cmd_verify(store: Store, args: argparse.Namespace) -> int:
    report = verify(store, _prefix_for(args), deep=args.deep, workers=args.workers)
    print(f"{store.url_for(report.prefix)}: {report.summary()}")
    return 0 if report.ok else 1


def _cmd_get(store: Store, args: argparse.Namespace) -> int:
    path = download_dir(store, _prefix_for(args), args.to_dir, workers=args.workers, show_progress=not args.no_progress)
    print(path)
    return 0


_COMMANDS: dict[str, Callable[[Store, argparse.Namespace], int]] = {
    "put": _cmd_put,
    "ls": _cmd_ls,
    "verify": _cmd_verify,
    "get": _cmd_get,
}


def main(args: argparse.Namespace) -> int:
    """Run one subcommand: 0 ok, 2 bad input, 1 store or local disk error (or a failed verify)."""
    try:
        if getattr(args, "model_name", None) is not None:
            _prefix_for(args)  # reject a bad name or --tp before touching the store
        store = open_store(args.store or default_store_uri(), endpoint_url=args.endpoint_url)
        store.check()
        return _COMMANDS[args.command](store, args)
    except (InvalidInput, InvalidStoreURI, InvalidKey) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # This machine's side: a full disk, a folder it may not write, a source file it cannot read.
        print(f"error: {os_error_text(e)}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 1
