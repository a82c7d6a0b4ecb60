"""Code that runs inside the Ray Serve LLM replica, through Ray LLM's callback hooks (Ray 2.57).

Ray LLM calls, in the replica actor: ``on_before_node_init`` -> (one ``initialize_remote_node`` task per
node of the placement group, each calling ``on_before_download_model_files_distributed`` before fetching
weights) -> ``on_after_node_init`` -> engine start. Each hook prints a ``:::COLDSTART`` event, so the
driver log (Ray forwards worker stdout) carries exact times for the phases nobody else logs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from ray.llm._internal.common.callbacks.base import CallbackBase

from coldstart.analysis import events
from coldstart.fastpath.levers import levers_of

logger = logging.getLogger("coldstart.replica")


def apply_streamed_source_fix(llm_config: Any, streamed_weights_uri: str | None) -> str | None:
    """Work around ray-project/ray#65477 (Ray 2.57/2.58): for runai load formats Ray sets the engine's
    ``hf_model_id`` to the ``model_id`` ("llama-3-8b") instead of the ``s3://`` source, so vLLM looks for a
    Hub repo of that name. Put the store URL back before the engine arguments are built.

    Returns the URL it set, or None when nothing needed fixing (no streamed source, or a fixed Ray).
    """
    if not streamed_weights_uri:
        return None
    engine_config = llm_config.get_engine_config()
    if engine_config.actual_hf_model_id == streamed_weights_uri:
        return None
    engine_config.hf_model_id = streamed_weights_uri
    return streamed_weights_uri


def replica_worker_facts() -> dict[str, Any]:
    """Which worker the replica landed on: its pid, when that process started, and whether a prestarted
    worker had imported vLLM before Ray assigned it (the fast path's claim, proved by pid in the log)."""
    import sys

    import ray

    facts: dict[str, Any] = {
        "worker_preloaded": "coldstart.lab.fastpath.preload" in sys.modules,
        "vllm_imported": "vllm" in sys.modules,
        # On a cluster: the node it landed on (the proof that a replica ran where the preloaded workers were).
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    try:
        import psutil

        facts["worker_started_at"] = psutil.Process().create_time()
    except Exception as exc:  # a missing fact must not fail the replica; the event says why
        facts["worker_started_at_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def engine_model_path(model_loading_config: Any) -> str:
    """The model string the compile-cache fingerprint keys on: the configured weights source, which is
    what both the publisher (service.py --publish-compile-cache) and this hook can know before the engine
    starts. vLLM hashes the path it finally sees; if that ever differs, the run misses the cache and its
    audit (expected hit, got compile) flags it. Takes the dict or Ray's ModelLoadingConfig."""
    mlc = model_loading_config
    source = mlc.get("model_source") if isinstance(mlc, dict) else mlc.model_source
    model_id = mlc.get("model_id") if isinstance(mlc, dict) else mlc.model_id
    return str(source or model_id)


class ColdStartCallback(CallbackBase):
    """Emits replica-side events, restores the compile cache on every node, fixes #65477."""

    def __init__(
        self,
        llm_config: Any,
        raise_error_on_callback: bool = True,
        ctx_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(llm_config, raise_error_on_callback=raise_error_on_callback, ctx_kwargs=ctx_kwargs, **kwargs)
        self.model_name: str = kwargs.get("model_name", "")
        self.experiment: str = kwargs.get("experiment", "")
        self.run_id: str | None = kwargs.get("run_id")
        self.streamed_weights_uri: str | None = kwargs.get("streamed_weights_uri")
        self.compile_cache_store: str | None = kwargs.get("compile_cache_store")
        self.compile_cache_root: str | None = kwargs.get("compile_cache_root")
        # The levers ride in the config (coldstart.fastpath.levers); the server and engine classes read the rest.
        self.skip_node_init: bool = levers_of(llm_config).skip_node_init

    def _emit(self, event: str, **fields: Any) -> None:
        events.emit(
            event, run_id=self.run_id, model=self.model_name, host=socket.gethostname(), pid=os.getpid(), **fields
        )

    async def on_before_node_init(self) -> None:
        self._emit("replica_node_init_start", **replica_worker_facts())
        if self.skip_node_init:
            # Ray LLM's node-init task would start a fresh worker (importing vLLM) to fetch weights that are
            # already on this node or streamed; what it did for the lab, it does here, in the replica.
            self.ctx.run_init_node = False
            self._emit("node_init_skipped")
            if self.compile_cache_store:
                self._restore_compile_cache()
            self._mark_engine_caches()

    def on_before_download_model_files_distributed(self) -> None:
        # Runs in a fresh Ray worker on each node of the placement group, before weights are fetched:
        # the one place where every node's compile cache can be put in place before any engine starts.
        self._emit("node_fetch_start")
        if self.compile_cache_store:
            self._restore_compile_cache()
        self._mark_engine_caches()

    def _mark_engine_caches(self) -> None:
        # Every run, cache experiments or not: a baseline's caches are what gets published for compile_cache.
        from coldstart import compile_cache

        root = self.compile_cache_root or compile_cache.default_cache_dirs()[0]
        compile_cache.write_engine_marker(
            root,
            model_name=self.model_name,
            experiment=self.experiment,
            run_id=self.run_id,
            model_path=engine_model_path(self.llm_config.model_loading_config),
            engine_kwargs=dict(self.llm_config.engine_kwargs),
            environ=self._worker_environ(),
        )

    def _worker_environ(self) -> dict[str, str]:
        # The key must be the one vLLM computes in its workers, whose env the Ray executor extends.
        from coldstart import compile_cache

        gpu_workers = compile_cache.ray_executor_gpu_workers(self.llm_config.placement_group_config)
        return compile_cache.worker_environ(os.environ, ray_gpu_workers=gpu_workers)

    def _restore_compile_cache(self) -> None:
        from coldstart import compile_cache

        assert self.compile_cache_store, "callers check that a compile cache store is set"
        t0 = time.time()
        self._emit("compile_cache_restore_start", t=t0)
        result = compile_cache.restore_for_replica(
            store_uri=self.compile_cache_store,
            model_name=self.model_name,
            engine_kwargs=dict(self.llm_config.engine_kwargs),
            cache_root=self.compile_cache_root,
            model_path=engine_model_path(self.llm_config.model_loading_config),
            environ=self._worker_environ(),
        )
        self._emit(
            "compile_cache_restore_end",
            status=result.status,
            restore_s=result.restore_s,
            bytes=result.size_bytes,
            key=result.key,
            detail=result.detail,
        )
        if result.status != "SUCCESS":
            logger.warning(
                "compile cache restore: %s (%s); falling back to a normal compile", result.status, result.detail
            )

    async def on_after_node_init(self) -> None:
        fixed = apply_streamed_source_fix(self.llm_config, self.streamed_weights_uri)
        if fixed:
            self._emit("weights_source_fixed", uri=fixed, issue="ray-project/ray#65477")
        self._emit("replica_node_init_end")
        self._emit("engine_start")
