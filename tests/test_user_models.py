"""Any model, not only registry names: a config.json becomes a registry Model, or a clear error before Ray."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from coldstart.registry import MODELS, UserModelError, get_experiment, get_model, model_from_hf_config
from coldstart.registry.user_models import FAMILIES, architecture_from_hf_config, name_from_source
from coldstart.storage.sources import SourceError, hf_hub_cache_dir, load_user_model, resolve_weights

# A public config.json as the Hub serves it (meta-llama/Llama-3.2-1B-Instruct): fields the lab does not carry
# (rope_scaling, torch_dtype) and an eos list beside the shapes.
LLAMA_3_2_1B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}
TINY_CONFIG = get_model("tiny").arch.hf_config()


def _folder(tmp_path: Path, config: dict[str, Any] | None = None, name: str = "my-llama") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG if config is None else config))
    return folder


# ---------------------------------------------------------------- config.json -> Model (pure)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_shape_survives_its_own_config_json(name):
    model = get_model(name)
    config = model.arch.hf_config()
    if model.quantization is not None:
        config["quantization_config"] = model.quantization.hf_config(["lm_head"])
    user = model_from_hf_config(f"user-{name}", config, tp_size=model.tp_size if model.quantization is None else 1)
    assert user.arch == model.arch
    assert user.quantization == model.quantization


def test_a_public_llama_config_gives_its_shape_and_a_context_vllm_accepts():
    model = model_from_hf_config("llama-3.2-1b", LLAMA_3_2_1B, tp_size=2, hub_id="meta-llama/Llama-3.2-1B-Instruct")
    arch = model.arch
    assert (arch.hidden_size, arch.num_hidden_layers, arch.num_key_value_heads, arch.head_dim) == (2048, 16, 8, 64)
    assert arch.tie_word_embeddings is True and arch.rope_theta == 500000.0
    assert (arch.bos_token_id, arch.eos_token_id) == (128000, 128001)  # the first of the eos list
    assert (model.name, model.tp_size, model.hub_id, model.local_dir) == (
        "llama-3.2-1b",
        2,
        "meta-llama/Llama-3.2-1B-Instruct",
        None,
    )
    assert model.max_model_len == 4096  # the registry's default, not 131072
    assert 1.2e9 < arch.param_count() < 1.3e9  # Llama 3.2 1B: 1.24 B parameters


def test_context_stops_at_max_position_embeddings_and_big_models_wait_longer():
    small = model_from_hf_config("t", TINY_CONFIG, tp_size=1)
    assert small.max_model_len == TINY_CONFIG["max_position_embeddings"] == 2048
    assert small.request_timeout_s == 600.0 and small.small
    big = model_from_hf_config("big", get_model("llama-3-70b").arch.hf_config(), tp_size=4)
    assert big.request_timeout_s > 1500 and not big.small  # a cold 141 GB baseline outlives Serve's 600 s


def test_qwen3_without_head_dim_takes_transformers_default_of_128():
    config = get_model("qwen-3-0.6b").arch.hf_config()
    del config["head_dim"]
    config["rope_parameters"] = {"rope_theta": config.pop("rope_theta"), "rope_type": "default"}  # transformers 5
    arch = architecture_from_hf_config(config)
    assert arch.head_dim_resolved == 128 != arch.hidden_size // arch.num_attention_heads
    assert arch.rope_theta == 1000000.0


def test_llama_without_kv_heads_has_one_per_attention_head():
    config = {k: v for k, v in TINY_CONFIG.items() if k != "num_key_value_heads"}
    assert architecture_from_hf_config(config).num_key_value_heads == TINY_CONFIG["num_attention_heads"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["MistralForCausalLM"]}, "unknown architecture 'MistralForCausalLM'"),
        ({"architectures": []}, "must name one architecture"),
        ({"model_type": "mistral"}, "model_type 'mistral' is not 'llama'"),
        ({"hidden_size": None}, "no 'hidden_size'"),
        ({"num_hidden_layers": 0}, "'num_hidden_layers' must be a positive integer"),
        ({"vocab_size": "4096"}, "'vocab_size' must be a positive integer"),
        ({"attention_bias": True}, "attention_bias: true adds bias tensors"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"quantization_config": {"quant_method": "awq", "bits": 4}}, "quantization 'awq'"),
        ({"quantization_config": {"quant_method": "fp8"}}, "quantization 'fp8' without FP8 blocks"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}, "two positive integers"),
    ],
)
def test_a_config_the_lab_cannot_lay_out_is_refused_naming_the_field(change, message):
    config = {k: v for k, v in {**TINY_CONFIG, **change}.items() if v is not None}
    with pytest.raises(UserModelError, match=message):
        model_from_hf_config("mine", config, tp_size=1)


def test_the_unknown_architecture_error_lists_the_known_ones():
    with pytest.raises(UserModelError) as info:
        model_from_hf_config("mine", {**TINY_CONFIG, "architectures": ["GPT2LMHeadModel"]}, tp_size=1)
    assert all(name in str(info.value) for name in FAMILIES)


def test_moe_layers_that_are_partly_dense_are_refused():
    config = {**get_model("tiny-moe").arch.hf_config(), "mlp_only_layers": [0]}
    with pytest.raises(UserModelError, match="mlp_only_layers"):
        model_from_hf_config("mine", config, tp_size=1)


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (3, "4 attention heads do not divide by TP3"),
        (8, "4 attention heads do not divide by TP8"),
        (0, "TP size must be a positive integer"),
    ],
)
def test_a_tp_that_does_not_split_the_model_is_refused(tp, message):
    with pytest.raises(UserModelError, match=message):
        model_from_hf_config("mine", TINY_CONFIG, tp_size=tp)


def test_tp_above_the_kv_heads_is_fine_when_it_is_a_multiple_of_them():
    # vLLM replicates KV heads over ranks: tiny's 2 KV heads at TP4 load, 3 KV heads at TP2 do not.
    assert model_from_hf_config("mine", TINY_CONFIG, tp_size=4).tp_size == 4
    odd = {**TINY_CONFIG, "num_attention_heads": 6, "num_key_value_heads": 3, "hidden_size": 384}
    with pytest.raises(UserModelError, match="3 KV heads and TP2"):
        model_from_hf_config("mine", odd, tp_size=2)
    with pytest.raises(UserModelError, match="intermediate_size 512 does not divide by TP3"):
        model_from_hf_config("mine", odd, tp_size=3)


def test_fp8_experts_that_split_into_partial_blocks_are_refused_at_their_tp():
    model = get_model("qwen-3-235b-fp8")
    config = {**model.arch.hf_config(), "quantization_config": model.quantization.hf_config([])}
    # The registry runs it with expert parallelism; a user model has none, so TP8 splits experts to 192.
    with pytest.raises(UserModelError, match="not a multiple of the 128"):
        model_from_hf_config("mine-fp8", config, tp_size=8)


@pytest.mark.parametrize("name", ["tiny", "a/b", "", ".hidden", "with space"])
def test_a_name_that_is_a_registry_one_or_not_one_segment_is_refused(name):
    with pytest.raises(UserModelError):
        model_from_hf_config(name, TINY_CONFIG, tp_size=1)


def test_the_default_name_is_the_last_segment():
    assert name_from_source("Qwen/Qwen3-0.6B") == "Qwen3-0.6B"
    assert name_from_source("/data/models/my-llama/") == "my-llama"


# ---------------------------------------------------------------- reading the config (sources)


def test_a_local_folder_becomes_a_model_served_from_that_folder(tmp_path):
    folder = _folder(tmp_path)
    model = load_user_model("my-llama", str(folder), tp_size=1, store_uri=None)
    assert model.local_dir == folder.resolve() and model.hub_id is None
    assert model.arch == get_model("tiny").arch


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d.mkdir(), "is not a Hugging Face model folder \\(no config.json\\)"),
        (lambda d: None, "is not a folder on this node"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{not json")), "is not JSON"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("[1, 2]")), "holds list, not a config object"),
    ],
)
def test_a_path_without_a_readable_config_json_is_bad_input(tmp_path, setup, message):
    folder = tmp_path / "mine"
    setup(folder)
    with pytest.raises(UserModelError, match=message):
        load_user_model("mine", str(folder), tp_size=1, store_uri=None)


def test_something_neither_a_folder_nor_a_hub_id_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserModelError, match="neither a folder on this node nor a Hub id"):
        load_user_model("mine", "org/name/extra", tp_size=1, store_uri=None)


def _cache(hub_cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """The layout huggingface_hub writes: refs/main names the snapshot that holds the files."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name, body in files.items():
        (snapshot / name).write_text(body)
    return snapshot


