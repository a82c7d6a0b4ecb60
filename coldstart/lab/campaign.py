"""The GPU campaign plan as data: ``python -m coldstart campaign STEP...`` on the lent machine.

Each step of ``STEPS`` is a tuple of frozen actions (write a checkpoint, run a matrix, publish a compile cache,
serve S3 locally, shard). The campaign expands them into the same commands scripts/gpu/campaign.sh ran (the
matrix runner, ``service.py --publish-compile-cache``, the checkpoint / stage / shard tools), each in its own
process so a crash in one ends only that command. One deadline covers the whole call: each matrix gets what is
left of it as ``--time-budget-s``. After every step the lease's rows and logs are re-packed into
``$OUT/runs.tgz`` (the layout ``import-runs`` reads) and each compile-cache entry home lacks (all but those
carried in unchanged) into its own ``$OUT/cc-<model>-<key>.tgz`` (one archive comes back only under 16 MiB, and
three 8B entries are 22 MB), so a call its limit cuts short still brings home the steps it finished.

The exit status is non-zero when any command of any step failed (the bash version lost it); as in bash, a
failed command does not stop its step (a matrix with one failed run must not skip the publish and the
matrices after it), and a failed step does not stop the call.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from coldstart import paths
from coldstart.analysis.results import DEFAULT_RESULTS
from coldstart.compile_cache.archive import CacheManifest
from coldstart.compile_cache.common import MANIFEST_NAME, ManifestError
from coldstart.lab.import_runs import ARCHIVE_LOGS, ARCHIVE_RESULTS
from coldstart.lab.matrix.plan import NODE_STATES

# The lease's results file: each call brings a fresh copy of the tree, results file included, so the matrix
# appends to a file of this lease (seeded from the tree's once) and resumes where the last call stopped.
LEASE_RESULTS = Path("/tmp/coldstart-lease-results.jsonl")
# The logs of this lease's earlier calls: each call's archive then holds every row's log (session 5's later
# archives lacked the earlier calls' logs, which came fresh with the tree).
LEASE_LOGS = Path("/tmp/coldstart-lease-logs")
# Compile caches published on an earlier lease of this GPU kind (their key holds the GPU name and versions):
# the archives ``archive`` wrote, carried in this folder and unpacked into the lease's store by every call that
# carries them (with the tree and the last bundle part they may not fit in one call: carry them in their own).
CARRIED_CACHES = Path(".gpu/cc-store")
# The compile-cache entries home already has (carried in by this lease's first call, as "<entry> <manifest
# sha256>" lines): calls send back only entries that are new or changed. A call returns at most 8 files (lease
# s10: seven carried entries, the call's log and runs.tgz made nine, and runs.tgz stayed behind).
LEASE_HOME_CACHES = Path("/tmp/coldstart-lease-home-caches.txt")
DEFAULT_CALL_BUDGET_S = 560
MOTO_LOG = Path("/tmp/moto.log")


# ---------------------------------------------------------------- the actions a step is made of


@dataclass(frozen=True)
class Checkpoint:
    """Write the model's synthetic checkpoint (it skips when already there) and stage it into a store
    (``store`` None: the lab's default store)."""

    model: str
    store: str | None = None
    # Stage by hard links (`stage put --link`): one copy on disk, for a checkpoint near the disk's size (the 70B's
    # 141 GB on the x4 machine's 235 GiB).
    link: bool = False


@dataclass(frozen=True)
class Matrix:
    """One matrix runner call. ``repeats`` None: the call's ``--repeats``; a miss run that exists to capture a
    cache says 1 whatever the call asks."""

    models: tuple[str, ...]
    experiments: tuple[str, ...]
    campaign_suffix: str = ""  # appended to "<GPU><-tag>"
    node_state: str = "cold"
    repeats: int | None = None
    service_args: tuple[str, ...] = ()  # after `--`: passed to every service.py
    scenarios: tuple[str, ...] = ("single",)  # registry.SCENARIOS: each experiment runs under each
    capture: bool = False  # the runs fill a compile cache: done once ok, their miss being the point (--capture)


@dataclass(frozen=True)
class Publish:
    """Publish the compile cache the last run left. ``if_engine_caches``: only when the node has engine caches
    (a fresh lease whose store came carried has none, and its store already has the entry; then show it)."""

    model: str
    experiment: str
    if_engine_caches: bool = True


@dataclass(frozen=True)
class Shard:
    """vLLM sharded state of the model's checkpoint for its TP size, staged into the store; with ``out``, built
    there and kept, not staged (``StageSharded`` stages it once ``Evict`` made room)."""

    model: str
    out: str | None = None


@dataclass(frozen=True)
class Evict:
    """Remove the model's checkpoint and its staged (unsharded) folder from this node: the disk the sharded
    copy needs. Only once ``built`` exists (``shard`` renames a finished build into place): a failed shard
    keeps the checkpoint. The experiments that read the unsharded folder need ``Checkpoint`` again after this."""

    model: str
    built: str


@dataclass(frozen=True)
class StageSharded:
    """Stage the sharded folder ``Shard(out=...)`` built (a copy into the store), then remove the built one."""

    model: str
    source: str


@dataclass(frozen=True)
class S3Server:
    """A local S3 (moto) with one bucket, up for the rest of the step; the step's later commands get its
    endpoint and test credentials."""

    bucket: str = "lab"
    host: str = "127.0.0.1"
    port: int = 5555

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": f"http://{self.host}:{self.port}",
        }


