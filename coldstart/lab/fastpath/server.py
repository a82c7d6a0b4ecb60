"""The Serve LLM server class of fast-path experiments (``LLMConfig.server_cls``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray.llm._internal.serve.core.server import llm_server as _llm_server
from ray.llm._internal.serve.core.server.llm_server import LLMServer

from coldstart.analysis import events
from coldstart.fastpath.levers import levers_of
from coldstart.lab.fastpath.engine import InReplicaVLLMEngine

# Ray LLM's no-op worker_process_setup_hook (ray.llm._internal.serve._worker_process_setup_hook): it makes the
# replica's runtime_env non-empty, and Ray gives a worker only to work whose runtime_env matches its own.
_SETUP_HOOK_KEY = "worker_process_setup_hook"


class ColdStartLLMServer(LLMServer):
    @classmethod
    def get_deployment_options(cls, llm_config: Any) -> dict[str, Any]:
        options = super().get_deployment_options(llm_config)
        if levers_of(llm_config).prestart_workers:
            runtime_env = options["ray_actor_options"].get("runtime_env") or {}
            runtime_env.pop(_SETUP_HOOK_KEY, None)
            options["ray_actor_options"]["runtime_env"] = runtime_env
        return options

    # Ray Serve awaits an async constructor (LLMServer's own __init__ is async); Python's typing has no such thing.
    async def __init__(  # type: ignore[misc]
        self, llm_config: Any, *, engine_cls: Any = None, model_downloader: Any = None
    ) -> None:
        if engine_cls is None and levers_of(llm_config).engine_in_replica:
            engine_cls = InReplicaVLLMEngine
        await super().__init__(llm_config, engine_cls=engine_cls, model_downloader=model_downloader)

    async def _start_engine(self) -> None:
        if not levers_of(self._llm_config).background_telemetry:
            await super()._start_engine()
            return
        # Ray LLM's _start_engine then reports usage telemetry to a detached actor that the first replica
        # creates (a fresh Ray worker: seconds, tens with a preload) and waits for the answer before the
        # replica counts as started. The report still goes out, off the path to the first token.
        await self.engine.start()
        events.emit("telemetry_report_deferred")
        asyncio.get_running_loop().run_in_executor(None, _report_telemetry, self._llm_config)


def _report_telemetry(llm_config: Any) -> None:
    t0 = time.time()
    _llm_server.push_telemetry_report_for_all_models(all_models=[llm_config])  # never raises (Ray's contract)
    if _llm_server.RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING:
        _llm_server.record_extra_usage_tag(_llm_server.TagKey.LLM_SERVE_DIRECT_STREAMING_ENABLED, "1")
    events.emit("telemetry_report_done", report_s=round(time.time() - t0, 3))
