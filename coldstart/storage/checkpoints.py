"""Synthetic Hugging Face checkpoints of registry models or of a user's config.json, written offline.

Cold start depends on shapes and bytes, not on what the weights mean, so a random bf16 checkpoint with the
exact tensor names and shapes of the real model loads, compiles and serves like it. Nothing here touches the
network: the GPU machines and CI have none.

This module writes and keeps the folder (marker, idempotence, atomic rename) and is the ``checkpoint`` tool;
the tensors are ``tensor_layout``, the weights ``safetensors_writer``, the tokenizer ``synth_tokenizer``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart.paths import coldstart_home
from coldstart.registry import MODELS, Model, UnknownNameError, UserModelError, get_model, model_from_hf_config
from coldstart.storage.safetensors_writer import write_weights
from coldstart.storage.sources import read_config_json
from coldstart.storage.store_core import os_error_text
from coldstart.storage.synth_tokenizer import (
    CHAT_TEMPLATE,
    MAX_TOKENIZER_VOCAB,
    SPECIAL_TOKENS,
    tokenizer_vocab_size,
    write_tokenizer,
)
from coldstart.storage.tensor_layout import (
    DTYPE_BYTES,
    SCALE_SUFFIX,
    TensorSpec,
    arch_hash,
    checkpoint_tensors,
    not_converted,
    plan_shards,
    quantize,
    shard_file_names,
)

# Bump when the folder layout or the way weights are generated changes: old folders then stop matching.
FORMAT_VERSION = 2
MARKER_NAME = "coldstart-checkpoint.json"
DEFAULT_SHARD_MAX_BYTES = 5_000_000_000  # what transformers' save_pretrained uses ("5GB")
# Below this a progress bar is only noise (tiny and the test models finish in well under a second).
_PROGRESS_MIN_BYTES = 256 * 1024 * 1024


class CheckpointMismatchError(FileExistsError):
    """``out_dir`` holds something other than the checkpoint asked for; pass ``overwrite=True`` to replace."""


class CheckpointWriteError(OSError):
    """The folder could not be written (a full disk, a read-only mount); its partial build was removed. An
    OSError still, with the failed write's errno, and a message that names the folder."""


@dataclass(frozen=True)
class CheckpointInfo:
    model_name: str
    path: Path
    seed: int
    arch_hash: str
    param_count: int
    weights_size_bytes: int  # the safetensors payload (index "total_size")
    total_size_bytes: int  # every file in the folder, tokenizer and configs included
    shard_files: tuple[str, ...]
    tokenizer_vocab_size: int
    created: bool  # False: an identical checkpoint was already there and was kept
    elapsed_s: float


def default_checkpoint_dir(model_name: str, env: Mapping[str, str] | None = None) -> Path:
    """``$COLDSTART_HOME/checkpoints/<name>``, else ``${XDG_CACHE_HOME:-~/.cache}/coldstart/checkpoints/<name>``."""
    return coldstart_home(os.environ if env is None else env) / "checkpoints" / model_name


def _identity(model: Model, seed: int, shard_max_bytes: int) -> dict[str, Any]:
    identity = {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "seed": seed,
        "arch_hash": arch_hash(model.arch),
        "shard_max_bytes": shard_max_bytes,
    }
    if model.quantization is not None:  # only then: bf16 folders written before it keep matching
        identity["quantization"] = json.loads(json.dumps(dataclasses.asdict(model.quantization)))
    return identity


def _folder_files(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER_NAME
    }


def read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _existing_matches(folder: Path, identity: dict[str, Any]) -> tuple[bool, str]:
    """(matches, why not): the marker must agree and every recorded file must still have its size."""
    marker = read_marker(folder)
    if marker is None:
        return False, f"{folder} exists and has no {MARKER_NAME}"
    diffs = [f"{k}={marker.get(k)!r} (want {v!r})" for k, v in identity.items() if marker.get(k) != v]
    if diffs:
        return False, f"{folder} holds a different checkpoint: {', '.join(diffs)}"
    files = _folder_files(folder)
    if files != marker.get("files"):
        return False, f"{folder} has missing, extra or truncated files compared with its {MARKER_NAME}"
    return True, ""


