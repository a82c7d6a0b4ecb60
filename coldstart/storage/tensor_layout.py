"""The tensors of a synthetic checkpoint: names, shapes and dtypes exactly as the public checkpoints of a
registry architecture have them (bf16, or block-wise FP8 with float32 scales), and how they fall into
safetensors shards."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from coldstart.registry import Architecture, Quantization

SCALE_SUFFIX = ".weight_scale_inv"  # an FP8 weight's block scales: "<module>.weight_scale_inv"
# safetensors dtype names -> bytes per element: bf16 weights; FP8 weights and their float32 block scales.
DTYPE_BYTES: Mapping[str, int] = MappingProxyType({"BF16": 2, "F8_E4M3": 1, "F32": 4})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "BF16"  # a DTYPE_BYTES key (safetensors' names)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def size_bytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]

    @property
    def is_scale(self) -> bool:
        return self.name.endswith(SCALE_SUFFIX)


def arch_hash(arch: Architecture) -> str:
    """A stable fingerprint of the shapes: two registry entries with equal architectures share it."""
    body = json.dumps(dataclasses.asdict(arch), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def checkpoint_tensors(arch: Architecture, quantization: Quantization | None = None) -> list[TensorSpec]:
    """Tensor names, shapes and dtypes as in the public checkpoints (what vLLM's and transformers' loaders
    expect); with ``quantization``, as in the public FP8 ones (``quantize``)."""
    specs = _bf16_tensors(arch)
    return specs if quantization is None else quantize(specs, quantization)


def _is_quantized(spec: TensorSpec) -> bool:
    # Every linear projection (attention's q/k/v/o, the MLP's or each expert's gate/up/down); the MoE router
    # (mlp.gate), the embeddings, lm_head and the norms are not "_proj" and stay bf16, as in Qwen's FP8 release.
    return len(spec.shape) == 2 and spec.name.endswith("_proj.weight")


def quantize(specs: Sequence[TensorSpec], quantization: Quantization) -> list[TensorSpec]:
    """Each linear projection's weight in FP8, followed by its ``weight_scale_inv``: one float32 per block of
    ``weight_block_size`` (rows, columns), a partial block at either edge counting as one."""
    block_n, block_k = quantization.weight_block_size
    out: list[TensorSpec] = []
    for spec in specs:
        if not _is_quantized(spec):
            out.append(spec)
            continue
        rows, cols = spec.shape
        out += [
            dataclasses.replace(spec, dtype="F8_E4M3"),
            TensorSpec(
                spec.name.removesuffix(".weight") + SCALE_SUFFIX, (-(-rows // block_n), -(-cols // block_k)), "F32"
            ),
        ]
    return out


def not_converted(specs: Sequence[TensorSpec]) -> list[str]:
    """The modules a quantized checkpoint keeps in bf16 that vLLM would otherwise build as FP8 layers (its
    ``modules_to_not_convert``): ``lm_head`` and each MoE router; embeddings and norms are no linear layers."""
    return [
        s.name.removesuffix(".weight")
        for s in specs
        if s.dtype == "BF16" and len(s.shape) == 2 and s.name != "model.embed_tokens.weight"
    ]


def _bf16_tensors(arch: Architecture) -> list[TensorSpec]:
    h, hd, v = arch.hidden_size, arch.head_dim_resolved, arch.vocab_size
    q_out, kv_out = arch.num_attention_heads * hd, arch.num_key_value_heads * hd
    specs = [TensorSpec("model.embed_tokens.weight", (v, h))]
    for i in range(arch.num_hidden_layers):
        p = f"model.layers.{i}"
        specs += [
            TensorSpec(f"{p}.input_layernorm.weight", (h,)),
            TensorSpec(f"{p}.self_attn.q_proj.weight", (q_out, h)),
            TensorSpec(f"{p}.self_attn.k_proj.weight", (kv_out, h)),
            TensorSpec(f"{p}.self_attn.v_proj.weight", (kv_out, h)),
            TensorSpec(f"{p}.self_attn.o_proj.weight", (h, q_out)),
        ]
        if arch.model_type.startswith("qwen3"):
            specs += [
                TensorSpec(f"{p}.self_attn.q_norm.weight", (hd,)),
                TensorSpec(f"{p}.self_attn.k_norm.weight", (hd,)),
            ]
        specs.append(TensorSpec(f"{p}.post_attention_layernorm.weight", (h,)))
        if arch.is_moe:
            if not (arch.num_experts and arch.moe_intermediate_size):
                raise ValueError(f"MoE architecture needs num_experts and moe_intermediate_size: {arch}")
            mi = arch.moe_intermediate_size
            specs.append(TensorSpec(f"{p}.mlp.gate.weight", (arch.num_experts, h)))
            for e in range(arch.num_experts):
                specs += [
                    TensorSpec(f"{p}.mlp.experts.{e}.gate_proj.weight", (mi, h)),
                    TensorSpec(f"{p}.mlp.experts.{e}.up_proj.weight", (mi, h)),
                    TensorSpec(f"{p}.mlp.experts.{e}.down_proj.weight", (h, mi)),
                ]
        else:
            specs += [
                TensorSpec(f"{p}.mlp.gate_proj.weight", (arch.intermediate_size, h)),
                TensorSpec(f"{p}.mlp.up_proj.weight", (arch.intermediate_size, h)),
                TensorSpec(f"{p}.mlp.down_proj.weight", (h, arch.intermediate_size)),
            ]
    specs.append(TensorSpec("model.norm.weight", (h,)))
    if not arch.tie_word_embeddings:
        specs.append(TensorSpec("lm_head.weight", (v, h)))
    return specs


def plan_shards(specs: Sequence[TensorSpec], shard_max_bytes: int) -> list[list[TensorSpec]]:
    """Greedy in order, like transformers: a tensor bigger than the limit gets a shard of its own."""
    if shard_max_bytes <= 0:
        raise ValueError(f"shard_max_bytes must be positive, got {shard_max_bytes}")
    shards: list[list[TensorSpec]] = [[]]
    used_bytes = 0
    for spec in specs:
        if shards[-1] and used_bytes + spec.size_bytes > shard_max_bytes:
            shards.append([])
            used_bytes = 0
        shards[-1].append(spec)
        used_bytes += spec.size_bytes
    return shards


def shard_file_names(num_shards: int) -> list[str]:
    if num_shards == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{num_shards:05d}.safetensors" for i in range(1, num_shards + 1)]