Action = Checkpoint | Matrix | Publish | Shard | Evict | StageSharded | S3Server


def _warm(
    models: tuple[str, ...],
    experiments: tuple[str, ...],
    suffix: str,
    repeats: int | None = None,
    scenarios: tuple[str, ...] = ("single",),
) -> Matrix:
    return Matrix(models, experiments, suffix, node_state="warm", repeats=repeats, scenarios=scenarios)


def _capture(models: tuple[str, ...], experiments: tuple[str, ...], suffix: str) -> Matrix:
    """One warm miss run that exists to capture a cache (a publish follows): one, whatever --repeats says."""
    return Matrix(models, experiments, suffix, node_state="warm", repeats=1, capture=True)


def _fast_captured(model: str, suffix: str) -> tuple[Action, ...]:
    """The fast path where its cache is not yet in the store: one capture (miss) run of ``cc_trims``, whose
    key is fast's (same capture sizes and KV size), its publish, then fast's measured runs."""
    return (
        _capture((model,), ("cc_trims",), f"{suffix}-miss"),
        Publish(model, "cc_trims"),
        _warm((model,), ("fast",), suffix),
    )


_8B = ("llama-3-8b",)
_TINY = ("tiny",)
_TP2 = ("llama-3-8b-tp2",)
_70B = ("llama-3-70b",)
_TINY_MOE_FP8 = ("tiny-moe-fp8",)
_235B_FP8 = ("qwen-3-235b-fp8",)
_TINY_MOE = ("tiny-moe",)
# The 70B's sharded state is built in RAM: on the x4 machine's 235 GiB disk the checkpoint (141 GB, staged by
# hard links) and a second 141 GB copy do not fit together. Evict frees the disk before the copy is staged.
_70B_SHARDED_BUILD = "/dev/shm/coldstart-sharded/llama-3-70b-tp4"

