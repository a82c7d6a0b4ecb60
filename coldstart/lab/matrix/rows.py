"""One run, one result row: clear, deploy, measure through the system under test, then parse the run's log.
A failed run is a row too (the campaign goes on); a failure after the measurement keeps the number."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coldstart import paths
from coldstart.analysis.audit import audit
from coldstart.analysis.placement import RayPlacement, ray_placement
from coldstart.analysis.results import (
    Audit,
    ClientResult,
    Provenance,
    ReplicaSpan,
    ResultRow,
    RunStatus,
    StoredTimeline,
)
from coldstart.analysis.serve_log import replica_spans
from coldstart.lab.matrix.answer import ReferenceAnswer, answer_check
from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.matrix.sut import SystemUnderTest
from coldstart.lab.traffic import Traffic
from coldstart.registry import EXPERIMENTS


def summarize(
    log_text: str, client: ClientResult, experiment: str
) -> tuple[dict[str, float | None], Audit, StoredTimeline]:
    """(phases, audit, timeline) of one run's log."""
    from coldstart.analysis.timeline import summarize_run

    summary = summarize_run(log_text, client)
    return dict(summary.phases), audit(experiment, summary.audit), summary.timeline.stored()


def write_client_sidecar(log_path: Path | None, m: ClientResult) -> None:
    """``<run_id>.client.json`` beside the service log: the analysis CLI rebuilds every row from the two."""
    if log_path is not None:
        from coldstart.lab.client import write_result

        write_result(m, log_path.with_suffix(".client.json"))


def run_one(
    sut: SystemUnderTest,
    spec: RunSpec,
    *,
    provenance: Provenance | None,
    device: str | None,
    reference: ReferenceAnswer | None = None,
) -> ResultRow:
    run_id = paths.new_run_id()
    t0 = time.time()
    log_path: Path | None = None
    config: dict[str, Any] = {}
    clear_report: dict[str, Any] = {}
    traffic: Traffic | None = None
    try:
        clear_report = sut.clear(spec)
        with sut.deploy(spec, run_id) as dep:
            log_path, config = dep.log_path, dep.config
            traffic = sut.measure(dep, spec)
        return _measured_row(spec, run_id, t0, traffic, log_path, config, clear_report, provenance, device, reference)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed run must not end the campaign: record it and go on
        log_path = log_path or getattr(exc, "log_path", None)
        error = f"{type(exc).__name__}: {exc}"
        if traffic is not None:
            # The cold start was timed; what failed after it (stopping the service) must not cost the number.
            return _measured_row(
                spec, run_id, t0, traffic, log_path, config, clear_report, provenance, device, reference, late=[error]
            )
        return ResultRow(
            run_id=run_id,
            model=spec.model,
            experiment=spec.experiment,
            repeat=spec.repeat,
            status=RunStatus.FAILED,
            ttft_s=None,
            phases={},
            audit=None,
            log_path=_portable(log_path),
            provenance=provenance,
            config=config,
            campaign=spec.campaign,
            device=device,
            error=error,
            t_start_epoch=t0,
            wall_s=time.time() - t0,
            node_state=spec.node_state,
            scenario=spec.scenario,
            capture=spec.capture,
            service_args=spec.service_args,
        )


def _measured_row(
    spec: RunSpec,
    run_id: str,
    t0: float,
    traffic: Traffic,
    log_path: Path | None,
    config: dict[str, Any],
    clear_report: dict[str, Any],
    provenance: Provenance | None,
    device: str | None,
    reference: ReferenceAnswer | None,
    late: list[str] | None = None,
) -> ResultRow:
    """The row of a run that was measured. Each step after the measurement (sidecar, log, parse) may fail on
    its own; its error goes into ``extra.late_errors`` and the row keeps the number."""
    m = traffic.client
    late = [*traffic.errors, *(late or ())]
    try:
        write_client_sidecar(log_path, m)
    except OSError as exc:
        late.append(f"client sidecar not written: {exc}")
    try:
        text = log_path.read_text(errors="replace") if log_path and log_path.exists() else ""
    except OSError as exc:
        text = ""
        late.append(f"run log unreadable: {exc}")
    try:
        phases, run_audit, timeline = summarize(text, m, spec.experiment)
    except Exception as exc:
        # The measurement stands even if the parser trips on a new log wording; the row says so and
        # `python -m analysis` can re-derive the phases from the kept log once the parser is fixed.
        phases, timeline = {}, None
        run_audit = Audit(parse_error=f"{type(exc).__name__}: {exc}")
    extra: dict[str, Any] = {"clear": clear_report, "levers": list(EXPERIMENTS[spec.experiment].levers)}
    if late:
        extra["late_errors"] = late
    replicas = replica_spans(text, timeline.utc_offset_s) if timeline else None
    placement = ray_placement(text)
    return ResultRow(
        run_id=run_id,
        model=spec.model,
        experiment=spec.experiment,
        repeat=spec.repeat,
        status=m.status.run_status,
        ttft_s=m.ttft_s,
        phases=phases,
        audit=run_audit,
        log_path=_portable(log_path),
        provenance=provenance,
        config=config,
        campaign=spec.campaign,
        device=device,
        error=failure_story(m, replicas, placement, weights_store(config)),
        t_start_epoch=t0,
        client=m,
        timeline=timeline,
        wall_s=time.time() - t0,
        node_state=spec.node_state,
        answer=answer_check(m, traffic.requests, reference),
        extra=extra,
        scenario=spec.scenario,
        requests=traffic.requests,
        replicas=replicas,
        ray=placement,
        capture=spec.capture,
        service_args=spec.service_args,
    )


def weights_store(config: Mapping[str, Any]) -> str | None:
    """Where a run's replicas stream their weights from (an object store URI and its endpoint), or None for weights
    on the node's disk. Read from the run's Serve config, which carries no secret (``ResultRow.config``)."""
    for llm in config.get("llm_configs") or ():
        source = (llm.get("model_loading_config") or {}).get("model_source")
        if isinstance(source, str) and "://" in source and not source.startswith("file://"):
            endpoint = ((llm.get("runtime_env") or {}).get("env_vars") or {}).get("AWS_ENDPOINT_URL")
            return f"{source} at {endpoint}" if endpoint else source
    return None


def failure_story(
    m: ClientResult,
    replicas: tuple[ReplicaSpan, ...] | None,
    placement: RayPlacement | None,
    store: str | None = None,
) -> str | None:
    """The client's error, and what the run's log says happened behind it: the nodes Ray lost and the replica
    starts Serve gave up on (the last one's reason). A client cut off by a node's death sees only "HTTP 500" or a
    dropped stream; the row says why. A run that got its token keeps the client's word. Where the failed starts
    streamed their weights from a ``store``, the row names it: the streamer's own errors name neither the bucket nor
    the endpoint."""
    if m.ok:
        return m.error
    said = [m.error or str(m.status)]
    if placement is not None and placement.lost_node_ids:
        said.append(f"Ray lost node {', '.join(placement.lost_node_ids)} during the run")
    failed = [s for s in replicas or () if s.failure is not None]
    if failed and (last := failed[-1].failure) is not None:
        which = failed[-1].replica_id
        said.append(f"{len(failed)} replica start(s) failed, the last ({which}) with {last.exception}: {last.reason}")
        if store is not None:
            said.append(f"the weights stream from {store}")
    return "; ".join(said)


def _portable(path: Path | None) -> str | None:
    """Row paths relative to the lab when inside it (``paths.in_lab`` reads them back), so rows stay valid in
    any clone, whichever folder the runner was started from."""
    return None if path is None else paths.lab_relative(path)
