"""Imported by every Ray worker a node prestarts (Ray's ``preload_python_modules``), before any request.

It imports what a Serve LLM replica of the fast path imports, so the replica leased to such a worker starts
with that paid, and (``COLDSTART_ENGINE_CORE_FORKSERVER=1`` on the node) starts the EngineCore forkserver.
Its ``worker_preloaded`` event tells the service when the node is ready.
"""

from __future__ import annotations

import os
import time

FORKSERVER_ENV = "COLDSTART_ENGINE_CORE_FORKSERVER"

_t0 = time.monotonic()
import ray.serve.llm  # noqa: E402,F401
import vllm.entrypoints.openai.api_server  # noqa: E402
import vllm.v1.engine.async_llm  # noqa: E402,F401
from ray.llm._internal.serve.engines.vllm import vllm_engine  # noqa: E402,F401

import coldstart.lab.replica_hooks  # noqa: E402,F401
from coldstart.analysis import events  # noqa: E402
from coldstart.lab.fastpath import engine, forkserver, server  # noqa: E402,F401

_import_s = time.monotonic() - _t0
_forkserver_s = forkserver.start() if os.environ.get(FORKSERVER_ENV) == "1" else None
events.emit(
    "worker_preloaded",
    pid=os.getpid(),
    import_s=round(_import_s, 3),
    forkserver_s=None if _forkserver_s is None else round(_forkserver_s, 3),
)
