"""A real multi-node Ray cluster on one machine, started the way a user starts one: `ray start`.

``OneMachineCluster`` runs the node setup's own command lines (``NodeSetup.head_argv`` / ``worker_argv``, in the
node setup's environment) as separate raylets, each with its own temp dir, so that the lab's cluster path can be
tried where only one machine is at hand: the CI box (a GPU-less head plus CPU worker nodes) or one GPU machine
(a head raylet without the GPU and a worker raylet with it). Each `ray start --block` leads a process group of
its own; stopping the cluster ends those groups and nothing else on the machine (never `ray stop`, which would
end every Ray of the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from coldstart.fastpath.node_setup import NodeSetup
from coldstart.lab import shm

# `ray` the console script may not be on PATH (an unpacked bundle): its entry point, run by this Python.
RAY_CLI = (sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")
# Set in each raylet's environment to its node's temp dir: every process the node starts inherits it (Ray workers,
# which rename themselves "ray::...", and what they fork, whose command lines name no temp dir), so a process the
# node left behind is found by it after its parent is gone.
NODE_ENV = "COLDSTART_ONE_MACHINE_NODE"


class ClusterStartError(RuntimeError):
    """A node did not come up; the message names it and the tail of its output."""


@dataclass(frozen=True)
class WorkerNode:
    num_cpus: int
    num_gpus: int = 0
    # Extra environment of this raylet only (e.g. CUDA_VISIBLE_DEVICES for the GPU it gets).
    env: Mapping[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Node:
    name: str
    proc: subprocess.Popen
    output: Path


class OneMachineCluster:
    """A head raylet with no CPU and no GPU for tasks, plus ``workers``, as `ray start` processes."""

    def __init__(
        self,
        setup: NodeSetup,
        workers: Sequence[WorkerNode],
        *,
        head_env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.setup = setup
        self.workers = list(workers)
        self.head_env = dict(head_env or {})
        # The environment every raylet starts from (the node setup's env and each node's own go on top).
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.start_timeout_s = start_timeout_s
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: a raylet's socket paths live under it and Unix sockets take at most 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self._nodes: list[_Node] = []
        # The segments in /dev/shm before any node ran: what a node's engines leave there when the node is killed
        # (on a real cluster that memory goes with the machine) is removed when the cluster stops.
        self._shm_before = shm.python_segments()

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> OneMachineCluster:
        try:
            self._start_node("head", self.setup.head_argv(port=self.port)[1:], self.head_env)
            self._wait_for_nodes(1)
            for i, spec in enumerate(self.workers):
                node_setup = dataclasses.replace(
                    self.setup, replica_node_cpus=spec.num_cpus, replica_gpus=spec.num_gpus
                )
                argv = node_setup.worker_argv(head_address=self.address)[1:]
                if spec.num_gpus == 0:
                    argv = [a for a in argv if not a.startswith("--num-gpus")] + ["--num-gpus=0"]
                self._start_node(f"worker{i}", argv, spec.env)
            self._wait_for_nodes(1 + len(self.workers))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_node(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        temp_dir = self.root / name
        temp_dir.mkdir()
        output = self.root / f"{name}.out"
        args = [
            *RAY_CLI,
            *argv,
            "--block",
            f"--temp-dir={temp_dir}",
            "--node-ip-address=127.0.0.1",
            # Every raylet of one machine needs its own agent ports (the defaults are fixed numbers).
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
        ]
        if name == "head":
            args.append("--include-dashboard=false")
        with output.open("wb") as out:
            proc = subprocess.Popen(
                args,
                env={**self.base_env, **self.setup.env, **env, NODE_ENV: str(temp_dir)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one, nothing else touched
            )
        self._nodes.append(_Node(name, proc, output))

    def _wait_for_nodes(self, count: int) -> None:
        from ray._raylet import GcsClient

        deadline = time.monotonic() + self.start_timeout_s
        client = None
        while time.monotonic() < deadline:
            for node in self._nodes:
                if node.proc.poll() is not None:
                    raise ClusterStartError(f"{node.name} exited ({node.proc.returncode}): {self._tail(node)}")
            try:
                # Connect first: a client made before the GCS listens blocks for half a minute.
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                client = client or GcsClient(address=self.address)
                alive = [n for n in client.get_all_node_info(timeout=5).values() if n.state == 0]
                if len(alive) >= count:
                    return
            except Exception:  # the GCS is still starting: look again
                client = None
            time.sleep(0.5)
        raise ClusterStartError(f"{count} node(s) not alive after {self.start_timeout_s:.0f} s: {self._tails()}")

    def _tail(self, node: _Node, size: int = 2000) -> str:
        return node.output.read_text(errors="replace")[-size:] if node.output.exists() else ""

    def _tails(self) -> str:
        return "; ".join(f"{n.name}: {self._tail(n, 600)}" for n in self._nodes)

    def kill_node(self, name: str) -> None:
        """End one node's raylet and everything it started, at once (a node lost mid-run)."""
        for node in self._nodes:
            if node.name == name:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=30)
                return
        raise KeyError(name)

    def stop(self, grace_s: float = 20.0) -> None:
        """Workers first, the head last; then whatever still runs of this cluster (``stray_pids``: a worker that
        left its group, what a killed node left), the shared-memory segments its processes left unused, and the
        temp dir itself."""
        for node in reversed(self._nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for node in reversed(self._nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        import psutil

        strays = []
        for pid in self.stray_pids():
            with contextlib.suppress(psutil.Error):
                strays.append(psutil.Process(pid))
                strays[-1].kill()
        psutil.wait_procs(strays, timeout=10)  # a segment is judged unused only once its users are gone
        shm.remove_unused(shm.python_segments() - self._shm_before)
        self._nodes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def stray_pids(self, node: str | None = None) -> list[int]:
        """Live processes of this cluster (of its node ``node`` only, when given): those whose command line names
        its temp dir, and those that inherited a node's mark (``NODE_ENV``) from its raylet."""
        import psutil

        root = self.root if node is None else self.root / node
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(root) in part for part in proc.info["cmdline"] or ()):
                    found.append(proc.info["pid"])
                    continue
                mark = proc.environ().get(NODE_ENV)
                if mark is not None and (mark == str(root) or mark.startswith(f"{root}/")):
                    found.append(proc.info["pid"])
        return found


# ---------------------------------------------------------------- the tool


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start a real Ray cluster on this machine from the node setup `coldstart serve MODEL EXPERIMENT` prints "
        "(a head raylet with no CPU or GPU for tasks, worker raylets with their own), run COMMAND with {address} "
        "replaced by the cluster's address, then stop the cluster."
    )
    parser.add_argument("--model", required=True, help="the model whose node setup the nodes get")
    parser.add_argument("--experiment", required=True, help="the experiment whose node setup the nodes get")
    parser.add_argument("--worker-cpus", type=int, default=8, help="logical CPUs of each worker raylet")
    parser.add_argument("--worker-gpus", type=int, default=0, help="GPUs of each worker raylet")
    parser.add_argument("--workers", type=int, default=1, help="how many worker raylets")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    # The last argument: everything after `--` is the command, its own options included.
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command to run ({address})")


def main(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("error: give the command to run after --", file=sys.stderr)
        return 2
    if args.workers < 1 or args.worker_cpus < 1 or args.worker_gpus < 0:
        print("error: --workers and --worker-cpus must be at least 1, --worker-gpus at least 0", file=sys.stderr)
        return 2
    serve = ["serve", args.model, args.experiment, "--device", args.device, "--node-setup", "json"]
    printed = subprocess.run(
        [sys.executable, "-m", "coldstart", *serve],
        capture_output=True,
        text=True,
        check=False,
    )
    if printed.returncode != 0 or not printed.stdout.strip().startswith("{"):
        print(f"error: no node setup for {args.model} {args.experiment}: {printed.stderr[-2000:]}", file=sys.stderr)
        return printed.returncode or 2
    setup = NodeSetup.from_json(printed.stdout)
    workers = [WorkerNode(num_cpus=args.worker_cpus, num_gpus=args.worker_gpus) for _ in range(args.workers)]
    try:
        with OneMachineCluster(setup, workers) as cluster:
            print(f"one-machine cluster at {cluster.address}: head + {args.workers} worker(s)", flush=True)
            return subprocess.run(
                [part.replace("{address}", cluster.address) for part in command], check=False
            ).returncode
    except ClusterStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
