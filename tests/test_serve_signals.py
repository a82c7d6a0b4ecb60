"""service.py's promise: a SIGTERM or Ctrl-C at any moment unwinds through Ray's shutdown and the reaping of
its processes. The moment tested here is ray.init() itself (Ray's daemons already started), with a fake
``ray`` module: no Ray is needed."""

from __future__ import annotations

import os
import signal
import sys
import types

import pytest

from coldstart.lab import serve


class ProcessWouldHaveDied(Exception):
    """Stands in for the default SIGTERM action (death, no cleanup) so the test process survives it."""


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    fake_ray = types.ModuleType("ray")
    fake_ray.shutdown = lambda: calls.append("ray.shutdown")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(serve, "_descendants", lambda: ["gcs_server", "dashboard"])
    monkeypatch.setattr(serve, "reap_leftovers", lambda procs, grace_s=10.0: calls.append(f"reap {procs}"))

    def die(signum, frame):
        raise ProcessWouldHaveDied(signum)

    # What the service process has before serve_app: the default action, here made survivable.
    old_term = signal.signal(signal.SIGTERM, die)
    old_int = signal.signal(signal.SIGINT, die)
    yield calls
    signal.signal(signal.SIGTERM, old_term)
    signal.signal(signal.SIGINT, old_int)


def _init_that(calls: list[str], then) -> None:
    def init(**kwargs):
        calls.append("ray.init")  # Ray's gcs, raylet and dashboard run from here on
        then()
        calls.append("ray.init returned")

    sys.modules["ray"].init = init  # type: ignore[attr-defined]


def _serve_and_expect_interrupt(calls: list[str]) -> None:
    # KeyboardInterrupt is what service._serve turns into "shutting down" and exit 0.
    with pytest.raises(KeyboardInterrupt), serve.serve_app({}, app_name="app"):
        pytest.fail("an interrupted ray.init must not serve")
    assert calls == ["ray.init", "ray.shutdown", "reap ['gcs_server', 'dashboard']"]


def test_sigterm_during_ray_init_shuts_ray_down_and_reaps(calls: list[str]) -> None:
    _init_that(calls, lambda: os.kill(os.getpid(), signal.SIGTERM))
    _serve_and_expect_interrupt(calls)
    assert signal.getsignal(signal.SIGTERM).__name__ == "die"  # the process's own handler is back


def test_sigterm_after_ray_init_took_sigterm_over_is_an_interrupt_too(calls: list[str]) -> None:
    # What Ray 2.x's init does first: signal.signal(SIGTERM, lambda signum, frame: sys.exit(signum)).
    def ray_handler_then_sigterm():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        os.kill(os.getpid(), signal.SIGTERM)

    _init_that(calls, ray_handler_then_sigterm)
    _serve_and_expect_interrupt(calls)  # not SystemExit(15): the service would exit 15
    assert signal.getsignal(signal.SIGTERM).__name__ == "die"


def test_ctrl_c_during_ray_init_shuts_ray_down_and_reaps(calls: list[str]) -> None:
    def ctrl_c():
        raise KeyboardInterrupt

    _init_that(calls, ctrl_c)
    _serve_and_expect_interrupt(calls)


def test_a_failed_ray_init_also_stops_what_it_started(calls: list[str]) -> None:
    def fail():
        raise RuntimeError("the dashboard did not come up")

    _init_that(calls, fail)
    with pytest.raises(RuntimeError, match="dashboard"), serve.serve_app({}, app_name="app"):
        pytest.fail("a failed ray.init must not serve")
    assert calls == ["ray.init", "ray.shutdown", "reap ['gcs_server', 'dashboard']"]