def _info_from_marker(folder: Path, marker: dict[str, Any], *, created: bool, elapsed_s: float) -> CheckpointInfo:
    return CheckpointInfo(
        model_name=marker["model"],
        path=folder,
        seed=marker["seed"],
        arch_hash=marker["arch_hash"],
        param_count=marker["param_count"],
        weights_size_bytes=marker["weights_size_bytes"],
        total_size_bytes=marker["total_size_bytes"],
        shard_files=tuple(marker["shard_files"]),
        tokenizer_vocab_size=marker["tokenizer_vocab_size"],
        created=created,
        elapsed_s=elapsed_s,
    )


def _progress_callback(total_bytes: int, label: str, enabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    if not enabled or total_bytes < _PROGRESS_MIN_BYTES:
        return (lambda _n: None), (lambda: None)
    from coldstart.progress import byte_progress

    progress = byte_progress()
    task = progress.add_task(label, total=total_bytes)
    progress.start()
    return (lambda n: progress.advance(task, n)), progress.stop


def write_checkpoint(
    model: Model,
    out_dir: Path,
    *,
    seed: int = 0,
    shard_max_bytes: float = DEFAULT_SHARD_MAX_BYTES,
    progress: bool = True,
    overwrite: bool = False,
) -> CheckpointInfo:
    """Write (or keep) a random-weight HF checkpoint of ``model`` at ``out_dir``.

    Idempotent: a folder whose marker matches (model, seed, architecture, sharding, format version) and
    whose files are intact is kept as is. Any other non-empty folder raises CheckpointMismatchError unless
    ``overwrite``. The folder appears atomically: it is built next to ``out_dir`` and renamed into place.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    shard_max_bytes = int(shard_max_bytes)
    identity = _identity(model, seed, shard_max_bytes)
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointMismatchError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        matches, why = _existing_matches(out_dir, identity)
        if matches:
            marker = read_marker(out_dir)
            assert marker is not None
            return _info_from_marker(out_dir, marker, created=False, elapsed_s=time.monotonic() - started)
        if not overwrite:
            raise CheckpointMismatchError(f"{why}; pass overwrite=True (--overwrite) to replace it")

    arch = model.arch
    specs = checkpoint_tensors(arch, model.quantization)
    weights_size_bytes = sum(s.size_bytes for s in specs)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        vocab, bos, eos = write_tokenizer(
            tmp, tokenizer_vocab_size(arch), seed, arch.max_position_embeddings, model_vocab=arch.vocab_size
        )
        config = arch.hf_config()
        config.update(bos_token_id=bos, eos_token_id=eos)
        if model.quantization is not None:
            config["quantization_config"] = model.quantization.hf_config(not_converted(specs))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        generation_config = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": SPECIAL_TOKENS.index("<pad>")}
        (tmp / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
        advance, stop = _progress_callback(weights_size_bytes, f"{model.name} weights", progress)
        try:
            shard_files = write_weights(specs, shard_max_bytes, tmp, seed, advance)
        finally:
            stop()
        files = _folder_files(tmp)
        marker = {
            **identity,
            "param_count": sum(s.numel for s in specs),
            "weights_size_bytes": weights_size_bytes,
            "total_size_bytes": sum(files.values()),
            "shard_files": shard_files,
            "tokenizer_vocab_size": vocab,
            "files": files,
        }
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        _move_into_place(tmp, out_dir, identity, overwrite)
    except CheckpointMismatchError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # A write error names no file (the weights are written by a thread); the folder is what to free or fix.
        error = CheckpointWriteError(
            f"cannot write the {model.name} checkpoint at {out_dir} (built in {tmp.name} beside it): "
            f"{os_error_text(exc)}; nothing of it was kept, {out_dir} is as it was: free space or fix the "
            "folder and run it again"
        )
        error.errno = exc.errno
        raise error from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final_marker = read_marker(out_dir)
    assert final_marker is not None
    return _info_from_marker(out_dir, final_marker, created=True, elapsed_s=time.monotonic() - started)


def _move_into_place(tmp: Path, out_dir: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Rename ``tmp`` to ``out_dir``; a concurrent writer of the same checkpoint may have got there first."""
    old = None
    if out_dir.is_dir() and any(out_dir.iterdir()):
        matches, why = _existing_matches(out_dir, identity)
        if not overwrite:
            if matches:  # theirs is as good as ours, and someone may already be reading it
                shutil.rmtree(tmp)
                return
            raise CheckpointMismatchError(f"{why}; pass overwrite=True (--overwrite) to replace it")
        # rename() cannot replace a non-empty folder: park the old one, swap, then delete it.
        old = out_dir.with_name(f"{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)  # also replaces an empty folder
    except OSError:
        if old is not None and not out_dir.exists():
            old.rename(out_dir)
            old = None
        if not _existing_matches(out_dir, identity)[0]:
            raise
        shutil.rmtree(tmp)
    if old is not None:
        shutil.rmtree(old)


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "model",
        nargs="?",
        help=f"registry model name ({', '.join(MODELS)}); with --config, your model's name (default: --out's name)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="write the shape of this config.json (or of the HF folder holding it) instead of a registry model's",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: coldstart cache)")
    parser.add_argument("--seed", type=int, default=0, help="weight and tokenizer seed (default: 0)")
    parser.add_argument(
        "--shard-max-bytes", type=float, default=DEFAULT_SHARD_MAX_BYTES, help="safetensors shard size limit"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a folder holding something else")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _model_to_write(args: argparse.Namespace) -> Model:
    if args.config is None:
        if args.model is None:
            raise UserModelError("name a registry model, or give --config CONFIG --out DIR")
        return get_model(args.model)
    if args.out is None:
        raise UserModelError("--config needs --out DIR: the cache's folders are named after registry models")
    # TP plays no part in a checkpoint on disk: any shape the registry can lay out is written whole.
    return model_from_hf_config(args.model or args.out.resolve().name, read_config_json(args.config), tp_size=1)


def main(args: argparse.Namespace) -> int:
    try:
        model = _model_to_write(args)
    except (UnknownNameError, UserModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out if args.out is not None else default_checkpoint_dir(model.name)
    try:
        info = write_checkpoint(
            model,
            out_dir,
            seed=args.seed,
            shard_max_bytes=args.shard_max_bytes,
            progress=args.progress,
            overwrite=args.overwrite,
        )
    except (CheckpointMismatchError, CheckpointWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "wrote" if info.created else "kept existing"
    print(
        f"{verb} {info.model_name} checkpoint: {info.path} ({info.total_size_bytes / 1e9:.3f} GB, "
        f"{len(info.shard_files)} shard(s), {info.elapsed_s:.1f} s)"
    )
    return 0


__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_SHARD_MAX_BYTES",
    "DTYPE_BYTES",
    "FORMAT_VERSION",
    "MARKER_NAME",
    "MAX_TOKENIZER_VOCAB",
    "SCALE_SUFFIX",
    "SPECIAL_TOKENS",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "CheckpointWriteError",
    "TensorSpec",
    "add_cli_args",
    "arch_hash",
    "checkpoint_tensors",
    "default_checkpoint_dir",
    "main",
    "not_converted",
    "plan_shards",
    "quantize",
    "read_marker",
    "shard_file_names",
    "tokenizer_vocab_size",
    "write_checkpoint",
]

if __name__ == "__main__":
    sys.exit(main(add_cli_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()))
