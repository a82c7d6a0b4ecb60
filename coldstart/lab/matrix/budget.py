"""How long a run will take, from earlier rows: a run whose estimate no longer fits the time budget is not
started (a run killed halfway costs its time and leaves no row)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from coldstart.analysis.results import ResultRow, RunStatus
from coldstart.lab.matrix.plan import RunSpec

# Clear + service start + shutdown + parse around the TTFT itself: 104-117 s per run on the H100 and H200 of the
# campaigns 2026-11-22-h100x1 and 2026-11-22-h200x2.
DEFAULT_RUN_OVERHEAD_S = 120.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the number comes from, for the message that skips a run


def estimate_run_s(
    spec: RunSpec, rows: Sequence[ResultRow], *, gpu: str | None, overhead_s: float = DEFAULT_RUN_OVERHEAD_S
) -> Estimate | None:
    """How long ``spec`` will take, from earlier ok rows of the same model, experiment and scenario on the same
    GPU (a CPU cold start says nothing about an H100 one; a tour holds two cold starts and a single one), else
    of the experiment under any scenario, else of the model. None: nothing comparable has run yet."""
    model_rows = [
        r
        for r in rows
        if r.status is RunStatus.OK and r.model == spec.model and (r.provenance.gpu if r.provenance else None) == gpu
    ]
    same = [r for r in model_rows if r.experiment == spec.experiment]
    same_scenario = [r for r in same if r.scenario_name == spec.scenario]
    # A new experiment of a known model is closer to that model's other runs than to nothing.
    groups = ((same_scenario, "earlier"), (same, f"earlier {spec.experiment}"), (model_rows, f"earlier {spec.model}"))
    for group, of in groups:
        walls = [r.wall_s for r in group if r.wall_s is not None]
        if walls:
            return Estimate(statistics.median(walls), f"median wall time of {len(walls)} {of} run(s)")
        ttfts = [r.ttft_s for r in group if r.ttft_s is not None]
        if ttfts:
            return Estimate(
                statistics.median(ttfts) + overhead_s,
                f"median TTFT of {len(ttfts)} {of} run(s) + {overhead_s:.0f} s around it",
            )
    return None
