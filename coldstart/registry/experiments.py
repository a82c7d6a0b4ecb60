"""Experiments: how a cold start loads weights and which fast-path levers it pulls, one frozen entry each.

Any experiment runs on any model unless ``Experiment.for_model`` says otherwise (sharded state needs TP > 1).
The fast-path ladder is built rung by rung with ``dataclasses.replace``: each adds one lever to the one below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from coldstart.registry.base import InvalidPairError, UnknownNameError, frozen
from coldstart.registry.models import MODELS, Model, get_model


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    # vLLM load_format; None means vLLM's default ("auto": safetensors from a local folder).
    load_format: str | None = None
    weights_from_store: bool = False  # stream straight from the object store instead of fetch-then-load
    sharded_state: bool = False  # pre-sharded per-rank state (vLLM save_sharded_state), TP>1 only
    compile_cache: bool = False  # restore the torch.compile cache from the store before the engine starts
    # Environment of the replica and its engine processes (Ray runtime_env.env_vars). VLLM_* names enter
    # vLLM's compile-cache hash and this lab's cache fingerprint, so such an experiment has its own cache key.
    engine_env: Mapping[str, str] = field(default_factory=frozen)
    # --- fast-path levers (coldstart/lab/fastpath): each one removes a step of the replica's cold start.
    # Ray LLM's per-node init task (a fresh Ray worker that imports vLLM to "download" weights already on the
    # node) is turned off by the replica callback, which restores the compile cache itself.
    skip_node_init: bool = False
    # vLLM's config built in the replica (no remote config task) and the GPU worker run inside EngineCore
    # (uni executor at TP1, mp above) instead of a Ray actor: the replica holds the GPUs itself.
    engine_in_replica: bool = False
    # Ray workers prestarted with vLLM and Serve LLM imported (preload_python_modules); the replica's
    # runtime_env is left empty so it is given one of them (the env goes to the nodes instead).
    prestart_workers: bool = False
    # EngineCore forked from a forkserver that a prestarted worker started with vLLM imported, instead of a
    # spawned interpreter that imports vLLM again (needs prestart_workers and engine_in_replica).
    engine_core_forkserver: bool = False
    # CUDA-graph batch sizes to capture (None: vLLM's ~50 sizes up to 512); one request needs only small ones.
    cudagraph_capture_sizes: tuple[int, ...] | None = None
    # KV cache size given instead of profiled (None: vLLM profiles a forward pass and sizes it).
    kv_cache_memory_bytes: int | None = None
    # Ray LLM reports usage telemetry to a detached actor before the replica counts as started; the first
    # report creates that actor (a fresh Ray worker). Sent in the background instead (needs the fast server).
    background_telemetry: bool = False

    def __post_init__(self) -> None:
        # Frozen all the way down: a plain dict given here would stay mutable behind the frozen dataclass.
        object.__setattr__(self, "engine_env", frozen(self.engine_env))
        if self.background_telemetry and not (self.prestart_workers or self.engine_in_replica):
            raise ValueError(
                f"experiment {self.name!r}: background_telemetry needs the fast server "
                "(engine_in_replica or prestart_workers)"
            )
        if self.engine_core_forkserver and not (self.prestart_workers and self.engine_in_replica):
            raise ValueError(
                f"experiment {self.name!r}: engine_core_forkserver needs prestart_workers and "
                "engine_in_replica (the forkserver lives in the prestarted replica worker)"
            )

    @property
    def levers(self) -> tuple[str, ...]:
        """The fast-path levers this experiment pulls, in ladder order (for tables and rows)."""
        on = {
            "compile_cache": self.compile_cache,
            "skip_node_init": self.skip_node_init,
            "engine_in_replica": self.engine_in_replica,
            "prestart_workers": self.prestart_workers,
            "engine_trims": self.cudagraph_capture_sizes is not None
            or self.kv_cache_memory_bytes is not None
            or self.background_telemetry,
            "engine_core_forkserver": self.engine_core_forkserver,
            "mega_aot_artifact": self.engine_env.get("VLLM_USE_MEGA_AOT_ARTIFACT") == "1",
        }
        return tuple(name for name, pulled in on.items() if pulled)

    def for_model(self, model: Model) -> Experiment:
        """The experiment as it runs on ``model``; raises InvalidPairError when it cannot.

        ``all`` keeps its meaning "fastest path": sharded streaming at TP>1, the plain streamer at TP1
        (sharded state of one rank is the checkpoint itself, so there is nothing to pre-shard).
        """
        if self.sharded_state and model.tp_size < 2:
            if self.name == "all":
                return dataclasses.replace(self, load_format="runai_streamer", sharded_state=False)
            raise InvalidPairError(
                f"experiment {self.name!r} needs tensor parallelism > 1, but {model.name!r} runs at "
                f"TP{model.tp_size}; valid experiments for it: {', '.join(valid_experiments(model))}"
            )
        return self


_STREAM = Experiment(
    "runai_streamer",
    "stream safetensors from the object store into GPU memory (vLLM load_format=runai_streamer)",
    load_format="runai_streamer",
    weights_from_store=True,
)
_COMPILE_CACHE = Experiment(
    "compile_cache",
    "baseline loading + torch.compile cache restored from the store",
    compile_cache=True,
)
# The fast-path ladder: each rung adds one lever to the one below it (dataclasses.replace, never a copy).
_SKIP_INIT = dataclasses.replace(
    _COMPILE_CACHE,
    name="cc_skip_init",
    description="compile_cache + no Ray LLM node-init task",
    skip_node_init=True,
)
_IN_REPLICA = dataclasses.replace(
    _SKIP_INIT,
    name="cc_in_replica",
    description="+ vLLM config and GPU worker in the replica's own processes (2 vLLM processes, not 4)",
    engine_in_replica=True,
)
_PRESTART = dataclasses.replace(
    _IN_REPLICA,
    name="cc_prestart",
    description="+ Ray workers prestarted with vLLM imported",
    prestart_workers=True,
)
_TRIMS = dataclasses.replace(
    _PRESTART,
    name="cc_trims",
    description="+ CUDA graphs for batch sizes 1-8 only, KV cache size given (no profiling run), Ray LLM's "
    "telemetry report off the replica's start",
    cudagraph_capture_sizes=(1, 2, 4, 8),
    kv_cache_memory_bytes=4 * 1024**3,
    background_telemetry=True,
)
_FAST = dataclasses.replace(
    _TRIMS,
    name="fast",
    description="every lever: + EngineCore forked from a forkserver with vLLM imported",
    engine_core_forkserver=True,
)
# Beyond `fast`: vLLM's whole-model AOT artifact skips the Dynamo pass that still runs before the per-subgraph
# artifacts load (~3 s of the 8B shape's 5 s torch.compile on a cache hit). Its own cache key (a VLLM_* env).
_FAST_MEGA = dataclasses.replace(
    _FAST,
    name="fast_mega",
    description="fast + vLLM's whole-model mega AOT artifact (VLLM_USE_MEGA_AOT_ARTIFACT=1): no Dynamo pass",
    engine_env={"VLLM_USE_MEGA_AOT_ARTIFACT": "1"},
)
# Bars of the ladder graph, bottom to top.
LADDER: tuple[str, ...] = (
    "baseline",
    "compile_cache",
    "cc_skip_init",
    "cc_in_replica",
    "cc_prestart",
    "cc_trims",
    "fast",
    "fast_mega",
)

EXPERIMENTS: Mapping[str, Experiment] = frozen(
    {
        e.name: e
        for e in (
            Experiment("baseline", "fetch the checkpoint (Hub, else the store) to local disk, then load"),
            _STREAM,
            dataclasses.replace(
                _STREAM,
                name="runai_streamer_sharded",
                description="stream pre-sharded per-rank state from the store (TP>1)",
                load_format="runai_streamer_sharded",
                sharded_state=True,
            ),
            _COMPILE_CACHE,
            # vLLM's whole-model AOT artifact (default on only with torch >= 2.12): one standalone_compile
            # artifact for the model instead of per-subgraph ones, loaded without re-splitting the graph.
            dataclasses.replace(
                _COMPILE_CACHE,
                name="compile_cache_mega",
                description="compile_cache with vLLM's whole-model mega AOT artifact (VLLM_USE_MEGA_AOT_ARTIFACT=1)",
                engine_env={"VLLM_USE_MEGA_AOT_ARTIFACT": "1"},
            ),
            dataclasses.replace(
                _STREAM,
                name="all",
                description="sharded streaming (plain streamer at TP1) + compile cache",
                load_format="runai_streamer_sharded",
                sharded_state=True,
                compile_cache=True,
            ),
            _SKIP_INIT,
            _IN_REPLICA,
            _PRESTART,
            _TRIMS,
            _FAST,
            _FAST_MEGA,
        )
    }
)


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown experiment {name!r}; valid experiments: {', '.join(EXPERIMENTS)}") from None


def valid_experiments(model: Model) -> list[str]:
    return [e.name for e in EXPERIMENTS.values() if not (e.sharded_state and model.tp_size < 2 and e.name != "all")]


def resolve(model_name: str, experiment_name: str) -> tuple[Model, Experiment]:
    """Look up a pair and return it as it runs (``Experiment.for_model``); errors list valid names."""
    return resolve_model(get_model(model_name), experiment_name)


def resolve_model(model: Model, experiment_name: str) -> tuple[Model, Experiment]:
    """``resolve`` for a model that is no registry entry (a user's, ``user_models``): the same checks."""
    return model, get_experiment(experiment_name).for_model(model)


def valid_pairs() -> list[tuple[str, str]]:
    return [(m.name, e) for m in MODELS.values() for e in valid_experiments(m)]