def test_a_hub_id_reads_its_config_from_the_hf_cache(tmp_path):
    pytest.importorskip("huggingface_hub")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    _cache(hf_hub_cache_dir(env), "me/llama-tiny", {"config.json": json.dumps(TINY_CONFIG)})
    model = load_user_model("llama-tiny", "me/llama-tiny", tp_size=2, store_uri=None, env=env)
    assert (model.hub_id, model.local_dir, model.tp_size) == ("me/llama-tiny", None, 2)


def test_offline_a_hub_id_reads_its_config_from_the_store_it_was_staged_in(tmp_path):
    pytest.importorskip("huggingface_hub")
    from coldstart.storage.store import open_store

    store_uri = (tmp_path / "store").as_uri()
    open_store(store_uri).put_bytes("models/llama-tiny/config.json", json.dumps(TINY_CONFIG).encode())
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    model = load_user_model("llama-tiny", "me/llama-tiny", tp_size=1, store_uri=store_uri, env=env)
    assert model.arch == get_model("tiny").arch and model.hub_id == "me/llama-tiny"


def test_offline_a_hub_id_found_nowhere_says_where_it_looked_and_the_fix(tmp_path):
    pytest.importorskip("huggingface_hub")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with pytest.raises(SourceError) as info:
        load_user_model("llama-tiny", "me/llama-tiny", tp_size=1, store_uri=(tmp_path / "s").as_uri(), env=env)
    msg = str(info.value)
    assert "HF_HUB_OFFLINE" in msg and "models/llama-tiny/config.json" in msg
    assert "stage put llama-tiny --from DIR" in msg


