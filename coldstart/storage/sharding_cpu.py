"""vLLM CPU workers of ``coldstart shard --device cpu``: keep every linear layer's weight in the model.

vLLM 0.25.1's CPU backend may pack each linear layer for a faster GEMM kernel after loading and then replace
its ``weight`` with an empty tensor (``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)`` in
``vllm/model_executor/layers/linear.py``, which imports it from ``layers.utils`` at call time). Whether it
does depends on the CPU: the oneDNN path is taken on
AVX-512 machines and not on some AVX2-only builds. Sharded state saved from such an engine lacks those
weights. This module is imported only inside vLLM's worker processes, through ``worker_extension_cls``
(which vLLM resolves before it loads the model); importing it makes the dispatch keep the weights, so the
saved state is complete on every CPU. The audit in ``SaveAudit`` still checks what the engine holds.
"""

from __future__ import annotations

import functools
from typing import Any

from vllm.model_executor.layers import utils as _layer_utils

from coldstart.storage.sharding import SaveAudit


def _keep_weight(dispatch: Any) -> Any:
    if getattr(dispatch, "_coldstart_keeps_weight", False):
        return dispatch

    @functools.wraps(dispatch)
    def keep(layer: Any, remove_weight: bool) -> None:  # the point is to ignore it
        dispatch(layer, remove_weight=False)

    keep._coldstart_keeps_weight = True  # type: ignore[attr-defined]
    return keep


_layer_utils.dispatch_cpu_unquantized_gemm = _keep_weight(_layer_utils.dispatch_cpu_unquantized_gemm)


class KeepWeightsSaveAudit(SaveAudit):
    """``SaveAudit`` for CPU engines; importing its module is what keeps the weights (see above)."""
