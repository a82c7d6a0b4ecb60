"""Constants, status enums and errors shared by the compile-cache modules."""

from __future__ import annotations

import enum

FORMAT_VERSION = 1
KEY_PREFIX = "compile-cache"
MANIFEST_NAME = "manifest.json"
VLLM_CACHE_SUBDIR = "torch_compile_cache"
# vLLM's model-info cache (``ModelRegistry`` inspection results, keyed by the model module's hash): without it
# building the engine config inspects the architecture in a subprocess that imports vLLM again (~20 s on the
# H200 of the campaign 2026-11-29-h200x1). Tiny, and valid wherever the vLLM version is the same, which the
# cache key holds.
VLLM_MODELINFO_SUBDIR = "modelinfos"
VLLM_ARCHIVED_SUBDIRS = (VLLM_CACHE_SUBDIR, VLLM_MODELINFO_SUBDIR)
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
_ENV_NOT_HASHED = frozenset(
    {
        # Parallelism of the compile, not its output. Ray workers carry it and a publisher outside Ray does
        # not: keyed, it made every GPU restore a MISMATCH (seen on the H100, 2026-11-22).
        "TORCHINDUCTOR_COMPILE_THREADS",
        "MAX_JOBS",
        "VLLM_RPC_BASE_PATH",
        "VLLM_USE_MODELSCOPE",
        "VLLM_RINGBUFFER_WARNING_INTERVAL",
        "VLLM_DEBUG_DUMP_PATH",
        "VLLM_PORT",
        "VLLM_CACHE_ROOT",
        "LD_LIBRARY_PATH",
        "VLLM_SERVER_DEV_MODE",
        "VLLM_DP_MASTER_IP",
        "VLLM_DP_MASTER_PORT",
        "VLLM_NIXL_SIDE_CHANNEL_HOST",
        "VLLM_RANDOMIZE_DP_DUMMY_INPUTS",
        "VLLM_CI_USE_S3",
        "VLLM_MODEL_REDIRECT_PATH",
        "VLLM_HOST_IP",
        "VLLM_FORCE_AOT_LOAD",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ENDPOINT_URL",
        "VLLM_USAGE_STATS_SERVER",
        "VLLM_NO_USAGE_STATS",
        "VLLM_DO_NOT_TRACK",
        "VLLM_LOGGING_LEVEL",
        "VLLM_LOGGING_PREFIX",
        "VLLM_LOGGING_STREAM",
        "VLLM_LOGGING_CONFIG_PATH",
        "VLLM_LOGGING_COLOR",
        "VLLM_LOG_STATS_INTERVAL",
        "VLLM_DEBUG_LOG_API_SERVER_RESPONSE",
        "VLLM_TUNED_CONFIG_FOLDER",
        "VLLM_FLASHINFER_AUTOTUNE_CACHE_DIR",
        "VLLM_ENGINE_ITERATION_TIMEOUT_S",
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE",
        "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS",
        "VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        "VLLM_KEEP_ALIVE_ON_ENGINE_DEATH",
        "VLLM_IMAGE_FETCH_TIMEOUT",
        "VLLM_VIDEO_FETCH_TIMEOUT",
        "VLLM_AUDIO_FETCH_TIMEOUT",
        "VLLM_MEDIA_CACHE",
        "VLLM_MEDIA_CACHE_MAX_SIZE_MB",
        "VLLM_MEDIA_CACHE_TTL_HOURS",
        "VLLM_MEDIA_FETCH_MAX_RETRIES",
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS",
        "VLLM_MEDIA_LOADING_THREAD_COUNT",
        "VLLM_MAX_AUDIO_CLIP_FILESIZE_MB",
        "VLLM_MAX_AUDIO_DECODE_DURATION_S",
        "VLLM_MAX_AUDIO_PREPROCESS_WORKERS",
        "VLLM_MAX_IMAGE_PIXELS",
        "VLLM_VIDEO_LOADER_BACKEND",
        "VLLM_MEDIA_CONNECTOR",
        "VLLM_OBJECT_STORAGE_SHM_BUFFER_NAME",
        "VLLM_ASSETS_CACHE",
        "VLLM_ASSETS_CACHE_MODEL_CLEAN",
        "VLLM_WORKER_MULTIPROC_METHOD",
        "VLLM_ENABLE_V1_MULTIPROCESSING",
        "VLLM_V1_OUTPUT_PROC_CHUNK_SIZE",
        "VLLM_CPU_KVCACHE_SPACE",
        "VLLM_CPU_MOE_PREPACK",
        "VLLM_ZENTORCH_WEIGHT_PREPACK",
        "VLLM_TEST_FORCE_LOAD_FORMAT",
        "VLLM_ENABLE_CUDA_COMPATIBILITY",
        "VLLM_CUDA_COMPATIBILITY_PATH",
        "VLLM_SKIP_MODEL_NAME_VALIDATION",
        "LOCAL_RANK",
        "CUDA_VISIBLE_DEVICES",
        "NO_COLOR",
        # Not vLLM's, but paths: where Inductor/Triton write must not decide whether a cache applies.
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
    }
)
# Names without the VLLM_ prefix that vLLM 0.25.1 registers in envs.environment_variables (so hashed).
_NON_VLLM_HASHED_ENV = frozenset(
    {
        "NVCC_THREADS",
        "CMAKE_BUILD_TYPE",
        "VERBOSE",
        "CUDA_HOME",
        "Q_SCALE_CONSTANT",
        "K_SCALE_CONSTANT",
        "V_SCALE_CONSTANT",
        "MOONCAKE_PREFERRED_SEGMENT",
        "MOONCAKE_REQUESTER_LOCAL_HOSTNAME",
    }
)
# compile_factors() adds Ray's RAY_EXPERIMENTAL_NOSET_* device-visibility switches; TORCHINDUCTOR_* settings
# reach vLLM's compiler hash through inductor_config.save_config_portable().
_HASHED_ENV_PREFIXES = ("VLLM_", "RAY_EXPERIMENTAL_NOSET_", "TORCHINDUCTOR_")