# Every step of scripts/gpu/campaign.sh before it moved here, with the same campaign names, node states and
# miss runs. Each fits one 10-minute call; the machine keeps /tmp between back-to-back calls.
STEPS: Mapping[str, tuple[Action, ...]] = MappingProxyType(
    {
        "tiny-lease": (
            # The small model's round, as llama8b-lease (baseline compiles and publishes for the cache experiments).
            Checkpoint("tiny"),
            Matrix(_TINY, ("baseline",)),
            Publish("tiny", "compile_cache"),
            Matrix(_TINY, ("runai_streamer", "compile_cache", "all")),
        ),
        "tiny-cache": (
            # The small model's cache experiments alone, against a cache carried from an earlier lease.
            Checkpoint("tiny"),
            Matrix(_TINY, ("all", "compile_cache")),
        ),
        "tiny-s3": (
            S3Server(),
            Checkpoint("tiny", store="s3://lab/coldstart"),
            Matrix(_TINY, ("runai_streamer",), "-s3", service_args=("--store", "s3://lab/coldstart")),
        ),
        "tiny-cc": (
            Checkpoint("tiny"),
            Matrix(_TINY, ("compile_cache",), "-cc-miss", capture=True),
            Publish("tiny", "compile_cache", if_engine_caches=False),
            Matrix(_TINY, ("compile_cache",), "-cc-hit"),
        ),
        # A cache captured under another config (max_model_len differs) must fall back with MISMATCH.
        "tiny-cc-mismatch": (
            Matrix(_TINY, ("compile_cache",), "-cc-mismatch", service_args=("--max-model-len", "256")),
        ),
        "tiny-mega-miss": (
            # vLLM's whole-model mega AOT artifact: its cache has its own key, so a miss run captures it first.
            Checkpoint("tiny"),
            Matrix(_TINY, ("compile_cache_mega",), "-mega-miss", capture=True),
            Publish("tiny", "compile_cache_mega", if_engine_caches=False),
        ),
        "tiny-mega-hit": (Matrix(_TINY, ("compile_cache_mega",), "-mega-hit"),),
        "llama8b-lease": (
            # One round (--repeats n: round n-1) of the 8B matrix on this lease, resumable across its calls:
            # baseline first (it compiles; its cache is published for the cache experiments), then the others.
            Checkpoint("llama-3-8b"),
            Matrix(_8B, ("baseline",)),
            Publish("llama-3-8b", "compile_cache"),
            Matrix(_8B, ("runai_streamer", "compile_cache", "all")),
        ),
        "llama8b-baseline": (
            Checkpoint("llama-3-8b"),
            Matrix(_8B, ("baseline",)),
            Publish("llama-3-8b", "compile_cache", if_engine_caches=False),
        ),
        "llama8b-rest": (Matrix(_8B, ("runai_streamer", "compile_cache", "all")),),
        "llama8b-hit": (Matrix(_8B, ("compile_cache", "all")),),
        "llama8b-runai": (Matrix(_8B, ("runai_streamer", "baseline")),),
        # The tp2 steps need two GPUs.
        "tp2-shard": (Checkpoint("llama-3-8b-tp2"), Shard("llama-3-8b-tp2")),
        "tp2-sharded": (Matrix(_TP2, ("runai_streamer_sharded",), "-x2"),),
        "tp2-rest": (
            Checkpoint("llama-3-8b-tp2"),  # ~10 s when tp2-shard already wrote and staged it on this lease
            Matrix(_TP2, ("baseline", "runai_streamer"), "-x2"),
        ),
        # The fast path (warm node unless named).
        "fast-tiny": (
            # The fast path's cache key holds its capture sizes and KV size: a miss run of its config captures it.
            Checkpoint("tiny"),
            *_fast_captured("tiny", "-warm"),
        ),
        "fast-8b-prep": (
            # One miss run whatever --repeats says: it exists to capture the cache.
            Checkpoint("llama-3-8b"),
            _capture(_8B, ("cc_trims",), "-warm-miss"),
            Publish("llama-3-8b", "cc_trims"),
        ),
        "fast-8b": (_warm(_8B, ("fast",), "-warm"),),
        "fast-8b-cold": (Matrix(_8B, ("fast",), "-cold", repeats=1),),
        "fast-8b-mega": (
            # fast + the whole-model AOT artifact: its own cache key, so one miss run captures it, then the hits.
            Checkpoint("llama-3-8b"),
            _capture(_8B, ("fast_mega",), "-warm-miss"),
            Publish("llama-3-8b", "fast_mega"),
            _warm(_8B, ("fast_mega",), "-warm"),
        ),
        "baseline-8b": (
            # One stock run on this lease: the bottom rung, and the greedy answer the fast rungs are checked against.
            Checkpoint("llama-3-8b"),
            _warm(_8B, ("baseline",), "-warm", repeats=1),
        ),
        "ladder-8b": (
            # The rungs below fast, on a warm node: baseline compiles and publishes the stock config's cache
            # (compile_cache .. cc_prestart share its key; cc_trims shares fast's).
            Checkpoint("llama-3-8b"),
            _warm(_8B, ("baseline",), "-warm"),
            Publish("llama-3-8b", "compile_cache"),
            _warm(_8B, ("compile_cache",), "-warm"),
        ),
        "ladder-8b-rest": (
            Checkpoint("llama-3-8b"),  # ~10 s when ladder-8b wrote it on this machine; a fresh one needs it
            _warm(_8B, ("cc_skip_init", "cc_in_replica", "cc_prestart", "cc_trims"), "-warm"),
        ),
        # The in-replica engine's torch.compile hash differs from the stock one (lease s7: 88e0df72a5 vs
        # 65764a428e): vLLM's Ray executor gives its GPU workers RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1,
        # which vLLM hashes (now in the lab's key too). Its rungs need a capture of their own.
        "ladder-8b-inrep": (
            Checkpoint("llama-3-8b"),
            _capture(_8B, ("cc_in_replica",), "-warm-miss"),
            Publish("llama-3-8b", "cc_in_replica"),
            _warm(_8B, ("cc_in_replica", "cc_prestart"), "-warm"),
        ),
        # Scenarios (#18) in one deployment each: `tour` = burst of 8 at zero, requests after ready, back from
        # zero; `sleep_wake` = the woken-replica warm reference. fast needs fast's cache (carried or fast-8b-prep),
        # compile_cache the stock config's (ladder-8b).
        "scenarios-8b-fast": (
            Checkpoint("llama-3-8b"),
            _warm(_8B, ("fast",), "-warm", scenarios=("tour", "sleep_wake")),
        ),
        "scenarios-8b-cc": (_warm(_8B, ("compile_cache",), "-warm", scenarios=("tour",)),),
        # Two GPUs (#18): both replicas from zero at once, against one starting alone (scenarios-8b-fast's
        # bursts). Serve's default scaling (burst_replicas) starts one and the second once the first runs: lease
        # s9 measured it twice, and the step runs it again only when named (scenarios-8b-x2-default).
        "scenarios-8b-x2": (
            Checkpoint("llama-3-8b"),
            _warm(_8B, ("fast",), "-x2", scenarios=("burst_replicas_together",)),
        ),
        "scenarios-8b-x2-default": (
            Checkpoint("llama-3-8b"),
            _warm(_8B, ("fast",), "-x2", scenarios=("burst_replicas",)),
        ),
        # The fast path above TP1 (#19 on two GPUs): EngineCore runs vLLM's mp executor, its two workers forked
        # beside it; its capture sizes and KV size key a cache of its own, so one miss run captures it.
        "fast-tp2": (
            Checkpoint("llama-3-8b-tp2"),
            *_fast_captured("llama-3-8b-tp2", "-x2"),
        ),
        # llama-3-70b at TP4 on four H200s (#19; plan: README "llama-3-70b on four H200s"). Warm node: the
        # machine's RAM (512 GiB) holds the checkpoint's pages. 70b-shard evicts the unsharded copy: run it last.
        "70b-prep": (Checkpoint("llama-3-70b", link=True),),
        "70b-baseline": (
            Checkpoint("llama-3-70b", link=True),  # a no-op when 70b-prep wrote it on this lease
            _warm(_70B, ("baseline",), "-x4"),
            Publish("llama-3-70b", "compile_cache"),
        ),
        "70b-rest": (_warm(_70B, ("runai_streamer", "compile_cache"), "-x4"),),
        "70b-fast": _fast_captured("llama-3-70b", "-x4"),
        "70b-shard": (
            Checkpoint("llama-3-70b", link=True),
            Shard("llama-3-70b", out=_70B_SHARDED_BUILD),
            Evict("llama-3-70b", built=_70B_SHARDED_BUILD),
            StageSharded("llama-3-70b", _70B_SHARDED_BUILD),
        ),
        "70b-sharded": (_warm(_70B, ("runai_streamer_sharded", "all"), "-x4"),),
        # The 235B's architecture family at tiny's size through every experiment on one GPU (#20, while eight
        # are not lent): baseline, fast with its own cache captured by its miss run, then the middle rungs.
        "moe-tiny": (
            Checkpoint("tiny-moe"),
            _warm(_TINY_MOE, ("baseline",), "-warm"),
            Publish("tiny-moe", "compile_cache"),
            # fast before the middle rungs: a call cut short by its budget still has both ends of the ladder
            *_fast_captured("tiny-moe", "-warm"),
            _warm(_TINY_MOE, ("runai_streamer", "compile_cache", "all"), "-warm"),
        ),
        # The FP8 layout the 235B needs on eight H200s (block-wise e4m3 + float32 scales), proven at tiny-moe's
        # size on one GPU first: the stock rung and the fast path. `fast` needs its own capture (its key).
        "moe-tiny-fp8": (
            Checkpoint("tiny-moe-fp8"),
            _warm(_TINY_MOE_FP8, ("baseline",), "-warm"),
            *_fast_captured("tiny-moe-fp8", "-warm"),
        ),
        # qwen-3-235b-fp8 on eight H200s (#20; plan: README "The big models"). Run with
        # COLDSTART_HOME=/dev/shm/coldstart-home: the ~236 GB checkpoint and its store are one linked copy in RAM.
        # A stock baseline may outlast a 10-minute command (the ancestor's bf16 one took ~1016 s): fast first.
        "235b-prep": (Checkpoint("qwen-3-235b-fp8", link=True),),
        "235b-fast": (
            Checkpoint("qwen-3-235b-fp8", link=True),  # a no-op when 235b-prep wrote it on this lease
            *_fast_captured("qwen-3-235b-fp8", "-x8"),
        ),
        "235b-stock": (
            _warm(_235B_FP8, ("baseline",), "-x8"),
            Publish("qwen-3-235b-fp8", "compile_cache"),
            _warm(_235B_FP8, ("compile_cache",), "-x8"),
        ),
        "scenarios-tiny": (
            Checkpoint("tiny"),
            _warm(_TINY, ("fast",), "-warm", scenarios=("tour", "sleep_wake")),
        ),
    }
)


