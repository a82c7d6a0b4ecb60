"""The scenarios beyond a single request (``registry.SCENARIOS``: a burst and a trickle, requests after ready, a
return to zero, sleep and wake): their tables (``scenarios.csv``, ``scenarios_summary.csv``, ``scenarios.md``), their
console tables and their graphs. The numbers of one run come from ``scenarios.summarize``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from coldstart.analysis import scenarios
from coldstart.analysis.plots import SERIES_COLORS, new_figure, save_figure, slug
from coldstart.analysis.results import RequestGroup, ResultRow
from coldstart.analysis.scenarios import FailureReason
from coldstart.analysis.tables import SINGLE, countable, device_label, experiment_order

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def scenario_rows(runs: pd.DataFrame, rows: Sequence[ResultRow]) -> list[tuple[ResultRow, str | None]]:
    """(row, device kind) of the countable runs of a scenario other than single, in the order given."""
    ok = countable(runs)
    ok = ok[ok["scenario"].ne(SINGLE)]
    device = {str(r): (d if isinstance(d, str) else None) for r, d in zip(ok["run_id"], ok["device"], strict=True)}
    return [(row, device[row.run_id]) for row in rows if row.run_id in device and row.requests]


def scenario_summaries(runs: pd.DataFrame, rows: Sequence[ResultRow]) -> list[scenarios.ScenarioSummary]:
    return [s for row, device in scenario_rows(runs, rows) if (s := scenarios.summarize(row, device)) is not None]


def scenario_run_table(summaries: Sequence[scenarios.ScenarioSummary]) -> pd.DataFrame:
    """One row per scenario run: its ids and every number of its summary (``ScenarioSummary.metrics``)."""
    import pandas as pd

    ids = ["run_id", "model", "experiment", "scenario", "device", "status", "replicas_source"]
    records = [
        {**{k: getattr(s, k) for k in ids}, "return_ttfts_s": list(s.return_ttfts_s), **s.metrics()} for s in summaries
    ]
    columns = list(dict.fromkeys([*ids, "return_ttfts_s", *(k for r in records for k in r)]))
    return pd.DataFrame.from_records(records, columns=columns)


def scenario_median_table(meds: Sequence[scenarios.ScenarioMedian]) -> pd.DataFrame:
    """Medians over runs per (model, experiment, scenario, device); ``n`` runs, request counts are totals."""
    import pandas as pd

    ids = ["model", "experiment", "scenario", "device", "n"]
    records = [{**{k: getattr(m, k) for k in ids}, **m.metrics} for m in meds]
    columns = list(dict.fromkeys([*ids, *(k for r in records for k in r)]))
    return pd.DataFrame.from_records(records, columns=columns)


def scenario_markdown(meds: Sequence[scenarios.ScenarioMedian]) -> str:
    """The two scenario tables as Markdown: the scenario-wide numbers, then each request group."""
    parts = []
    for title, (head, cells) in (
        ("Scenarios: medians over runs", scenarios.scenario_table(meds, device_label)),
        (
            "Scenarios per request group (requests: totals over runs; TTFT, tok/s: medians of the runs')",
            (scenarios.group_table(meds, device_label)),
        ),
    ):
        parts.append(f"## {title}\n\n{scenarios.markdown(head, cells)}")
    return "\n".join(parts)


def write_scenario_tables(summaries: Sequence[scenarios.ScenarioSummary], out_dir: Path) -> list[Path]:
    """``scenarios.csv`` (one row per run), ``scenarios_summary.csv`` (medians) and ``scenarios.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meds = scenarios.medians(summaries)
    paths = [out_dir / "scenarios.csv", out_dir / "scenarios_summary.csv", out_dir / "scenarios.md"]
    scenario_run_table(summaries).to_csv(paths[0], index=False)
    scenario_median_table(meds).to_csv(paths[1], index=False)
    paths[2].write_text(scenario_markdown(meds))
    return paths


