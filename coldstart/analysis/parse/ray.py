"""Ray Serve controller and Ray LLM milestones: the deployment's scale-up, its replicas and its engine."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coldstart.analysis.parse.lines import LogLine, Stamp, parse_lines
from coldstart.analysis.parse.rules import NUM


@dataclass(frozen=True)
class RayEvent:
    """A Serve controller / Ray LLM milestone, kept for every deployment (ingress included)."""

    kind: str
    ts: Stamp | None
    year: int | None
    deployment: str | None = None
    value_s: float | None = None
    text: str = ""
    replicas_from: int | None = None  # an upscale's replica counts, before and after
    replicas_to: int | None = None


@dataclass(frozen=True)
class RayPhases:
    """Milestones of the LLM deployment (the first one whose name holds ``LLMServer``, else the first).

    Each field is the FIRST occurrence: a cold start is the first scale-up, not a later one.
    """

    year: int | None = None
    deploy_ts: Stamp | None = None
    upscale_ts: Stamp | None = None
    upscale_from: int | None = None
    upscale_to: int | None = None
    replica_add_ts: Stamp | None = None
    replicas_added: int | None = None
    replica_started_ts: Stamp | None = None
    replica_startup_s: float | None = None
    replica_init_s: float | None = None
    app_ready_ts: Stamp | None = None
    download_tasks_ts: Stamp | None = None
    cloud_download_ts: Stamp | None = None
    cloud_download_s: float | None = None
    model_download_done_ts: Stamp | None = None
    engine_started_ts: Stamp | None = None
    events: tuple[RayEvent, ...] = ()


_DEPLOYMENT = r"Deployment\(name='(?P<dep>[^']*)'(?:, app='[^']*')?\)"
_R = {
    "deploy": re.compile(rf"Deploying new version of {_DEPLOYMENT}"),
    "upscale": re.compile(rf"Upscaling {_DEPLOYMENT} from (?P<a>\d+) to (?P<b>\d+) replicas"),
    "add": re.compile(rf"Adding (?P<n>\d+) replicas? to {_DEPLOYMENT}"),
    "started": re.compile(
        r"Replica\(id='[^']*', deployment='(?P<dep>[^']*)'[^)]*\) started successfully "
        rf"on node .*? after {NUM}s"
    ),
    "init": re.compile(rf"Replica constructor, reconfigure method, and initial health check took {NUM}s"),
    "app_ready": re.compile(r"Application '(?P<app>[^']*)' is ready"),
    "download_tasks": re.compile(r"Running tasks to download model files on worker nodes"),
    "cloud_download": re.compile(rf"CloudDownloader: Files downloaded in {NUM} seconds"),
    "download_done": re.compile(r"Finished downloading (?:model and tokenizer|tokenizer) for "),
    "engine_started": re.compile(r"Started vLLM engine"),
}


def ray_events(lines: Iterable[LogLine]) -> list[RayEvent]:
    seen: set[tuple] = set()
    out: list[RayEvent] = []

    def emit(
        kind: str,
        line: LogLine,
        dep: str | None,
        value: float | None = None,
        text: str = "",
        replicas: tuple[int, int] | None = None,
    ) -> None:
        # An echoed copy of a line (same writer, same text) is one event.
        if (kind, line.rank_key, line.text) not in seen:
            seen.add((kind, line.rank_key, line.text))
            counts = replicas or (None, None)
            out.append(RayEvent(kind, line.ts, line.year, dep, value, text or line.message, *counts))

    for line in lines:
        msg = line.message
        if m := _R["deploy"].search(msg):
            emit("deploy", line, m.group("dep"))
        if m := _R["upscale"].search(msg):
            emit("upscale", line, m.group("dep"), replicas=(int(m.group("a")), int(m.group("b"))))
        if m := _R["add"].search(msg):
            emit("add", line, m.group("dep"), text=m.group("n"))
        if m := _R["started"].search(msg):
            emit("started", line, m.group("dep"), float(m.group(2)))
            if i := _R["init"].search(msg):
                emit("replica_init", line, m.group("dep"), float(i.group(1)))
        if m := _R["app_ready"].search(msg):
            emit("app_ready", line, None)
        if _R["download_tasks"].search(msg):
            emit("download_tasks", line, None)
        if m := _R["cloud_download"].search(msg):
            emit("cloud_download", line, None, float(m.group(1)))
        if _R["download_done"].search(msg):
            emit("download_done", line, None)
        if _R["engine_started"].search(msg):
            emit("engine_started", line, None)
    return out


def ray_phases(events: Sequence[RayEvent]) -> RayPhases:
    deployments = [e.deployment for e in events if e.deployment]
    target = next((d for d in deployments if "LLMServer" in d), deployments[0] if deployments else None)

    def first(kind: str) -> RayEvent | None:
        # Lines without a deployment name (Ray LLM's own) belong to the LLM deployment by construction.
        return next((e for e in events if e.kind == kind and e.deployment in (None, target)), None)

    up, add, started, init = first("upscale"), first("add"), first("started"), first("replica_init")
    cloud = first("cloud_download")
    years = [e.year for e in events if e.year is not None]

    def ts(kind: str) -> Stamp | None:
        e = first(kind)
        return e.ts if e else None

    return RayPhases(
        year=years[0] if years else None,
        deploy_ts=ts("deploy"),
        upscale_ts=up.ts if up else None,
        upscale_from=up.replicas_from if up else None,
        upscale_to=up.replicas_to if up else None,
        replica_add_ts=add.ts if add else None,
        replicas_added=int(add.text) if add else None,
        replica_started_ts=started.ts if started else None,
        replica_startup_s=started.value_s if started else None,
        replica_init_s=init.value_s if init else None,
        app_ready_ts=ts("app_ready"),
        download_tasks_ts=ts("download_tasks"),
        cloud_download_ts=cloud.ts if cloud else None,
        cloud_download_s=cloud.value_s if cloud else None,
        model_download_done_ts=ts("download_done"),
        engine_started_ts=ts("engine_started"),
        events=tuple(events),
    )


def parse_ray(text: str) -> RayPhases:
    """Serve controller and Ray LLM milestones in ``text`` (absolute stamps where Ray logged a year)."""
    return ray_phases(ray_events(parse_lines(text)))
