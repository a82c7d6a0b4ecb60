"""What every node of a Ray cluster needs for the fast path, as one typed record, and its renderings.

``NodeSetup`` is built once (``coldstart.fastpath.api``) and rendered three ways that must never drift apart:
``ray start`` command lines (``shell_script``), a KubeRay ``RayService`` (``kuberay_rayservice``), and the
lab's own local Ray (``local_ray_init_kwargs``). The Serve YAML is rendered beside them from the same
``LLMConfig`` (``coldstart.lab.llm_config.serve_yaml_config``). Nothing here imports Ray.

Why each part is needed (each was measured: docs/deploy-on-a-cluster.md):
- the package in every node's Python, not in the job's ``runtime_env``: a Ray worker is given only to work whose
  runtime_env equals its own, and prestarted workers have none, so a job that ships the package as
  ``py_modules`` gets fresh workers that import vLLM after the request (39.6 s instead of 15.7 s on one H100);
- ``system_config`` on the HEAD only: raylets take ``_system_config`` from the head's GCS;
- ``env`` where every raylet starts: the replicas' runtime_env is empty, so their environment (the engine-cache
  roots, which are part of the compile-cache key, and the levers' switches) is the node's;
- ``--num-cpus`` on a replica node: the raylet prestarts one worker per logical CPU, and each imports vLLM
  (~17 s of CPU and ~1 GB of memory apiece), so a 128-core node would prestart 128 of them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# What a prestarted Ray worker imports before any request (Ray's preload_python_modules).
PRELOAD_MODULE = "coldstart.lab.fastpath.preload"
# Read by ``preload`` on the node: start the EngineCore forkserver in each prestarted worker.
FORKSERVER_ENV = "COLDSTART_ENGINE_CORE_FORKSERVER"
# Idle workers past Ray's soft limit (default: one per CPU) are killed after a second; the prestarted ones must
# outlive the wait for the request.
WORKERS_SOFT_LIMIT = 64
# Logical CPUs a replica node gives Ray: one prestarted worker each. Serve's controller and proxy may take two,
# the replica one, a retry or a second replica one more; past that, more only delay the moment a node is ready.
REPLICA_NODE_CPUS = 8
# Node-wide roots on a cluster (the lab's local runs use its home instead; a home path means nothing there).
NODE_CACHE_ROOT = "/mnt/coldstart/engine-cache"
HEAD_PORT = 6379
# The image every pod runs: Ray's ray-llm image of the pinned Ray with the package installed (`pip install` in
# its Dockerfile); a placeholder for the user's registry.
DEFAULT_IMAGE = "YOUR-REGISTRY/ray-llm-coldstart:2.57.1"


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


def node_cache_env(root: str = NODE_CACHE_ROOT) -> dict[str, str]:
    """The engine-cache roots pinned on every node (they enter vLLM's and the lab's compile-cache key)."""
    return {
        "VLLM_CACHE_ROOT": f"{root}/vllm",
        "TORCHINDUCTOR_CACHE_DIR": f"{root}/inductor",
        "TRITON_CACHE_DIR": f"{root}/triton",
    }


@dataclass(frozen=True)
class NodeSetup:
    """Everything a node needs before the first replica can take the fast path."""

    # The Python distribution every node (head and replica nodes) must have installed, same version as the
    # driver's: the callback, server and engine classes and the preload module are imported from it.
    package: str
    # Environment where `ray start` runs on every node (the raylet hands it to every worker it starts).
    env: Mapping[str, str] = field(default_factory=_frozen)
    # Ray `_system_config`: given to the head's `ray start`, read by every raylet from the GCS.
    system_config: Mapping[str, Any] = field(default_factory=_frozen)
    # What one replica needs of one node: its GPUs (0 on CPU) and the CPU of its bundle.
    replica_gpus: int = 1
    # `--num-cpus` of a replica node: how many workers it prestarts with vLLM imported.
    replica_node_cpus: int = REPLICA_NODE_CPUS
    # Where the weights must already be on every replica node (None: streamed or fetched).
    weights_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", _frozen(self.env))
        object.__setattr__(self, "system_config", _frozen(self.system_config))

    @property
    def prestarts(self) -> bool:
        return bool(self.system_config.get("enable_worker_prestart"))

    def system_config_json(self) -> str:
        return json.dumps(dict(self.system_config), sort_keys=True)

    # ------------------------------------------------------------------ `ray start`
    def head_argv(self, *, port: int = HEAD_PORT) -> list[str]:
        """The head: no GPU and no CPU for tasks, so it prestarts no vLLM workers and hosts no replica (Serve's
        controller and proxies need no CPU); the system config goes here and nowhere else."""
        argv = ["ray", "start", "--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0"]
        if self.system_config:
            argv.append(f"--system-config={self.system_config_json()}")
        return argv

    def worker_argv(self, *, head_address: str = f"HEAD_IP:{HEAD_PORT}") -> list[str]:
        argv = ["ray", "start", f"--address={head_address}", f"--num-cpus={self.replica_node_cpus}"]
        if self.replica_gpus:
            argv.append(f"--num-gpus={self.replica_gpus}")
        return argv

    def shell_script(self, *, head_address: str = f"HEAD_IP:{HEAD_PORT}") -> str:
        """The node setup as shell lines a user runs on each node."""
        exports = [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        weights = [f"# Each replica node: the weights already at {self.weights_path}"] if self.weights_path else []
        lines = [
            "# Every node (head and replica nodes): this package in the Python that runs `ray start`, from its wheel",
            "# (built once where you deploy from: `pip wheel --no-deps -w dist CHECKOUT`; `coldstart` on PyPI is",
            "# an unrelated project, never install it by name):",
            f"pip install {shlex.quote(self.package)}",
            *weights,
            "# Every node, before `ray start`: the replicas' environment is the node's.",
            *exports,
            "# The head (no GPU, no task CPUs; the system config is read by every raylet from its GCS):",
            shlex.join(self.head_argv()),
            f"# Each replica node ({self.replica_node_cpus} CPUs: one worker prestarted with vLLM imported per CPU):",
            shlex.join(self.worker_argv(head_address=head_address)),
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ KubeRay
    def ray_start_params(self, *, head: bool) -> dict[str, str]:
        """KubeRay ``rayStartParams`` (flag names without dashes, string values) of the same argv."""
        argv = self.head_argv() if head else self.worker_argv()
        params: dict[str, str] = {}
        for arg in argv[2:]:
            if not arg.startswith("--") or arg == "--head":
                continue
            name, _, value = arg[2:].partition("=")
            if name in ("address", "port"):  # KubeRay wires the head's address and port itself
                continue
            params[name] = value
        return params

    def kuberay_env(self) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in sorted(self.env.items())]

    def kuberay_rayservice(self, *, name: str, serve_config: Mapping[str, Any], image: str = DEFAULT_IMAGE) -> dict:
        """A KubeRay ``RayService``: the same node setup as `ray start` lines, and the Serve config it deploys.

        The image must carry the package (``pip install`` in its Dockerfile): KubeRay's ``runtime_env`` would
        ship it per job, which is exactly what keeps replicas off the prestarted workers."""

        def container(role: str, gpus: int) -> dict[str, Any]:
            spec: dict[str, Any] = {"name": f"ray-{role}", "image": image, "env": self.kuberay_env()}
            if gpus:
                spec["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
            return spec

        return {
            "apiVersion": "ray.io/v1",
            "kind": "RayService",
            "metadata": {"name": name},
            "spec": {
                "serveConfigV2": _yaml_block(serve_config),
                "rayClusterConfig": {
                    "headGroupSpec": {
                        "rayStartParams": self.ray_start_params(head=True),
                        "template": {"spec": {"containers": [container("head", 0)]}},
                    },
                    "workerGroupSpecs": [
                        {
                            "groupName": "replicas",
                            "replicas": 1,
                            "minReplicas": 0,
                            "maxReplicas": 4,
                            "rayStartParams": self.ray_start_params(head=False),
                            "template": {"spec": {"containers": [container("worker", self.replica_gpus)]}},
                        }
                    ],
                },
            },
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "package": self.package,
                "env": dict(self.env),
                "system_config": dict(self.system_config),
                "replica_gpus": self.replica_gpus,
                "replica_node_cpus": self.replica_node_cpus,
                "weights_path": self.weights_path,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> NodeSetup:
        return cls(**json.loads(text))

    # ------------------------------------------------------------------ the lab's local Ray
    def local_ray_init_kwargs(self, *, num_cpus: int | None) -> dict[str, Any]:
        """``ray.init`` keyword arguments of a one-node Ray that is both head and replica node."""
        kwargs: dict[str, Any] = {"num_cpus": num_cpus if num_cpus is not None else self.replica_node_cpus}
        if self.system_config:
            kwargs["_system_config"] = dict(self.system_config)
        return kwargs


def _yaml_block(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)
