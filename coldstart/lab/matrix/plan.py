"""What a campaign runs: one RunSpec per (model, experiment, scenario, repeat), in a stable order, less the
runs its results file already holds (resume is per campaign)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart.analysis.results import ResultRow, RunStatus, load_rows
from coldstart.registry import InvalidPairError, resolve

NODE_STATES = ("cold", "warm")


@dataclass(frozen=True)
class RunSpec:
    model: str
    experiment: str
    repeat: int
    campaign: str = "default"
    # "cold": the weights are evicted from the page cache before the run (a node that never served the model);
    # "warm": they are read into it (the node served this model before and scaled to zero). Not in the key: a
    # campaign has one node state (the CLI refuses to mix them).
    node_state: str = "cold"
    scenario: str = "single"  # registry.SCENARIOS: the traffic the run sends

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.campaign, self.model, self.experiment, self.scenario, self.repeat)

    @property
    def label(self) -> str:
        """``tiny baseline #0``; a scenario other than ``single`` in parentheses: ``tiny fast (burst) #0`` (not
        brackets: rich, which prints these lines, reads ``[burst]`` as markup and drops it)."""
        scenario = "" if self.scenario == "single" else f" ({self.scenario})"
        return f"{self.model} {self.experiment}{scenario} #{self.repeat}"


def plan(
    models: Sequence[str],
    experiments: Sequence[str],
    repeats: int,
    campaign: str,
    node_state: str = "cold",
    scenarios: Sequence[str] = ("single",),
) -> list[RunSpec]:
    """Valid pairs under each scenario in a stable order: repeat-major, so a cut-short campaign still covers
    every pair once."""
    pairs = []
    for m in models:
        for e in experiments:
            try:
                resolve(m, e)
            except InvalidPairError:
                continue
            pairs.append((m, e))
    return [
        RunSpec(m, e, r, campaign, node_state, scenario)
        for r in range(repeats)
        for scenario in scenarios
        for m, e in pairs
    ]


def done_rows(
    rows: Sequence[ResultRow], *, capture: bool = False
) -> dict[tuple[str | None, str, str, str, int | None], ResultRow]:
    """key -> the newest row that makes the run done: ``ok`` and not failing its audit. ``capture``: the runs
    exist to fill a compile cache, so their miss is the point; ``ok`` alone makes them done."""
    return {
        (r.campaign, r.model, r.experiment, r.scenario_name, r.repeat): r
        for r in rows
        if r.status is RunStatus.OK and (capture or r.audit_passed is not False)
    }


def pending(specs: Sequence[RunSpec], results_path: Path, *, capture: bool = False) -> list[RunSpec]:
    """Resume: runs with an ``ok`` row that passed its audit are done; failed runs and runs that failed the
    audit (a cache run that did not hit, a cold run that did) are tried again, their flagged rows kept.
    ``capture``: see ``done_rows`` (in the campaign 2026-11-30-h200x2 a resumed step re-ran its capture run,
    which then hit)."""
    done = done_rows(load_rows(results_path), capture=capture)
    return [s for s in specs if s.key not in done]


def nothing_to_run(
    specs: Sequence[RunSpec], rows: Sequence[ResultRow], results_path: Path, repeats: int, *, capture: bool = False
) -> str:
    """What a re-run of a finished campaign says instead of "0 ok, 0 failed": which rows already answer
    it, and the two ways to measure again (resume is per campaign, so the same command measures nothing)."""
    done = done_rows(rows, capture=capture)

    def run(spec: RunSpec) -> str:
        row = done[spec.key]
        ttft = "-" if row.ttft_s is None else f"{row.ttft_s:.1f} s"
        return f"run {row.run_id}; TTFT {ttft}"

    campaign = f"campaign {specs[0].campaign!r}"
    if len(specs) == 1:
        (spec,) = specs
        what = f"{spec.label} of {campaign} is already in {results_path} ({run(spec)})"
    else:
        listed = "; ".join(f"{s.label} ({run(s)})" for s in specs[:3])
        more = f"; and {len(specs) - 3} more" if len(specs) > 3 else ""
        what = f"the {len(specs)} runs of {campaign} are already in {results_path}: {listed}{more}"
    return (
        f"nothing to run: {what}. "
        f"Pass --campaign NAME for a new measurement, or --repeats {repeats + 1} (or more) for more."
    )