# ---------------------------------------------------------------- where its weights come from


def test_a_local_model_serves_its_folder_unless_the_experiment_streams_from_the_store(tmp_path):
    model = load_user_model("my-llama", str(_folder(tmp_path)), tp_size=1, store_uri=None)
    store = str(tmp_path / "store")
    for name in ("baseline", "compile_cache", "fast"):
        loc = resolve_weights(model, get_experiment(name), store_uri=store)
        assert (loc.uri, loc.kind) == (str(model.local_dir), "local")
    with pytest.raises(SourceError) as info:
        resolve_weights(model, get_experiment("runai_streamer"), store_uri=store)
    assert f"python -m coldstart stage put my-llama --from {model.local_dir}" in str(info.value)


def test_a_staged_local_model_streams_from_the_store(tmp_path):
    from coldstart.storage.staging import upload_dir
    from coldstart.storage.store import open_store

    model = load_user_model("my-llama", str(_folder(tmp_path)), tp_size=1, store_uri=None)
    store_uri = str(tmp_path / "store")
    assert model.local_dir is not None
    upload_dir(open_store(store_uri), "models/my-llama", model.local_dir, show_progress=False)
    loc = resolve_weights(model, get_experiment("runai_streamer"), store_uri=store_uri)
    assert loc.uri == str(tmp_path / "store" / "models" / "my-llama")
    assert resolve_weights(model, get_experiment("baseline"), store_uri=store_uri, source="store").uri == loc.uri


def test_a_local_model_refuses_weights_given_twice_or_from_the_hub(tmp_path):
    model = load_user_model("my-llama", str(_folder(tmp_path)), tp_size=1, store_uri=None)
    with pytest.raises(SourceError, match="drop --weights"):
        resolve_weights(model, get_experiment("baseline"), store_uri=None, local_weights=tmp_path)
    with pytest.raises(SourceError, match="not a Hub model"):
        resolve_weights(model, get_experiment("baseline"), store_uri=None, source="hub")


def test_sharded_state_of_a_user_model_points_at_vllms_own_tool(tmp_path):
    model = load_user_model("my-llama", str(_folder(tmp_path)), tp_size=2, store_uri=None)
    with pytest.raises(SourceError) as info:
        resolve_weights(model, get_experiment("runai_streamer_sharded"), store_uri=str(tmp_path / "store"))
    assert "save_sharded_state.py at TP2" in str(info.value)
    assert "stage put my-llama --tp 2 --from DIR" in str(info.value)


