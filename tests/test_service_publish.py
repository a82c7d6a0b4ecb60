"""service.py --publish-compile-cache: the errors a user meets before any cache exists, and the key that
separates ``compile_cache`` from ``compile_cache_mega``."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from coldstart.registry import EXPERIMENTS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def staged_home(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("torch")  # writing the checkpoint
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "COLDSTART_HOME": str(home), "COLDSTART_STORE": (home / "store").as_uri()}
    for args in (
        ["checkpoint", "tiny", "--no-progress"],
        ["stage", "put", "tiny", "--from", str(home / "checkpoints" / "tiny"), "--no-progress"],
    ):
        subprocess.run(
            [sys.executable, "-m", "coldstart", *args], cwd=REPO, env=env, check=True, capture_output=True, timeout=300
        )
    return env


def _publish(env: Mapping[str, str], experiment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "service.py", "tiny", experiment, "--device", "cpu", "--publish-compile-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_publish_without_an_engine_run_says_what_to_do(staged_home):
    proc = _publish(staged_home, "compile_cache")
    assert proc.returncode == 1
    assert "no vLLM compile cache" in proc.stderr and "start the engine once" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_for_an_experiment_without_a_cache_is_bad_input(staged_home):
    proc = _publish(staged_home, "baseline")
    assert proc.returncode == 2
    with_cache = [name for name, e in EXPERIMENTS.items() if e.compile_cache]
    assert {"compile_cache", "all", "fast"} <= set(with_cache)  # the registry still has the usual ones
    assert f"does not use a compile cache (try one of: {', '.join(with_cache)})" in proc.stderr


def _engine_caches(base: Path) -> dict[str, str]:
    """A few KB laid out like an engine run's caches; the pinned roots pointing at them (not hashed)."""
    roots = {
        "VLLM_CACHE_ROOT": base / "vllm",
        "TORCHINDUCTOR_CACHE_DIR": base / "inductor",
        "TRITON_CACHE_DIR": base / "triton",
    }
    for path in (
        roots["VLLM_CACHE_ROOT"] / "torch_compile_cache" / "torch_aot_compile" / "9f3c" / "rank_0_0" / "model",
        roots["TORCHINDUCTOR_CACHE_DIR"] / "fxgraph" / "ab" / "entry",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256))
    return {k: str(v) for k, v in roots.items()}


