"""The #65477 workaround, exercised through Ray 2.57.1's own node-initialization code (no cluster needed)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from coldstart.analysis import events
from coldstart.lab.llm_config import RunOptions, WeightsLocation, build_llm_config
from coldstart.registry import resolve

pytest.importorskip("ray.llm")

S3_URI = "s3://lab-bucket/coldstart/models/tiny"


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    # The hook marks the node's engine caches under the lab's home: keep it off the user's.
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _llm_config(exp_name: str):
    from ray.serve.llm import LLMConfig

    model, exp = resolve("tiny", exp_name)
    opts = RunOptions(weights=WeightsLocation(S3_URI, "s3"), device="cpu", store_uri="s3://lab-bucket/coldstart")
    return LLMConfig(**build_llm_config(model, exp, opts))


def _node_init_as_ray_does(llm_config) -> None:
    """What ``initialize_node`` does in the replica, minus the Ray task hop: one ``initialize_remote_node``
    per node, then the returned path becomes the engine's model."""
    from ray.llm._internal.serve.utils.node_initialization_utils import initialize_remote_node

    path = initialize_remote_node(llm_config)
    llm_config.get_engine_config().hf_model_id = path


def test_stock_ray_hands_vllm_the_model_id_for_runai_streamer():
    # Documents the upstream bug this project works around: if this starts failing, Ray was fixed
    # (2.59+) and the workaround became a no-op (which the next test also accepts).
    llm_config = _llm_config("runai_streamer")
    _node_init_as_ray_does(llm_config)
    assert llm_config.get_engine_config().get_initialization_kwargs()["model"] == "tiny"


def test_callback_gives_vllm_the_store_url(capsys):
    llm_config = _llm_config("runai_streamer")
    callback = llm_config.get_or_create_callback()
    asyncio.run(callback.run_callback("on_before_node_init"))
    _node_init_as_ray_does(llm_config)
    asyncio.run(callback.run_callback("on_after_node_init"))
    kwargs = llm_config.get_engine_config().get_initialization_kwargs()
    assert kwargs["model"] == S3_URI
    assert kwargs["load_format"] == "runai_streamer"
    names = [e["event"] for e in events.read_events(capsys.readouterr().out)]
    assert names == [
        "replica_node_init_start",
        "node_fetch_start",
        "weights_source_fixed",
        "replica_node_init_end",
        "engine_start",
    ]


def test_callback_leaves_fetched_weights_alone():
    from ray.serve.llm import LLMConfig

    model, exp = resolve("tiny", "baseline")
    opts = RunOptions(weights=WeightsLocation("/models/tiny", "local"), device="cpu")
    llm_config = LLMConfig(**build_llm_config(model, exp, opts))
    callback = llm_config.get_or_create_callback()
    _node_init_as_ray_does(llm_config)
    asyncio.run(callback.run_callback("on_after_node_init"))
    assert llm_config.get_engine_config().get_initialization_kwargs()["model"] == "/models/tiny"


def test_every_run_marks_the_engine_caches_it_is_about_to_fill(lab_home, monkeypatch):
    # A baseline too: its caches are what gets published for compile_cache (checked at publish time).
    from ray.serve.llm import LLMConfig

    from coldstart.compile_cache import hashed_env

    monkeypatch.setenv("VLLM_USE_MEGA_AOT_ARTIFACT", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    model, exp = resolve("tiny", "baseline")
    opts = RunOptions(weights=WeightsLocation("/models/tiny", "local"), device="cpu", run_id="r-1")
    llm_config = LLMConfig(**build_llm_config(model, exp, opts))
    llm_config.get_or_create_callback()
    _node_init_as_ray_does(llm_config)
    marker = json.loads((lab_home / "engine-cache" / "vllm" / "coldstart-engine.json").read_text())
    assert (marker["model_name"], marker["experiment"], marker["run_id"]) == ("tiny", "baseline", "r-1")
    assert marker["model_path"] == "/models/tiny"
    assert marker["engine_kwargs"]["max_model_len"] == model.max_model_len
    assert marker["compile_env"]["VLLM_USE_MEGA_AOT_ARTIFACT"] == "1"
    assert marker["compile_env"] == hashed_env(os.environ)
    assert "hf_secret" not in json.dumps(marker) and "testing" not in json.dumps(marker)