def step_problems(steps: Mapping[str, Sequence[Action]] = STEPS) -> list[str]:
    """What in ``steps`` would fail on the GPU machine: unknown models or experiments, pairs the matrix would
    silently skip, node states the runner refuses. Empty: every step is valid."""
    from coldstart.registry import EXPERIMENTS, MODELS, SCENARIOS, InvalidPairError, resolve

    problems = []
    for name, actions in steps.items():
        for action in actions:
            models = getattr(action, "models", None) or ((action.model,) if hasattr(action, "model") else ())
            for m in models:
                if m not in MODELS:
                    problems.append(f"{name}: unknown model {m!r}")
            experiments = getattr(action, "experiments", ()) or (
                (action.experiment,) if isinstance(action, Publish) else ()
            )
            for e in experiments:
                if e not in EXPERIMENTS:
                    problems.append(f"{name}: unknown experiment {e!r}")
                    continue
                for m in models:
                    if m in MODELS:
                        try:
                            resolve(m, e)
                        except InvalidPairError as exc:
                            problems.append(f"{name}: {m} {e}: {exc}")
            if isinstance(action, Matrix):
                problems += [f"{name}: unknown scenario {s!r}" for s in action.scenarios if s not in SCENARIOS]
                if action.node_state not in NODE_STATES:
                    problems.append(f"{name}: node state {action.node_state!r} not in {NODE_STATES}")
                if action.repeats is not None and action.repeats < 1:
                    problems.append(f"{name}: repeats {action.repeats} < 1")
    return problems


