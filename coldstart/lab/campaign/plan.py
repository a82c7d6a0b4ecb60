"""A campaign plan: a YAML file of named steps, each a list of typed actions, loaded into frozen dataclasses.

::

    description: the 8B ladder on one GPU, warm node
    store: s3://bucket/coldstart      # optional: the store models and compile caches go through
    repeats: 3                         # optional: runs per (model, experiment) of a matrix without its own
    env: {COLDSTART_HOME: /dev/shm/coldstart-home}   # optional: for every command of the plan
    steps:
      - name: ladder-8b
        actions:
          - checkpoint: {model: llama-3-8b}
          - matrix: {models: [llama-3-8b], experiments: [baseline], node_state: warm}
          - publish_compile_cache: {model: llama-3-8b, experiment: compile_cache}

Everything is checked before anything runs: the YAML's shape, each field's type, and the names against the
registry (models, experiments, the pairs the matrix would silently drop, scenarios, node states). A bad plan
raises ``PlanError`` listing every problem, each naming the file, the step, the action and the field.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coldstart.lab.matrix.plan import NODE_STATES


class PlanError(ValueError):
    """The plan cannot run; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------- the actions a step is made of


@dataclass(frozen=True)
class Checkpoint:
    """Write the model's synthetic checkpoint (skipped when it is there) and stage it into the store
    (``store``: this one instead of the plan's)."""

    model: str
    store: str | None = None
    # Stage by hard links (`stage put --link`): one copy on disk, for a checkpoint near the disk's size (the
    # 70B's 141 GB on a 235 GiB disk).
    link: bool = False


@dataclass(frozen=True)
class Matrix:
    """One matrix runner command. ``repeats`` None: the plan's (or ``--repeats``); a capture run exists to fill
    a cache, so it says 1."""

    models: tuple[str, ...]
    experiments: tuple[str, ...]
    node_state: str = "cold"
    repeats: int | None = None
    scenarios: tuple[str, ...] = ("single",)  # registry.SCENARIOS: each experiment runs under each
    capture: bool = False  # the runs fill a compile cache: their miss is the point (the matrix's --capture)
    service_args: tuple[str, ...] = ()  # after `--`: passed to every service.py
    # Through a real Ray cluster on this machine instead of the lab's own local Ray: a head raylet with no CPU
    # or GPU for tasks plus one worker raylet with these CPUs and GPUs, started from the node setup the lab
    # prints for the first (model, experiment) (`coldstart one-machine-cluster`). None: the local Ray.
    cluster_worker_cpus: int | None = None
    cluster_worker_gpus: int = 0


@dataclass(frozen=True)
class PublishCompileCache:
    """Publish the compile cache the last run left into the store. ``if_engine_caches``: only when this node
    has engine caches (a fresh node whose store already holds the entry has none; then the store is shown)."""

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
    """Remove the model's checkpoint and its staged (unsharded) copy from this node: the disk the sharded copy
    needs. Only once ``built`` exists (``shard`` renames a finished build into place): a failed shard keeps
    the checkpoint. The experiments that read the unsharded copy need ``Checkpoint`` again after this."""

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


Action = Checkpoint | Matrix | PublishCompileCache | Shard | Evict | StageSharded | S3Server

# The key an action has in a plan file -> its class.
ACTIONS: Mapping[str, type[Action]] = {
    "checkpoint": Checkpoint,
    "matrix": Matrix,
    "publish_compile_cache": PublishCompileCache,
    "shard": Shard,
    "evict": Evict,
    "stage_sharded": StageSharded,
    "s3_server": S3Server,
}


@dataclass(frozen=True)
class Step:
    name: str
    actions: tuple[Action, ...]
    about: str = ""  # one line for --dry-run; the plan file's comments say the rest


@dataclass(frozen=True)
class Plan:
    path: Path
    steps: tuple[Step, ...]
    description: str = ""
    store: str | None = None  # folder or s3:// URI; None: $COLDSTART_STORE, else the local store
    repeats: int = 1
    env: Mapping[str, str] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)


# ---------------------------------------------------------------- reading a plan file

_PLAN_KEYS = ("description", "store", "repeats", "env", "steps")
_STEP_KEYS = ("name", "about", "actions")


def _typed(hint: Any, value: Any) -> tuple[Any, str | None]:
    """``value`` as the field type ``hint`` wants; the second item says why it cannot be (None: it can)."""
    if hint is str:
        return value, None if isinstance(value, str) and value.strip() else "must be a non-empty string"
    if hint is bool:
        return value, None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return value, None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint == (str | None) or hint == (int | None):
        return (None, None) if value is None else _typed(typing.get_args(hint)[0], value)
    if hint == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return value, "must be a list of non-empty strings"
        return tuple(value), None
    raise TypeError(f"no reader for field type {hint!r}")


def store_problem(uri: Any) -> str | None:
    """Why ``uri`` names no store (None: it does): a folder, ``file://`` or ``s3://`` URI."""
    from coldstart.storage.store import InvalidStoreURI, parse_store_uri

    if not isinstance(uri, str) or not uri.strip():
        return f"must be a folder or an s3:// URI (got {uri!r})"
    try:
        parse_store_uri(uri)
    except InvalidStoreURI as exc:
        return str(exc)
    return None


