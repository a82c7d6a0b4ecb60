"""One campaign run: each step's actions expanded into commands (the matrix runner, the compile-cache
publish, the checkpoint / stage / shard tools), each in its own process, then the runs packed.

A failed command does not stop its step (a matrix with one failed run must not skip the publish and the
matrices after it), and a failed step does not stop the campaign. One wall-clock budget covers the whole
campaign: each matrix gets what is left of it as ``--time-budget-s``, and once it is spent no further step
starts (a second run resumes there).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coldstart import paths
from coldstart.lab.campaign.executor import Background, Executor, shown
from coldstart.lab.campaign.outdir import OutDir
from coldstart.lab.campaign.plan import (
    Action,
    Checkpoint,
    Evict,
    Matrix,
    Plan,
    PublishCompileCache,
    S3Server,
    Shard,
    StageSharded,
    Step,
)


@dataclass
class Campaign:
    """One run of a plan: its settings, and the commands each action becomes."""

    plan: Plan
    name: str  # the campaign name every row of it gets (campaign_names: date and hardware)
    executor: Executor
    out: OutDir
    repeats: int | None = None  # --repeats: every matrix without its own (None: the plan's)
    deadline_s: float | None = None  # on ``clock``; None: no budget
    store: str | None = None  # --store; None: the plan's
    python: str = sys.executable
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    stop_stale_ray: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    # ------------------------------------------------------------ where things are

    @property
    def store_uri(self) -> str | None:
        return self.store or self.plan.store

    @property
    def env(self) -> dict[str, str]:
        """What every command gets on top of this process's environment: the plan's variables and the store."""
        env = dict(self.plan.env)
        if self.store_uri:
            env["COLDSTART_STORE"] = self.store_uri
        return env

    @property
    def home(self) -> Path:
        return paths.coldstart_home({**self.environ, **self.plan.env})

    @property
    def lab(self) -> Path:
        """The lab the steps' matrices write their logs into (the plan may move it): what ``pack`` reads."""
        return paths.lab_dir({**self.environ, **self.plan.env})

    def checkpoint_dir(self, model: str) -> Path:
        """Where ``Checkpoint`` writes the model's synthetic checkpoint on this node (``Shard`` reads it)."""
        return self.home / "checkpoints" / model

    def local_store(self) -> Path | None:
        """The store's folder on this node; None for an S3 store (nothing of it on this disk)."""
        from coldstart.storage.store import parse_store_uri

        uri = self.store_uri or {**self.environ, **self.plan.env}.get("COLDSTART_STORE", "").strip()
        return parse_store_uri(uri).path if uri else self.home / "store"

    def engine_caches(self) -> Path:
        # Where service.py's engines write vLLM's compile cache (its VLLM_CACHE_ROOT, pinned under the home).
        pinned = paths.engine_cache_env({**self.environ, **self.plan.env})
        return Path(pinned["VLLM_CACHE_ROOT"]) / "torch_compile_cache"

    def time_left_s(self) -> int | None:
        return None if self.deadline_s is None else int(self.deadline_s) - int(self.clock())

    # ------------------------------------------------------------ commands of each action

    def coldstart(self, *args: str) -> list[str]:
        return [self.python, "-m", "coldstart", *args]

    def matrix_argv(self, m: Matrix) -> list[str]:
        repeats = m.repeats or self.repeats or self.plan.repeats
        argv = self.coldstart("matrix", "--results", str(self.out.results), "--repeats", str(repeats))
        if (left_s := self.time_left_s()) is not None:
            argv += ["--time-budget-s", str(max(left_s, 0))]  # what is left, read when the matrix starts
        argv += ["--node-state", m.node_state, "--campaign", self.name, "--models", *m.models]
        argv += ["--experiments", *m.experiments]
        if m.scenarios != ("single",):
            argv += ["--scenarios", *m.scenarios]
        if m.capture:
            argv.append("--capture")
        if m.cluster_worker_cpus is None:
            return argv + (["--", *m.service_args] if m.service_args else [])
        # The same matrix through a cluster on this machine; the tool puts the cluster's address in.
        cluster = self.coldstart("one-machine-cluster", "--model", m.models[0], "--experiment", m.experiments[0])
        cluster += ["--worker-cpus", str(m.cluster_worker_cpus), "--worker-gpus", str(m.cluster_worker_gpus)]
        service = [*m.service_args, "--ray-address", "{address}", "--proxy-location", "HeadOnly"]
        return [*cluster, "--", *argv, "--", *service]

    def publish_argv(self, p: PublishCompileCache) -> list[str]:
        return self.coldstart("serve", p.model, p.experiment, "--publish-compile-cache")

    def run_action(self, action: Action, env: dict[str, str], stops: list[Background]) -> list[str]:
        """Run one action; returns its failures (empty: it succeeded). ``env`` and ``stops`` belong to the step."""
        ex = self.executor
        if isinstance(action, Checkpoint):
            ckpt = self.checkpoint_dir(action.model)
            if rc := ex.run(self.coldstart("checkpoint", action.model, "--no-progress"), env=env, discard="stdout"):
                return [f"checkpoint {action.model} exited {rc}"]  # nothing to stage
            store = ["--store", action.store] if action.store else []
            link = ["--link"] if action.link else []
            rc = ex.run(self.coldstart("stage", "put", action.model, "--from", str(ckpt), *store, *link), env=env)
            return [f"stage put {action.model} exited {rc}"] if rc else []
        if isinstance(action, Matrix):
            rc = ex.run(self.matrix_argv(action), env=env)
            return [f"matrix {' '.join(action.models)} {' '.join(action.experiments)} exited {rc}"] if rc else []
        if isinstance(action, PublishCompileCache):
            return self._publish(action, env)
        if isinstance(action, Shard):
            ckpt = self.checkpoint_dir(action.model)
            out = ["--out", action.out, "--no-upload"] if action.out else []
            rc = ex.run(self.coldstart("shard", action.model, "--from", str(ckpt), *out, "--no-progress"), env=env)
            return [f"shard {action.model} exited {rc}"] if rc else []
        if isinstance(action, Evict):
            return self._evict(action, env)
        if isinstance(action, StageSharded):
            from coldstart.registry import get_model

            tp = str(get_model(action.model).tp_size)
            rc = ex.run(self.coldstart("stage", "put", action.model, "--tp", tp, "--from", action.source), env=env)
            if rc:
                return [f"stage put {action.model} --tp {tp} exited {rc}"]
            rc = ex.run(["rm", "-rf", action.source], env=env)
            return [f"rm {action.source} exited {rc}"] if rc else []
        return self._s3_server(action, env, stops)

    def _publish(self, action: PublishCompileCache, env: dict[str, str]) -> list[str]:
        ex = self.executor
        caches = self.engine_caches()
        show = self.coldstart("compile-cache", "show", "--model", action.model)
        if action.if_engine_caches and ex.dry_run:
            ex.say(f"  if [ -d {caches} ]; then")
            ex.run(self.publish_argv(action), env=env)
            ex.say("  else")
            ex.run(show, env=env)
            ex.say("  fi")
            return []
        if not action.if_engine_caches or caches.is_dir():
            rc = ex.run(self.publish_argv(action), env=env)
            return [f"publish {action.model} {action.experiment} exited {rc}"] if rc else []
        ex.say(f"publish {action.model} {action.experiment}: no engine caches on this node; the store holds:")
        rc = ex.run(show, env=env)
        return [f"compile-cache show --model {action.model} exited {rc}"] if rc else []

    def _evict(self, action: Evict, env: dict[str, str]) -> list[str]:
        ex = self.executor
        store = self.local_store()
        staged = [str(store / "models" / action.model)] if store is not None else []
        evict = ["rm", "-rf", str(self.checkpoint_dir(action.model)), *staged]
        if ex.dry_run:
            ex.say(f"  if [ -d {action.built} ]; then")
            ex.run(evict, env=env)
            ex.say("  fi")
            return []
        if not Path(action.built).is_dir():
            return [f"evict {action.model}: refused, no sharded build at {action.built} (the checkpoint stays)"]
        rc = ex.run(evict, env=env)
        return [f"evict {action.model} exited {rc}"] if rc else []

    def _s3_server(self, action: S3Server, env: dict[str, str], stops: list[Background]) -> list[str]:
        ex = self.executor
        env.update(action.env)  # for every later command of this step
        server = [self.python, "-m", "moto.server", "-H", action.host, "-p", str(action.port)]
        stops.append(ex.start(server, env=env, log_path=self.out.path / "moto.log"))
        probe = [self.python, "-c", "import boto3; boto3.client('s3').list_buckets()"]
        if ex.dry_run:
            ex.say(f"  (until this succeeds, at most 50 tries 0.3 s apart:) {shown(probe, env)} >/dev/null 2>&1")
        else:
            for _ in range(50):
                if ex.run(probe, env=env, discard="both") == 0:
                    break
                self.sleep(0.3)
        create = [self.python, "-c", f"import boto3; boto3.client('s3').create_bucket(Bucket={action.bucket!r})"]
        rc = ex.run(create, env=env)
        return [f"S3 server on {action.host}:{action.port} not up (bucket {action.bucket}: exit {rc})"] if rc else []

    # ------------------------------------------------------------ one step

    def cleanup_ray(self) -> None:
        """A campaign killed mid-step (a job's time limit) leaves Ray's daemons and its Serve app (port 8000)
        behind; service.py would refuse to start beside them. Only on a node that runs nothing else of Ray
        (``--stop-stale-ray``). Their statuses say only whether there was anything to stop: not failures."""
        # Ray's CLI by its entry point: the console script is not on every PATH (an unpacked bundle's is not).
        from coldstart.lab.ray_cluster import RAY_CLI

        self.executor.run([*RAY_CLI, "stop", "--force"], env={}, discard="both")
        # `ray stop` misses the actors whose raylet the kill took down first (their proxy kept port 8000).
        self.executor.run(["pkill", "-9", "-f", "^ray::"], env={}, discard="both")

    def run_step(self, step: Step) -> list[str]:
        """Every action of the step, then the archive; returns the failures."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        self.executor.say(
            f"== {when} campaign {self.name} step {step.name}" + (f": {step.about}" if step.about else "")
        )
        if self.stop_stale_ray:
            self.cleanup_ray()
        env = self.env
        stops: list[Background] = []
        failures: list[str] = []
        try:
            for action in step.actions:
                try:
                    failures += self.run_action(action, env, stops)
                except OSError as exc:  # e.g. the S3 server's log not writable: this action fails, not the step
                    failures.append(f"{action}: {exc}")
        finally:
            for background in stops:
                background.stop()
        failures += self.pack()
        for failure in failures:
            print(f"step {step.name}: {failure}", file=sys.stderr, flush=True)
        return failures

    def pack(self) -> list[str]:
        """The campaign's rows and logs so far into the archive; returns the failures."""
        if self.executor.dry_run:
            self.executor.say(f"  pack: {self.out.archive} <- the rows of campaign {self.name} and their logs")
            return []
        try:
            packed = self.out.pack(self.name, self.lab)
        except (OSError, ValueError) as exc:  # ValueError: a results row this code cannot read
            return [f"pack {self.out.archive}: {exc}"]
        self.executor.say(f"  packed {packed.rows} row(s), {len(packed.logs)} file(s) into {self.out.archive}")
        for log in packed.left_out:  # the row still goes; its import then warns that the log is missing
            self.executor.say(f"  warning: log {log} not packed (an absolute path, or no such file)")
        return []
