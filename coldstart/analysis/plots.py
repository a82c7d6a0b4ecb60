"""Tables -> matplotlib figures -> PNG + SVG: the phase stacks, the fast-path ladders, the comparison of models,
the TTFT spread and one request-to-token timeline per run.

A render function takes a table (``tables``) and returns a bare ``Figure``; it reads no log and writes no
file. ``save_figure`` writes one; ``render_all`` draws every graph of these runs but the scenarios'
(``scenario_report.render_scenarios``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from coldstart.analysis.results import ResultRow
from coldstart.analysis.tables import (
    ExcludedRun,
    comparison_data,
    device_label,
    excluded_runs,
    experiment_order,
    gantt_data,
    ladder_data,
    ladders,
    median_table,
    stacked_data,
    ttft_spread,
)
from coldstart.analysis.timeline import CATEGORIES, CATEGORY

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def new_figure(width_in: float, height_in: float) -> Figure:
    # A bare Figure (no pyplot): no global state, no GUI backend, freed when dropped.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _color_of_label(label: str) -> str:
    return next((c for c in CATEGORIES if c.label == label), CATEGORY["unattributed"]).colour


def render_stacked(
    data: pd.DataFrame, model: str, excluded: Sequence[ExcludedRun] = (), title: str | None = None
) -> Figure:
    """One bar per experiment, stacked by category (median seconds), the median total, n and the range of the
    totals on top.
    ``excluded``: this model's runs left out of the medians (failed, or failed their cache audit)."""
    cats = [c for c in data.columns if c not in ("n", "total_s", "total_min_s", "total_max_s", "total_kind")]
    fig = new_figure(max(6.0, 1.6 * len(data) + 4.5), 5.0)
    ax = fig.add_subplot()
    x = list(range(len(data)))
    bottom = [0.0] * len(data)
    for cat in cats:
        heights = data[cat].fillna(0.0).tolist()
        ax.bar(
            x,
            heights,
            bottom=bottom,
            width=0.6,
            label=cat,
            color=_color_of_label(cat),
            hatch="//" if cat == CATEGORY["unattributed"].label else None,
            edgecolor="white",
            linewidth=0.5,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for xi, top, (_, r) in zip(x, bottom, data.iterrows(), strict=True):
        what = "TTFT" if r["total_kind"] == "ttft" else "log span"
        spread = f" ({r['total_min_s']:.0f}–{r['total_max_s']:.0f})" if r["n"] > 1 else ""
        ax.annotate(
            f"{r['total_s']:.1f} s {what}\nn={int(r['n'])}{spread}",
            (xi, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, list(data.index))
    ax.set_ylabel("seconds (median of each phase)")
    ax.set_ylim(0, max([*bottom, 1.0]) * 1.15)
    ax.set_title(title or f"{model}: where the cold start goes")
    # Legend top-down in the order the stack reads top-down.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    notes = []
    if (data["total_kind"] == "ttft").any():
        notes.append("TTFT: request to first token, from zero replicas")
    if (data["total_kind"] != "ttft").any():
        notes.append("log span: a capture without a request, LLM replica's first log line to engine ready")
    if excluded:
        notes.append("left out: " + "; ".join(map(str, excluded)))
    fig.text(0.01, -0.01, "\n".join(notes), fontsize=7, ha="left", va="top", color="#555555", wrap=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


SERIES_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")


def render_comparison(data: pd.DataFrame, excluded: Sequence[ExcludedRun] = ()) -> Figure:
    """Models side by side, one bar per experiment that model has: median TTFT with a min–max whisker over
    runs, or (hatched) the log span of a capture without a request. ``excluded``: runs left out (failed),
    named in a footnote."""
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(data["model"]))
    series = sorted(dict.fromkeys(data["series"]), key=lambda s: (experiment_order(s.split(" ")[0]), s))
    # One color per experiment (a device does not make another fix); the device is written on its bar.
    experiments = sorted(dict.fromkeys(data["experiment"]), key=experiment_order)
    color = {e: SERIES_COLORS[i % len(SERIES_COLORS)] for i, e in enumerate(experiments)}
    per_model = {m: [s for s in series if ((data["model"] == m) & (data["series"] == s)).any()] for m in models}
    kinds = {m: set(data.loc[data["model"] == m, "device"]) for m in models}
    width = 0.8 / max(len(v) for v in per_model.values())
    n_bars = sum(len(v) for v in per_model.values())
    fig = new_figure(min(16.0, 3.5 + 0.45 * n_bars + 0.6 * len(models)), 5.0)
    ax = fig.add_subplot()
    for m, model in enumerate(models):
        present = per_model[model]
        for j, s in enumerate(present):
            r = data[(data["model"] == model) & (data["series"] == s)].iloc[0]
            x = m + (j - (len(present) - 1) / 2) * width
            ttft = r["total_kind"] == "ttft"
            ax.bar(
                [x],
                [r["total_s"]],
                width=width * 0.92,
                color=color[r["experiment"]],
                hatch=None if ttft else "//",
                edgecolor="white",
                linewidth=0.5,
            )
            top = r["total_s"]
            if r["n"] > 1:  # the spread over runs, min to max
                ax.errorbar(
                    [x],
                    [r["total_s"]],
                    yerr=[[r["total_s"] - r["total_min_s"]], [r["total_max_s"] - r["total_s"]]],
                    fmt="none",
                    ecolor="#333333",
                    elinewidth=0.8,
                    capsize=2,
                )
                top = r["total_max_s"]
            several = len(kinds[model]) > 1
            where = "\n" + device_label(r["device"]) if several and r["device"] != "cuda" else ""
            ax.annotate(
                f"{r['total_s']:.0f}{where}",
                (x, top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
            )
    ticks = []
    for model in models:  # a model on one device kind says it once, under its name
        (kind,) = kinds[model] if len(kinds[model]) == 1 else (None,)
        ticks.append(model if kind in (None, "cuda", "?") else f"{model}\n({device_label(kind)})")
    ax.set_xticks(range(len(models)), ticks)
    ax.set_ylabel("seconds (median over runs, whisker min–max)")
    ax.set_title("Cold start by model and experiment")
    handles = [Patch(facecolor=color[e], label=e) for e in experiments]
    handles += [
        Patch(facecolor="#999999", label="TTFT, request → first token"),
        Patch(facecolor="#999999", hatch="//", edgecolor="white", label="log span (capture, no request)"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if excluded:
        # One run a line: a single joined line stretched the figure to the width of the whole list.
        fig.text(
            0.01,
            -0.01,
            "left out of the medians:\n" + "\n".join(map(str, excluded)),
            fontsize=7,
            ha="left",
            va="top",
            color="#555555",
        )
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _duration_text(seconds: float, error_s: float | None) -> str:
    if error_s is not None and error_s >= 0.05:
        # Whole-second vLLM stamps: say so, rather than print a bare "0.0 s".
        return f"{seconds:.1f} ±{error_s:.1f} s"
    return f"{seconds:.1f} s" if seconds >= 0.05 else f"{seconds * 1000:.0f} ms"


def render_gantt(
    data: pd.DataFrame, title: str, marker_s: float | None = None, marker_label: str | None = None
) -> Figure:
    """One row per segment (a carved segment keeps its pieces on one row), from the request at 0 s; a dashed
    line at ``marker_s`` (the first token, or where a failed stream ended)."""
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    rows = list(dict.fromkeys(data["name"]))
    fig = new_figure(10.0, 0.38 * len(rows) + 1.8)
    ax = fig.add_subplot()
    end = max([*data["end_s"].tolist(), marker_s or 0.0, 1.0])
    for y, name in enumerate(rows):
        sub = data[data["name"] == name]
        ranges = [(a, b - a) for a, b in zip(sub["start_s"], sub["end_s"], strict=True)]
        category = sub["category"].iloc[0]
        ax.broken_barh(
            ranges,
            (y - 0.38, 0.76),
            facecolors=CATEGORY[category].colour if category in CATEGORY else "#999999",
            hatch="//" if category == "unattributed" else None,
            edgecolor="white",
        )
        err = sub["error_s"].iloc[0] if "error_s" in sub else None
        err = None if err is None or err != err else float(err)
        ax.annotate(
            _duration_text(sum(w for _, w in ranges), err),
            (sub["end_s"].max(), y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(range(len(rows)), [data[data["name"] == n]["label"].iloc[0] for n in rows], fontsize=8)
    ax.invert_yaxis()
    if marker_s is not None:
        ax.axvline(marker_s, color="black", linewidth=0.8, linestyle="--")
        ax.annotate(
            marker_label or f"{marker_s:.1f} s",
            (marker_s, 0.99),
            xytext=(-4, 0),
            textcoords="offset points",
            xycoords=blended_transform_factory(ax.transData, ax.transAxes),
            ha="right",
            va="top",
            fontsize=8,
        )
    present = [c for c in CATEGORIES if c.name in set(data["category"])]
    ax.legend(
        handles=[
            Patch(
                facecolor=c.colour,
                hatch="//" if c.name == "unattributed" else None,
                edgecolor="white",
                label=c.label,
            )
            for c in present
        ],
        loc="lower left",
        fontsize=7,
        frameon=False,
    )
    ax.set_xlim(0, end * 1.12)
    ax.set_xlabel("seconds since the request")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def render_ttft_spread(data: pd.DataFrame) -> Figure:
    """Median TTFT per (model, experiment, device), whiskers min..max, every run as a dot, n beside."""
    fig = new_figure(max(6.0, 1.1 * len(data) + 3.0), 4.8)
    ax = fig.add_subplot()
    x = list(range(len(data)))
    med = data["median_s"].tolist()
    yerr = [
        [m - lo for m, lo in zip(med, data["min_s"], strict=True)],
        [hi - m for m, hi in zip(med, data["max_s"], strict=True)],
    ]
    ax.errorbar(
        x, med, yerr=yerr, fmt="o", color="#4e79a7", ecolor="#4e79a7", capsize=6, markersize=7, label="median, min–max"
    )
    for xi, values in zip(x, data["values"], strict=True):
        ax.scatter([xi + 0.12] * len(values), values, s=12, color="#f28e2b", alpha=0.8, zorder=3)
    top = max([*data["max_s"].tolist(), 1.0])
    for xi, n, m in zip(x, data["n"], med, strict=True):
        ax.annotate(
            f"n={int(n)}\n{m:.1f} s",
            (xi, m),
            xytext=(-10, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=7,
        )
    labels = [
        f"{m}\n{e}\n({device_label(d)})"
        for m, e, d in zip(data["model"], data["experiment"], data["device"], strict=True)
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.8, len(data) - 0.4)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("TTFT from zero replicas (s)")
    ax.set_title("Time to first token across repeats")
    ax.scatter([], [], s=12, color="#f28e2b", label="one run")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def slug(text: str) -> str:
    """``text`` as a file name: every run of other characters becomes one ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def ladder_stem(model: str, hardware: str, node_state: str) -> str:
    """The file name (no suffix) of a fast-path ladder; ``hardware`` as ``device_label`` prints it (``H200 x1``)."""
    return slug(f"ladder_{model}_{slug(hardware)}_{node_state}")


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{slug(stem)}.png", out_dir / f"{slug(stem)}.svg"]
    import matplotlib

    # Same data, same bytes: no timestamps, fixed SVG ids, so regenerating graphs leaves unchanged ones alone
    # in git instead of rewriting every file.
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        for p in paths:
            metadata = {"Date": None} if p.suffix == ".svg" else {"Software": None}
            fig.savefig(p, dpi=150 if p.suffix == ".png" else None, bbox_inches="tight", metadata=metadata)
    return paths


def render_all(runs: pd.DataFrame, rows: Sequence[ResultRow], out_dir: Path) -> list[Path]:
    """Every graph of these runs but the scenarios' into out_dir; returns the files written."""
    written: list[Path] = []
    medians = median_table(runs)
    excluded = excluded_runs(runs)
    for model in dict.fromkeys(medians["model"]):
        mine = [e for e in excluded if e.model == model]
        fig = render_stacked(stacked_data(medians, model), model, mine)
        written += save_figure(fig, out_dir, f"phases_{model}")
    for model, device, node_state in ladders(medians):
        data = ladder_data(medians, model, device, node_state)
        mine = [e for e in excluded if e.model == model]
        title = f"{model} on {device_label(device)}, {node_state} node: the fast-path ladder (rungs not run are absent)"
        fig = render_stacked(data, model, mine, title=title)
        written += save_figure(fig, out_dir, ladder_stem(model, device_label(device), node_state))
    if not medians.empty:
        written += save_figure(render_comparison(comparison_data(medians), excluded), out_dir, "comparison")
    spread = ttft_spread(runs)
    if not spread.empty:
        written += save_figure(render_ttft_spread(spread), out_dir, "ttft_spread")
    for row in rows:
        if row.timeline is None or row.timeline.t_send_epoch is None:
            continue  # no request: there is no request-to-token timeline to draw
        data = gantt_data(row)
        if data.empty:
            continue
        ttft = row.ttft_s
        ended = row.client.total_s if row.client else None
        marker: float | None
        marker_label: str | None
        if ttft is not None:
            outcome, marker, marker_label = f"TTFT {ttft:.1f} s", ttft, f"first token {ttft:.1f} s"
        else:
            outcome = f"{row.status}: no first token"
            marker, marker_label = ended, None if ended is None else f"stream ended, no token ({ended:.1f} s)"
        title = f"{row.model} · {row.experiment} · {device_label(row.device)} · {row.run_id} — {outcome}"
        fig = render_gantt(data, title, marker, marker_label)
        written += save_figure(fig, out_dir, f"timeline_{row.model}_{row.run_id}")
    return written
