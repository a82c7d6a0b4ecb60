"""What a cold run must not inherit from the previous one: on-disk caches and the page cache.

Each root is resolved from the environment at call time, the way the library that owns it resolves it, so
clearing follows a cache wherever an env var moved it. Clearing removes a root's contents (the folder stays:
it may be a mount point or carry permissions) and never follows a symlink found inside a root: the link is
removed, its target is not touched.

An env var can point a root anywhere (``VLLM_CACHE_ROOT=/etc``), so before anything is touched every root must
look like a cache: not a system folder, not the repo, not home or above, and under home, a temp folder or a
folder named like a cache (``--allow-root`` vouches for another). Paths are checked as written, never
resolved through a symlink: a root that is a symlink is refused, and ``--evict`` takes only paths inside a
known root (a cache, the lab's home, the local store). Clearing, evicting and dropping the page cache are each
asked for by name: ``--evict`` alone evicts and clears nothing.

Ray Serve LLM (2.57.1) has no download folder of its own: a model mirrored from S3/GCS is written to
``$HF_HUB_CACHE/models--<id>/snapshots/<hash>`` (``CloudModelAccessor._get_model_path``), so the ``hf-hub``
root covers it. Its FileLocks (``~/<id>-full.lock`` etc.) sit directly in the home folder and are left alone:
they hold no data.
"""

# The package is split along the old module's seams (roots, policy, clearing, page cache, CLI); callers keep
# `from coldstart.lab.caches import isolated_env` and `python -m coldstart clear-cache`. Patch a name where it
# is looked up (the submodule), not here.

from coldstart.lab.caches.clearing import CacheClearError, ClearReport, RootResult, clear
from coldstart.lab.caches.cli import add_cli_args, main, print_report
from coldstart.lab.caches.page_cache import (
    DROP_CACHES_PATH,
    DropCachesResult,
    EvictReport,
    drop_caches,
    evict_page_cache,
)
from coldstart.lab.caches.policy import REPO_ROOT, check_plausible_root
from coldstart.lab.caches.roots import (
    ENV_VARS,
    CacheRoot,
    OutsideCacheRootError,
    UnknownRootError,
    cache_roots,
    data_roots,
    isolated_env,
    select_roots,
)

__all__ = [
    "DROP_CACHES_PATH",
    "ENV_VARS",
    "REPO_ROOT",
    "CacheClearError",
    "CacheRoot",
    "ClearReport",
    "DropCachesResult",
    "EvictReport",
    "OutsideCacheRootError",
    "RootResult",
    "UnknownRootError",
    "add_cli_args",
    "cache_roots",
    "check_plausible_root",
    "clear",
    "data_roots",
    "drop_caches",
    "evict_page_cache",
    "isolated_env",
    "main",
    "print_report",
    "select_roots",
]
