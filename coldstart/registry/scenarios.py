"""Scenarios: what traffic a run sends and what it measures. Any experiment runs under any scenario; the
matrix crosses them. A scenario is data, a fixed sequence of parts (burst and trickle -> after ready -> returns
-> sleep and wake), each off unless its field says otherwise, so one deployment can answer several questions at
once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coldstart.registry.base import UnknownNameError, frozen


@dataclass(frozen=True)
class Autoscaling:
    """The LLM deployment's Serve autoscaling config (it always starts at zero replicas). None: Serve's default."""

    max_replicas: int = 1
    target_ongoing_requests: float | None = None  # Serve's default: 2 per replica
    upscale_delay_s: float | None = None  # Serve's default: 30 s (0 -> 1 is immediate regardless)
    downscale_delay_s: float | None = None  # Serve's default: 600 s
    look_back_period_s: float | None = None  # Serve's default: 30 s of averaged load before a decision
    # Serve 2.57 starts ceil(1 x upscaling_factor) replicas from zero whatever the queue (its cold-start path,
    # autoscaling_policy._get_cold_start_scale_up_replicas) and counts only running replicas after that: the
    # others start once the first runs. None: Serve's default (1.0: one replica from zero).
    upscaling_factor: float | None = None

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise ValueError(f"max_replicas must be at least 1, got {self.max_replicas}")
        if self.upscaling_factor is not None and self.upscaling_factor <= 0:
            raise ValueError(f"upscaling_factor must be positive, got {self.upscaling_factor}")

    def serve_config(self) -> dict[str, Any]:
        """The ``autoscaling_config`` of the deployment (given fields only: the rest stays Serve's)."""
        cfg: dict[str, Any] = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": self.max_replicas}
        for name in (
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
            "look_back_period_s",
            "upscaling_factor",
        ):
            if (value := getattr(self, name)) is not None:
                cfg[name] = value
        return cfg


# Ray Serve LLM 2.57's own default for its LLM and ingress deployments (ray.llm._internal.serve.constants:
# RAY_SERVE_LLM_DEFAULT_MAX_ONGOING_REQUESTS): no per-replica cap, so vLLM's scheduler is the only limit.
RAY_SERVE_LLM_MAX_ONGOING_REQUESTS = 1_000_000_000
NO_QUEUE_LIMIT = -1  # Serve's max_queued_requests default: every caller holds any number of requests


@dataclass(frozen=True)
class Queueing:
    """How the LLM deployment takes requests (Serve's deployment options; None: left to Ray Serve LLM). Given
    values are written into the deployment config, so the row's config says what the run was served under."""

    # Requests one replica runs at once; the caller's router holds the rest back until a slot frees.
    max_ongoing_requests: int | None = None
    # Requests each caller (the ingress's handle to the LLM deployment) holds while no replica can take them,
    # a cold start included; past it Serve answers HTTP 503 (BackPressureError). -1: no limit.
    max_queued_requests: int | None = None

    def __post_init__(self) -> None:
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < 1:
            raise ValueError(f"max_ongoing_requests must be at least 1, got {self.max_ongoing_requests}")
        if self.max_queued_requests is not None and not (
            self.max_queued_requests == NO_QUEUE_LIMIT or self.max_queued_requests >= 1
        ):
            raise ValueError(f"max_queued_requests must be -1 (no limit) or at least 1, got {self.max_queued_requests}")

    def deployment_options(self) -> dict[str, int]:
        """The given fields as ``deployment_config`` keys (the rest stays Ray Serve LLM's)."""
        return {
            name: value
            for name in ("max_ongoing_requests", "max_queued_requests")
            if (value := getattr(self, name)) is not None
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # Requests sent at the deployment while it is at zero replicas; the first one's TTFT is the row's.
    burst: int = 1
    ramp_s: float = 0.0  # the burst's requests spread evenly over this many seconds (0: all at once)
    # Beside the burst, one request every ``trickle_every_s`` until ``trickle_s`` after it (0: none): steady
    # traffic that keeps arriving while the replica starts, and after it runs if the start is shorter.
    trickle_every_s: float = 0.0
    trickle_s: float = 0.0
    # Once the first token arrived: this many requests one after another, then this many at once, to show
    # warm-up work left after "ready" (vllm-project/vllm#19824: 30-60 s first requests after ready).
    after_ready: int = 0
    after_ready_concurrent: int = 0
    # Wait until Serve has scaled the deployment back to zero, then request again (a second cold start on a
    # node that kept its page cache, disk caches and prestarted workers); this many times.
    returns: int = 0
    # A warm reference, not a scale-from-zero number: the running replica is put to sleep (vLLM sleep mode
    # through Ray Serve LLM's dev ingress), woken up and asked again. CUDA only (vLLM's sleep mode).
    sleep_wake: bool = False
    sleep_level: int = 1  # vLLM: 1 offloads the weights to CPU memory, 2 discards them
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    queueing: Queueing = field(default_factory=Queueing)

    def __post_init__(self) -> None:
        for name in ("burst", "after_ready", "after_ready_concurrent", "returns"):
            if getattr(self, name) < (1 if name == "burst" else 0):
                raise ValueError(f"scenario {self.name!r}: {name} is {getattr(self, name)}")
        if self.ramp_s < 0:
            raise ValueError(f"scenario {self.name!r}: ramp_s is {self.ramp_s}")
        if self.trickle_every_s < 0 or self.trickle_s < 0 or (self.trickle_s > 0) != (self.trickle_every_s > 0):
            raise ValueError(
                f"scenario {self.name!r}: a trickle needs trickle_every_s and trickle_s both > 0 (or both 0), got "
                f"{self.trickle_every_s} and {self.trickle_s}"
            )
        if self.trickle_s and self.trickle_every_s > self.trickle_s:
            raise ValueError(f"scenario {self.name!r}: trickle_every_s {self.trickle_every_s} > trickle_s")
        if self.returns and self.autoscaling.downscale_delay_s is None:
            # With Serve's 600 s default a return would wait ten minutes for the replica to go.
            raise ValueError(f"scenario {self.name!r}: returns need autoscaling.downscale_delay_s")
        if self.sleep_level not in (1, 2):
            raise ValueError(f"scenario {self.name!r}: vLLM sleep levels are 1 and 2, got {self.sleep_level}")

    @property
    def needs_cuda(self) -> bool:
        return self.sleep_wake

    def trickle_offsets_s(self) -> list[float]:
        """Seconds after the burst at which each trickle request is sent: every ``trickle_every_s`` up to and
        including ``trickle_s`` (0.5 s for 30 s: 60 requests, the first 0.5 s after the burst)."""
        if not self.trickle_s:
            return []
        # The tolerance keeps a last send that lands on trickle_s in spite of binary fractions (0.1 x 300).
        count = int(self.trickle_s / self.trickle_every_s + 1e-9)
        return [self.trickle_every_s * k for k in range(1, count + 1)]


_BURST = Scenario(
    "burst",
    "8 concurrent requests at a deployment at zero with max_replicas=1: all of them queue behind one cold start",
    burst=8,
)
_BURST_REPLICAS = dataclasses.replace(
    _BURST,
    name="burst_replicas",
    description="8 concurrent requests at zero with max_replicas=2 (one replica per GPU of a 2-GPU node), Serve's "
    "default upscaling: one replica from zero, the second once the first runs",
    autoscaling=Autoscaling(max_replicas=2, target_ongoing_requests=1.0, upscale_delay_s=0.0),
)
_RETURN = Scenario(
    "return",
    "one request, Serve scales the replica down to zero (downscale after 5 s idle), then one request again",
    returns=1,
    autoscaling=Autoscaling(downscale_delay_s=5.0, look_back_period_s=2.0),
)
SCENARIOS: Mapping[str, Scenario] = frozen(
    {
        s.name: s
        for s in (
            Scenario("single", "one request at a deployment at zero replicas, then once more at the running replica"),
            _BURST,
            # One replica per GPU, as a user would first configure it. Serve starts one replica from zero and the
            # second only once the first runs (campaign 2026-11-30-h200x2: after the burst was served), so nothing
            # starts together.
            _BURST_REPLICAS,
            # Both replicas from zero at once: they share the disk, the CPUs and the imports while they start.
            dataclasses.replace(
                _BURST_REPLICAS,
                name="burst_replicas_together",
                description="8 concurrent requests at zero with max_replicas=2 and upscaling_factor=2: Serve's "
                "cold-start path starts both replicas at once (one per GPU of a 2-GPU node)",
                autoscaling=dataclasses.replace(_BURST_REPLICAS.autoscaling, upscaling_factor=2.0),
            ),
            # Load beyond one burst: 64 at once and steady traffic while the one replica starts. The queueing is
            # what a user at zero gets from Ray Serve LLM, written out so a changed default cannot change the run
            # unseen: every request waits at the ingress for the one cold start and none is shed with a 503.
            Scenario(
                "flood_at_zero",
                "64 concurrent requests at zero with max_replicas=1, then one request every 0.5 s for 30 s through "
                "the cold start; Ray Serve LLM's queueing written out: no cap per replica, no queue limit",
                burst=64,
                trickle_every_s=0.5,
                trickle_s=30.0,
                queueing=Queueing(
                    max_ongoing_requests=RAY_SERVE_LLM_MAX_ONGOING_REQUESTS, max_queued_requests=NO_QUEUE_LIMIT
                ),
            ),
            _RETURN,
            Scenario(
                "after_ready",
                "one request at zero, then 8 requests one after another and 4 at once: warm-up left after ready",
                after_ready=8,
                after_ready_concurrent=4,
            ),
            # Everything one GPU campaign should measure in one deployment: a burst, what follows ready, a return.
            dataclasses.replace(
                _RETURN,
                name="tour",
                description="burst of 8 at zero, then 8 sequential + 4 concurrent requests, then to zero and back",
                burst=8,
                after_ready=8,
                after_ready_concurrent=4,
            ),
            Scenario(
                "sleep_wake",
                "warm reference (not scale from zero): the running replica sleeps (vLLM sleep mode, level 1), wakes "
                "and answers again",
                sleep_wake=True,
            ),
        )
    }
)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownNameError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}") from None


def with_max_replicas(scenario: Scenario, max_replicas: int | None) -> Scenario:
    """The scenario with ``max_replicas`` replaced (e.g. one replica per GPU of the node); None: unchanged. A
    scenario that starts every replica from zero at once (``upscaling_factor`` == ``max_replicas``) still does."""
    if max_replicas is None:
        return scenario
    auto = scenario.autoscaling
    together = auto.upscaling_factor is not None and auto.upscaling_factor == auto.max_replicas
    return dataclasses.replace(
        scenario,
        autoscaling=dataclasses.replace(
            auto,
            max_replicas=max_replicas,
            upscaling_factor=float(max_replicas) if together else auto.upscaling_factor,
        ),
    )
