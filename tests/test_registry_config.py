"""Registry and LLMConfig construction: every valid pair builds, invalid input names the valid choices."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from coldstart.lab.llm_config import (
    ConfigError,
    RunOptions,
    WeightsLocation,
    build_app_args,
    build_llm_config,
    runai_s3_env,
    serve_yaml_config,
)
from coldstart.registry import (
    EXPERIMENTS,
    MODELS,
    InvalidPairError,
    UnknownNameError,
    get_experiment,
    resolve,
    valid_pairs,
)

S3 = WeightsLocation("s3://bucket/lab/models/x", "s3")
LOCAL = WeightsLocation("/data/store/models/x", "local")


def _opts(**kw) -> RunOptions:
    base = {"weights": S3, "store_uri": "s3://bucket/lab", "compile_cache_root": "/cache/vllm", "run_id": "r1"}
    return RunOptions(**{**base, **kw})


@pytest.mark.parametrize(("model_name", "exp_name"), valid_pairs())
def test_every_valid_pair_builds_a_real_llmconfig(model_name, exp_name):
    LLMConfig = pytest.importorskip("ray.serve.llm").LLMConfig

    model, exp = resolve(model_name, exp_name)
    # The node-init skip needs weights already on the node (or streamed): a local store there.
    weights = LOCAL if exp.skip_node_init and not exp.load_format else S3
    cfg = build_llm_config(model, exp, _opts(weights=weights))
    llm = LLMConfig(**cfg)  # pydantic validation by Ray itself
    assert llm.engine_kwargs["tensor_parallel_size"] == model.tp_size
    # The engine in the replica: one bundle, the replica actor holds the GPUs; else one bundle per rank.
    assert len(cfg["placement_group_config"]["bundles"]) == (1 if exp.engine_in_replica else model.tp_size)
    auto = cfg["deployment_config"]["autoscaling_config"]
    assert (auto["min_replicas"], auto["initial_replicas"], auto["max_replicas"]) == (0, 0, 1)
    expected_format = exp.load_format  # None for fetch-then-load experiments
    assert cfg["engine_kwargs"].get("load_format") == expected_format
    kwargs = cfg["callback_config"]["callback_kwargs"]
    assert kwargs["compile_cache_store"] == ("s3://bucket/lab" if exp.compile_cache else None)


def test_all_means_sharded_at_tp_gt1_and_plain_streamer_at_tp1():
    assert resolve("llama-3-70b", "all")[1].load_format == "runai_streamer_sharded"
    at_tp1 = resolve("llama-3-8b", "all")[1]
    assert at_tp1.load_format == "runai_streamer"
    assert at_tp1.compile_cache


def test_sharded_needs_tp_gt1_and_lists_valid_experiments():
    with pytest.raises(InvalidPairError, match="valid experiments for it: baseline, runai_streamer"):
        resolve("tiny", "runai_streamer_sharded")
    assert ("llama-3-8b-tp2", "runai_streamer_sharded") in valid_pairs()


@pytest.mark.parametrize(("model", "exp", "valid"), [("gpt-5", "baseline", "llama-3-8b"), ("tiny", "fastest", "all")])
def test_unknown_names_list_the_valid_ones(model, exp, valid):
    with pytest.raises(UnknownNameError, match=valid):
        resolve(model, exp)


def test_registry_shapes_are_the_public_configs():
    # Spot facts from the models' config.json; a typo here silently changes every load/compile time.
    assert MODELS["llama-3-8b"].arch.param_count() == pytest.approx(8.03e9, rel=0.01)
    assert MODELS["llama-3-70b"].arch.param_count() == pytest.approx(70.6e9, rel=0.01)
    assert MODELS["qwen-3-235b"].arch.param_count() == pytest.approx(235e9, rel=0.01)
    assert MODELS["qwen-3-0.6b"].arch.param_count() == pytest.approx(0.6e9, rel=0.01)
    assert [MODELS[m].tp_size for m in ("llama-3-8b", "llama-3-70b", "qwen-3-235b")] == [1, 4, 8]
    assert MODELS["qwen-3-235b"].request_timeout_s > 600


def test_fp8_235b_holds_whole_experts_per_rank_because_split_ones_are_not_whole_blocks():
    # vllm-project/vllm#17569: Qwen3-235B-A22B-FP8 at TP8 fails its load (experts 1536 / 8 = 192 wide).
    fp8 = MODELS["qwen-3-235b-fp8"]
    assert (fp8.arch, fp8.tp_size, fp8.hub_id) == (MODELS["qwen-3-235b"].arch, 8, "Qwen/Qwen3-235B-A22B-FP8")
    split = dataclasses.replace(fp8, engine_overrides={})
    assert split.quantization_problems() == [
        "experts' gate/up output per rank is 192, not a multiple of the 128 of the FP8 blocks",
        "experts' down_proj input per rank is 192, not a multiple of the 128 of the FP8 blocks",
    ]
    assert fp8.quantization_problems() == []  # expert parallelism: 16 whole experts a rank
    assert [m.name for m in MODELS.values() if m.quantization_problems()] == []
    # The same split on bf16 weights is no problem; nor is one rank (tiny's 256-wide experts are two blocks).
    assert dataclasses.replace(split, quantization=None).quantization_problems() == []
    assert dataclasses.replace(split, tp_size=1).quantization_problems() == []
    cfg = build_llm_config(fp8, get_experiment("baseline"), _opts())
    assert cfg["engine_kwargs"]["enable_expert_parallel"] is True
    assert cfg["engine_kwargs"]["tensor_parallel_size"] == 8


def test_registry_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS["tiny"].tp_size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        EXPERIMENTS["baseline"] = EXPERIMENTS["all"]  # type: ignore[index]


def test_streaming_without_store_weights_is_a_config_error():
    model, exp = resolve("tiny", "runai_streamer")
    with pytest.raises(ConfigError, match="stage the model"):
        build_llm_config(model, exp, _opts(weights=WeightsLocation("meta-llama/x", "hub")))


def test_cpu_config_fits_two_cores():
    model, exp = resolve("tiny", "baseline")
    opts = _opts(device="cpu", weights=WeightsLocation("/models/tiny", "local"))
    cfg = build_llm_config(model, exp, opts)
    assert cfg["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert cfg["deployment_config"]["ray_actor_options"] == {"num_cpus": 0}
    assert cfg["engine_kwargs"]["kv_cache_memory_bytes"] == 1 << 30
    ingress = build_app_args(model, exp, cfg, opts)["ingress_deployment_config"]
    assert ingress["ray_actor_options"]["num_cpus"] == 0


def test_ingress_kept_warm_by_default_and_timeout_follows_the_model():
    model, exp = resolve("qwen-3-235b", "baseline")
    cfg = build_llm_config(model, exp, _opts())
    ingress = build_app_args(model, exp, cfg, _opts())["ingress_deployment_config"]
    assert ingress["autoscaling_config"]["min_replicas"] == 1
    env = ingress["ray_actor_options"]["runtime_env"]["env_vars"]
    assert float(env["RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT"]) == model.request_timeout_s
    cold = build_app_args(model, exp, cfg, _opts(ingress_min_replicas=0))["ingress_deployment_config"]
    assert cold["autoscaling_config"]["min_replicas"] == 0


def test_secrets_never_enter_the_config():
    model, exp = resolve("tiny", "runai_streamer")
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        build_llm_config(model, exp, _opts(env={"AWS_SECRET_ACCESS_KEY": "x"}))
    env = runai_s3_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_SECRET_ACCESS_KEY": "s"})
    assert env == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0"}


def test_serve_yaml_is_deployable_shape():
    model, exp = resolve("llama-3-70b", "all")
    cfg = build_llm_config(model, exp, _opts())
    app = serve_yaml_config("x", build_app_args(model, exp, cfg, _opts()))["applications"][0]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    assert app["args"]["llm_configs"][0]["engine_kwargs"]["load_format"] == "runai_streamer_sharded"
    assert get_experiment("all").compile_cache


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tiny", "warp"], "valid experiments: baseline"),
        (["nope", "baseline"], "valid models: tiny"),
        (["tiny", "runai_streamer_sharded"], "needs tensor parallelism > 1"),
    ],
)
def test_service_cli_rejects_bad_input_with_exit_2_before_ray(argv, message):
    proc = subprocess.run(
        [sys.executable, "service.py", *argv, "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--store", "ftp://bucket/x"], 2, "unsupported store URI scheme"),
        (["--store", "s3://"], 2, "s3://"),
        (["--store", "{tmp}/empty-store"], 1, "holds no complete checkpoint of 'tiny'"),
    ],
)
def test_service_store_errors_surface_before_ray(tmp_path, extra, code, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    proc = subprocess.run(
        [sys.executable, "service.py", "tiny", "runai_streamer", *argv, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "ray" not in proc.stdout.lower()  # nothing was started


def test_compile_cache_mega_is_compile_cache_plus_one_engine_env_var():
    plain, mega = get_experiment("compile_cache"), get_experiment("compile_cache_mega")
    assert dataclasses.replace(mega, name=plain.name, description=plain.description, engine_env={}) == plain
    assert dict(mega.engine_env) == {"VLLM_USE_MEGA_AOT_ARTIFACT": "1"}
    assert dict(plain.engine_env) == {}
    with pytest.raises(TypeError):
        mega.engine_env["VLLM_USE_MEGA_AOT_ARTIFACT"] = "0"  # type: ignore[index]
    # A plain dict handed to the constructor is frozen too.
    with pytest.raises(TypeError):
        dataclasses.replace(plain, engine_env={"A": "1"}).engine_env["A"] = "2"  # type: ignore[index]


def test_engine_env_reaches_the_replica_runtime_env_and_wins_over_the_run_env():
    model = MODELS["tiny"]
    plain = build_llm_config(model, get_experiment("compile_cache"), _opts(env={"AWS_REGION": "eu"}))
    mega = build_llm_config(
        model,
        get_experiment("compile_cache_mega"),
        _opts(env={"AWS_REGION": "eu", "VLLM_USE_MEGA_AOT_ARTIFACT": "0"}),
    )
    assert plain["runtime_env"]["env_vars"] == {"AWS_REGION": "eu"}
    assert mega["runtime_env"]["env_vars"] == {"AWS_REGION": "eu", "VLLM_USE_MEGA_AOT_ARTIFACT": "1"}
    # Nothing else differs: same engine, same restore hook apart from the experiment's name.
    assert mega["engine_kwargs"] == plain["engine_kwargs"]
    hook, plain_hook = mega["callback_config"]["callback_kwargs"], plain["callback_config"]["callback_kwargs"]
    assert hook == {**plain_hook, "experiment": "compile_cache_mega"}


def test_experiment_env_is_checked_for_secrets_too():
    exp = dataclasses.replace(get_experiment("baseline"), engine_env={"HF_TOKEN": "x"})
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        build_llm_config(MODELS["tiny"], exp, _opts())


# --- how many replicas Serve starts from zero (its real autoscaling policy, not a model of it) ----------------


def _replicas_serve_starts_from_zero(scenario_name: str, max_replicas: int | None = None, queued: int = 8) -> int:
    serve_config = pytest.importorskip("ray.serve.config")
    policy = pytest.importorskip("ray.serve.autoscaling_policy")
    from ray.serve._private.common import DeploymentID

    from coldstart.registry import get_scenario, with_max_replicas

    auto = with_max_replicas(get_scenario(scenario_name), max_replicas).autoscaling
    config = serve_config.AutoscalingConfig(**auto.serve_config())
    ctx = serve_config.AutoscalingContext(
        deployment_id=DeploymentID(name="llm", app_name="app"),
        deployment_name="llm",
        app_name="app",
        current_num_replicas=0,
        target_num_replicas=0,
        running_replicas=[],
        total_num_requests=float(queued),
        total_queued_requests=float(queued),
        aggregated_metrics={},
        raw_metrics={},
        capacity_adjusted_min_replicas=config.min_replicas,
        capacity_adjusted_max_replicas=config.max_replicas,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=0.0,
        config=config,
        total_pending_async_requests=0,
    )
    wanted, _ = policy.replica_queue_length_autoscaling_policy(ctx)
    return min(int(wanted), config.max_replicas)


def test_serve_starts_one_replica_from_zero_by_default_and_every_replica_when_together() -> None:
    # Campaign 2026-11-30-h200x2 (two H200s, burst_replicas): the second replica was only asked for once the first ran.
    assert _replicas_serve_starts_from_zero("burst_replicas") == 1
    assert _replicas_serve_starts_from_zero("burst_replicas_together") == 2
    assert _replicas_serve_starts_from_zero("burst_replicas_together", max_replicas=4) == 4
    assert _replicas_serve_starts_from_zero("burst_replicas", max_replicas=4) == 1


def test_upscaling_factor_must_be_positive() -> None:
    from coldstart.registry import Autoscaling

    with pytest.raises(ValueError, match="upscaling_factor"):
        Autoscaling(upscaling_factor=0.0)


def test_flood_at_zero_writes_ray_serve_llms_own_queueing_into_the_config(capsys, tmp_path) -> None:
    """The flood's queueing is what a user at zero gets from Ray Serve LLM, written out: if Ray's defaults move,
    this fails and the scenario's choice (and docs/scenarios.md's account of a flood) must be looked at again."""
    import argparse
    import json

    constants = pytest.importorskip("ray.llm._internal.serve.constants")
    LLMConfig = pytest.importorskip("ray.serve.llm").LLMConfig
    from ray.serve._private.config import DeploymentConfig

    from coldstart.lab import service
    from coldstart.registry import get_scenario

    queueing = get_scenario("flood_at_zero").queueing
    assert queueing.max_ongoing_requests == constants.DEFAULT_MAX_ONGOING_REQUESTS
    assert queueing.max_queued_requests == DeploymentConfig().max_queued_requests == -1
    cfg = build_llm_config(MODELS["tiny"], get_experiment("baseline"), _opts(queueing=queueing))
    deployment = LLMConfig(**cfg).deployment_config  # Ray validates it as a Serve DeploymentConfig
    assert (deployment["max_ongoing_requests"], deployment["max_queued_requests"]) == (1_000_000_000, -1)
    plain = build_llm_config(MODELS["tiny"], get_experiment("baseline"), _opts())
    assert not {"max_ongoing_requests", "max_queued_requests"} & set(plain["deployment_config"])

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    argv = ["tiny", "baseline", "--dry-run", "--weights", str(tmp_path), "--device", "cpu", "--scenario"]
    assert service.main(parser.parse_args([*argv, "flood_at_zero"])) == 0
    assert "max_queued_requests: -1" in capsys.readouterr().out  # what the row's config will hold
