"""The fast path's levers as data: registry ladder, the configs they build, the prestart wait."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys

import pytest
from fakes import FakeClock

from coldstart.analysis import events
from coldstart.fastpath.levers import levers_of
from coldstart.fastpath.node_setup import FORKSERVER_ENV, WORKERS_SOFT_LIMIT
from coldstart.lab.fastpath.prestart import (
    MAX_PRESTARTED_WORKERS,
    MIN_PRESTARTED_WORKERS,
    NodesNotReady,
    PoolKeeper,
    prestart_num_cpus,
    wait_for_ready_nodes,
)
from coldstart.lab.llm_config import (
    FAST_SERVER_CLASS,
    PRELOAD_MODULE,
    ConfigError,
    RunOptions,
    WeightsLocation,
    build_app_args,
    build_llm_config,
    node_env,
    ray_system_config,
)
from coldstart.lab.node_status import NodeView, WorkerView
from coldstart.registry import EXPERIMENTS, LADDER, get_experiment, get_model

LOCAL = WeightsLocation("/data/store/models/llama-3-8b", "local")
ENV = {"VLLM_CACHE_ROOT": "/c/vllm", "TRITON_CACHE_DIR": "/c/triton"}


def _opts(**kw) -> RunOptions:
    base = {"weights": LOCAL, "store_uri": "/data/store", "compile_cache_root": "/c/vllm", "run_id": "r1", "env": ENV}
    return RunOptions(**{**base, **kw})


def _cfg(exp_name: str, **kw) -> dict:
    return build_llm_config(get_model("llama-3-8b"), get_experiment(exp_name), _opts(**kw))


def test_each_rung_adds_exactly_one_lever_to_the_rung_below():
    levers = [EXPERIMENTS[name].levers for name in LADDER]
    assert levers[0] == ()
    for below, above in itertools.pairwise(levers):
        assert above[: len(below)] == below and len(above) == len(below) + 1, (below, above)
    assert EXPERIMENTS["fast"].levers[-1] == "engine_core_forkserver"


def test_forkserver_without_a_prestarted_in_replica_engine_is_refused():
    with pytest.raises(ValueError, match="needs prestart_workers and engine_in_replica"):
        dataclasses.replace(get_experiment("cc_in_replica"), name="x", engine_core_forkserver=True)


def test_compile_cache_rung_keeps_the_stock_topology():
    cfg = _cfg("compile_cache")
    assert "server_cls" not in cfg
    assert cfg["runtime_env"] == {"env_vars": ENV}
    assert cfg["placement_group_config"]["bundles"] == [{"GPU": 1, "CPU": 1}]
    assert "ray_actor_options" not in cfg["deployment_config"]
    assert ray_system_config(get_experiment("compile_cache")) == {}


def test_in_replica_engine_gives_the_replica_the_gpus_and_the_fast_server():
    cfg = _cfg("cc_in_replica")
    assert cfg["server_cls"] == FAST_SERVER_CLASS
    assert cfg["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert cfg["deployment_config"]["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 1}
    assert levers_of(cfg).engine_in_replica is True
    # Not yet prestarted: the env still travels in the replica's runtime_env.
    assert cfg["runtime_env"] == {"env_vars": ENV}


def test_in_replica_engine_at_tp4_asks_for_four_gpus_in_one_bundle():
    cfg = build_llm_config(get_model("llama-3-70b"), get_experiment("cc_in_replica"), _opts())
    assert cfg["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert cfg["deployment_config"]["ray_actor_options"]["num_gpus"] == 4


def test_prestart_moves_the_env_from_the_replicas_to_the_node():
    model, exp = get_model("llama-3-8b"), get_experiment("cc_prestart")
    cfg = _cfg("cc_prestart")
    assert cfg["runtime_env"] == {}
    # The ingress's too: with an env of its own it waited for a fresh worker to import vLLM (38 s, 2026-11-30).
    ingress = build_app_args(model, exp, cfg, _opts())["ingress_deployment_config"]
    assert ingress["ray_actor_options"]["runtime_env"] == {}
    timeout = {"RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT": str(model.request_timeout_s)}
    assert node_env(model, exp, _opts()) == {**ENV, **timeout}
    assert ray_system_config(exp) == {
        "preload_python_modules": [PRELOAD_MODULE],
        "enable_worker_prestart": True,
        "num_workers_soft_limit": WORKERS_SOFT_LIMIT,
    }
    # The last lever's switch is the node's too (a generated config once lost it: only the service set it).
    assert node_env(model, get_experiment("fast"), _opts())[FORKSERVER_ENV] == "1"
    stock = get_experiment("cc_in_replica")
    assert node_env(model, stock, _opts()) == {}
    stock_ingress = build_app_args(model, stock, _cfg("cc_in_replica"), _opts())["ingress_deployment_config"]
    assert stock_ingress["ray_actor_options"]["runtime_env"] == {"env_vars": timeout}


def test_node_env_refuses_secrets_like_the_config_does():
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        node_env(get_model("llama-3-8b"), get_experiment("fast"), _opts(env={"AWS_SECRET_ACCESS_KEY": "x"}))


def test_trims_set_capture_sizes_and_kv_size_on_gpu_only_the_capture_sizes_on_cpu():
    gpu = _cfg("cc_trims")["engine_kwargs"]
    assert gpu["compilation_config"] == {"cudagraph_capture_sizes": [1, 2, 4, 8]}
    assert gpu["kv_cache_memory_bytes"] == 4 * 1024**3
    cpu = _cfg("cc_trims", device="cpu")["engine_kwargs"]
    assert cpu["kv_cache_memory_bytes"] == _opts().cpu_kv_cache_bytes
    assert "compilation_config" not in _cfg("cc_prestart")["engine_kwargs"]


def test_skip_node_init_refuses_weights_that_node_init_would_fetch():
    with pytest.raises(ConfigError, match="node-init task"):
        _cfg("cc_skip_init", weights=WeightsLocation("s3://b/lab/models/llama-3-8b", "s3"))
    with pytest.raises(ConfigError, match="node-init task"):
        _cfg("cc_skip_init", weights=WeightsLocation("meta-llama/Meta-Llama-3-8B-Instruct", "hub"))
    assert levers_of(_cfg("cc_skip_init")).skip_node_init is True
    assert "skip_node_init" not in _cfg("cc_skip_init")["callback_config"]["callback_kwargs"]


def test_a_real_llmconfig_takes_the_fast_server_and_drops_the_setup_hook():
    pytest.importorskip("ray.serve.llm")
    from ray.serve.llm import LLMConfig

    from coldstart.lab.fastpath.server import ColdStartLLMServer

    llm = LLMConfig(**_cfg("fast", device="cpu"))
    assert llm.server_cls is ColdStartLLMServer
    options = ColdStartLLMServer.get_deployment_options(llm)
    # An empty runtime_env: what a prestarted worker has, so Ray can give it to this replica.
    assert options["ray_actor_options"]["runtime_env"] == {}
    stock = ColdStartLLMServer.get_deployment_options(LLMConfig(**_cfg("cc_in_replica", device="cpu")))
    assert "worker_process_setup_hook" in stock["ray_actor_options"]["runtime_env"]


def test_local_executor_replaces_rays_forced_one():
    pytest.importorskip("ray.llm")
    from coldstart.lab.fastpath.engine import local_engine_kwargs

    assert (
        local_engine_kwargs({"tensor_parallel_size": 1, "distributed_executor_backend": "ray"})[
            "distributed_executor_backend"
        ]
        == "uni"
    )
    assert (
        local_engine_kwargs({"tensor_parallel_size": 2, "distributed_executor_backend": "ray"})[
            "distributed_executor_backend"
        ]
        == "mp"
    )


# ------------------------------------------------------------------------------------------ the prestart wait


def _preloaded(pid: int) -> str:
    return f"(pid={pid}) " + events.format_event("worker_preloaded", pid=pid, import_s=17.0)


def _worker(pid: int, busy: bool = False) -> WorkerView:
    return WorkerView(pid=pid, import_s=17.0, forkserver_s=None, preloaded_at_epoch=0.0, busy=busy)


def _node(node_id: str, *, gpus: float, idle: tuple[int, ...] = (), importing: tuple[int, ...] = ()) -> NodeView:
    return NodeView(
        node_id=node_id,
        ip="10.0.0.1",
        is_head=False,
        cpus=8,
        gpus=gpus,
        preloaded=tuple(_worker(p) for p in idle),
        still_importing=importing,
    )


def test_wait_returns_once_every_replica_node_holds_idle_preloaded_workers(capsys):
    clock = FakeClock()
    asked: list[float] = []

    def views() -> list[NodeView]:
        asked.append(clock.now)
        later = clock.now >= 1.0  # worker 12 finishes its imports a second later
        head = NodeView(node_id="head", ip="10.0.0.0", is_head=True, cpus=0, gpus=0)
        gpu = _node("gpu1", gpus=1, idle=(11, 12) if later else (11,), importing=() if later else (12,))
        return [head, gpu]

    ready = wait_for_ready_nodes(gpus=1, timeout_s=60, views=views, clock=clock, sleep=clock.sleep)
    assert [n.node_id for n in ready.nodes] == ["gpu1"]  # the GPU-less head can host no replica
    assert asked == [0.0, 0.5, 1.0]
    said = events.read_events(capsys.readouterr().out)
    assert [e["event"] for e in said] == ["prestart_wait_start", "prestart_wait_end"]
    assert said[-1]["nodes"][0]["idle_preloaded"] == [11, 12]


def test_wait_tops_a_short_node_up_once_and_gives_up_past_the_timeout_naming_the_nodes(capsys):
    clock = FakeClock()
    filled: list[tuple[str, int]] = []
    with pytest.raises(NodesNotReady, match=r"gpu1 \(10.0.0.1, 1 GPU\): 1 idle preloaded, 0 importing"):
        wait_for_ready_nodes(
            gpus=1,
            timeout_s=5,
            views=lambda: [_node("gpu1", gpus=1, idle=(11,))],
            fill=lambda node, count: filled.append((node.node_id, count)),
            clock=clock,
            sleep=clock.sleep,
        )
    assert filled == [("gpu1", 2)]
    [end] = [e for e in events.read_events(capsys.readouterr().out) if e["event"] == "prestart_wait_timeout"]
    assert end["wait_s"] > 5


class _Keeper(PoolKeeper):
    """The pool keeper with the controller's ownership given and its fills recorded instead of run."""

    def __init__(self, owns: bool, **kw) -> None:
        super().__init__("app", gpus=1, **kw)
        self._owns = owns
        self.filled: list[tuple[str, int]] = []

    def fill(self, node: NodeView, count: int) -> None:
        self.filled.append((node.node_id, count))


