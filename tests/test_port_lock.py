"""One lab per port: the port is taken atomically before Ray starts and given back on exit, checked with
real processes (a holder in a subprocess, racers started together)."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coldstart.lab import serve, service

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's")


@pytest.fixture
def port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _holder(port: int) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import time
        from coldstart.lab.serve import hold_port
        with hold_port({port}):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _take(port: int) -> None:
    with serve.hold_port(port):
        pass


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def test_a_second_lab_is_refused_while_the_first_holds_the_port_and_admitted_after_it_dies(port):
    proc = _holder(port)
    try:
        with pytest.raises(serve.PortHeld, match=rf"port {port} is held by another lab .*\(pid {proc.pid}\)"):
            _take(port)
    finally:
        _stop(proc)  # SIGKILL: no cleanup code runs, the kernel frees the name
    _take(port)


def test_released_on_exit_and_other_ports_are_independent(port):
    with serve.hold_port(port), serve.hold_port(port + 1), pytest.raises(serve.PortHeld):
        _take(port)
    _take(port)


def test_racing_labs_exactly_one_wins(port):
    start_at = time.time() + 1.5
    code = textwrap.dedent(
        f"""
        import time
        from coldstart.lab.serve import PortHeld, hold_port
        time.sleep(max(0.0, {start_at} - time.time()))
        try:
            with hold_port({port}):
                print("won", flush=True)
                time.sleep(2.0)
        except PortHeld:
            print("lost", flush=True)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(6)
    ]
    outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outcomes) == ["lost"] * 5 + ["won"], outcomes


def _args(port: int) -> argparse.Namespace:
    return argparse.Namespace(
        publish_compile_cache=False,
        dry_run=False,
        node_setup=None,
        ray_address=None,
        host="127.0.0.1",
        port=port,
        ready_file=None,
    )


def test_service_refuses_a_held_port_before_starting_ray(port, monkeypatch, capsys):
    monkeypatch.setattr(service, "prepare", lambda args: service.Prepared({}, "app", "run"))
    monkeypatch.setattr(service, "_serve", lambda *a: pytest.fail("Ray must not start on a held port"))
    proc = _holder(port)
    try:
        assert service.main(_args(port)) == 1
    finally:
        _stop(proc)
    assert "held by another lab" in capsys.readouterr().err


def test_service_holds_the_port_while_it_serves_and_gives_it_back(port, monkeypatch):
    monkeypatch.setattr(service, "prepare", lambda args: service.Prepared({}, "app", "run"))
    seen = []

    def serving(args, prepared) -> int:
        with pytest.raises(serve.PortHeld):
            _take(port)
        seen.append(True)
        return 0

    monkeypatch.setattr(service, "_serve", serving)
    assert service.main(_args(port)) == 0 and seen == [True]
    _take(port)