def print_scenarios(meds: Sequence[scenarios.ScenarioMedian]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for title, (head, cells) in (
        ("scenarios: medians over runs (seconds)", scenarios.scenario_table(meds, device_label)),
        (
            "scenarios per request group: requests, failures (totals); TTFT, tok/s (medians of the runs')",
            (scenarios.group_table(meds, device_label)),
        ),
    ):
        table = Table(title=title)
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i < len(scenarios.KEY_HEAD) - 1 or h == "group" else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)


_MAX_REPLICA_PANELS = 6  # runs past this many are named under the graph, not drawn
_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _experiment_colors(experiments: Iterable[str]) -> dict[str, str]:
    ordered = sorted(dict.fromkeys(experiments), key=experiment_order)
    return {e: SERIES_COLORS[i % len(SERIES_COLORS)] for i, e in enumerate(ordered)}


def render_scenario_burst(rows: Sequence[ResultRow], title: str) -> Figure:
    """TTFT of each burst request over its index, one series per run (colour: experiment; marker: run). A
    request without a first token is a red x on the axis, not a TTFT of 0."""
    fig = new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    color = _experiment_colors(r.experiment for r in rows)
    failed_x: list[int] = []
    per_experiment: dict[str, int] = {}
    for row in rows:
        burst = [r for r in row.requests or () if r.group is RequestGroup.BURST]
        got = [(r.index, r.client.ttft_s) for r in burst if r.client.ok and r.client.ttft_s is not None]
        failed_x += [r.index for r in burst if not (r.client.ok and r.client.ttft_s is not None)]
        k = per_experiment[row.experiment] = per_experiment.get(row.experiment, -1) + 1
        ax.plot(
            [i for i, _ in got],
            [t for _, t in got],
            marker=_RUN_MARKERS[k % len(_RUN_MARKERS)],
            color=color[row.experiment],
            linewidth=0.8,
            markersize=5,
            label=f"{row.experiment} · {row.run_id}",
        )
    if failed_x:
        ax.scatter(failed_x, [0.0] * len(failed_x), marker="x", color="#b00020", zorder=3, label="no first token")
    ax.set_xlabel("request (send order)")
    ax.set_ylabel("TTFT (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _steps(intervals: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[int]]:
    """(times, count) of a step function: how many of ``intervals`` (start, end or None) hold. An interval still
    open when the log ended holds to the graph's right edge."""
    changes = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals if b is not None])
    times, counts, n = [0.0], [0], 0
    for t, d in changes:
        n += d
        times.append(t)
        counts.append(n)
    return times, counts