def _action(kind: str, fields: Any, where: str, problems: list[str]) -> Action | None:
    cls = ACTIONS[kind]
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        problems.append(f"{where}: its fields must be a mapping (`{kind}: {{field: value, ...}}`), not {fields!r}")
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    ok = True
    for name, value in fields.items():
        if name not in known:
            problems.append(f"{where}: field {name!r}: unknown; {kind} has {', '.join(known)}")
            ok = False
            continue
        typed, why = _typed(hints[name], value)
        if why:
            problems.append(f"{where}: field {name!r}: {why} (got {value!r})")
            ok = False
        values[name] = typed
    missing = [n for n, f in known.items() if n not in values and f.default is dataclasses.MISSING]
    for name in missing:
        problems.append(f"{where}: field {name!r}: missing")
    if not ok or missing:
        return None
    return cls(**values)


def _step(raw: Any, index: int, source: str, problems: list[str]) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(f"{source}: step {index + 1}: must be a mapping with name and actions, not {raw!r}")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        problems.append(f"{source}: step {index + 1}: field 'name': must be a word (got {name!r})")
        return None
    where = f"{source}: step {name!r}"
    problems += [
        f"{where}: field {k!r}: unknown; a step has {', '.join(_STEP_KEYS)}" for k in raw if k not in _STEP_KEYS
    ]
    about = raw.get("about", "")
    if not isinstance(about, str):
        problems.append(f"{where}: field 'about': must be a string")
        about = ""
    raw_actions = raw.get("actions")
    if not isinstance(raw_actions, list) or not raw_actions:
        problems.append(f"{where}: field 'actions': must be a non-empty list")
        return None
    actions: list[Action] = []
    for i, item in enumerate(raw_actions):
        at = f"{where}, action {i + 1}"
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"{at}: must be one `kind: {{fields}}` mapping, kind from {', '.join(ACTIONS)}")
            continue
        ((kind, fields),) = item.items()
        if kind not in ACTIONS:
            problems.append(f"{at}: unknown action {kind!r}; valid actions: {', '.join(ACTIONS)}")
            continue
        action = _action(kind, fields, f"{at} ({kind})", problems)
        if action is not None:
            actions.append(action)
            problems += [f"{at} ({kind}): {p}" for p in registry_problems(action)]
    return Step(name, tuple(actions), about)


def parse_plan(data: Any, path: Path) -> Plan:
    """The plan ``data`` (a YAML document) describes; raises PlanError naming every problem."""
    source = str(path)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise PlanError([f"{source}: a plan is a mapping with {', '.join(_PLAN_KEYS)}, not {type(data).__name__}"])
    problems += [
        f"{source}: field {k!r}: unknown; a plan has {', '.join(_PLAN_KEYS)}" for k in data if k not in _PLAN_KEYS
    ]
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{source}: field 'description': must be a string")
        description = ""
    store = data.get("store")
    if store is not None and (why := store_problem(store)):
        problems.append(f"{source}: field 'store': {why}")
        store = None
    repeats = data.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        problems.append(f"{source}: field 'repeats': must be an integer of at least 1 (got {repeats!r})")
        repeats = 1
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        problems.append(f"{source}: field 'env': must map variable names to strings (got {env!r})")
        env = {}
    raw_steps = data.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"{source}: field 'steps': must be a non-empty list of steps")
    else:
        for i, raw in enumerate(raw_steps):
            if (step := _step(raw, i, source, problems)) is not None:
                if step.name in {s.name for s in steps}:
                    problems.append(f"{source}: step {step.name!r}: a second step of that name")
                steps.append(step)
    if problems:
        raise PlanError(problems)
    return Plan(path, tuple(steps), description, store, repeats, dict(env))


def load_plan(path: Path) -> Plan:
    """Read and check the plan file at ``path``; raises PlanError (also for a file that is not YAML)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlanError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise PlanError([f"{path}: not YAML: {exc}"]) from None
    return parse_plan(data, path)


# ---------------------------------------------------------------- the registry's word on an action


def registry_problems(action: Action) -> list[str]:
    """What in ``action`` would fail on the GPU machine: unknown models, experiments or scenarios, pairs the
    matrix would silently skip, node states the runner refuses. Empty: the action is valid."""
    from coldstart.registry import EXPERIMENTS, MODELS, SCENARIOS, InvalidPairError, resolve

    problems: list[str] = []
    if isinstance(action, Matrix):
        models, experiments = action.models, action.experiments
    elif isinstance(action, PublishCompileCache):
        models, experiments = (action.model,), (action.experiment,)
    elif isinstance(action, S3Server):
        models, experiments = (), ()
        if not 0 < action.port < 65536:
            problems.append(f"field 'port': {action.port} is not a TCP port")
    else:
        models, experiments = (action.model,), ()
    # A matrix names lists ("models"), every other action one ("model").
    plural = "s" if isinstance(action, Matrix) else ""
    problems += [f"field 'model{plural}': unknown model {m!r}" for m in models if m not in MODELS]
    for e in experiments:
        if e not in EXPERIMENTS:
            problems.append(f"field 'experiment{plural}': unknown experiment {e!r}")
            continue
        for m in models:
            if m in MODELS:
                try:
                    resolve(m, e)
                except InvalidPairError as exc:
                    problems.append(f"field 'experiment{plural}': {m} {e}: {exc}")
    if isinstance(action, Checkpoint) and action.store is not None and (why := store_problem(action.store)):
        problems.append(f"field 'store': {why}")
    if isinstance(action, Matrix):
        if not action.models or not action.experiments:
            problems.append("fields 'models' and 'experiments': at least one each")
        problems += [f"field 'scenarios': unknown scenario {s!r}" for s in action.scenarios if s not in SCENARIOS]
        if action.node_state not in NODE_STATES:
            problems.append(f"field 'node_state': {action.node_state!r} is not one of {', '.join(NODE_STATES)}")
        if action.repeats is not None and action.repeats < 1:
            problems.append(f"field 'repeats': {action.repeats} is less than 1")
    return problems
