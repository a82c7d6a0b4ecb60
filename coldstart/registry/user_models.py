"""User models: any Hub id or local Hugging Face folder, beside the registry's named shapes.

``model_from_hf_config`` is pure: a ``config.json`` body in, a registry ``Model`` out, or a ``UserModelError``
that names the field and the fix. Reading that body (a folder, the Hugging Face cache, the store, the Hub) is
the storage wing's job (``coldstart.storage.sources.load_user_model``).

Only the families whose tensor layout the synthetic checkpoint writer knows are accepted, so that every user
model can also be written offline (``coldstart checkpoint --config``) with the same names, shapes and bytes.
Fields that change no tensor (``rope_scaling``, ``torch_dtype``) are not carried: vLLM reads the real
``config.json`` when it serves the real folder; a synthetic checkpoint has the shapes, not those details.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coldstart.registry.models import DEFAULT_MAX_MODEL_LEN, MODELS, Architecture, Model, Quantization

# One key segment of the store (models/<name>/), one folder of the run logs, the id clients request.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The registry's 70B (141 GB) needs 1800 s for a cold baseline (download, then load): about 80 MB/s.
_COLD_BYTES_PER_S = 80e6
# "Fits a laptop / CPU / CI": the registry's small models are at most this big.
_SMALL_CHECKPOINT_BYTES = 2e9


class UserModelError(ValueError):
    """A user model the lab cannot serve or write: the message names the field and what would fix it."""


@dataclass(frozen=True)
class Family:
    """What the lab knows of one ``architectures[0]``: its ``model_type`` and the defaults transformers fills in
    for fields a ``config.json`` may leave out (they change shapes, so they must be the library's)."""

    model_type: str
    moe: bool = False
    # transformers' Qwen3 configs default head_dim to 128; Llama's is hidden_size // num_attention_heads.
    default_head_dim: int | None = None


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "LlamaForCausalLM": Family("llama"),
        "Qwen3ForCausalLM": Family("qwen3", default_head_dim=128),
        "Qwen3MoeForCausalLM": Family("qwen3_moe", moe=True, default_head_dim=128),
    }
)


def check_user_model_name(name: str) -> str:
    """A user model's name: one path segment, and not a registry name (that would mean two shapes for one)."""
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise UserModelError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' only (no '/'), "
            "starting with a letter or digit"
        )
    if name in MODELS:
        raise UserModelError(f"{name!r} is a registry model's name: give your model another one")
    return name


def name_from_source(source: str) -> str:
    """The default name of a Hub id or folder: its last segment (``Qwen/Qwen3-0.6B`` -> ``Qwen3-0.6B``)."""
    return Path(source.rstrip("/")).name


