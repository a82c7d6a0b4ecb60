"""What the EngineCore forkserver imports before it forks (``forkserver.SERVER_PRELOAD``).

multiprocessing's forkserver skips preload modules that raise ImportError but dies on anything else, so
each import is guarded here and a failure is said: the child then imports it itself, only slower.
"""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "torch",
    "vllm.v1.engine.core",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.executor.multiproc_executor",
    "vllm.v1.worker.gpu_worker",
    "vllm.model_executor.model_loader",
    "coldstart.lab.fastpath.forkserver",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except Exception as _exc:  # the server must live: a missing module only costs its import later
        print(f"coldstart forkserver: could not preload {_name}: {type(_exc).__name__}: {_exc}", file=sys.stderr)
