"""Imported by every Ray worker a node prestarts (Ray's ``preload_python_modules``), before any request.

It imports what a Serve LLM replica of the fast path imports, so the replica given such a worker starts
with that paid, and (``COLDSTART_ENGINE_CORE_FORKSERVER=1`` on the node) starts the EngineCore forkserver.
Then it says so twice: a ``worker_preloaded`` event in the worker's output (a local run's log), and a record
in the cluster's GCS key-value store (``coldstart.lab.node_status`` reads it): on a cluster, workers the raylet
prestarted before any job reach no job's log, and the GCS is what every driver can read.
"""

from __future__ import annotations

import os
import time

from coldstart.fastpath.node_setup import FORKSERVER_ENV

_t0 = time.monotonic()
import ray.serve.llm  # noqa: E402,F401
import vllm.entrypoints.openai.api_server  # noqa: E402
import vllm.v1.engine.async_llm  # noqa: E402,F401
from ray.llm._internal.serve.engines.vllm import vllm_engine  # noqa: E402,F401

import coldstart.lab.replica_hooks  # noqa: E402,F401
from coldstart.analysis import events  # noqa: E402
from coldstart.lab import preload_registry  # noqa: E402
from coldstart.lab.fastpath import engine, forkserver, server  # noqa: E402,F401

_import_s = time.monotonic() - _t0


def _in_a_ray_worker() -> bool:
    """Ray imports preload modules in a worker it has connected (default_worker.py); anywhere else (a user's
    ``python -c "import ..."`` checking a node's install) this module only imports: asking Ray for the runtime
    context there would start a throwaway local Ray, or join the node's cluster as a driver and record a
    worker that is none."""
    import ray

    return ray.is_initialized() and ray._private.worker.global_worker.mode == ray.WORKER_MODE


if _in_a_ray_worker():
    _forkserver_s = forkserver.start() if os.environ.get(FORKSERVER_ENV) == "1" else None
    events.emit(
        "worker_preloaded",
        pid=os.getpid(),
        import_s=round(_import_s, 3),
        forkserver_s=None if _forkserver_s is None else round(_forkserver_s, 3),
    )
    preload_registry.register_this_worker(import_s=_import_s, forkserver_s=_forkserver_s)
