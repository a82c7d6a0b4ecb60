"""The fast path's levers as one record that rides in the ``LLMConfig`` itself (Ray-free).

The levers travel in ``LLMConfig.experimental_configs["coldstart_fast_path"]``, a free-form dict that Ray Serve
LLM passes through untouched, so a user's own config carries them the same way the lab's does. The runtime
(``coldstart.lab.fastpath``: the server class, the engine class, the replica callback) reads them back with
``levers_of``; nothing here imports Ray, so the record is also what the API, the configs and the tests share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXPERIMENTAL_KEY = "coldstart_fast_path"


class LeverError(ValueError):
    """A lever record that cannot run (an unknown lever, or one that needs another)."""


@dataclass(frozen=True)
class FastPathLevers:
    """Which steps of a replica's cold start are taken out (see docs/fast-path.md for what each buys)."""

    # Ray LLM's per-node init task (a fresh Ray worker importing vLLM to fetch weights already on the node)
    # is turned off by the replica callback, which restores the compile cache itself.
    skip_node_init: bool = False
    # vLLM's config built in the replica and the GPU worker run inside EngineCore (uni at TP1, mp above)
    # instead of Ray actors: the replica holds the GPUs itself.
    engine_in_replica: bool = False
    # The replica's runtime_env is left empty so that Ray gives it a worker the node prestarted with vLLM
    # imported (a worker is given only to work whose runtime_env equals its own).
    prestart_workers: bool = False
    # EngineCore forked from a forkserver the prestarted worker started with vLLM imported.
    engine_core_forkserver: bool = False
    # Ray LLM's usage report (a detached actor the first replica creates) sent off the replica's start.
    background_telemetry: bool = False

    def __post_init__(self) -> None:
        if self.engine_core_forkserver and not (self.prestart_workers and self.engine_in_replica):
            raise LeverError(
                "engine_core_forkserver needs prestart_workers and engine_in_replica "
                "(the forkserver lives in the prestarted worker the replica is given)"
            )
        if self.background_telemetry and not (self.prestart_workers or self.engine_in_replica):
            raise LeverError("background_telemetry needs the fast server (engine_in_replica or prestart_workers)")

    @property
    def any(self) -> bool:
        return any(dataclasses.astuple(self))

    @property
    def needs_server_cls(self) -> bool:
        return self.engine_in_replica or self.prestart_workers

    def to_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FastPathLevers:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LeverError(f"unknown fast-path lever(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: bool(v) for k, v in data.items()})


ALL_LEVERS = FastPathLevers(
    skip_node_init=True,
    engine_in_replica=True,
    prestart_workers=True,
    engine_core_forkserver=True,
    background_telemetry=True,
)


def levers_of(llm_config: Any) -> FastPathLevers:
    """The levers of an ``LLMConfig`` (Ray's object or its dict form); none when it carries no record."""
    experimental = (
        llm_config.get("experimental_configs")
        if isinstance(llm_config, Mapping)
        else getattr(llm_config, "experimental_configs", None)
    )
    record = (experimental or {}).get(EXPERIMENTAL_KEY)
    return FastPathLevers.from_dict(record) if record else FastPathLevers()
