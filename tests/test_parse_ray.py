"""Ray Serve 2.57 / Ray LLM milestones (synthetic; wording from the 2.57.1 wheel)."""

from __future__ import annotations

import pytest

from coldstart.analysis.parse import parse_ray

SERVE = "(ServeController pid=777) INFO 2026-11-22 "
RAY_LOG = "\n".join(
    [
        SERVE + "18:49:59,001 controller 777 -- Deploying new version of "
        "Deployment(name='OpenAiIngress', app='default') (initial target replicas: 1).",
        SERVE + "18:49:59,002 controller 777 -- Deploying new version of "
        "Deployment(name='LLMServer:m', app='default') (initial target replicas: 0).",
        SERVE + "18:49:59,100 controller 777 -- Adding 1 replica to Deployment(name='OpenAiIngress', app='default').",
        SERVE + "18:50:00,500 controller 777 -- Upscaling Deployment(name='LLMServer:m', app='default') from 0 to 1 "
        "replicas. Current ongoing requests: 1.00, current running replicas: 0.",
        SERVE + "18:50:00,600 controller 777 -- Adding 1 replica to Deployment(name='LLMServer:m', app='default').",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:01,000 default_LLMServer:m x1y2 -- "
        "Running tasks to download model files on worker nodes",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:04,250 default_LLMServer:m x1y2 -- "
        "CloudDownloader: Files downloaded in 3.25 seconds",
        "(ServeReplica:default:LLMServer:m pid=90) INFO 2026-11-22 18:50:40,000 default_LLMServer:m x1y2 -- "
        "Started vLLM engine.",
        SERVE + "18:50:41,300 controller 777 -- Replica(id='x1y2', deployment='LLMServer:m', app='default') started "
        "successfully on node 'abc123' after 40.7s (PID: 90). Replica constructor, reconfigure method, and initial "
        "health check took 39.9s.",
        "INFO 2026-11-22 18:50:42,000 serve 55 -- Application 'default' is ready at http://127.0.0.1:8000/.",
    ]
)


def test_parse_ray_milestones_of_the_llm_deployment():
    r = parse_ray(RAY_LOG)
    assert r.year == 2026
    assert r.deploy_ts == (11, 22, 18, 49, pytest.approx(59.002))  # the LLMServer's, not the ingress's
    assert r.upscale_ts == (11, 22, 18, 50, pytest.approx(0.5))
    assert (r.upscale_from, r.upscale_to) == (0, 1)
    assert r.replica_add_ts == (11, 22, 18, 50, pytest.approx(0.6))
    assert r.replicas_added == 1
    assert r.download_tasks_ts == (11, 22, 18, 50, 1.0)
    assert r.cloud_download_s == pytest.approx(3.25)
    assert r.engine_started_ts == (11, 22, 18, 50, 40.0)
    assert r.replica_started_ts == (11, 22, 18, 50, pytest.approx(41.3))
    assert r.replica_startup_s == pytest.approx(40.7)
    assert r.replica_init_s == pytest.approx(39.9)
    assert r.app_ready_ts == (11, 22, 18, 50, 42.0)
    assert [e.deployment for e in r.events if e.kind == "add"] == ["OpenAiIngress", "LLMServer:m"]
