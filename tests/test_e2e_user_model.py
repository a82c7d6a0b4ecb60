"""A user's own model end to end on CPU: a folder no registry entry names, written offline from a config.json,
served on the fast path from zero replicas to a streamed first token (service.py --model-id, client.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from test_e2e_cpu import _run, lab  # noqa: F401  (lab: the private home fixture, used by name)

from coldstart.analysis.events import read_events
from coldstart.registry import MODELS, get_model

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 900.0
STOP_GRACE_S = 90.0
LINGER_S = 30.0  # a worker may take a moment to exit after service.py shut Ray down


def _processes_with_sid(sid: int) -> list[str]:
    """Processes whose SID (ps) is the service's: start_new_session made it the leader, and Ray's and vLLM's
    children keep its SID (Ray's setpgrp only makes process groups). Unlike a search by name, this ignores a
    Ray cluster someone else runs on the same machine."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.split(None, 2)[1] == str(sid)]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the service's group (it shuts Serve and Ray down), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_fast_serves_a_local_folder_built_from_a_config_json(lab, tmp_path):  # noqa: F811
    # A Llama of tiny's shape, under a name and in a folder no registry entry has.
    name = "my-llama"
    assert name not in MODELS
    config = tmp_path / "config.json"
    config.write_text(json.dumps(get_model("tiny").arch.hf_config()))
    folder = tmp_path / "models" / name
    _run(["-m", "coldstart", "checkpoint", "--config", str(config), "--out", str(folder), "--no-progress"], lab)

    ready = tmp_path / "ready.json"
    port = free_port()
    cmd = ["service.py", name, "fast", "--model-id", str(folder), "--tp", "1", "--device", "cpu"]
    cmd += ["--port", str(port), "--ready-file", str(ready)]
    with open(tmp_path / "service.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, *cmd], cwd=REPO, env=lab, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            said = (tmp_path / "service.err").read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"service.py exited with {proc.returncode}: {said}"
            assert time.monotonic() < deadline, f"service.py not ready after {READY_TIMEOUT_S:.0f} s: {said}"
            time.sleep(0.5)
        info = json.loads(ready.read_text())
        result = tmp_path / "client.json"
        _run(["client.py", "--url", info["url"], "--model", name, "--timeout", "600", "--out", str(result)], lab)
    finally:
        _stop(proc)

    client = json.loads(result.read_text())
    assert client["status"] == "ok", client
    assert client["ttft_s"] > 1.0  # a cold start from zero replicas, not a warm replica
    assert client["first_text"] and client["tokens"] >= 1
    llm = info["config"]["llm_configs"][0]
    assert llm["model_loading_config"] == {"model_id": name, "model_source": str(folder.resolve())}
    assert llm["engine_kwargs"]["tensor_parallel_size"] == 1

    log_text = (REPO / info["log"]).read_text(errors="replace")
    assert "Resolved architecture: LlamaForCausalLM" in log_text
    said = {e["event"]: e for e in read_events(log_text)}
    assert said["service_start"]["model"] == name
    # The fast path ran whole: no node-init task, a prestarted worker, EngineCore from the forkserver.
    assert "node_init_skipped" in said and "node_fetch_start" not in said
    assert said["replica_node_init_start"]["worker_preloaded"] is True
    assert said["engine_core_forked"]["vllm_imported"] is True
    deadline = time.monotonic() + LINGER_S
    while (left := _processes_with_sid(proc.pid)) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert left == [], "Ray or vLLM processes outlived the service"
    print(f"user model {name}: fast, first token after {client['ttft_s']:.2f} s: {client['first_text']!r}")
