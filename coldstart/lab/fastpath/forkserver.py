"""EngineCore from a forkserver whose process imported vLLM before the request.

vLLM spawns EngineCore inside a Ray actor (forking a Ray worker, with its threads and sockets, is unsafe), and
the spawned interpreter imports vLLM again: ~15 s on an H200. A multiprocessing forkserver is a fresh,
single-threaded process started by the prestarted worker (``preload``); it imports vLLM once, and each child
it forks starts with vLLM in ``sys.modules``. The server's environment is the worker's from before Ray assigned it,
so each child takes its parent's environment (CUDA_VISIBLE_DEVICES is set by Ray when it assigns the worker).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import time
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

from coldstart.analysis import events

# Imported by the forkserver before it forks anything (each one that fails is skipped and said).
SERVER_PRELOAD = ("coldstart.lab.fastpath.forkserver_preload",)


class EnvCarryingProcess(ForkServerProcess):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parent_env = dict(os.environ)

    def run(self) -> None:
        os.environ.clear()
        os.environ.update(self._parent_env)
        _die_with_parent()
        events.emit("engine_core_forked", pid=os.getpid(), vllm_imported=_vllm_imported())
        super().run()


class EnvCarryingForkServerContext(ForkServerContext):
    Process = EnvCarryingProcess


def _die_with_parent() -> None:
    """The child's parent is the forkserver, which exits when the replica does: let that end the child too
    (vLLM watches for the death of the process that started EngineCore, which here is not the replica)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the service's reaping still ends it
        pass


def _vllm_imported() -> bool:
    import sys

    return "vllm.v1.engine.core" in sys.modules


def _noop() -> None:
    pass


def start() -> float:
    """Start this process's forkserver with vLLM imported and wait until it forks; returns the seconds."""
    t0 = time.monotonic()
    multiprocessing.set_forkserver_preload(list(SERVER_PRELOAD))
    multiprocessing.forkserver.ensure_running()
    # The server imports its preload list before it serves the first fork: one empty child waits for that.
    probe = multiprocessing.get_context("forkserver").Process(target=_noop)
    probe.start()
    probe.join()
    return time.monotonic() - t0
