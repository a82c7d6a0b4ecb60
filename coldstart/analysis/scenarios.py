"""What a scenario run (``registry.SCENARIOS``: a burst and a trickle beside it, requests after ready, a return
to zero, sleep and wake) measured, from its row alone: a ``ScenarioSummary`` per row, and medians over the runs
of one (model, experiment, scenario, device).

Pure: rows in, typed summaries out (no pandas, no files). A number the row cannot give is None, never 0.
Percentiles interpolate linearly between the closest ranks (numpy's and pandas' default), so the p90 of a
burst of 8 sits between its 7th and 8th TTFT.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from coldstart.analysis.results import ClientResult, ClientStatus, RequestGroup, RequestRecord, ResultRow

FAILED_BY = "_failed_"  # <group>_failed_<reason>: how many of the group's requests failed for that reason

GROUP_STATS: tuple[str, ...] = (
    "n",
    "answered",
    "failed",
    "timed_out",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "ttft_max_s",
    "tokens_per_s",
)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, linear between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def tokens_per_s(client: ClientResult) -> float | None:
    """Decode speed of one request: the tokens after the first over the first-to-last token time. None when
    the stream gave fewer than two tokens or lacks a stamp (the first token's time is the TTFT, not decode)."""
    first, last, tokens = client.t_first_token_epoch, client.t_last_token_epoch, client.tokens
    if first is None or last is None or tokens is None or tokens < 2 or last <= first:
        return None
    return (tokens - 1) / (last - first)


@dataclass(frozen=True)
class FailureReason:
    """Why a request ended without an answer: how the client saw it end and, for an HTTP error, the status Serve
    answered (503: shed by a full queue, 408: the ingress's own timeout before the first token)."""

    status: ClientStatus
    http_status: int | None = None  # only for ClientStatus.HTTP_ERROR

    @classmethod
    def of(cls, client: ClientResult) -> FailureReason:
        http = client.http_status if client.status is ClientStatus.HTTP_ERROR else None
        return cls(client.status, http)

    @property
    def label(self) -> str:
        """``http_503``, ``timeout``: the column suffix of its count (``<group>_failed_<label>``)."""
        return self.status.value if self.http_status is None else f"http_{self.http_status}"


@dataclass(frozen=True)
class GroupStats:
    """The requests of one ``RequestGroup`` in one run. TTFTs and speeds are of the requests that got a token.
    Every request sent is answered or failed (``n == answered + failed``), each failure counted by its reason."""

    group: RequestGroup
    n: int  # requests sent
    answered: int  # requests that ended ok: a first token and a clean end of the stream
    failed: int  # requests that did not end ok (timeouts included)
    timed_out: int
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    ttft_max_s: float | None
    tokens_per_s: float | None  # median over the group's requests
    failed_by: tuple[tuple[FailureReason, int], ...] = ()  # (reason, requests), by the reason's label

    @classmethod
    def of(cls, group: RequestGroup, records: Sequence[RequestRecord]) -> GroupStats:
        ttfts = [r.client.ttft_s for r in records if r.client.ok and r.client.ttft_s is not None]
        reasons = Counter(FailureReason.of(r.client) for r in records if not r.client.ok)
        return cls(
            group=group,
            n=len(records),
            answered=sum(1 for r in records if r.client.ok),
            failed=sum(1 for r in records if not r.client.ok),
            timed_out=sum(1 for r in records if r.client.status is ClientStatus.TIMEOUT),
            ttft_p50_s=quantile(ttfts, 0.5),
            ttft_p90_s=quantile(ttfts, 0.9),
            ttft_p99_s=quantile(ttfts, 0.99),
            ttft_max_s=max(ttfts) if ttfts else None,
            tokens_per_s=_median(tokens_per_s(r.client) for r in records if r.client.ok),
            failed_by=tuple(sorted(reasons.items(), key=lambda item: item[0].label)),
        )


@dataclass(frozen=True)
class ScenarioSummary:
    """One scenario run. ``time_to_replicas_s[n - 1]``: seconds from the first send until ``n`` replicas had
    each served a first token (the first start only; a return's new replica is not a second one)."""

    run_id: str
    model: str
    experiment: str
    scenario: str
    device: str | None
    status: str
    groups: tuple[GroupStats, ...]  # in RequestGroup order, the groups the run sent
    first_ttft_s: float | None  # the row's: the first request at zero replicas
    after_ready_first_ttft_s: float | None  # the first request after ready (vllm#19824's slow one)
    after_ready_rest_p50_s: float | None  # the median of the sequential ones after it
    return_ttfts_s: tuple[float | None, ...]  # one per return to zero, in cycle order
    time_to_replicas_s: tuple[float, ...]
    replicas_source: str | None  # "requests" (who served what) or "replica_spans" (controller's "started")
    wake_s: float | None  # the /wakeup call
    wake_ttft_s: float | None  # the request right after it

    @property
    def return_ttft_s(self) -> float | None:
        return self.return_ttfts_s[0] if self.return_ttfts_s else None

    def group(self, group: RequestGroup) -> GroupStats | None:
        return next((g for g in self.groups if g.group is group), None)

    def metrics(self) -> dict[str, float | None]:
        """The summary's numbers by column name (``<group>_<stat>``, then the scenario-wide ones), for tables
        and for the medians over runs. ``to_<n>_replicas_s`` for every n the run reached."""
        out: dict[str, float | None] = {}
        for g in self.groups:
            for stat in GROUP_STATS:
                value = getattr(g, stat)
                out[f"{g.group.value}_{stat}"] = None if value is None else float(value)
            for reason, count in g.failed_by:
                out[f"{g.group.value}{FAILED_BY}{reason.label}"] = float(count)
        out.update(
            first_ttft_s=self.first_ttft_s,
            after_ready_first_ttft_s=self.after_ready_first_ttft_s,
            after_ready_rest_p50_s=self.after_ready_rest_p50_s,
            return_ttft_s=self.return_ttft_s,
            wake_s=self.wake_s,
            wake_ttft_s=self.wake_ttft_s,
        )
        for n, seconds in enumerate(self.time_to_replicas_s, 1):
            out[f"to_{n}_replicas_s"] = seconds
        return out


def _ttft(record: RequestRecord | None) -> float | None:
    return record.client.ttft_s if record is not None and record.client.ok else None


def _time_to_replicas(row: ResultRow, records: Sequence[RequestRecord]) -> tuple[tuple[float, ...], str | None]:
    first_start = [r for r in records if r.cycle == 0]
    sends = [r.client.t_send_epoch for r in first_start if r.client.t_send_epoch is not None]
    if not sends:
        return (), None
    t0 = min(sends)
    served = [r for r in first_start if r.client.ok and r.client.t_first_token_epoch is not None]
    # Who served a request comes from the replicas' access lines; one request without it could hide a replica,
    # so the requests only count when every one of them names its replica.
    stamped = [(r.replica_id, r.client.t_first_token_epoch) for r in served]
    if served and all(replica is not None for replica, _ in stamped):
        first_token: dict[str, float] = {}
        for replica, t in stamped:
            if replica is not None and t is not None:
                first_token[replica] = min(first_token.get(replica, t), t)
        return tuple(sorted(t - t0 for t in first_token.values())), "requests"
    # A replica started for a return to zero is not one more replica of the first start.
    returned = [r.client.t_send_epoch for r in records if r.cycle > 0 and r.client.t_send_epoch is not None]
    until = min(returned) if returned else None
    running = sorted(
        s.t_running_epoch - t0
        for s in row.replicas or ()
        if s.t_running_epoch is not None and (until is None or s.t_running_epoch < until)
    )
    return (tuple(running), "replica_spans") if running else ((), None)


def summarize(row: ResultRow, device: str | None = None) -> ScenarioSummary | None:
    """The row's scenario numbers; None for a row without request records (before scenarios). ``device``: the
    device kind the medians group by (``tables.device_kind``), the row's own device when not given."""
    records = row.requests
    if not records:
        return None
    by_group = {g: [r for r in records if r.group is g] for g in RequestGroup}
    after_ready = by_group[RequestGroup.AFTER_READY]
    returns = sorted(by_group[RequestGroup.RETURN], key=lambda r: (r.cycle, r.index))
    wake = by_group[RequestGroup.WAKE][0] if by_group[RequestGroup.WAKE] else None
    to_replicas, source = _time_to_replicas(row, records)
    return ScenarioSummary(
        run_id=row.run_id,
        model=row.model,
        experiment=row.experiment,
        scenario=row.scenario_name,
        device=device if device is not None else row.device,
        status=row.status.value,
        groups=tuple(GroupStats.of(g, rs) for g, rs in by_group.items() if rs),
        first_ttft_s=row.ttft_s,
        after_ready_first_ttft_s=_ttft(after_ready[0]) if after_ready else None,
        after_ready_rest_p50_s=_median(_ttft(r) for r in after_ready[1:]),
        return_ttfts_s=tuple(_ttft(r) for r in returns),
        time_to_replicas_s=to_replicas,
        replicas_source=source,
        wake_s=wake.control_s if wake is not None else None,
        wake_ttft_s=_ttft(wake),
    )


# Counts add up over runs ("3 of 40 requests failed"): a median of per-run counts would hide a rare failure.
COUNT_STATS = ("n", "answered", "failed", "timed_out")


def is_count(metric: str) -> bool:
    return metric.endswith(tuple(f"_{c}" for c in COUNT_STATS)) or FAILED_BY in metric


@dataclass(frozen=True)
class ScenarioMedian:
    """Medians over the runs of one (model, experiment, scenario, device): each metric over the runs that have
    it (``n_of``), ``n`` the runs in all. Request counts (``is_count``) are totals over the runs instead."""

    model: str
    experiment: str
    scenario: str
    device: str | None
    n: int
    run_ids: tuple[str, ...]
    metrics: Mapping[str, float | None]
    n_of: Mapping[str, int]


def medians(summaries: Iterable[ScenarioSummary]) -> list[ScenarioMedian]:
    """One ``ScenarioMedian`` per (model, experiment, scenario, device), in the order the groups first appear.
    The caller picks the runs that count (finished, audit passed): every summary given is one run."""
    groups: dict[tuple[str, str, str, str | None], list[ScenarioSummary]] = {}
    for s in summaries:
        groups.setdefault((s.model, s.experiment, s.scenario, s.device), []).append(s)
    out = []
    for (model, experiment, scenario, device), runs in groups.items():
        per_run = [s.metrics() for s in runs]
        names = list(dict.fromkeys(name for m in per_run for name in m))
        values = {name: [v for m in per_run if (v := m.get(name)) is not None] for name in names}
        out.append(
            ScenarioMedian(
                model=model,
                experiment=experiment,
                scenario=scenario,
                device=device,
                n=len(runs),
                run_ids=tuple(s.run_id for s in runs),
                metrics={
                    name: (sum(v) if is_count(name) else statistics.median(v)) if v else None
                    for name, v in values.items()
                },
                n_of={name: len(v) for name, v in values.items()},
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Text tables (the CLI's rich tables, the markdown file, the report): header and cells, no formatting library

_GROUP_HEAD = (
    "requests",
    "answered",
    "failed",
    "timed out",
    "failed by reason",
    "TTFT p50 s",
    "TTFT p90 s",
    "TTFT p99 s",
    "TTFT max s",
    "tok/s p50",
)


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _count(value: float | None) -> str:
    return "—" if value is None else str(int(value))


def _failed_by_cell(m: ScenarioMedian, group: RequestGroup) -> str:
    """``http_503: 3, timeout: 1``: the group's failures by reason, totals over the runs; — when none failed."""
    prefix = f"{group.value}{FAILED_BY}"
    counts = [(name.removeprefix(prefix), v) for name, v in m.metrics.items() if name.startswith(prefix) and v]
    return ", ".join(f"{label}: {_count(v)}" for label, v in counts) or "—"


def _key_cells(m: ScenarioMedian, device_label: str) -> list[str]:
    return [m.model, m.experiment, m.scenario, device_label, str(m.n)]


KEY_HEAD = ("model", "experiment", "scenario", "device", "runs")


def group_table(
    meds: Sequence[ScenarioMedian], device_label: Callable[[str | None], str] = str
) -> tuple[list[str], list[list[str]]]:
    """Per request group of each (model, experiment, scenario, device): request counts and failures by reason
    (totals over the runs) and the medians over runs of each run's TTFT p50 / p90 / p99 / max and decode speed."""
    head = [*KEY_HEAD, "group", *_GROUP_HEAD]
    rows = []
    for m in meds:
        for g in RequestGroup:
            if m.metrics.get(f"{g.value}_n") is None:
                continue
            value = m.metrics.get
            rows.append(
                [
                    *_key_cells(m, device_label(m.device)),
                    g.value,
                    *(_count(value(f"{g.value}_{stat}")) for stat in ("n", "answered", "failed", "timed_out")),
                    _failed_by_cell(m, g),
                    *(
                        _cell(value(f"{g.value}_{stat}"))
                        for stat in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_max_s")
                    ),
                    _cell(value(f"{g.value}_tokens_per_s"), 1),
                ]
            )
    return head, rows


# (metric, column title) of the scenario-wide numbers; a column no group has is left out of the table.
_SCENARIO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("first_ttft_s", "first TTFT s"),
    ("after_ready_first_ttft_s", "after ready: 1st s"),
    ("after_ready_rest_p50_s", "after ready: rest p50 s"),
    ("return_ttft_s", "return TTFT s"),
    ("wake_s", "wake s"),
    ("wake_ttft_s", "TTFT after wake s"),
)


def scenario_table(
    meds: Sequence[ScenarioMedian], device_label: Callable[[str | None], str] = str
) -> tuple[list[str], list[list[str]]]:
    """Per (model, experiment, scenario, device), medians over runs: the first request's TTFT beside the
    first after ready and the rest, the return's, the time until 1, 2, ... replicas served, and the wake."""
    replicas = max((int(k.split("_")[1]) for m in meds for k in m.metrics if k.startswith("to_")), default=0)
    columns = [
        *_SCENARIO_COLUMNS[:4],
        *((f"to_{n}_replicas_s", f"{n} replica{'s' if n > 1 else ''} serve s") for n in range(1, replicas + 1)),
        *_SCENARIO_COLUMNS[4:],
    ]
    columns = [(k, t) for k, t in columns if any(m.metrics.get(k) is not None for m in meds)]
    head = [*KEY_HEAD, *(t for _, t in columns)]
    rows = [[*_key_cells(m, device_label(m.device)), *(_cell(m.metrics.get(k)) for k, _ in columns)] for m in meds]
    return head, rows


def markdown(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    align = ["---" if i < len(KEY_HEAD) or h == "group" else "---:" for i, h in enumerate(head)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