def test_the_keeper_refills_a_node_a_replica_took_a_worker_from_only_between_cold_starts():
    nodes = [_node("gpu1", gpus=1, idle=(11,)), _node("gpu2", gpus=1, idle=(21, 22)), _node("cpu", gpus=0)]
    quiet = _Keeper(True, views=lambda: nodes, settled=lambda: True)
    quiet.tick()
    assert quiet.filled == [("gpu1", 2)]  # one idle worker left of two: topped up; the full node left alone
    starting = _Keeper(True, views=lambda: nodes, settled=lambda: False)  # a replica is starting: hands off
    starting.tick()
    assert starting.filled == []
    not_ours = _Keeper(False, views=lambda: nodes, settled=lambda: True)  # another job's controller
    not_ours.tick()
    assert not_ours.filled == []


def test_wait_without_any_node_that_can_host_a_replica_says_so():
    clock = FakeClock()
    with pytest.raises(NodesNotReady, match="no live node has 4 GPU"):
        wait_for_ready_nodes(
            gpus=4, timeout_s=1, views=lambda: [_node("gpu1", gpus=1, idle=(1, 2))], clock=clock, sleep=clock.sleep
        )


def test_a_small_node_gets_enough_logical_cpus_for_an_idle_prestarted_worker():
    assert prestart_num_cpus(None, 2) == MIN_PRESTARTED_WORKERS
    assert prestart_num_cpus(None, 6) == 6
    assert prestart_num_cpus(None, 16) == MAX_PRESTARTED_WORKERS
    assert prestart_num_cpus(3, 16) == 3  # what the user asked for wins


