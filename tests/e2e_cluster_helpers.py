"""What the e2e tests ask of a one-machine Ray cluster, shared by the modules that start one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from coldstart.fastpath.node_setup import NodeSetup
from coldstart.lab.ray_cluster import OneMachineCluster

REPO = Path(__file__).resolve().parents[1]


def printed_node_setup(env: dict[str, str], model: str = "tiny", experiment: str = "fast") -> NodeSetup:
    """What the lab prints for the nodes of this (model, experiment), exactly as a user would take it."""
    service = ["service.py", model, experiment, "--device", "cpu", "--node-setup", "json"]
    out = subprocess.run([sys.executable, *service], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return NodeSetup.from_json(out.stdout)


def cluster_state(cluster: OneMachineCluster, env: dict[str, str]) -> dict:
    """{alive: live nodes, apps: Serve apps (none when Serve is not running), workers: nodes with task CPUs}."""
    script = (
        "import json, ray\n"
        "from coldstart.lab.serve import serve_running\n"
        f"ray.init(address={cluster.address!r}, log_to_driver=False, logging_level='ERROR')\n"
        "apps = []\n"
        "if serve_running():\n"
        "    from ray import serve\n"
        "    apps = sorted(serve.status().applications)\n"
        "nodes = [n for n in ray.nodes() if n['Alive']]\n"
        "print(json.dumps({'alive': len(nodes), 'apps': apps,\n"
        "    'workers': [n['NodeID'] for n in nodes if n['Resources'].get('CPU', 0) > 0]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
