"""The fast path as an API on a user's own LLMConfig, and the node setup record's renderings."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path

import pytest

import coldstart
from coldstart.fastpath import ALL_LEVERS, FastPathLevers, LeverError, apply_fast_path, levers_of
from coldstart.fastpath.api import CALLBACK_CLASS, FAST_SERVER_CLASS, apply_levers, default_package
from coldstart.fastpath.node_setup import FORKSERVER_ENV, PRELOAD_MODULE, NodeSetup, node_cache_env

REPO = Path(__file__).resolve().parents[1]

# A user's own config, as they would write it for Ray Serve LLM: not a registry model.
USER_CONFIG = {
    "model_loading_config": {"model_id": "my-org/my-model", "model_source": "/models/my-model"},
    "engine_kwargs": {"tensor_parallel_size": 2, "max_model_len": 8192},
    "deployment_config": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 4}},
    "runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "1"}},
}


def test_apply_fast_path_changes_a_users_config_and_moves_its_env_to_the_nodes():
    fast = apply_fast_path(USER_CONFIG, compile_cache_store="s3://bucket/cc")
    cfg = fast.llm_config
    assert USER_CONFIG["runtime_env"] == {"env_vars": {"HF_HUB_OFFLINE": "1"}}  # the input is left alone
    assert cfg["runtime_env"] == {}  # so that a prestarted worker (no runtime_env) is given to the replica
    assert cfg["server_cls"] == FAST_SERVER_CLASS
    assert levers_of(cfg) == ALL_LEVERS
    assert cfg["callback_config"]["callback_class"] == CALLBACK_CLASS
    assert cfg["callback_config"]["callback_kwargs"]["compile_cache_store"] == "s3://bucket/cc"
    assert cfg["placement_group_config"] == {"bundles": [{"CPU": 1}], "strategy": "PACK"}
    assert cfg["deployment_config"]["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 2}  # TP2 in the replica
    assert cfg["engine_kwargs"]["compilation_config"] == {"cudagraph_capture_sizes": [1, 2, 4, 8]}
    setup = fast.node_setup
    assert setup.env["HF_HUB_OFFLINE"] == "1" and setup.env[FORKSERVER_ENV] == "1"
    assert setup.env["VLLM_CACHE_ROOT"] == node_cache_env()["VLLM_CACHE_ROOT"]  # part of the cache key
    assert setup.replica_gpus == 2
    assert list(setup.system_config["preload_python_modules"]) == [PRELOAD_MODULE]


def test_the_changed_config_is_a_valid_ray_llmconfig():
    LLMConfig = pytest.importorskip("ray.serve.llm").LLMConfig
    llm = LLMConfig(**apply_fast_path(USER_CONFIG).llm_config)
    assert levers_of(llm) == ALL_LEVERS  # the record survives Ray's own validation


def test_a_foreign_callback_is_refused_not_silently_replaced():
    cfg = {**USER_CONFIG, "callback_config": {"callback_class": "my.Callback"}}
    with pytest.raises(LeverError, match=r"subclass it"):
        apply_fast_path(cfg)


def test_levers_reject_what_cannot_run_and_unknown_names():
    with pytest.raises(LeverError, match="needs prestart_workers"):
        FastPathLevers(engine_core_forkserver=True)
    with pytest.raises(LeverError, match="unknown fast-path lever"):
        FastPathLevers.from_dict({"prestart_worker": True})


def test_no_levers_leave_the_config_as_it_was():
    assert apply_levers(USER_CONFIG, FastPathLevers()) == USER_CONFIG


def _setup() -> NodeSetup:
    return apply_fast_path(USER_CONFIG, weights_path="/models/my-model").node_setup


def test_the_renderings_of_one_node_setup_agree():
    setup = _setup()
    script = setup.shell_script()
    lines = [shlex.split(line) for line in script.splitlines() if line.startswith("ray start")]
    head, worker = lines
    [system_config] = [arg.split("=", 1)[1] for arg in head if arg.startswith("--system-config=")]
    rayservice = setup.kuberay_rayservice(name="x", serve_config={"applications": []})
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert json.loads(cluster["headGroupSpec"]["rayStartParams"]["system-config"]) == json.loads(system_config)
    assert json.loads(system_config) == setup.local_ray_init_kwargs(num_cpus=4)["_system_config"]
    [group] = cluster["workerGroupSpecs"]
    assert group["rayStartParams"] == {"num-cpus": "8", "num-gpus": "2"}
    assert "--num-gpus=2" in worker and "--num-cpus=8" in worker
    exported = dict(line[len("export ") :].split("=", 1) for line in script.splitlines() if line.startswith("export"))
    for role in (cluster["headGroupSpec"], group):
        env = {e["name"]: e["value"] for e in role["template"]["spec"]["containers"][0]["env"]}
        assert env == dict(setup.env) == {k: shlex.split(v)[0] for k, v in exported.items()}
    assert "/models/my-model" in script


def test_the_package_version_the_node_setup_names_is_the_projects():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert coldstart.__version__ == project["version"]
    # By its wheel, never by name: `coldstart` on PyPI is an unrelated project. The extra follows the device.
    wheel = f"./dist/coldstart-{project['version']}-py3-none-any.whl"
    assert _setup().package == f"{wheel}[gpu]"
    assert default_package("cpu") == f"{wheel}[cpu]"
    assert "pip install coldstart" not in _setup().shell_script().replace("'", "")