def render_scenario_replicas(rows: Sequence[ResultRow], title: str) -> Figure:
    """Replicas of the LLM deployment over time, seconds since the run's first request, one panel per run
    (the first ``_MAX_REPLICA_PANELS``): started (Serve's "Starting" to "is stopped"), engine starting (the
    replica's engine start to Ray LLM's "Started vLLM engine") and running ("started successfully" to
    "Stopping"); the requests' first tokens as ticks."""
    shown = rows[:_MAX_REPLICA_PANELS]
    fig = new_figure(9.0, 1.9 * len(shown) + 1.0)
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, shown, strict=True):
        records = row.requests or ()
        sends = [r.client.t_send_epoch for r in records if r.client.t_send_epoch is not None]
        t0 = min(sends) if sends else min(s.t_starting_epoch or s.t_running_epoch or 0.0 for s in row.replicas or ())
        tokens = [r.client.t_first_token_epoch - t0 for r in records if r.client.t_first_token_epoch is not None]
        spans = row.replicas or ()
        stamps = [t - t0 for s in spans for t in dataclasses.astuple(s)[2:] if isinstance(t, float)]
        end = max([*stamps, *tokens, 1.0]) * 1.05
        started = [
            (a - t0, None if s.t_stopped_epoch is None else s.t_stopped_epoch - t0)
            for s in spans
            if (a := s.t_starting_epoch if s.t_starting_epoch is not None else s.t_running_epoch) is not None
        ]
        running = [
            (s.t_running_epoch - t0, None if s.t_stopping_epoch is None else s.t_stopping_epoch - t0)
            for s in spans
            if s.t_running_epoch is not None
        ]
        # The replica's own engine start to "Started vLLM engine": where its start went (rows since 2026-11-30).
        engine = [
            (s.t_engine_start_epoch - t0, None if s.t_engine_ready_epoch is None else s.t_engine_ready_epoch - t0)
            for s in spans
            if s.t_engine_start_epoch is not None
        ]
        lines = [
            (started, "started", "#f28e2b"),
            *([(engine, "engine starting", "#59a14f")] if engine else []),  # absent from rows before 2026-11-30
            (running, "running", "#4e79a7"),
        ]
        for intervals, label, colour in lines:
            times, counts = _steps(intervals)
            ax.step([*times, end], [*counts, counts[-1]], where="post", label=label, color=colour)
        if tokens:
            ax.plot(tokens, [0.0] * len(tokens), "|", color="#333333", markersize=10, label="first token")
        ax.set_xlim(0, end)
        ax.set_ylim(-0.3, max(1, len(spans)) + 0.5)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("replicas", fontsize=8)
        ax.set_title(f"{row.experiment} · {row.scenario_name} · {row.run_id}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel("seconds since the first request")
    fig.suptitle(title, fontsize=10)
    if len(rows) > len(shown):
        left = ", ".join(r.run_id for r in rows[len(shown) :])
        fig.text(0.01, -0.01, f"not drawn: {left}", fontsize=7, ha="left", va="top", color="#555555", wrap=True)
    return fig


# (group, label, colour) of the requests drawn by send time; a failed request is a red x whatever its group.
_BY_SEND_GROUPS: tuple[tuple[RequestGroup, str, str], ...] = (
    (RequestGroup.BURST, "burst at zero", "#4e79a7"),
    (RequestGroup.TRICKLE, "trickle", "#f28e2b"),
    (RequestGroup.AFTER_READY, "after ready", "#59a14f"),
)


def render_scenario_by_send_time(rows: Sequence[ResultRow], title: str) -> Figure:
    """TTFT of every request of the first start over the second it was sent (seconds since the first send), one
    panel per run (the first ``_MAX_REPLICA_PANELS``): the burst, the trickle beside it and what followed ready.
    The first LLM replica's "running" is a dashed line, and the dotted diagonal is a request's wait for it: a
    request sent before it cannot have its first token sooner. A request without a first token is a red x on
    the axis, its reason in the legend."""
    shown = rows[:_MAX_REPLICA_PANELS]
    fig = new_figure(9.0, 2.4 * len(shown) + 1.0)
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, shown, strict=True):
        # (seconds since the first send, record) of the first start's requests
        sends = [(r.client.t_send_epoch, r) for r in row.requests or () if r.cycle == 0]
        t0 = min((t for t, _ in sends if t is not None), default=0.0)
        records = [(t - t0, r) for t, r in sends if t is not None]
        for group, label, colour in _BY_SEND_GROUPS:
            got = [(x, r.client.ttft_s) for x, r in records if r.group is group and r.client.ok]
            if got:
                ax.scatter(*zip(*got, strict=True), s=10, color=colour, label=f"{label} ({len(got)})", zorder=3)
        failed: dict[FailureReason, list[float]] = {}
        for x, r in records:
            if not r.client.ok:
                failed.setdefault(FailureReason.of(r.client), []).append(x)
        for reason, sent in sorted(failed.items(), key=lambda item: item[0].label):
            label = f"failed: {reason.label} ({len(sent)})"
            ax.scatter(sent, [0.0] * len(sent), marker="x", color="#b00020", zorder=4, label=label)
        running = [s.t_running_epoch - t0 for s in row.replicas or () if s.t_running_epoch is not None]
        end = max([*(x for x, _ in records), *running, 1.0])
        if running and min(running) > 0:
            ready = min(running)
            ax.axvline(ready, color="#333333", linestyle="--", linewidth=0.8, label="first replica running")
            ax.plot([0.0, ready], [ready, 0.0], color="#999999", linestyle=":", linewidth=0.8, label="wait for it")
        ax.set_xlim(-0.02 * end, end * 1.05)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("TTFT (s)", fontsize=8)
        ax.set_title(f"{row.experiment} · {row.scenario_name} · {row.run_id}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel("sent at: seconds since the first request")
    fig.suptitle(title, fontsize=10)
    if len(rows) > len(shown):
        left = ", ".join(r.run_id for r in rows[len(shown) :])
        fig.text(0.01, -0.01, f"not drawn: {left}", fontsize=7, ha="left", va="top", color="#555555", wrap=True)
    return fig


def render_scenario_after_ready(summaries: Sequence[scenarios.ScenarioSummary], title: str) -> Figure:
    """Per experiment: the first request after ready against the median of the later ones, a bar each (median
    over runs) with every run as a dot. A log scale when they differ by orders of magnitude."""
    experiments = sorted(dict.fromkeys(s.experiment for s in summaries), key=experiment_order)
    fig = new_figure(max(5.0, 1.5 * len(experiments) + 3.0), 4.5)
    ax = fig.add_subplot()
    width = 0.38
    values: list[float] = []
    for i, experiment in enumerate(experiments):
        mine = [s for s in summaries if s.experiment == experiment]
        for offset, (attr, label, colour) in enumerate(
            (
                ("after_ready_first_ttft_s", "first after ready", "#e15759"),
                ("after_ready_rest_p50_s", "later ones (median)", "#59a14f"),
            )
        ):
            runs = [v for s in mine if (v := getattr(s, attr)) is not None]
            x = i + (offset - 0.5) * width
            if runs:
                med = statistics.median(runs)
                ax.bar([x], [med], width=width * 0.9, color=colour, label=label if i == 0 else None)
                ax.scatter([x] * len(runs), runs, s=12, color="#333333", zorder=3)
                ax.annotate(
                    f"{med:.2f} s\nn={len(runs)}",
                    (x, med),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
                values += runs
    if values and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_yscale("log")
    elif values:
        ax.set_ylim(0, max(values) * 1.2)  # room for the labels on top
    ax.set_xticks(range(len(experiments)), experiments)
    ax.set_ylabel("TTFT (s)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def render_scenarios(runs: pd.DataFrame, rows: Sequence[ResultRow], out_dir: Path) -> list[Path]:
    """The scenario graphs of each (model, device kind) that has such runs: bursts, TTFT by send time (runs with
    a trickle), replicas over time, first vs later after ready. Nothing when there are no scenario runs."""
    written: list[Path] = []
    picked = scenario_rows(runs, rows)
    for model, device in dict.fromkeys((row.model, device) for row, device in picked):
        mine = [row for row, d in picked if (row.model, d) == (model, device)]
        where = slug(device_label(device))
        on = f"{model} on {device_label(device)}"
        bursts = [r for r in mine if sum(q.group is RequestGroup.BURST for q in r.requests or ()) > 1]
        if bursts:
            fig = render_scenario_burst(bursts, f"{on}: TTFT of each request of a burst at zero replicas")
            written += save_figure(fig, out_dir, f"scenario_burst_{model}_{where}")
        trickles = [r for r in mine if any(q.group is RequestGroup.TRICKLE for q in r.requests or ())]
        if trickles:
            fig = render_scenario_by_send_time(trickles, f"{on}: TTFT of each request by when it was sent")
            written += save_figure(fig, out_dir, f"scenario_by_send_time_{model}_{where}")
        with_replicas = [r for r in mine if r.replicas]
        if with_replicas:
            fig = render_scenario_replicas(with_replicas, f"{on}: LLM replicas over time")
            written += save_figure(fig, out_dir, f"scenario_replicas_{model}_{where}")
        after = [
            s
            for r in mine
            if (s := scenarios.summarize(r, device)) is not None and s.after_ready_rest_p50_s is not None
        ]
        if after:
            fig = render_scenario_after_ready(after, f"{on}: the first request after ready against the later ones")
            written += save_figure(fig, out_dir, f"scenario_after_ready_{model}_{where}")
    return written
