"""A user's own model end to end on CPU, through the matrix: a folder no registry entry names, written offline from a
config.json, measured on the fast path from zero replicas to a streamed first token (``python -m coldstart matrix
--models NAME -- --model-id DIR --tp 1``), its row read back. One cold start."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import free_port
from node_state import look
from test_e2e_cpu import _events, _matrix, _run, lab  # noqa: F401  (lab: the private home fixture, used by name)

from coldstart.registry import MODELS, get_model

pytestmark = pytest.mark.e2e
LINGER_S = 30.0  # a worker may take a moment to exit after service.py shut Ray down


def test_the_matrix_measures_a_local_folder_built_from_a_config_json(lab, tmp_path):  # noqa: F811
    # A Llama of tiny's shape, under a name and in a folder no registry entry has (and outside every lab root).
    name = "my-llama"
    assert name not in MODELS
    config = tmp_path / "config.json"
    config.write_text(json.dumps(get_model("tiny").arch.hf_config()))
    folder = tmp_path / "models" / name
    _run(["-m", "coldstart", "checkpoint", "--config", str(config), "--out", str(folder), "--no-progress"], lab)

    # A port of its own: another lab on this machine (a suite in another checkout) may hold the default one.
    service = ("--model-id", str(folder), "--tp", "1", "--port", str(free_port()))
    row = _matrix(lab, "fast", "e2e-user-model", *service, model=name)
    assert row.status == "ok", row.error
    assert row.ttft_s is not None and row.ttft_s > 1.0  # a cold start from zero replicas, not a warm replica
    assert row.model == name and row.experiment == "fast" and row.node_state == "cold"
    llm = row.config["llm_configs"][0]
    assert llm["model_loading_config"] == {"model_id": name, "model_source": str(folder.resolve())}
    assert llm["engine_kwargs"]["tensor_parallel_size"] == 1
    # Cold for the user's folder too: the real clear-cache evicted it (a folder outside the lab's roots).
    assert row.extra["clear"]["user_weights_evicted"] == str(folder.resolve())

    log_text = Path(row.log_path).read_text(errors="replace")
    assert "Resolved architecture: LlamaForCausalLM" in log_text
    said = {e["event"]: e for e in _events(row)}
    assert said["service_start"]["model"] == name
    # The fast path ran whole: no node-init task, a prestarted worker, EngineCore from the forkserver.
    assert "node_init_skipped" in said and "node_fetch_start" not in said
    assert said["replica_node_init_start"]["worker_preloaded"] is True
    assert said["engine_core_forked"]["vllm_imported"] is True
    # Nothing of the service is left: no live process started with this lab's home (Ray, vLLM, the forkserver).
    # Looked for by the home in their environment, not by name: another lab's Ray on this machine is not ours.
    deadline = time.monotonic() + LINGER_S
    while (left := look(lab).processes) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not left, f"Ray or vLLM processes outlived the service: {sorted(left)}"
    print(f"user model {name}: fast through the matrix, first token after {row.ttft_s:.2f} s")
