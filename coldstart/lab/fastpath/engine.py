"""``InReplicaVLLMEngine``: Ray Serve LLM's vLLM engine with two vLLM processes per replica instead of four.

Stock Ray Serve LLM 2.57 on GPU builds vLLM's config in a remote task (a fresh Ray worker that imports vLLM)
and forces vLLM's ``ray`` executor, so the GPU worker is another Ray actor (another import). Here the replica
actor holds the GPUs (``build_llm_config`` gives it ``num_gpus``), the config is built in the replica, and
EngineCore runs the worker itself: ``uni`` at TP1, ``mp`` above. With ``engine_core_forkserver`` EngineCore
is forked from a forkserver that already imported vLLM instead of spawned.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine, _clear_current_platform_cache

from coldstart.analysis import events
from coldstart.fastpath.levers import levers_of


def local_executor_backend(world_size: int) -> str:
    """vLLM executor for workers that run inside EngineCore: in-process at one rank, subprocesses above."""
    return "uni" if world_size == 1 else "mp"


def local_engine_kwargs(initialization_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Ray LLM's engine kwargs with its forced ``ray`` executor replaced by a local one."""
    kwargs = dict(initialization_kwargs)
    world = int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1))
    kwargs["distributed_executor_backend"] = local_executor_backend(world)
    return kwargs


@contextlib.contextmanager
def _engine_core_start_method(forkserver: bool) -> Iterator[None]:
    if not forkserver:
        yield
        return
    import vllm.v1.engine.utils as engine_utils

    from coldstart.lab.fastpath.forkserver import EnvCarryingForkServerContext

    original = engine_utils.get_mp_context
    engine_utils.get_mp_context = EnvCarryingForkServerContext  # called once, to launch EngineCore
    try:
        yield
    finally:
        engine_utils.get_mp_context = original


class InReplicaVLLMEngine(VLLMEngine):
    def _prepare_engine_config(self, callback_ctx: Any) -> tuple[Any, Any, Any]:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.openai.cli_args import FrontendArgs
        from vllm.usage.usage_lib import UsageContext

        engine_config = self.llm_config.get_engine_config()
        if engine_config.mirror_config:
            # What Ray LLM's own config task does after its node-init task fetched a mirror.
            from ray.llm._internal.common.utils.download_utils import get_model_location_on_disk

            local_path = get_model_location_on_disk(engine_config.actual_hf_model_id)
            if local_path and local_path != engine_config.actual_hf_model_id:
                engine_config.hf_model_id = local_path
        kwargs = local_engine_kwargs(engine_config.get_initialization_kwargs())
        t0 = time.time()
        events.emit("engine_config_start", t=t0, executor=kwargs["distributed_executor_backend"], where="replica")
        engine_args = AsyncEngineArgs(**kwargs)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        events.emit("engine_config_end", config_s=time.time() - t0)
        return engine_args, FrontendArgs(**engine_config.frontend_kwargs), vllm_config

    def _start_async_llm_engine(self, engine_args: Any, vllm_config: Any, placement_group: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.executor.abstract import Executor

        # No placement group for vLLM: its uni/mp executors use the GPUs Ray gave this actor.
        _clear_current_platform_cache()
        forkserver = levers_of(self.llm_config).engine_core_forkserver
        t0 = time.time()
        events.emit("engine_core_launch_start", t=t0, method="forkserver" if forkserver else "spawn")
        with _engine_core_start_method(forkserver):
            client = AsyncLLM(
                vllm_config=vllm_config,
                executor_class=Executor.get_class(vllm_config),
                log_requests=engine_args.enable_log_requests,
                log_stats=not engine_args.disable_log_stats,
            )
        events.emit("engine_core_ready", engine_core_s=time.time() - t0)
        return client
