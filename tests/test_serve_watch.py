"""service.py gives up when Serve does: the status snapshots below have the shape of ``serve.status()``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fakes import FakeClock

from coldstart.lab.serve import app_failure, watch_app

APP = "coldstart-llama-3-8b-tp2"
# The controller's message on an H200 (trimmed): three constructor failures, then the traceback.
CONTROLLER_MESSAGE = """The deployment failed to start 3 times in a row. This may be due to a problem with its \
constructor or initial health check failing. See controller logs for details. Error:
ray::ServeReplica:coldstart-llama-3-8b-tp2:LLMServer:llama-3-8b-tp2.initialize_and_get_metadata()
  File "/tmp/gpu-site/ray/llm/_internal/serve/engines/vllm/vllm_engine.py", line 198, in _get_vllm_engine_config
RuntimeError: Failed to create vLLM engine config: Cannot find an appropriate cached snapshot folder
"""


def _status(app_state: str, dep_state: str = "HEALTHY", message: str = "", app_message: str = ""):
    dep = SimpleNamespace(status=dep_state, message=message)
    app = SimpleNamespace(status=app_state, message=app_message, deployments={"LLMServer:llama-3-8b-tp2": dep})
    return SimpleNamespace(applications={APP: app})


def test_a_deploy_failed_app_gives_the_summary_and_the_final_exception():
    reason = app_failure(_status("DEPLOY_FAILED", "DEPLOY_FAILED", CONTROLLER_MESSAGE), APP)
    assert reason.startswith(f"Serve app {APP} is DEPLOY_FAILED; LLMServer:llama-3-8b-tp2 DEPLOY_FAILED: ")
    assert "failed to start 3 times in a row" in reason
    assert reason.endswith("Cannot find an appropriate cached snapshot folder")
    assert "vllm_engine.py" not in reason  # the middle of the traceback stays in the log


@pytest.mark.parametrize("state", ["NOT_STARTED", "DEPLOYING", "RUNNING", "DELETING"])
def test_states_that_may_still_serve_are_not_failures(state):
    assert app_failure(_status(state, "UPDATING"), APP) is None


def test_an_unknown_app_is_not_a_failure_and_enum_states_are_read_by_value():
    ApplicationStatus = pytest.importorskip("ray.serve.schema").ApplicationStatus

    enum_like = ApplicationStatus.UNHEALTHY  # what serve.status() holds: str() of it is not its value
    assert app_failure(_status("RUNNING"), "another-app") is None
    assert app_failure(_status(enum_like, "HEALTHY", app_message="health check failed"), APP).endswith(
        "health check failed"
    )


def test_watch_returns_only_after_the_failure_held_for_the_grace_time():
    clock = FakeClock()
    failed = _status("DEPLOY_FAILED", "DEPLOY_FAILED", CONTROLLER_MESSAGE)
    # Up, a short UNHEALTHY spell that Serve recovers from, up again, then failed for good.
    seq = [_status("RUNNING")] * 3 + [_status("UNHEALTHY", "UNHEALTHY", "one replica")] * 2 + [_status("RUNNING")]
    seq += [failed] * 100
    it = iter(seq)
    reason = watch_app(APP, grace_s=30.0, poll_s=5.0, get_status=lambda: next(it), clock=clock, sleep=clock.sleep)
    assert "DEPLOY_FAILED" in reason
    # The failure began at poll 6 (t=30 s); it had to hold 30 s more, so the watch ended at t=60 s.
    assert clock.now == 60.0


def test_the_gist_keeps_an_exception_continued_on_the_next_line_not_the_url_after_it():
    # What the CPU run with an unknown architecture produced: the last line is a pydantic help URL.
    message = (
        "The deployment failed to start 3 times in a row. See controller logs for details. Error:\n"
        "Traceback (most recent call last):\n"
        '  File "vllm_engine.py", line 198, in _get_vllm_engine_config\n'
        "RuntimeError: Failed to create vLLM engine config: 1 validation error for ModelConfig\n"
        "  Value error, The checkpoint you are trying to load has model type `no-such-architecture`\n"
        "\n"
        "You can update Transformers with the command `pip install --upgrade transformers`.\n"
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error\n"
    )
    reason = app_failure(_status("UNHEALTHY", "UNHEALTHY", message), APP)
    assert reason.endswith(
        "RuntimeError: Failed to create vLLM engine config: 1 validation error for ModelConfig "
        "Value error, The checkpoint you are trying to load has model type `no-such-architecture`"
    )
    assert "pydantic.dev" not in reason and "pip install" not in reason


def test_a_status_call_that_fails_is_reported_and_does_not_end_the_watch(capsys):
    clock = FakeClock()
    failed = _status("DEPLOY_FAILED", "DEPLOY_FAILED", CONTROLLER_MESSAGE)
    calls = iter([RuntimeError("controller busy"), _status("RUNNING")] + [failed] * 10)

    def get_status():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    reason = watch_app(APP, grace_s=10.0, poll_s=5.0, get_status=get_status, clock=clock, sleep=clock.sleep)
    assert "DEPLOY_FAILED" in reason and clock.now == 20.0
    assert "serve.status() failed (RuntimeError: controller busy)" in capsys.readouterr().err


# Serve 2.57's message once a replica has waited 30 s for a node (a CPU run whose only worker node was killed
# mid-start: the head has no CPU, so the retried replica has nowhere to go).
UNSCHEDULABLE = (
    "Deployment 'ColdStartLLMServer:tiny' in application 'coldstart-tiny' has 1 replicas that have taken more than "
    "30s to be scheduled. This may be due to waiting for the cluster to auto-scale or for a runtime environment to "
    "be installed. Resources required for each replica: {'CPU': 1.0}, total resources available: {}. Use `ray "
    "status` for more details."
)
SLOW_INIT = (
    "Deployment 'ColdStartLLMServer:tiny' in application 'coldstart-tiny' has 1 replicas that have taken more than "
    "30s to initialize.\nThis may be caused by a slow __init__ or reconfigure method."
)


def test_a_replica_with_no_node_ends_the_watch_after_its_own_bound_naming_the_resources():
    clock = FakeClock()
    # Starting for a minute (slow init is no reason to give up), then no node for it, for good. The app stays
    # DEPLOYING: to Serve this is no failure, and a waiting request waits with it.
    seq = [_status("DEPLOYING", "UPDATING", SLOW_INIT)] * 12 + [_status("DEPLOYING", "UPDATING", UNSCHEDULABLE)] * 100
    it = iter(seq)
    reason = watch_app(
        APP, grace_s=30.0, unschedulable_s=20.0, poll_s=5.0, get_status=lambda: next(it), clock=clock, sleep=clock.sleep
    )
    assert clock.now == 80.0  # unplaced from t=60 s, given up 20 s later
    assert reason.startswith(f"Serve app {APP}: no node can take a replica of LLMServer:llama-3-8b-tp2; ")
    assert "Resources required for each replica: {'CPU': 1.0}, total resources available: {}." in reason


def test_without_a_bound_a_replica_with_no_node_is_waited_for():
    clock = FakeClock()
    seq = [_status("DEPLOYING", "UPDATING", UNSCHEDULABLE)] * 50 + [_status("DEPLOY_FAILED", "DEPLOY_FAILED", "x")] * 9

    it = iter(seq)
    reason = watch_app(APP, grace_s=10.0, poll_s=5.0, get_status=lambda: next(it), clock=clock, sleep=clock.sleep)
    assert "DEPLOY_FAILED" in reason and clock.now == 260.0  # an autoscaler may still add the node