# Engine kwargs that vLLM leaves out of VllmConfig.compute_hash() in 0.25.1 (cache/model/parallel ignore
# lists; LoadConfig hashes nothing). Everything else is keyed, conservatively.
_ENGINE_ARGS_NOT_HASHED = frozenset(
    {
        "model",
        "gpu_memory_utilization",
        "enable_prefix_caching",
        "load_format",
        "model_loader_extra_config",
        "download_dir",
        "ignore_patterns",
        "served_model_name",
        "seed",
        "tokenizer",
        "tokenizer_mode",
        "tokenizer_revision",
        "skip_tokenizer_init",
        "distributed_executor_backend",
        "max_parallel_loading_workers",
        "disable_custom_all_reduce",
        "disable_log_stats",
    }
)

# Vector ISA flags that decide which instructions Inductor's C++ kernels may use on CPU (x86 and Arm).
_CPU_ISA_FLAGS = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512dq",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "asimd",
        "asimdhp",
        "sve",
        "sve2",
        "bf16",
        "i8mm",
    }
)


class _StrEnum(enum.StrEnum):
    """str() gives the bare value, as logs and events need (enum.StrEnum's rule; the project needs 3.11)."""


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


class OtherConfigCaches(CaptureError):
    """The node's engine caches were left by another model or config than the one being published."""


class ManifestError(CompileCacheError, ValueError):
    """A manifest is not valid JSON or lacks required fields."""


class CorruptArchive(CompileCacheError):
    """The archive does not match its manifest, or holds a member that could escape the target."""


class RestoreConflict(CompileCacheError):
    """A restored path collides with an existing path of another type (file vs directory)."""