def _published_key(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    # "compile cache publish: SUCCESS compile-cache/tiny/<key>/ (0.0 MB, 2 files)"
    status, prefix = proc.stdout.split("compile cache publish: ", 1)[1].split()[:2]
    assert status == "SUCCESS", proc.stdout
    return prefix


def _replica_restore(env: Mapping[str, str], experiment: str, node: Path, monkeypatch):
    """What the replica hook does for this experiment's config on a fresh node (service.py builds it)."""
    from coldstart import compile_cache as cc
    from coldstart.lab.replica_hooks import engine_model_path

    cfg, hook_env = _replica_env(env, experiment, monkeypatch)
    node_env = {
        **hook_env,
        **{
            "VLLM_CACHE_ROOT": str(node / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(node / "inductor"),
            "TRITON_CACHE_DIR": str(node / "triton"),
        },
    }
    return cc.restore_for_replica(
        store_uri=cfg["callback_config"]["callback_kwargs"]["compile_cache_store"],
        model_name="tiny",
        engine_kwargs=cfg["engine_kwargs"],
        model_path=engine_model_path(cfg["model_loading_config"]),
        environ=node_env,
    )


def _replica_env(env: Mapping[str, str], experiment: str, monkeypatch, *extra: str) -> tuple[dict, dict[str, str]]:
    """The replica's config, and the environment its hook's process sees: the node's (with what a fast-path
    node setup adds) plus the replica's runtime_env (Ray sets it; a fast-path config leaves it empty)."""
    from coldstart.lab import service

    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    for name in ("COLDSTART_HOME", "COLDSTART_STORE", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        if name in env:
            monkeypatch.setenv(name, env[name])
    prepared = service.prepare(parser.parse_args(["tiny", experiment, "--device", "cpu", *extra]))
    (cfg,) = prepared.app_args["llm_configs"]
    return cfg, {**env, **prepared.node_env, **cfg["runtime_env"].get("env_vars", {})}


def _engine_run_marks(env: Mapping[str, str], experiment: str, monkeypatch, *extra: str) -> None:
    """The replica hook of a run of this experiment, on the node whose caches ``env`` pins, marks them."""
    from ray.serve.llm import LLMConfig

    from coldstart.lab.replica_hooks import ColdStartCallback

    cfg, hook_env = _replica_env(env, experiment, monkeypatch, *extra)
    kwargs = cfg["callback_config"]["callback_kwargs"]
    with monkeypatch.context() as m:  # the hook's process: the node's environment plus the runtime_env
        for name, value in hook_env.items():
            m.setenv(name, value)
        ColdStartCallback(LLMConfig(**cfg), **kwargs)._mark_engine_caches()


def test_publish_refuses_caches_another_config_left(staged_home, tmp_path, monkeypatch):
    # Seen on the H100: after a llama-3-8b run, `service.py tiny compile_cache --publish-compile-cache` packed
    # the 8B caches under tiny's key (SKIPPED only because tiny's entry already existed).
    env = {**staged_home, **_engine_caches(tmp_path / "engine-run")}
    proc = _publish(env, "compile_cache")
    assert proc.returncode == 1 and "no coldstart-engine.json" in proc.stderr, proc.stderr

    _engine_run_marks(env, "baseline", monkeypatch, "--max-model-len", "256")
    proc = _publish(env, "compile_cache")
    assert proc.returncode == 1, proc.stdout
    assert "left by tiny baseline" in proc.stderr and "engine_args:" in proc.stderr and "max_model_len" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(Path(env["COLDSTART_HOME"], "store").glob("compile-cache/tiny/*/manifest.json"))

    # The same caches, left by a baseline of this very config, are what compile_cache restores: accepted.
    _engine_run_marks(env, "baseline", monkeypatch)
    key = _published_key(_publish(env, "compile_cache"))
    # A resumed campaign step publishes again after another config's run (campaign 2026-11-30-h200x2): the key's
    # entry is good, so nothing is packed and the step goes on; its manifest is the one published above.
    manifest = next(Path(env["COLDSTART_HOME"], "store").glob(f"{key}manifest.json"))
    before = manifest.read_bytes()
    _engine_run_marks(env, "baseline", monkeypatch, "--max-model-len", "256")
    proc = _publish(env, "compile_cache")
    assert proc.returncode == 0, proc.stderr
    assert f"SKIPPED {key} already published; nothing added" in proc.stdout and "left by tiny baseline" in proc.stdout
    assert manifest.read_bytes() == before
    _engine_run_marks(env, "baseline", monkeypatch)
    Path(env["VLLM_CACHE_ROOT"], "coldstart-engine.json").write_text("{not json")
    proc = _publish(env, "compile_cache")
    assert proc.returncode == 1 and "unreadable" in proc.stderr and "clear_cache.py" in proc.stderr
    shutil.rmtree(Path(env["COLDSTART_HOME"], "store", "compile-cache"))  # the module's store, shared


def test_compile_cache_and_compile_cache_mega_have_separate_store_keys(staged_home, tmp_path, monkeypatch):
    env = {**staged_home, **_engine_caches(tmp_path / "engine-run")}
    _engine_run_marks(env, "compile_cache", monkeypatch)
    plain_key = _published_key(_publish(env, "compile_cache"))

    # The mega experiment's replica finds only the plain entry: a MISMATCH naming the one env var, and
    # nothing written on the node (it compiles, then its own cache can be published).
    miss = _replica_restore(env, "compile_cache_mega", tmp_path / "node-a", monkeypatch)
    assert miss.status == "MISMATCH", miss.detail
    assert miss.mismatched_fields == ("compile_env",)
    assert "compile_env: VLLM_USE_MEGA_AOT_ARTIFACT" in miss.detail
    assert miss.key != plain_key and plain_key.rstrip("/") in miss.detail
    assert not (tmp_path / "node-a" / "vllm" / "torch_compile_cache").exists()

    # Caches a plain run left are no mega artifact: publishing them under the mega key is refused.
    refused = _publish(env, "compile_cache_mega")
    assert refused.returncode == 1 and "compile_env: VLLM_USE_MEGA_AOT_ARTIFACT" in refused.stderr

    _engine_run_marks(env, "compile_cache_mega", monkeypatch)
    mega_key = _published_key(_publish(env, "compile_cache_mega"))
    assert mega_key == miss.key != plain_key
    # Each experiment now restores its own entry, and only its own.
    for experiment, key in (("compile_cache_mega", mega_key), ("compile_cache", plain_key)):
        hit = _replica_restore(env, experiment, tmp_path / f"node-{experiment}", monkeypatch)
        assert (hit.status, hit.key) == ("SUCCESS", key), hit.detail
        assert (tmp_path / f"node-{experiment}" / "inductor" / "fxgraph" / "ab" / "entry").is_file()


def test_make_demos_capture_of_cc_trims_is_what_fast_restores(staged_home, tmp_path, monkeypatch):
    # `make demo` (and the campaigns' fast-*-prep steps): the caches a cc_trims run left, published under
    # cc_trims, must be the entry a fast replica on a fresh node restores: the same key, a hit.
    env = {**staged_home, **_engine_caches(tmp_path / "engine-run")}
    _engine_run_marks(env, "cc_trims", monkeypatch)
    key = _published_key(_publish(env, "cc_trims"))
    hit = _replica_restore(env, "fast", tmp_path / "fresh-node", monkeypatch)
    assert (hit.status, hit.key) == ("SUCCESS", key), hit.detail
    # A second demo's publish of the same caches adds nothing.
    again = _publish(env, "cc_trims")
    assert again.returncode == 0 and "SKIPPED" in again.stdout, again.stdout + again.stderr
    shutil.rmtree(Path(env["COLDSTART_HOME"], "store", "compile-cache"))  # the module's store, shared


def test_a_port_held_by_a_leftover_app_stops_the_service_before_ray(staged_home):
    # A listener on the Serve port (e.g. a Serve app whose Ray outlived a killed run) must be refused up
    # front: otherwise the client reaches the old app and gets a 404 after minutes of cold start.
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "service.py", "tiny", "baseline", "--device", "cpu", "--port", str(port)],
            cwd=REPO,
            env=staged_home,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 already has a listener" in proc.stderr
    assert "service_start" not in proc.stdout and "Ray" not in proc.stdout


def test_ensure_port_free_passes_a_free_port_and_maps_wildcard_hosts():
    import socket

    from coldstart.lab.serve import PortInUse, ensure_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nobody answers
        ensure_port_free("127.0.0.1", port)
        s.listen()
        with pytest.raises(PortInUse):
            ensure_port_free("0.0.0.0", port)


def test_service_turns_off_rays_log_dedup_before_ray_starts(monkeypatch, capsys):
    # Ray folds identical lines of several workers into one "[repeated 2x across cluster]": the prestarted
    # workers' `worker_preloaded` lines vanished and the fast path's wait for them ran to its timeout (CPU, s9).
    from coldstart.lab import service

    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")  # a user's shell, or Ray's default
    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    assert service.main(parser.parse_args(["no-such-model", "fast"])) == 2  # refused before Ray, yet already set
    assert os.environ["RAY_DEDUP_LOGS"] == "0"
    assert "unknown model" in capsys.readouterr().err
