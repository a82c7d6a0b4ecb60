"""Make vLLM sharded state of a registry model for one tensor-parallel size, and stage it.

Sharded state is each TP rank's own slice of the weights, saved from a running engine, so a replica loads
only its rank's files (``load_format="sharded_state"`` / ``"runai_streamer_sharded"``) instead of reading
the whole checkpoint and slicing it. It is only meaningful at TP>1 and only loads at the TP it was made for.

How vLLM 0.25.1 saves it (what ``examples/features/sharded_state/save_sharded_state_offline.py`` does):
``llm.llm_engine.engine_core.save_sharded_state(path=, pattern=, max_size=)`` (``vllm/v1/engine/core_client.py``)
-> ``EngineCore.save_sharded_state`` -> ``collective_rpc("save_sharded_state")`` -> on each worker
``ShardedStateLoader.save_model(model_runner.model, ...)`` (``vllm/v1/worker/gpu_worker.py``), which writes
``model-rank-{rank}-part-{part}.safetensors``; then every non-weight file of the checkpoint is copied beside them.

The engine runs in a child process (``python -m coldstart.storage.sharding _worker``): vLLM starts its engine core and
workers with spawn, which re-imports the main module, and a child keeps the CLI process free of vLLM's
processes, signal handlers and CUDA state.

Store layout: ``sharded/<model>/tp<N>/`` sealed by its manifest (``coldstart.storage.staging``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.registry import MODELS, Model, UnknownNameError, get_model
from coldstart.storage import staging
from coldstart.storage.checkpoints import MARKER_NAME
from coldstart.storage.store import InvalidKey, InvalidStoreURI, Store, StoreError, default_store_uri, open_store

# vLLM's ShardedStateLoader.DEFAULT_PATTERN in 0.25.1; the save passes no pattern, so this only checks the output.
RANK_FILE_RE = re.compile(r"^model-rank-(\d+)-part-(\d+)\.safetensors$")
DEFAULT_MAX_FILE_BYTES = 5 * 1024**3  # vLLM's example default (--max-file-size)
# The engine only exists to hold the weights: a short context and a small KV cache keep it off the memory
# the weights need, on a GPU and on CPU alike (kv_cache_memory_bytes overrides the utilization-based sizing).
DEFAULT_MAX_MODEL_LEN = 256
DEFAULT_KV_CACHE_BYTES = 256 * 1024**2
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Files that describe the source folder's own file list: copied next to the shards they would be wrong.
SOURCE_ONLY_FILES = frozenset({staging.MANIFEST_NAME, MARKER_NAME})
SKIPPED_TOP_DIRS = frozenset({".git", ".cache"})
DEVICES = ("cuda", "cpu")

# Child exit codes beyond 0/1, so the parent can map them to its own (2: bad input, 1: failure).
_CHILD_WRONG_DEVICE = 3
_CHILD_INCOMPLETE_STATE = 4
# Literals: in the child this module runs as __main__. On CPU the extension's module also keeps the weights
# that vLLM's CPU backend would otherwise drop after packing them (see sharding_cpu.py).
AUDIT_EXTENSIONS = {
    "cuda": "coldstart.storage.sharding.SaveAudit",
    "cpu": "coldstart.storage.sharding_cpu.KeepWeightsSaveAudit",
}


class InvalidShardRequest(ValueError):
    """Bad input (model, TP size, device, folders); the CLI maps it to exit code 2."""


class ShardingFailed(RuntimeError):
    """The checkpoint is not staged, or vLLM could not make usable sharded state; exit code 1."""


# ------------------------------------------------------------------------------------------- the file rules


def is_weight_file(rel_path: str) -> bool:
    """Weights and their index: what the per-rank files replace (``original/*.pth`` of Meta's repos too)."""
    name = rel_path.rsplit("/", 1)[-1]
    if name.endswith(".index.json"):
        name = name[: -len(".index.json")]
    return name.endswith(WEIGHT_SUFFIXES)


def metadata_files(model_dir: Path) -> list[str]:
    """Relative paths of every file to copy next to the shards: config, generation config, tokenizer, chat
    template, anything else that is not a weight. Sorted; symlinks followed (a Hub snapshot is symlinks)."""
    model_dir = Path(model_dir)
    out = []
    for dirpath, dirnames, filenames in os.walk(model_dir, followlinks=True):
        here = Path(dirpath)
        if here == model_dir:
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_TOP_DIRS]
        for name in filenames:
            rel = (here / name).relative_to(model_dir).as_posix()
            if rel in SOURCE_ONLY_FILES or is_weight_file(rel) or not (here / name).is_file():
                continue
            out.append(rel)
    return sorted(out)


def copy_metadata(model_dir: Path, out_dir: Path) -> list[str]:
    copied = metadata_files(model_dir)
    for rel in copied:
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / rel, target)
    return copied


def rank_files(out_dir: Path, tp_size: int) -> dict[int, list[str]]:
    """Rank -> its safetensors files; raises unless exactly ranks 0..tp_size-1 each wrote at least one."""
    by_rank: dict[int, list[str]] = {}
    for path in sorted(Path(out_dir).iterdir()):
        match = RANK_FILE_RE.match(path.name)
        if match:
            by_rank.setdefault(int(match.group(1)), []).append(path.name)
    want = set(range(tp_size))
    if set(by_rank) != want:
        missing = sorted(want - set(by_rank))
        extra = sorted(set(by_rank) - want)
        raise ShardingFailed(
            f"{out_dir}: expected per-rank files for ranks 0..{tp_size - 1}; "
            f"missing ranks {missing or 'none'}, unexpected ranks {extra or 'none'}"
        )
    return by_rank


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ checks on input


def check_tp(model: Model, tp_size: int) -> None:
    if tp_size < 2:
        raise InvalidShardRequest(
            f"sharded state is for tensor parallelism > 1 (at TP1 the checkpoint already is the one rank's "
            f"state); got TP{tp_size} for {model.name!r}: pass --tp N with N >= 2"
        )
    heads, kv_heads = model.arch.num_attention_heads, model.arch.num_key_value_heads
    # vLLM splits attention heads evenly; KV heads are split, or replicated when there are fewer than ranks.
    kv_ok = kv_heads % tp_size == 0 if tp_size <= kv_heads else tp_size % kv_heads == 0
    if heads % tp_size or not kv_ok:
        valid = [
            n
            for n in range(2, heads + 1)
            if heads % n == 0 and (kv_heads % n == 0 if n <= kv_heads else n % kv_heads == 0)
        ]
        raise InvalidShardRequest(
            f"{model.name!r} has {heads} attention heads and {kv_heads} KV heads, which TP{tp_size} cannot "
            f"split; valid TP sizes: {', '.join(map(str, valid)) or 'none'}"
        )


def visible_gpu_count() -> int:
    import torch  # lazy: only the cuda path needs it, and it takes seconds to import

    return torch.cuda.device_count()


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def cpu_thread_binding(cpus: Sequence[int], tp_size: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving each rank its own contiguous share of ``cpus`` ("0,1|2,3").

    vLLM's default ("auto") binds each CPU rank to its own NUMA node and refuses TP>1 on a one-node machine;
    an explicit list per rank is its documented way round that.
    """
    if len(cpus) < tp_size:
        raise InvalidShardRequest(
            f"TP{tp_size} on CPU needs at least {tp_size} usable CPU cores, this process may use {len(cpus)}"
        )
    per_rank = len(cpus) // tp_size
    groups = [cpus[r * per_rank : (r + 1) * per_rank] for r in range(tp_size)]
    return "|".join(",".join(map(str, g)) for g in groups)


def check_device(device: str, tp_size: int, env: Mapping[str, str]) -> dict[str, str]:
    """Raise unless this machine can run TP``tp_size`` on ``device``; returns env vars the child needs."""
    if device == "cuda":
        gpus = visible_gpu_count()
        if gpus < tp_size:
            hint = (
                "; this machine shows no GPU: to run vLLM's CPU backend (vllm-cpu) pass --device cpu"
                if gpus == 0
                else ""
            )
            raise InvalidShardRequest(
                f"TP{tp_size} needs {tp_size} GPUs, {gpus} visible "
                f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '<unset>')}){hint}"
            )
        return {}
    if device == "cpu":
        if env.get("VLLM_CPU_OMP_THREADS_BIND"):
            return {}  # the user's binding wins
        return {"VLLM_CPU_OMP_THREADS_BIND": cpu_thread_binding(usable_cpus(), tp_size)}
    raise InvalidShardRequest(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")


def default_out_dir(model_name: str, tp_size: int) -> Path:
    return paths.coldstart_home() / "sharded" / model_name / f"tp{tp_size}"


def _check_folders(from_dir: Path | None, out_dir: Path, overwrite: bool) -> None:
    if from_dir is not None:
        if not from_dir.is_dir():
            raise InvalidShardRequest(f"--from {from_dir} is not a directory")
        if not (from_dir / "config.json").is_file():
            raise InvalidShardRequest(f"--from {from_dir} is not a Hugging Face model folder (no config.json)")
        src, out = from_dir.resolve(), out_dir.resolve()
        if src == out or src in out.parents or out in src.parents:
            raise InvalidShardRequest(f"--out {out_dir} and --from {from_dir} overlap; pick a separate folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InvalidShardRequest(f"--out {out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not overwrite:
            raise InvalidShardRequest(f"--out {out_dir} is not empty; remove it, choose another, or pass --overwrite")


# ------------------------------------------------------------------------------------------ the vLLM child


@dataclass(frozen=True)
class ShardJob:
    """What the child process does; crosses the process boundary as JSON."""

    model_dir: str
    out_dir: str
    tp_size: int
    device: str
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # vLLM worker_extension_cls; "" = AUDIT_EXTENSIONS[device]. Another class (a subclass of SaveAudit) lets a
    # test hand the audit an engine whose state it made incomplete on purpose.
    worker_extension_cls: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShardJob:
        return cls(**json.loads(text))


class SaveAudit:
    """vLLM worker extension (``worker_extension_cls``): methods the engine can call on every worker by name.

    ``save_sharded_state`` writes ``model.state_dict()`` as the engine holds it *after* vLLM post-processed
    the weights, and skips empty tensors. A layer whose weight was moved elsewhere (vLLM 0.25.1's CPU backend,
    on CPUs where it packs linear layers for oneDNN, leaves ``weight`` empty unless ``sharding_cpu`` is loaded)
    is silently left out, and the ``sharded_state`` loader later fails with "Missing keys". This finds such
    tensors before anything is saved, whatever emptied them.
    """

    def coldstart_emptied_tensors(self) -> list[str]:
        model = self.model_runner.model  # type: ignore[attr-defined]  # mixed into vLLM's Worker
        return sorted(name for name, t in model.state_dict().items() if t.numel() == 0)


def _worker_main(job: ShardJob) -> int:
    from vllm import LLM
    from vllm.platforms import current_platform

    if current_platform.is_cpu() != (job.device == "cpu"):
        print(
            f"error: --device {job.device}, but this vLLM build runs on {current_platform.device_type!r}",
            file=sys.stderr,
        )
        return _CHILD_WRONG_DEVICE
    llm = LLM(
        model=job.model_dir,
        tensor_parallel_size=job.tp_size,
        enforce_eager=True,  # no compile or graph capture: the engine never serves
        max_model_len=job.max_model_len,
        max_num_batched_tokens=job.max_model_len,
        max_num_seqs=1,
        kv_cache_memory_bytes=job.kv_cache_bytes,
        gpu_memory_utilization=job.gpu_memory_utilization,
        worker_extension_cls=job.worker_extension_cls or AUDIT_EXTENSIONS[job.device],
    )
    emptied = llm.collective_rpc("coldstart_emptied_tensors")
    if any(emptied):
        names = sorted({n for rank in emptied for n in rank})
        print(
            f"error: the engine holds {len(names)} empty weight tensors (e.g. {', '.join(names[:3])}); "
            "save_sharded_state would leave them out and the sharded_state loader would reject the result "
            "with 'Missing keys'",
            file=sys.stderr,
        )
        return _CHILD_INCOMPLETE_STATE
    # pattern=None: vLLM's own default file names, which its loaders glob for.
    llm.llm_engine.engine_core.save_sharded_state(path=job.out_dir, pattern=None, max_size=job.max_file_bytes)
    return 0


def run_save(job: ShardJob, extra_env: Mapping[str, str]) -> None:
    """Run vLLM in a child process that writes the per-rank files into ``job.out_dir``; its log goes to ours."""
    cmd = [sys.executable, "-m", "coldstart.storage.sharding", "_worker", job.to_json()]
    rc = subprocess.run(cmd, env={**os.environ, **extra_env}, check=False).returncode
    if rc == _CHILD_WRONG_DEVICE:
        raise InvalidShardRequest(f"--device {job.device} does not match the installed vLLM (see above)")
    if rc == _CHILD_INCOMPLETE_STATE:
        raise ShardingFailed("vLLM cannot save usable sharded state on this machine (see the error above)")
    if rc != 0:
        raise ShardingFailed(f"the vLLM child process failed with exit code {rc}; its log is above")


# ----------------------------------------------------------------------------------------------- the tool


@dataclass(frozen=True)
class ShardResult:
    model_name: str
    tp_size: int
    out_dir: Path | None  # None: removed after the upload
    rank_files: tuple[str, ...]
    metadata_files: tuple[str, ...]
    size_bytes: int
    store_url: str | None  # None: not uploaded
    elapsed_s: float


def check_staged(store: Store, model_name: str) -> None:
    prefix = staging.model_prefix(model_name)
    if not staging.is_complete(store, prefix):
        raise ShardingFailed(
            f"{store.url_for(prefix)} holds no staged checkpoint of {model_name!r}: stage one first "
            f"(`python -m coldstart checkpoint {model_name} --out DIR` writes a synthetic one, then "
            f"`python -m coldstart stage put {model_name} --from DIR`), or pass --from DIR"
        )


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(out_dir)


def shard(
    model: Model,
    tp_size: int,
    *,
    store: Store | None,
    from_dir: Path | None,
    out_dir: Path,
    device: str,
    upload: bool = True,
    keep_local: bool = False,
    overwrite: bool = False,
    job_overrides: Mapping[str, Any] | None = None,
    show_progress: bool = True,
) -> ShardResult:
    """Checkpoint (``from_dir``, else the store's staged copy) -> per-rank state in ``out_dir`` -> the store.

    ``out_dir`` appears complete or not at all (built beside it, renamed into place). It is removed after a
    successful upload unless ``keep_local``; without ``upload`` it is the result and stays.
    """
    start_s = time.monotonic()
    check_tp(model, tp_size)
    _check_folders(from_dir, out_dir, overwrite)
    extra_env = check_device(device, tp_size, os.environ)
    if store is None and (upload or from_dir is None):
        raise InvalidShardRequest("a store is needed to download the checkpoint or to upload the result")
    if from_dir is None:
        assert store is not None
        check_staged(store, model.name)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        if from_dir is None:
            assert store is not None
            source = staging.download_dir(
                store, staging.model_prefix(model.name), work / "checkpoint", show_progress=show_progress
            )
        else:
            source = from_dir.resolve()
        built = work / "sharded"
        built.mkdir()
        job = ShardJob(
            model_dir=str(source), out_dir=str(built), tp_size=tp_size, device=device, **dict(job_overrides or {})
        )
        run_save(job, extra_env)
        by_rank = rank_files(built, tp_size)
        for names in by_rank.values():
            for name in names:
                os.chmod(built / name, 0o644)  # safetensors writes 0600; a replica may run as another user
        copied = copy_metadata(source, built)
        size_bytes = folder_size_bytes(built)
        _move_into_place(built, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    store_url = None
    if upload:
        assert store is not None
        prefix = staging.sharded_prefix(model.name, tp_size)
        staging.upload_dir(store, prefix, out_dir, show_progress=show_progress)
        store_url = store.url_for(prefix)
        if not keep_local:
            shutil.rmtree(out_dir)
    kept = out_dir if (not upload or keep_local) else None
    return ShardResult(
        model_name=model.name,
        tp_size=tp_size,
        out_dir=kept,
        rank_files=tuple(n for r in sorted(by_rank) for n in by_rank[r]),
        metadata_files=tuple(copied),
        size_bytes=size_bytes,
        store_url=store_url,
        elapsed_s=time.monotonic() - start_s,
    )


def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help=f"registry model name: {', '.join(MODELS)}")
    parser.add_argument(
        "--tp",
        type=int,
        default=None,
        help="tensor-parallel size to shard for (default: the model's TP in the registry)",
    )
    parser.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        help="local HF checkpoint folder (default: download the one staged in the store)",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="store URI: s3://bucket[/prefix], file:///abs/path or a path "
        "(default: $COLDSTART_STORE, else store/ in $COLDSTART_HOME, ~/.cache/coldstart)",
    )
    parser.add_argument(
        "--endpoint-url", default=None, help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the sharded folder is built (default: <coldstart home>/sharded/<model>/tp<N>)",
    )
    parser.add_argument(
        "--keep-local",
        action="store_true",
        help="keep the sharded folder after uploading it (always kept with --no-upload)",
    )
    parser.add_argument(
        "--no-upload", dest="upload", action="store_false", help="only build the local folder; do not stage it"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cuda",
        help="cuda (default: one GPU per rank) or cpu (vLLM's CPU backend, vllm-cpu)",
    )
    parser.add_argument(
        "--max-model-len",
        type=int,
        default=DEFAULT_MAX_MODEL_LEN,
        help=f"context of the throwaway engine (default: {DEFAULT_MAX_MODEL_LEN})",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=DEFAULT_GPU_MEMORY_UTILIZATION,
        help=f"vLLM's memory check while the weights load (default: {DEFAULT_GPU_MEMORY_UTILIZATION})",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=DEFAULT_MAX_FILE_BYTES,
        help="largest per-rank safetensors file (default: 5 GiB, as vLLM's example)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def main(args: argparse.Namespace) -> int:
    """0 ok; 2 bad input (model, TP, device, folders, store URI); 1 not staged or vLLM failed."""
    try:
        model = get_model(args.model)
        tp_size = model.tp_size if args.tp is None else args.tp
        out_dir = args.out if args.out is not None else default_out_dir(model.name, tp_size)
        check_tp(model, tp_size)
        store = None
        if args.upload or args.from_dir is None:
            store = open_store(args.store or default_store_uri(), endpoint_url=args.endpoint_url)
        if tp_size != model.tp_size:
            print(
                f"note: {model.name!r} is served at TP{model.tp_size} in the registry; this makes TP{tp_size} "
                f"state, which only a TP{tp_size} engine can load",
                file=sys.stderr,
            )
        overrides = {
            "max_model_len": args.max_model_len,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_file_bytes": args.max_file_bytes,
        }
        result = shard(
            model,
            tp_size,
            store=store,
            from_dir=args.from_dir,
            out_dir=out_dir,
            device=args.device,
            upload=args.upload,
            keep_local=args.keep_local,
            overwrite=args.overwrite,
            job_overrides=overrides,
            show_progress=args.progress,
        )
    except (UnknownNameError, InvalidShardRequest, staging.InvalidInput, InvalidStoreURI, InvalidKey) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ShardingFailed, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    where = [w for w in (result.store_url, result.out_dir and str(result.out_dir)) if w]
    print(
        f"sharded {result.model_name} at TP{result.tp_size}: {len(result.rank_files)} rank files + "
        f"{len(result.metadata_files)} other files, {staging.format_bytes(result.size_bytes)} in "
        f"{result.elapsed_s:.1f}s -> {' and '.join(where)}"
    )
    return 0


if __name__ == "__main__":
    # The guard vLLM's spawned processes need: they re-import this module as __mp_main__ and must not rerun it.
    if sys.argv[1:2] == ["_worker"]:
        sys.exit(_worker_main(ShardJob.from_json(sys.argv[2])))
    sys.exit(main(add_cli_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()))
