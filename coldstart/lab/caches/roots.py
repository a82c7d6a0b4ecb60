"""Where each cache a cold start could reuse lives now: resolved from the environment at call time, the way
the library that owns it resolves it, so clearing follows a cache wherever an env var moved it."""

from __future__ import annotations

import getpass
import os
import pwd
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coldstart import paths

# Every variable cache_roots reads: point them all into one folder and no root is left on the real machine.
ENV_VARS = (
    "HOME", "XDG_CACHE_HOME", "TMPDIR", "TEMP", "TMP", "LOGNAME", "USER", "LNAME", "USERNAME",
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE",
    "VLLM_CACHE_ROOT", "VLLM_ASSETS_CACHE", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TRITON_HOME",
    "PYTORCH_KERNEL_CACHE_PATH", "CUDA_CACHE_PATH", "FLASHINFER_WORKSPACE_BASE", "COLDSTART_HOME",
)  # fmt: skip


class OutsideCacheRootError(ValueError):
    """A path that is not one of the known cache roots (or inside one): clearing it could destroy data."""


class UnknownRootError(ValueError):
    """A root name that ``cache_roots`` does not know; the message lists the valid ones."""


@dataclass(frozen=True)
class CacheRoot:
    name: str
    path: Path
    why: str


def home_folder(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _expand(value: str, env: Mapping[str, str]) -> Path:
    # expanduser() would read os.environ's HOME; use the mapping's so a test or a caller can move it.
    if value == "~" or value.startswith("~/"):
        return home_folder(env) / value[2:]
    return Path(value)


def _get(env: Mapping[str, str], *names: str) -> Path | None:
    for name in names:
        if env.get(name):
            return _expand(env[name], env)
    return None


def _xdg_cache(env: Mapping[str, str]) -> Path:
    return _get(env, "XDG_CACHE_HOME") or home_folder(env) / ".cache"


def temp_folder(env: Mapping[str, str]) -> Path:
    # Same precedence as tempfile.gettempdir(), read from the mapping.
    return _get(env, "TMPDIR", "TEMP", "TMP") or Path(tempfile.gettempdir())


def _user(env: Mapping[str, str]) -> str:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass.getuser()'s order
        if env.get(name):
            return env[name]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


def _inductor_default(env: Mapping[str, str]) -> Path:
    # torch._inductor.runtime.cache_dir_utils.default_cache_dir
    return temp_folder(env) / ("torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", _user(env)))


