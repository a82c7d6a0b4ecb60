"""experiments/ holds one Serve config per valid pair; they must match the registry and validate in Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coldstart.lab.configs import write_all
from coldstart.registry import valid_pairs

REPO = Path(__file__).resolve().parents[1]


def test_committed_configs_match_the_registry(tmp_path):
    # A registry change without `python -m coldstart configs` would leave users deploying stale configs.
    fresh = {p.relative_to(tmp_path) for p in write_all(tmp_path, "s3://YOUR-BUCKET/coldstart")}
    generated = ("*.yaml", "*.node-setup.sh")
    committed = {p.relative_to(REPO / "experiments") for g in generated for p in (REPO / "experiments").rglob(g)}
    assert committed == fresh
    assert Path("llama-3-8b/fast.node-setup.sh") in fresh and Path("llama-3-8b/fast.rayservice.yaml") in fresh
    for rel in fresh:
        body = (tmp_path / rel).read_text().splitlines()[2:]  # below the header, which names the path
        assert (REPO / "experiments" / rel).read_text().splitlines()[2:] == body


def _serve_configs() -> list[tuple[str, str]]:
    return valid_pairs()


@pytest.mark.parametrize(("model", "experiment"), _serve_configs())
def test_every_config_validates_as_a_ray_llmconfig(model, experiment):
    LLMConfig = pytest.importorskip("ray.serve.llm").LLMConfig

    app = yaml.safe_load((REPO / "experiments" / model / f"{experiment}.yaml").read_text())["applications"][0]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    (cfg,) = app["args"]["llm_configs"]
    llm = LLMConfig(**cfg)
    assert llm.deployment_config["autoscaling_config"]["min_replicas"] == 0


def test_a_prestart_config_names_the_env_its_nodes_must_give_the_replicas():
    # Its replicas' runtime_envs are empty (so prestarted workers are given to them): a cluster user must set
    # the ingress's timeout on the nodes, or a cold 235B start is cut at the ingress's 600 s default.
    fast = (REPO / "experiments" / "qwen-3-235b" / "fast.yaml").read_text()
    app = yaml.safe_load(fast)["applications"][0]
    assert app["args"]["ingress_deployment_config"]["ray_actor_options"]["runtime_env"] == {}
    assert "RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT=3600" in fast.split("applications:")[0]
    # ... and the forkserver switch of the last lever, which only the service used to set.
    assert "COLDSTART_ENGINE_CORE_FORKSERVER=1" in fast.split("applications:")[0]
    stock = (REPO / "experiments" / "qwen-3-235b" / "baseline.yaml").read_text()
    env = yaml.safe_load(stock)["applications"][0]["args"]["ingress_deployment_config"]["ray_actor_options"]
    assert env["runtime_env"]["env_vars"]["RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT"] == "3600"


def test_the_rayservice_deploys_the_very_serve_config_beside_it():
    folder = REPO / "experiments" / "llama-3-8b"
    serve_config = yaml.safe_load((folder / "fast.yaml").read_text())
    rayservice = yaml.safe_load((folder / "fast.rayservice.yaml").read_text())
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == serve_config
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    script = (folder / "fast.node-setup.sh").read_text()
    assert f"--system-config={head['system-config']}" in script  # one record: the same flag in both renderings