def _positive_int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise UserModelError(f"config.json has no {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserModelError(f"config.json's {key!r} must be a positive integer, got {value!r}")
    return value


def _token_id(config: Mapping[str, Any], key: str, default: int) -> int:
    # Llama 3.1's instruct configs list several end-of-turn ids; the first is the one a tokenizer names.
    value = config.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _rope_theta(config: Mapping[str, Any]) -> float:
    # transformers 5 writes it inside rope_parameters; older configs at the top level; both default to 10000.
    params = config.get("rope_parameters")
    value = config.get("rope_theta", params.get("rope_theta") if isinstance(params, Mapping) else None)
    return float(value) if value is not None else 10000.0


def _family(config: Mapping[str, Any]) -> tuple[str, Family]:
    names = config.get("architectures")
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        raise UserModelError(f"config.json must name one architecture in 'architectures', got {names!r}")
    hf_architecture = names[0]
    family = FAMILIES.get(hf_architecture)
    if family is None:
        raise UserModelError(
            f"unknown architecture {hf_architecture!r}; the lab knows the tensor layout of: {', '.join(FAMILIES)}"
        )
    if config.get("model_type", family.model_type) != family.model_type:
        raise UserModelError(
            f"config.json's model_type {config.get('model_type')!r} is not {family.model_type!r}, "
            f"the model_type of {hf_architecture}"
        )
    return hf_architecture, family


def _layout_problems(config: Mapping[str, Any], family: Family) -> list[str]:
    """Options that add, drop or reshape tensors the synthetic writer would not write."""
    problems = [f"{key}: true adds bias tensors" for key in ("attention_bias", "mlp_bias") if config.get(key)]
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (the lab's layouts are SwiGLU: silu)")
    if family.moe and (config.get("decoder_sparse_step", 1) != 1 or config.get("mlp_only_layers")):
        problems.append("decoder_sparse_step / mlp_only_layers make some layers dense")
    return problems


def architecture_from_hf_config(config: Mapping[str, Any]) -> Architecture:
    """The ``Architecture`` of a ``config.json`` body (pure); raises UserModelError naming what is wrong."""
    hf_architecture, family = _family(config)
    if problems := _layout_problems(config, family):
        raise UserModelError(f"{hf_architecture} with a layout the lab cannot write: {'; '.join(problems)}")
    heads = _positive_int(config, "num_attention_heads")
    head_dim = config.get("head_dim", family.default_head_dim)
    moe: dict[str, int] = {}
    if family.moe:
        moe = {
            key: _positive_int(config, key) for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size")
        }
    return Architecture(
        hf_architecture=hf_architecture,
        model_type=family.model_type,
        hidden_size=_positive_int(config, "hidden_size"),
        num_hidden_layers=_positive_int(config, "num_hidden_layers"),
        num_attention_heads=heads,
        # transformers' rule for configs without it: one KV head per attention head (no grouping).
        num_key_value_heads=_positive_int(config, "num_key_value_heads", heads),
        intermediate_size=_positive_int(config, "intermediate_size"),
        vocab_size=_positive_int(config, "vocab_size"),
        max_position_embeddings=_positive_int(config, "max_position_embeddings"),
        rope_theta=_rope_theta(config),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=None if head_dim is None else _positive_int({"head_dim": head_dim}, "head_dim"),
        bos_token_id=_token_id(config, "bos_token_id", 1),
        eos_token_id=_token_id(config, "eos_token_id", 2),
        **moe,
    )


def quantization_from_hf_config(config: Mapping[str, Any]) -> Quantization | None:
    """Block-wise FP8 (the only quantized layout the lab writes and checks); None: unquantized weights."""
    qc = config.get("quantization_config")
    if qc is None:
        return None
    block = qc.get("weight_block_size") if isinstance(qc, Mapping) else None
    if not isinstance(qc, Mapping) or qc.get("quant_method") != "fp8" or not block:
        method = qc.get("quant_method") if isinstance(qc, Mapping) else qc
        raise UserModelError(
            f"quantization {method!r} without FP8 blocks: the lab knows block-wise FP8 weights "
            "(quant_method 'fp8' with weight_block_size) and unquantized ones"
        )
    if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
        raise UserModelError(f"quantization_config's weight_block_size must be two positive integers, got {block!r}")
    return Quantization(
        fmt=str(qc.get("fmt", "e4m3")),
        activation_scheme=str(qc.get("activation_scheme", "dynamic")),
        weight_block_size=(block[0], block[1]),
    )


def tp_problems(arch: Architecture, tp_size: int) -> list[str]:
    """Why vLLM would refuse to split ``arch`` over ``tp_size`` ranks (empty: it splits). Checked before anything
    starts: vLLM would say it minutes later, once the weights are loading."""
    problems = []
    if arch.num_attention_heads % tp_size:
        problems.append(f"{arch.num_attention_heads} attention heads do not divide by TP{tp_size}")
    kv = arch.num_key_value_heads
    # vLLM replicates KV heads when there are fewer than ranks: then the ranks must divide by them instead.
    if kv % tp_size and tp_size % kv:
        problems.append(f"{kv} KV heads and TP{tp_size}: neither divides the other")
    if arch.is_moe:
        assert arch.moe_intermediate_size is not None
        width, what = arch.moe_intermediate_size, "moe_intermediate_size"
    else:
        width, what = arch.intermediate_size, "intermediate_size"
    if width % tp_size:
        problems.append(f"{what} {width} does not divide by TP{tp_size}")
    return problems


def model_from_hf_config(
    name: str,
    config: Mapping[str, Any],
    *,
    tp_size: int,
    hub_id: str | None = None,
    local_dir: Path | None = None,
) -> Model:
    """A registry ``Model`` from a ``config.json`` body (pure): shapes from its fields, TP checked against them.

    ``hub_id`` or ``local_dir`` says where the real weights are (neither: a shape to write synthetically).
    """
    check_user_model_name(name)
    if isinstance(tp_size, bool) or not isinstance(tp_size, int) or tp_size < 1:
        raise UserModelError(f"TP size must be a positive integer, got {tp_size!r}")
    arch = architecture_from_hf_config(config)
    model = Model(
        name=name,
        hub_id=hub_id,
        tp_size=tp_size,
        arch=arch,
        # vLLM refuses a context past max_position_embeddings; the default is no longer than the registry's.
        max_model_len=min(DEFAULT_MAX_MODEL_LEN, arch.max_position_embeddings),
        request_timeout_s=max(Model.request_timeout_s, arch.checkpoint_bytes() / _COLD_BYTES_PER_S),
        small=arch.checkpoint_bytes() <= _SMALL_CHECKPOINT_BYTES,
        quantization=quantization_from_hf_config(config),
        local_dir=local_dir,
    )
    if problems := tp_problems(arch, tp_size) + model.quantization_problems():
        raise UserModelError(f"{name!r} cannot run at TP{tp_size}: {'; '.join(problems)}")
    return model