# ------------------------------------------------------------------------------------- the EngineCore forkserver


def test_a_forked_child_gets_the_env_its_parent_had_when_it_asked_not_the_servers(tmp_path, monkeypatch, capfd):
    """The forkserver starts before Ray assigns the worker (prestart) and keeps that environment; Ray sets the replica's
    CUDA_VISIBLE_DEVICES when it assigns the worker, and EngineCore must see it."""
    import multiprocessing.forkserver

    from fakes import write_env_var

    from coldstart.lab.fastpath.forkserver import EnvCarryingForkServerContext

    monkeypatch.delenv("COLDSTART_TEST_LEASE", raising=False)
    multiprocessing.forkserver.ensure_running()  # started without the variable, as in a prestarted worker
    monkeypatch.setenv("COLDSTART_TEST_LEASE", "GPU-3")
    out = tmp_path / "seen.txt"
    child = EnvCarryingForkServerContext().Process(target=write_env_var, args=("COLDSTART_TEST_LEASE", str(out)))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert out.read_text() == "GPU-3"
    [forked] = [e for e in events.read_events(capfd.readouterr().out) if e["event"] == "engine_core_forked"]
    assert forked["pid"] == child.pid


def test_importing_the_preload_outside_a_ray_worker_only_imports(tmp_path):
    # The node check of docs/deploy-on-a-cluster.md: it must start no Ray, no forkserver, and record nothing.
    probe = (
        "import psutil, ray, coldstart.lab.fastpath.preload as p; "
        "print('ray initialized:', ray.is_initialized(), '; children:', len(psutil.Process().children(recursive=True)))"
    )
    env = {**os.environ, "COLDSTART_ENGINE_CORE_FORKSERVER": "1", "RAY_TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ray initialized: False ; children: 0" in out.stdout, out.stdout + out.stderr[-3000:]
    assert "worker_preloaded" not in out.stdout + out.stderr
    assert not list(tmp_path.iterdir()), "a Ray was started: it made its temp folder"