def cache_roots(env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """Every cache a cold start could otherwise reuse, where its owner would look for it now.

    vLLM, Inductor and Triton appear twice when the two differ: where the lab's engine writes them
    (``paths.engine_cache_env``: the env var, else pinned under the coldstart home) and the library default
    (what anything started outside the lab, e.g. a plain ``vllm serve``, would reuse).
    """
    env = os.environ if env is None else env
    home = home_folder(env)
    xdg = _xdg_cache(env)
    hf_home = _get(env, "HF_HOME") or xdg / "huggingface"
    pinned = {k: _expand(v, env) for k, v in paths.engine_cache_env(env).items()}
    # vLLM defaults VLLM_ASSETS_CACHE to XDG/vllm/assets, not VLLM_CACHE_ROOT/assets: moving one does not
    # move the other.
    vllm_assets = _get(env, "VLLM_ASSETS_CACHE") or xdg / "vllm" / "assets"
    triton_home = _get(env, "TRITON_HOME") or home
    roots = [
        CacheRoot(
            "hf-hub",
            _get(env, "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") or hf_home / "hub",
            "Hub downloads; Ray LLM also mirrors S3/GCS models here (models--<id>/snapshots/<hash>)",
        ),
        CacheRoot(
            "hf-xet",
            _get(env, "HF_XET_CACHE") or hf_home / "xet",
            "Xet chunk cache: a repeated Hub download would be served from local chunks",
        ),
        CacheRoot(
            "vllm",
            pinned["VLLM_CACHE_ROOT"],
            "VLLM_CACHE_ROOT: torch_compile_cache/ (incl. torch_aot_compile/), per-hash inductor/triton caches",
        ),
        CacheRoot("vllm-default", xdg / "vllm", "vLLM's default cache root (VLLM_CACHE_ROOT unset)"),
        CacheRoot(
            "runai-streamer",
            vllm_assets / "model_streamer",
            "config/tokenizer files vLLM pulls when the model is an s3:// or gs:// path (runai_streamer)",
        ),
        CacheRoot(
            "inductor",
            pinned["TORCHINDUCTOR_CACHE_DIR"],
            "TorchInductor FX graph / kernel cache outside vLLM's own folders",
        ),
        CacheRoot("inductor-default", _inductor_default(env), "Inductor's default: <tmp>/torchinductor_<user>"),
        CacheRoot(
            "inductor-headers",
            _inductor_default(env) / "precompiled_headers",
            "Inductor's precompiled C++ headers: always under <tmp>/torchinductor_<user>, whatever the env says",
        ),
        CacheRoot("triton", pinned["TRITON_CACHE_DIR"], "compiled Triton kernels"),
        CacheRoot(
            "triton-default", triton_home / ".triton" / "cache", "Triton's default cache (TRITON_CACHE_DIR unset)"
        ),
        CacheRoot(
            "torch-kernels",
            _get(env, "PYTORCH_KERNEL_CACHE_PATH") or xdg / "torch" / "kernels",
            "PyTorch CUDA JIT (jiterator/NVRTC) kernel cache",
        ),
        CacheRoot(
            "cuda-jit",
            _get(env, "CUDA_CACHE_PATH") or home / ".nv" / "ComputeCache",
            "the CUDA driver's PTX-to-SASS JIT cache",
        ),
        CacheRoot(
            "flashinfer",
            (_get(env, "FLASHINFER_WORKSPACE_BASE") or home) / ".cache" / "flashinfer",
            "FlashInfer JIT-compiled kernels",
        ),
        CacheRoot(
            "coldstart-models",
            _expand(str(paths.coldstart_home(env)), env) / "models",
            "local model copies at compile_cache.stable_model_path (<home>/models/<slug>): a fetched checkpoint",
        ),
    ]
    # A "-default" twin equal to its pinned root would only be listed twice.
    pinned_paths = set(pinned.values())
    return [r for r in roots if not (r.name.endswith("-default") and r.path in pinned_paths)]


def isolated_env(base: Path) -> dict[str, str | None]:
    """Env changes that move every root in ``cache_roots`` and ``data_roots`` under ``base`` (None: unset).

    HOME stays (Ray and pip read it), so the roots that default to it (Triton's, the CUDA JIT's, FlashInfer's)
    are moved by their own variables; the user name stays too, so Inductor's default moves with TMPDIR.
    For tests and throwaway labs: a clear there cannot reach the developer's caches. Create ``base/tmp``.
    """
    unset: dict[str, str | None] = {
        name: None for name in ENV_VARS if name not in ("HOME", "LOGNAME", "USER", "LNAME", "USERNAME", "TEMP", "TMP")
    }
    return {
        **unset,
        "XDG_CACHE_HOME": str(base / "xdg"),
        "TMPDIR": str(base / "tmp"),
        "TRITON_HOME": str(base / "triton-home"),
        "CUDA_CACHE_PATH": str(base / "nv" / "ComputeCache"),
        "FLASHINFER_WORKSPACE_BASE": str(base / "flashinfer-home"),
    }


def select_roots(names: Iterable[str], env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """The named roots, in the order asked; raises UnknownRootError listing the valid names."""
    by_name = {r.name: r for r in cache_roots(env)}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UnknownRootError(f"unknown cache root(s) {', '.join(unknown)}; valid roots: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def data_roots(env: Mapping[str, str] | None = None) -> list[CacheRoot]:
    """Where the lab keeps weights it may evict from the page cache but never clears: its home, a local store."""
    from coldstart.storage.store import InvalidStoreURI, parse_store_uri

    env = os.environ if env is None else env
    roots = [CacheRoot("coldstart-home", _expand(str(paths.coldstart_home(env)), env), "checkpoints, store, models")]
    uri = env.get("COLDSTART_STORE", "").strip()
    if uri:
        try:
            loc = parse_store_uri(uri)
        except InvalidStoreURI as exc:
            raise OutsideCacheRootError(f"COLDSTART_STORE: {exc}") from exc
        if loc.path is not None:
            roots.append(CacheRoot("local-store", loc.path, "the lab's local store (COLDSTART_STORE)"))
    return roots
