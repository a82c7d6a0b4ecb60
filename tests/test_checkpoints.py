"""Synthetic checkpoints load in transformers with the registry's exact shapes, and are written once."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from coldstart.registry import MODELS, Model, get_model
from coldstart.storage import checkpoints, safetensors_writer
from coldstart.storage.checkpoints import (
    CHAT_TEMPLATE,
    MARKER_NAME,
    CheckpointMismatchError,
    checkpoint_tensors,
    default_checkpoint_dir,
    plan_shards,
    write_checkpoint,
)

# Writing a checkpoint needs torch, tokenizers and transformers: without the serving stack (`make test-fast`
# in a light venv) this file is skipped.
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
safe_open = pytest.importorskip("safetensors").safe_open


def _shrunk(name: str, new_name: str, **arch_changes) -> Model:
    """A registry model with its real layout (qk norms, tying, experts) at toy sizes."""
    model = get_model(name)
    return dataclasses.replace(model, name=new_name, arch=dataclasses.replace(model.arch, **arch_changes))


_SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
QWEN3_MINI = _shrunk("qwen-3-0.6b", "qwen3-mini", **_SMALL, head_dim=32, intermediate_size=128, vocab_size=512)
QWEN3_MOE_MINI = _shrunk(
    "qwen-3-235b",
    "qwen3-moe-mini",
    **_SMALL,
    head_dim=32,
    intermediate_size=128,
    vocab_size=512,
    num_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
)
TEST_MODELS = {"tiny": get_model("tiny"), "qwen3-mini": QWEN3_MINI, "qwen3-moe-mini": QWEN3_MOE_MINI}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One checkpoint per test model, written once for the module (tokenizer training is the slow part)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: write_checkpoint(model, root / name, progress=False).path for name, model in TEST_MODELS.items()}


def _file_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensors[name] = f.get_tensor(name)
    return tensors


def _load(folder: Path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, output_loading_info=True)
    return model, info


@pytest.mark.parametrize("name", list(MODELS))
def test_tensor_plan_of_every_registry_model_matches_its_param_count(name):
    arch = MODELS[name].arch
    specs = checkpoint_tensors(arch)
    assert sum(s.numel for s in specs) == arch.param_count()
    assert len({s.name for s in specs}) == len(specs)
    assert ("lm_head.weight" in {s.name for s in specs}) == (not arch.tie_word_embeddings)


@pytest.mark.parametrize("name", list(TEST_MODELS))
def test_file_holds_exactly_the_planned_tensors_in_bf16(written, name):
    arch = TEST_MODELS[name].arch
    tensors = _file_tensors(written[name])
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {s.name: s.shape for s in checkpoint_tensors(arch)}
    assert {v.dtype for v in tensors.values()} == {torch.bfloat16}
    embed = tensors["model.embed_tokens.weight"].float()
    assert abs(embed.std().item() - 0.02) < 0.002
    assert torch.all(tensors["model.norm.weight"] == 1)


@pytest.mark.parametrize("name", list(TEST_MODELS))
def test_transformers_loads_every_parameter_from_the_files(written, name):
    arch = TEST_MODELS[name].arch
    model, info = _load(written[name])
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == arch.param_count()
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (
        arch.hidden_size,
        arch.num_hidden_layers,
        arch.vocab_size,
    )
    tensors = _file_tensors(written[name])
    if arch.is_moe:
        # transformers 5 fuses the per-expert tensors on load; a fused parameter must equal the file's parts,
        # which proves the names were recognised rather than randomly initialised.
        layer = model.model.layers[1].mlp
        e = arch.num_experts - 1
        gate_up = torch.cat([tensors[f"model.layers.1.mlp.experts.{e}.{p}_proj.weight"] for p in ("gate", "up")], dim=0)
        assert torch.equal(layer.experts.gate_up_proj[e], gate_up)
        assert torch.equal(layer.experts.down_proj[e], tensors[f"model.layers.1.mlp.experts.{e}.down_proj.weight"])
        assert torch.equal(layer.gate.weight, tensors["model.layers.1.mlp.gate.weight"])
    else:
        specs = {s.name: s.shape for s in checkpoint_tensors(arch)}
        assert {k: tuple(p.shape) for k, p in params.items()} == specs
        for key, value in tensors.items():
            assert torch.equal(params[key], value), key
    if arch.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 9]])).logits
    assert logits.shape == (1, 3, arch.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(TEST_MODELS))
def test_tokenizer_loads_with_chat_template_and_ids_matching_config(written, name):
    from transformers import AutoTokenizer

    folder = written[name]
    tok = AutoTokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    assert len(tok) == min(TEST_MODELS[name].arch.vocab_size, checkpoints.MAX_TOKENIZER_VOCAB)
    assert (tok.bos_token_id, tok.eos_token_id) == (config["bos_token_id"], config["eos_token_id"])
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (tok.bos_token_id, tok.eos_token_id)
    text = "The quick brown fox, 12345!"
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == "system: be brief\nuser: hi\nassistant: "
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE


def test_config_json_is_the_registry_config_with_tokenizer_ids(written):
    config = json.loads((written["qwen3-moe-mini"] / "config.json").read_text())
    expected = QWEN3_MOE_MINI.arch.hf_config()
    expected.update(bos_token_id=1, eos_token_id=2)
    assert config == expected


def test_second_call_keeps_the_folder_and_a_different_one_is_refused(tmp_path):
    model = get_model("tiny")
    first = write_checkpoint(model, tmp_path / "ck", progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}
    second = write_checkpoint(model, tmp_path / "ck", progress=False)
    assert (first.created, second.created) == (True, False)
    assert dataclasses.replace(second, created=True, elapsed_s=0) == dataclasses.replace(first, elapsed_s=0)
    assert {p.name: p.stat().st_mtime_ns for p in second.path.iterdir()} == mtimes

    with pytest.raises(CheckpointMismatchError, match="seed=0"):
        write_checkpoint(model, tmp_path / "ck", seed=1, progress=False)
    replaced = write_checkpoint(model, tmp_path / "ck", seed=1, progress=False, overwrite=True)
    assert replaced.created and replaced.seed == 1
    assert json.loads((tmp_path / "ck" / MARKER_NAME).read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no tmp or parked folders left


def test_truncated_file_is_not_mistaken_for_a_complete_checkpoint(tmp_path):
    model = get_model("tiny")
    info = write_checkpoint(model, tmp_path / "ck", progress=False)
    with open(info.path / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CheckpointMismatchError, match="truncated"):
        write_checkpoint(model, tmp_path / "ck", progress=False)
    assert write_checkpoint(model, tmp_path / "ck", progress=False, overwrite=True).created


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointMismatchError, match=MARKER_NAME):
        write_checkpoint(get_model("tiny"), tmp_path / "ck", progress=False)
    assert (tmp_path / "ck" / "notes.txt").read_text() == "mine"


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_header(specs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors_writer, "safetensors_header", broken_header)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(get_model("tiny"), tmp_path / "ck", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_small_shard_limit_writes_an_index_and_the_same_weights(tmp_path, written):
    model = TEST_MODELS["qwen3-moe-mini"]
    limit = 20_000
    info = write_checkpoint(model, tmp_path / "sharded", shard_max_bytes=limit, progress=False)
    n = len(info.shard_files)
    assert n > 3
    assert list(info.shard_files) == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (info.path / "model.safetensors").exists()
    index = json.loads((info.path / "model.safetensors.index.json").read_text())
    specs = checkpoint_tensors(model.arch)
    assert index["metadata"]["total_size"] == sum(s.size_bytes for s in specs) == info.weights_size_bytes
    assert set(index["weight_map"]) == {s.name for s in specs}
    assert set(index["weight_map"].values()) == set(info.shard_files)
    for file in info.shard_files:
        with safe_open(info.path / file, framework="pt") as f:
            keys = set(f.keys())
            assert keys == {k for k, v in index["weight_map"].items() if v == file}
            shard_bytes = sum(f.get_tensor(k).numel() * 2 for k in keys)
            assert len(keys) == 1 or shard_bytes <= limit
    # Per-tensor seeds: sharding changes the files, not the values.
    sharded, single = _file_tensors(info.path), _file_tensors(written["qwen3-moe-mini"])
    assert sharded.keys() == single.keys()
    assert all(torch.equal(sharded[k], single[k]) for k in single)
    _, loading = _load(info.path)
    assert not loading["missing_keys"] and not loading["unexpected_keys"]


def test_plan_shards_is_greedy_and_gives_oversized_tensors_their_own_shard():
    specs = [checkpoints.TensorSpec(f"t{i}", (n,)) for i, n in enumerate([10, 10, 50, 10, 10])]
    shards = plan_shards(specs, shard_max_bytes=40)  # bf16: 20, 20, 100, 20, 20 bytes
    assert [[s.name for s in shard] for shard in shards] == [["t0", "t1"], ["t2"], ["t3", "t4"]]
    with pytest.raises(ValueError, match="positive"):
        plan_shards(specs, 0)


def test_seed_changes_the_weights(tmp_path, written):
    other = write_checkpoint(TEST_MODELS["qwen3-mini"], tmp_path / "s1", seed=1, progress=False)
    a, b = _file_tensors(written["qwen3-mini"]), _file_tensors(other.path)
    assert not torch.equal(a["model.embed_tokens.weight"], b["model.embed_tokens.weight"])


def test_default_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.delenv("COLDSTART_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_checkpoint_dir("tiny") == tmp_path / "xdg" / "coldstart" / "checkpoints" / "tiny"
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "cs"))
    assert default_checkpoint_dir("tiny") == tmp_path / "cs" / "checkpoints" / "tiny"
    monkeypatch.delenv("COLDSTART_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_checkpoint_dir("tiny") == tmp_path / "home" / ".cache" / "coldstart" / "checkpoints" / "tiny"


def _cli(*argv: str) -> int:
    parser = checkpoints.add_cli_args(argparse.ArgumentParser())
    return checkpoints.main(parser.parse_args(list(argv)))


def test_cli_unknown_model_exits_2_listing_valid_names(capsys):
    assert _cli("no-such-model") == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err
    assert all(name in err for name in MODELS)


def test_cli_writes_into_the_default_dir_then_keeps_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path))
    assert _cli("tiny", "--no-progress") == 0
    assert (tmp_path / "checkpoints" / "tiny" / MARKER_NAME).is_file()
    assert "wrote tiny" in capsys.readouterr().out
    assert _cli("tiny", "--no-progress") == 0
    assert "kept existing" in capsys.readouterr().out
    assert _cli("tiny", "--seed", "7", "--no-progress") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _cli("tiny", "--seed", "7", "--overwrite", "--no-progress") == 0


def test_every_model_id_decodes_to_text(tmp_path):
    # Random weights sample any id < vocab_size; with a smaller tokenizer the first request streamed no
    # text at all on the GPU (qwen-3-0.6b). Every id must decode to something printable.
    from transformers import AutoTokenizer

    from coldstart.storage.synth_tokenizer import write_tokenizer

    vocab, _, _ = write_tokenizer(tmp_path, 512, 0, 256, model_vocab=3000)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert vocab == len(tok) == 3000
    assert all(tok.decode([i]) for i in (4, 511, 512, 1999, 2999))
    assert tok("hello world")["input_ids"] == AutoTokenizer.from_pretrained(tmp_path)("hello world")["input_ids"]


# ---------------------------------------------------------------- block-wise FP8 (the 235B on eight H200s)


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.quantization is not None])
def test_fp8_plan_quantizes_every_projection_with_one_scale_per_block(name):
    model = MODELS[name]
    assert model.quantization is not None
    block_n, block_k = model.quantization.weight_block_size
    specs = checkpoint_tensors(model.arch, model.quantization)
    by_name = {s.name: s for s in specs}
    weights = [s for s in specs if not s.is_scale]
    assert [(s.name, s.shape) for s in weights] == [(s.name, s.shape) for s in checkpoint_tensors(model.arch)]
    assert sum(s.numel for s in weights) == model.arch.param_count()
    for s in weights:
        scale = by_name.get(s.name.removesuffix(".weight") + ".weight_scale_inv")
        if s.name.endswith("_proj.weight"):
            assert s.dtype == "F8_E4M3" and scale is not None, s.name
            rows, cols = s.shape
            assert scale.dtype == "F32" and scale.shape == (-(-rows // block_n), -(-cols // block_k)), s.name
        else:
            assert s.dtype == "BF16" and scale is None, s.name
    # Half the bf16 bytes, plus the bf16 embeddings, routers and lm_head (most of tiny's bytes) and the scales.
    fp8_bytes = sum(s.size_bytes for s in specs)
    kept_bytes = sum(s.size_bytes for s in specs if s.dtype != "F8_E4M3")
    assert fp8_bytes - kept_bytes == sum(s.numel for s in specs if s.dtype == "F8_E4M3")
    if name == "qwen-3-235b-fp8":  # the public Qwen3-235B-A22B-FP8 is 48 shards of ~4.98 GB
        assert fp8_bytes / sum(s.size_bytes for s in checkpoint_tensors(model.arch)) < 0.51
        assert 230e9 < fp8_bytes < 240e9
    routers = [f"model.layers.{i}.mlp.gate" for i in range(model.arch.num_hidden_layers)]
    assert checkpoints.not_converted(specs) == [*routers, "lm_head"]


@pytest.fixture(scope="module")
def fp8_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(get_model("tiny-moe-fp8"), tmp_path_factory.mktemp("fp8") / "ck", progress=False).path


def test_fp8_files_hold_e4m3_weights_that_dequantize_to_the_bf16_init(fp8_folder):
    model = get_model("tiny-moe-fp8")
    tensors = _file_tensors(fp8_folder)
    specs = checkpoint_tensors(model.arch, model.quantization)
    dtypes = {"BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn, "F32": torch.float32}
    assert {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()} == {
        s.name: (s.shape, dtypes[s.dtype]) for s in specs
    }
    expert = "model.layers.1.mlp.experts.7.down_proj"
    scale = tensors[f"{expert}.weight_scale_inv"]
    # Dequantize as vLLM does: each 128 x 128 block times its scale.
    dequant = tensors[f"{expert}.weight"].float() * scale.repeat_interleave(128, 0).repeat_interleave(128, 1)
    assert abs(dequant.std().item() - 0.02) < 0.002 and dequant.abs().max().item() < 448 * 0.02
    assert tensors["model.layers.1.mlp.gate.weight"].dtype == torch.bfloat16
    marker = json.loads((fp8_folder / MARKER_NAME).read_text())
    assert marker["quantization"]["weight_block_size"] == [128, 128]
    assert marker["weights_size_bytes"] == sum(s.size_bytes for s in specs)


def test_fp8_config_is_what_vllm_reads_and_bf16_markers_stay_as_they_were(fp8_folder, written):
    config = json.loads((fp8_folder / "config.json").read_text())
    assert config["quantization_config"] == {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [128, 128],
        "modules_to_not_convert": ["model.layers.0.mlp.gate", "model.layers.1.mlp.gate", "lm_head"],
    }
    # A bf16 checkpoint's identity is unchanged, so the folders written before FP8 existed still match.
    assert "quantization" not in json.loads((written["tiny"] / MARKER_NAME).read_text())
    assert "quantization_config" not in json.loads((written["tiny"] / "config.json").read_text())
    fp8 = pytest.importorskip("vllm.model_executor.layers.quantization.fp8")
    parsed = fp8.Fp8Config.from_config(config["quantization_config"])
    assert parsed.weight_block_size == [128, 128] and parsed.is_checkpoint_fp8_serialized
    assert parsed.ignored_layers == config["quantization_config"]["modules_to_not_convert"]
