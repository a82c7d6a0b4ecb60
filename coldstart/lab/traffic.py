"""A scenario's traffic against one deployment: the burst at zero replicas and the trickle beside it, the
requests after ready, the returns to zero, sleep and wake (``registry.Scenario``), each request kept as a
``RequestRecord``.

The sequence is plain code over four injected actions (send a request, call a control endpoint, wait for
zero replicas, sleep), so its order, concurrency and failure handling are tested without a server; the
runner gives it the real client and the run's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from coldstart.analysis.results import ClientResult, RequestGroup, RequestRecord
from coldstart.analysis.serve_log import llm_replicas_alive, served_by
from coldstart.registry import Scenario


class ScenarioError(RuntimeError):
    """A part of the scenario after the first token could not be carried out (the row keeps what was measured)."""


@dataclass(frozen=True)
class Traffic:
    """What a run measured: ``client`` is the first request at zero replicas (the row's TTFT)."""

    client: ClientResult
    requests: tuple[RequestRecord, ...]
    errors: tuple[str, ...] = ()  # parts that failed after the first token (the row's extra.late_errors)


Send = Callable[[], ClientResult]
Control = Callable[[str, Mapping[str, Any]], float]  # (path, body) -> seconds the call took


def ramp_offsets(count: int, ramp_s: float) -> list[float]:
    """Seconds after the start at which each of ``count`` requests is sent, evenly over ``ramp_s``."""
    if count == 1 or ramp_s == 0:
        return [0.0] * count
    return [ramp_s * i / (count - 1) for i in range(count)]


def _concurrently(send: Send, offsets: list[float], sleep: Callable[[float], None]) -> list[ClientResult]:
    """``send`` once per offset, each at its offset (seconds) after the start, all in flight together; the
    results in the offsets' order. Each waits until its offset past a common start, not its own thread's start:
    64 threads building their clients at once would push a trickle's sends later and later otherwise."""
    t0 = time.monotonic()

    def one(offset_s: float) -> ClientResult:
        if offset_s:
            sleep(max(0.0, offset_s - (time.monotonic() - t0)))
        return send()

    with ThreadPoolExecutor(max_workers=len(offsets)) as pool:
        return list(pool.map(one, offsets))


def run_scenario(
    scenario: Scenario,
    *,
    model: str,
    send: Send,
    control: Control,
    wait_until_zero: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
) -> Traffic:
    """Carry out ``scenario``'s parts in order. A first request without a token ends the run there (nothing
    after it means anything); a later part that fails is recorded in ``errors`` and ends the sequence."""
    records: list[RequestRecord] = []

    def keep(group: RequestGroup, results: list[ClientResult], cycle: int = 0, control_s: float | None = None) -> None:
        for result in results:
            records.append(RequestRecord(len(records), group, result, cycle=cycle, control_s=control_s))

    # The trickle goes out beside the burst, not after it: it is the traffic that keeps arriving during the start.
    sent = _concurrently(send, ramp_offsets(scenario.burst, scenario.ramp_s) + scenario.trickle_offsets_s(), sleep)
    keep(RequestGroup.BURST, sent[: scenario.burst])
    keep(RequestGroup.TRICKLE, sent[scenario.burst :])
    first = records[0].client
    if not first.ok:
        return Traffic(first, tuple(records))
    errors: list[str] = []
    try:
        # At least one: the already-running replica's TTFT (``warm_ttft_s``), the floor of every scenario.
        for _ in range(max(1, scenario.after_ready)):
            keep(RequestGroup.AFTER_READY, [send()])
        if scenario.after_ready_concurrent:
            keep(
                RequestGroup.AFTER_READY_CONCURRENT,
                _concurrently(send, [0.0] * scenario.after_ready_concurrent, sleep),
            )
        for cycle in range(1, scenario.returns + 1):
            wait_until_zero()
            keep(RequestGroup.RETURN, [send()], cycle=cycle)
        if scenario.sleep_wake:
            control("/sleep", {"model": model, "options": {"level": scenario.sleep_level}})
            wake_s = control("/wakeup", {"model": model, "options": {}})
            keep(RequestGroup.WAKE, [send()], control_s=wake_s)
    except (ScenarioError, TimeoutError, httpx.HTTPError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    warm = next((r.client for r in records if r.group is RequestGroup.AFTER_READY), None)
    first = replace(first, warm_ttft_s=warm.ttft_s if warm else None)
    records[0] = replace(records[0], client=first)
    return Traffic(first, tuple(records), tuple(errors))


def with_replicas(traffic: Traffic, log_text: str) -> Traffic:
    """Each request's ``replica_id`` from the replicas' access lines in the run log."""
    by_request = served_by(log_text)
    records = tuple(
        replace(r, replica_id=by_request.get(r.client.request_id)) if r.client.request_id else r
        for r in traffic.requests
    )
    return replace(traffic, requests=records)


def http_control(base_url: str, timeout_s: float = 600.0) -> Control:
    """POST ``body`` to a control endpoint of Ray Serve LLM's dev ingress; the seconds it took to answer."""

    def call(path: str, body: Mapping[str, Any]) -> float:
        t0 = time.perf_counter()
        resp = httpx.post(base_url.rstrip("/") + path, json=dict(body), timeout=timeout_s)
        if resp.status_code != 200:
            raise ScenarioError(f"POST {path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return time.perf_counter() - t0

    return call


def log_waiter(
    log_path: Path, *, timeout_s: float, poll_s: float = 0.5, clock: Callable[[], float] = time.monotonic
) -> Callable[[], float]:
    """Waits until every LLM replica the log says was started is stopped (Serve scaled the deployment to zero);
    returns the seconds waited. The controller's lines reach the run log through the service's tee."""

    def wait() -> float:
        t0 = clock()
        while True:
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            started, alive = llm_replicas_alive(text)
            if started and not alive:
                return clock() - t0
            if clock() - t0 > timeout_s:
                raise ScenarioError(
                    f"the deployment did not scale to zero within {timeout_s:.0f} s "
                    f"({alive} of {started} replicas still up)"
                )
            time.sleep(poll_s)

    return wait