# ---------------------------------------------------------------- how commands run


class Background(Protocol):
    def stop(self) -> None: ...


class Executor(Protocol):
    """Where commands go: subprocesses on the GPU machine, a recorder in the tests, a printer for --dry-run."""

    dry_run: bool

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        """Run to completion and return the exit status; ``discard``: "stdout", "both" or "" (nothing)."""
        ...

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background: ...

    def say(self, line: str) -> None: ...


class _Process:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self) -> None:
        # `kill $MOTO` in the bash version: SIGTERM, then wait so no zombie outlives the step.
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SubprocessExecutor:
    dry_run = False

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        sys.stdout.flush()  # our lines before the child's, in one captured output
        out = subprocess.DEVNULL if discard in ("stdout", "both") else None
        err = subprocess.DEVNULL if discard == "both" else None
        try:
            return subprocess.run(list(argv), env={**os.environ, **env}, stdout=out, stderr=err, check=False).returncode
        except OSError as exc:  # a missing program is that command's failure, not the campaign's end
            print(f"error: cannot run {shlex.join(argv)}: {exc}", file=sys.stderr, flush=True)
            return 127

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background:
        with open(log_path, "wb") as log:
            return _Process(subprocess.Popen(list(argv), env={**os.environ, **env}, stdout=log, stderr=log))

    def say(self, line: str) -> None:
        print(line, flush=True)


class DryRunExecutor:
    """Prints every command it is given, runs none (each 'succeeds', so the whole plan is shown)."""

    dry_run = True

    def __init__(self, write: Callable[[str], None] = print):
        self.write = write

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        redirect = {"": "", "stdout": " >/dev/null", "both": " >/dev/null 2>&1"}[discard]
        self.write("  " + _shown(argv, env) + redirect)
        return 0

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Background:
        self.write(f"  {_shown(argv, env)} >{log_path} 2>&1 &")
        return _NoProcess()

    def say(self, line: str) -> None:
        self.write(line)


class _NoProcess:
    def stop(self) -> None:
        pass