def test_the_fast_path_takes_a_complete_hf_cache_snapshot_as_weights_on_the_node(tmp_path):
    pytest.importorskip("huggingface_hub")
    env = {"HF_HOME": str(tmp_path / "hf")}
    body = json.dumps(TINY_CONFIG)
    index = json.dumps({"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}})
    snapshot = _cache(
        hf_hub_cache_dir(env),
        "me/llama-tiny",
        {"config.json": body, "model.safetensors.index.json": index, "model-1.safetensors": ""},
    )
    model = load_user_model("llama-tiny", "me/llama-tiny", tp_size=1, store_uri=None, env=env)
    fast, baseline = get_experiment("fast"), get_experiment("baseline")
    # One shard missing: not on the node, so the Hub id (and llm_config's "needs weights on the node").
    assert resolve_weights(model, fast, store_uri=None, env=env).kind == "hub"
    (snapshot / "model-2.safetensors").write_text("")
    loc = resolve_weights(model, fast, store_uri=None, env=env)
    assert (loc.uri, loc.kind) == (str(snapshot), "local")
    # The baseline measures Ray LLM's download: it keeps the Hub id.
    assert resolve_weights(model, baseline, store_uri=None, env=env).uri == "me/llama-tiny"


# ---------------------------------------------------------------- the CLIs


def _service(argv: list[str]) -> int:
    from coldstart.lab import service

    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    return service.main(parser.parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-id", "{empty}"], "no config.json"),
        (["--model-id", "{mine}", "--tp", "3"], "cannot run at TP3: 4 attention heads"),
        (["--tp", "2"], "--tp sets the TP size of a --model-id"),
        (["--model-id", "{mine}", "--weights", "{mine}"], "--weights and --model-id both name the weights"),
        (["--model-id", "{unknown_arch}"], "unknown architecture 'GPT2LMHeadModel'"),
    ],
)
def test_service_bad_user_model_input_exits_2_before_ray(tmp_path, capsys, argv, message):
    paths = {
        "empty": tmp_path / "empty",
        "mine": _folder(tmp_path),
        "unknown_arch": _folder(tmp_path, {**TINY_CONFIG, "architectures": ["GPT2LMHeadModel"]}, "gpt2"),
    }
    paths["empty"].mkdir()
    argv = [a.format(**paths) for a in argv]
    name = "tiny" if argv[0] == "--tp" else "my-model"
    assert _service([name, "baseline", "--device", "cpu", "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_service_dry_run_serves_the_folder_under_the_users_name(tmp_path, capsys):
    folder = _folder(tmp_path)
    code = _service(["my-model", "baseline", "--model-id", str(folder), "--device", "cpu", "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "name: coldstart-my-model" in out
    assert "model_id: my-model" in out and f"model_source: {folder.resolve()}" in out
    assert "tensor_parallel_size: 1" in out and "max_model_len: 2048" in out


def test_checkpoint_of_a_config_json_has_the_configs_shape(tmp_path, capsys):
    pytest.importorskip("torch")  # writing the weights
    from coldstart.storage import checkpoints

    config = {**LLAMA_3_2_1B, **{k: TINY_CONFIG[k] for k in ("hidden_size", "intermediate_size", "vocab_size")}}
    config.update(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    source = _folder(tmp_path, config, "downloaded")
    parser = checkpoints.add_cli_args(argparse.ArgumentParser())
    out = tmp_path / "ckpt" / "mini-llama"
    assert checkpoints.main(parser.parse_args(["--config", str(source / "config.json"), "--out", str(out)])) == 0
    assert "wrote mini-llama checkpoint" in capsys.readouterr().out
    written = json.loads((out / "config.json").read_text())
    # The same shape; bos/eos are the synthetic tokenizer's own ids.
    ids = {"bos_token_id": written["bos_token_id"], "eos_token_id": written["eos_token_id"]}
    assert architecture_from_hf_config(written) == dataclasses.replace(architecture_from_hf_config(config), **ids)
    assert written["head_dim"] == 64 and written["tie_word_embeddings"] is True
    assert (out / "tokenizer.json").is_file() and checkpoints.read_marker(out)["model"] == "mini-llama"
    # The folder it wrote is a user model the service can serve as it is.
    assert load_user_model("mini-llama", str(out), tp_size=2, store_uri=None).arch.num_hidden_layers == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "{cfg}"], "--config needs --out DIR"),
        (["--config", "{missing}", "--out", "{out}"], "no such file"),
        ([], "name a registry model, or give --config"),
        (["tiny", "--config", "{cfg}", "--out", "{out}"], "'tiny' is a registry model's name"),
    ],
)
def test_checkpoint_cli_bad_config_input_exits_2(tmp_path, capsys, argv, message):
    from coldstart.storage import checkpoints

    cfg = _folder(tmp_path) / "config.json"
    paths = {"cfg": cfg, "missing": tmp_path / "nope.json", "out": tmp_path / "out"}
    parser = checkpoints.add_cli_args(argparse.ArgumentParser())
    assert checkpoints.main(parser.parse_args([a.format(**paths) for a in argv])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
