"""The fast path as a product: levers on a user's own ``LLMConfig`` and the node setup they need.

- ``levers``: the ``FastPathLevers`` record that rides in ``LLMConfig.experimental_configs`` (Ray-free).
- ``api``: ``apply_fast_path(llm_config) -> FastPath`` (the changed config + a ``NodeSetup``).
- ``node_setup``: the ``NodeSetup`` record and its renderings (``ray start`` lines, KubeRay, local Ray).
- ``guard``: the private Ray/vLLM hooks the runtime needs, checked against what is installed.
The runtime that reads the levers inside Ray (server, engine, preload, forkserver) is ``coldstart.lab.fastpath``.
"""

from coldstart.fastpath.api import FastPath, apply_fast_path
from coldstart.fastpath.levers import ALL_LEVERS, FastPathLevers, LeverError, levers_of
from coldstart.fastpath.node_setup import NodeSetup

__all__ = ["ALL_LEVERS", "FastPath", "FastPathLevers", "LeverError", "NodeSetup", "apply_fast_path", "levers_of"]