def _shown(argv: Sequence[str], env: Mapping[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (prefix + " " if prefix else "") + shlex.join(argv)


# ---------------------------------------------------------------- one call


@dataclass
class Campaign:
    """One call's settings and state; ``run_step`` expands a step's actions into commands."""

    gpu: str  # spaces already dashes
    executor: Executor
    results: Path
    out: Path
    repeats: int
    deadline_s: float  # on ``clock``
    tag: str | None = None
    python: str = sys.executable
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    ray_cleanup: bool = True
    home: Path = field(default_factory=paths.coldstart_home)

    @property
    def campaign_prefix(self) -> str:
        return self.gpu + (f"-{self.tag}" if self.tag else "")

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    def checkpoint_dir(self, model: str) -> Path:
        """Where ``Checkpoint`` writes the model's synthetic checkpoint on this node (``Shard`` reads it)."""
        return self.home / "checkpoints" / model

    def engine_caches(self) -> Path:
        # Where service.py's engines write vLLM's compile cache (its VLLM_CACHE_ROOT, pinned under the home).
        return Path(paths.engine_cache_env()["VLLM_CACHE_ROOT"]) / "torch_compile_cache"

    def time_left_s(self) -> int:
        # Whole seconds of the wall clock, as bash's `$(( deadline - $(date +%s) ))` counted them.
        return int(self.deadline_s) - int(self.clock())

    # ------------------------------------------------------------ commands of each action

    def coldstart(self, *args: str) -> list[str]:
        return [self.python, "-m", "coldstart", *args]

    def matrix_argv(self, m: Matrix) -> list[str]:
        argv = self.coldstart(
            "matrix",
            "--results",
            str(self.results),
            "--repeats",
            str(self.repeats if m.repeats is None else m.repeats),
            "--time-budget-s",
            str(self.time_left_s()),  # what is left of the call's one deadline, read when the matrix starts
            "--node-state",
            m.node_state,
            "--campaign",
            self.campaign_prefix + m.campaign_suffix,
            "--models",
            *m.models,
            "--experiments",
            *m.experiments,
        )
        if m.scenarios != ("single",):  # the matrix's default: the commands of the steps before scenarios stay
            argv += ["--scenarios", *m.scenarios]
        if m.capture:
            argv.append("--capture")
        return argv + (["--", *m.service_args] if m.service_args else [])

    def unpack_argv(self, archive: Path) -> list[str]:
        """A carried compile cache into the store; an entry the store already has is kept (it may be newer)."""
        return ["tar", "xzf", str(archive), "--skip-old-files", "-C", str(self.store_dir)]

    def publish_argv(self, p: Publish) -> list[str]:
        return [self.python, "service.py", p.model, p.experiment, "--publish-compile-cache"]

    def run_action(self, action: Action, env: dict[str, str], stops: list[Background]) -> list[str]:
        """Run one action; returns its failures (empty: it succeeded). ``env`` and ``stops`` belong to the step."""
        ex = self.executor
        if isinstance(action, Checkpoint):
            ckpt = self.checkpoint_dir(action.model)
            if rc := ex.run(self.coldstart("checkpoint", action.model, "--no-progress"), env=env, discard="stdout"):
                # `checkpoint && stage put`: nothing to stage when the checkpoint was not written.
                return [f"checkpoint {action.model} exited {rc}"]
            store = ["--store", action.store] if action.store else []
            link = ["--link"] if action.link else []
            rc = ex.run(self.coldstart("stage", "put", action.model, "--from", str(ckpt), *store, *link), env=env)
            return [f"stage put {action.model} exited {rc}"] if rc else []
        if isinstance(action, Matrix):
            rc = ex.run(self.matrix_argv(action), env=env)
            return [f"matrix {' '.join(action.models)} {' '.join(action.experiments)} exited {rc}"] if rc else []
        if isinstance(action, Publish):
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
            ex.say(
                f"publish {action.model} {action.experiment}: no engine caches on this node yet (a fresh lease); "
                "the store holds:"
            )
            rc = ex.run(show, env=env)
            return [f"compile-cache show --model {action.model} exited {rc}"] if rc else []
        if isinstance(action, Shard):
            ckpt = self.checkpoint_dir(action.model)
            out = ["--out", action.out, "--no-upload"] if action.out else []
            rc = ex.run(self.coldstart("shard", action.model, "--from", str(ckpt), *out, "--no-progress"), env=env)
            return [f"shard {action.model} exited {rc}"] if rc else []
        if isinstance(action, Evict):
            evict = [
                "rm",
                "-rf",
                str(self.checkpoint_dir(action.model)),
                str(self.store_dir / "models" / action.model),
            ]
            if ex.dry_run:
                ex.say(f"  if [ -d {action.built} ]; then")
                ex.run(evict, env=env)
                ex.say("  fi")
                return []
            if not Path(action.built).is_dir():
                return [f"evict {action.model}: refused, no sharded build at {action.built} (the checkpoint stays)"]
            rc = ex.run(evict, env=env)
            return [f"evict {action.model} exited {rc}"] if rc else []
        if isinstance(action, StageSharded):
            from coldstart.registry import get_model

            tp = str(get_model(action.model).tp_size)
            rc = ex.run(self.coldstart("stage", "put", action.model, "--tp", tp, "--from", action.source), env=env)
            if rc:
                return [f"stage put {action.model} --tp {tp} exited {rc}"]
            rc = ex.run(["rm", "-rf", action.source], env=env)
            return [f"rm {action.source} exited {rc}"] if rc else []
        if isinstance(action, S3Server):
            env.update(action.env)  # for every later command of this step, as bash's exports
            stops.append(
                ex.start(
                    [self.python, "-m", "moto.server", "-H", action.host, "-p", str(action.port)],
                    env=env,
                    log_path=MOTO_LOG,
                )
            )
            probe = [self.python, "-c", "import boto3; boto3.client('s3').list_buckets()"]
            if ex.dry_run:
                ex.say(f"  (until this succeeds, at most 50 tries 0.3 s apart:) {_shown(probe, env)} >/dev/null 2>&1")
            else:
                for _ in range(50):
                    if ex.run(probe, env=env, discard="both") == 0:
                        break
                    self.sleep(0.3)
            create = [self.python, "-c", f"import boto3; boto3.client('s3').create_bucket(Bucket={action.bucket!r})"]
            rc = ex.run(create, env=env)
            return (
                [f"S3 server on {action.host}:{action.port} not up (bucket {action.bucket}: exit {rc})"] if rc else []
            )
        raise TypeError(f"unknown action {action!r}")

    def cleanup_ray(self) -> None:
        """A step cut short by the call's time limit leaves Ray's daemons and its Serve app (port 8000) behind;
        service.py would refuse to start beside them. This machine runs nothing else of Ray. Their statuses say
        only whether there was anything to stop, so they are not failures."""
        self.executor.run(["ray", "stop", "--force"], env={}, discard="both")
        # `ray stop` misses the actors of a session whose raylet the call's kill took down first (the old proxy
        # kept port 8000 and every later service.py exited at once).
        self.executor.run(["pkill", "-9", "-f", "^ray::"], env={}, discard="both")

    def run_step(self, name: str) -> list[str]:
        """Every action of the step, then the archive; returns the failures."""
        self.executor.say(f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} step {name} on {self.gpu}")
        if self.ray_cleanup:
            self.cleanup_ray()
        env: dict[str, str] = {}
        stops: list[Background] = []
        failures: list[str] = []
        try:
            for action in STEPS[name]:
                try:
                    failures += self.run_action(action, env, stops)
                except OSError as exc:  # e.g. the S3 server's log not writable: this action fails, not the call
                    failures.append(f"{action}: {exc}")
        finally:
            for background in stops:
                background.stop()
        try:
            self.archive()
        except OSError as exc:
            failures.append(f"archive: {exc}")
        for failure in failures:
            print(f"step {name}: {failure}", file=sys.stderr, flush=True)
        return failures

    # ------------------------------------------------------------ the lease's files

    def prepare(self) -> list[str]:
        """Seed the lease's results file, bring back its earlier calls' logs, unpack a carried store. Returns
        the failures: as in bash, the steps still run after one (a store that did not unpack costs cache hits,
        not the call)."""
        if self.executor.dry_run:
            say = self.executor.say
            say(f"setup: [ -f {self.results} ] || cp {DEFAULT_RESULTS} {self.results}")
            say(f"setup: [ -d {LEASE_LOGS} ] && cp -rn {LEASE_LOGS}/. {ARCHIVE_LOGS}/")
            if carried := carried_caches():
                say(f"setup: unpack {len(carried)} carried cache(s) into {self.store_dir} (entries there stay):")
                for archive in carried:
                    self.executor.run(self.unpack_argv(archive), env={})
                self.executor.run(self.coldstart("compile-cache", "show"), env={})
            return []
        self.out.mkdir(parents=True, exist_ok=True)
        Path(ARCHIVE_RESULTS).parent.mkdir(parents=True, exist_ok=True)
        if not self.results.exists():
            shutil.copyfile(DEFAULT_RESULTS, self.results)
        if LEASE_LOGS.is_dir():
            copy_missing(LEASE_LOGS, Path(ARCHIVE_LOGS))
        # Every call, not only into an empty store: a machine given back and lent again has a store of this lease
        # (lease s7 lost fast's cache that way), and the carried entries it lacks must still arrive.
        if carried := carried_caches():
            self.store_dir.mkdir(parents=True, exist_ok=True)
            failures = [
                f"cannot unpack {archive} into {self.store_dir} (tar exited {rc})"
                for archive in carried
                if (rc := self.executor.run(self.unpack_argv(archive), env={}))
            ]
            self.executor.run(self.coldstart("compile-cache", "show"), env={})
            remember_home_caches(carried, LEASE_HOME_CACHES)
            return failures
        return []

    def archive(self) -> None:
        """The lease so far into ``out``: ``runs.tgz`` (``results/`` with the lease's rows as results.jsonl, and
        every log) and one ``cc-<model>-<key>.tgz`` per compile-cache entry of the store that home lacks, for the
        next lease to carry in ``CARRIED_CACHES``."""
        runs = self.out / "runs.tgz"
        if self.executor.dry_run:
            self.executor.say(
                f"  archive: cp {self.results} {ARCHIVE_RESULTS}; cp -r {ARCHIVE_LOGS}/. {LEASE_LOGS}/; "
                f"tar czf {runs} results {ARCHIVE_LOGS}; for each {self.store_dir}/compile-cache/<model>/<key>/: "
                f"tar czf {self.out}/cc-<model>-<key>.tgz (its manifest and the archive it names) unless it was "
                "carried in unchanged"
            )
            return
        shutil.copyfile(self.results, ARCHIVE_RESULTS)
        LEASE_LOGS.mkdir(parents=True, exist_ok=True)
        if Path(ARCHIVE_LOGS).is_dir():
            shutil.copytree(ARCHIVE_LOGS, LEASE_LOGS, dirs_exist_ok=True)
        write_tgz(runs, [(Path("results"), "results"), (Path(ARCHIVE_LOGS), ARCHIVE_LOGS)])
        home = home_caches(LEASE_HOME_CACHES)
        for entry in sorted((self.store_dir / "compile-cache").glob("*/*/")):
            if entry_id(entry, self.store_dir) in home:
                continue  # carried in unchanged: home has it
            name = f"cc-{entry.parent.name}-{entry.name}.tgz"
            write_tgz(self.out / name, entry_members(entry, self.store_dir))


def carried_caches() -> list[Path]:
    return sorted(CARRIED_CACHES.glob("*.tgz"))


def _home_line(entry: str, manifest: bytes | None) -> str:
    """``compile-cache/<model>/<key> <sha256 of its manifest>`` (``-`` without one): an entry as home has it."""
    return f"{entry} {'-' if manifest is None else hashlib.sha256(manifest).hexdigest()}"


def entry_id(entry: Path, store_dir: Path) -> str:
    """The store's entry as a ``LEASE_HOME_CACHES`` line."""
    try:
        manifest: bytes | None = (entry / MANIFEST_NAME).read_bytes()
    except OSError:
        manifest = None
    return _home_line(entry.relative_to(store_dir).as_posix(), manifest)


def remember_home_caches(carried: Sequence[Path], lines_file: Path) -> None:
    """Add the entries of the carried archives to ``lines_file`` (they are home). An archive that cannot be
    read adds nothing: its unpack already failed the call, and its entries are then sent back."""
    known = home_caches(lines_file)
    for archive in carried:
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.endswith("/" + MANIFEST_NAME):
                        body = tar.extractfile(member)
                        if body is not None:
                            known.add(_home_line(member.name.removesuffix("/" + MANIFEST_NAME), body.read()))
        except (OSError, tarfile.TarError):
            continue
    lines_file.write_text("".join(f"{line}\n" for line in sorted(known)))


def home_caches(lines_file: Path) -> set[str]:
    try:
        return set(lines_file.read_text().splitlines())
    except FileNotFoundError:
        return set()


def entry_members(entry: Path, store_dir: Path) -> list[tuple[Path, str]]:
    """One compile-cache entry as it lies in the store: its manifest and the archive that manifest names. An
    archive a manifest no longer names (replaced, or carried back in by an older carried copy) stays home; an
    entry whose manifest cannot be read goes whole, for ``compile-cache show --verify`` to judge there."""
    manifest = entry / MANIFEST_NAME
    try:
        named = [manifest, entry / CacheManifest.from_json(manifest.read_bytes()).archive_name]
    except (OSError, ManifestError):
        named = [entry]
    return [(path, path.relative_to(store_dir).as_posix()) for path in named]


def copy_missing(src: Path, dest: Path) -> None:
    """``cp -rn src/. dest/``: files of ``src`` not yet in ``dest``; what is there stays."""
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def write_tgz(archive: Path, members: Sequence[tuple[Path, str]]) -> None:
    """Write next to ``archive`` and rename: a call killed mid-write leaves the previous archive whole."""
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path, arcname in members:
            if path.exists():
                tar.add(path, arcname=arcname)
    os.replace(partial, archive)


def gpu_name() -> str:
    """The first GPU's name as nvidia-smi prints it, spaces as dashes (campaign names carry it)."""
    proc = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"nvidia-smi gave no GPU name (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return lines[0].strip().replace(" ", "-")


def run_campaign(campaign: Campaign, steps: Sequence[str]) -> int:
    """0: every command of every step succeeded; 1: some failed (each named on stderr)."""
    failed = []
    for problem in campaign.prepare():
        print(f"setup: {problem}", file=sys.stderr, flush=True)
        failed.append("setup")
    failed += [name for name in steps if campaign.run_step(name)]
    if not campaign.executor.dry_run:
        usage = shutil.disk_usage("/tmp")
        campaign.executor.say(f"/tmp: {usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB")
    if failed:
        print(f"error: step(s) with a failed command: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("steps", nargs="+", metavar="STEP", help=f"from: {', '.join(STEPS)}")
    parser.add_argument("--repeats", type=int, default=1, help="runs per (model, experiment); miss runs do 1")
    parser.add_argument(
        "--call-budget-s",
        type=float,
        default=DEFAULT_CALL_BUDGET_S,
        help="seconds this call may use, one deadline for all its steps: each matrix starts no run that "
        f"would not finish in what is left (default {DEFAULT_CALL_BUDGET_S})",
    )
    parser.add_argument("--tag", default=None, help="campaign names become <GPU>-<tag><suffix> (a lease's own)")
    parser.add_argument(
        "--results", type=Path, default=LEASE_RESULTS, help=f"the lease's results file (default {LEASE_RESULTS})"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/out"), help="where the archives go ($OUT)"
    )
    parser.add_argument("--gpu", default=None, help="GPU name for campaign names (default: nvidia-smi's first GPU)")
    parser.add_argument(
        "--no-ray-cleanup", dest="ray_cleanup", action="store_false", help="do not stop stale Ray before each step"
    )
    parser.add_argument("--dry-run", action="store_true", help="print every command it would run; run nothing")


def main(args: argparse.Namespace) -> int:
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        print(f"error: unknown step(s) {', '.join(unknown)}; valid steps: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"error: --repeats must be at least 1, not {args.repeats}", file=sys.stderr)
        return 2
    try:
        gpu = args.gpu.replace(" ", "-") if args.gpu else gpu_name()
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}; pass --gpu NAME", file=sys.stderr)
        return 2
    executor: Executor = DryRunExecutor() if args.dry_run else SubprocessExecutor()
    campaign = Campaign(
        gpu=gpu,
        executor=executor,
        results=args.results,
        out=args.out,
        repeats=args.repeats,
        deadline_s=time.time() + args.call_budget_s,
        tag=args.tag or None,
        ray_cleanup=args.ray_cleanup,
    )
    return run_campaign(campaign, args.steps)
