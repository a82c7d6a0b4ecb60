"""What a campaign runs: one RunSpec per (model, experiment, scenario, repeat), in a stable order, less the
runs its results file already holds (resume is per campaign)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart.analysis.results import ResultRow, RunStatus, load_rows
from coldstart.registry import InvalidPairError, Model, resolve, resolve_model

NODE_STATES = ("cold", "warm")
# (campaign, model, experiment, scenario, repeat, node state, capture, service args)
ResumeKey = tuple[str | None, str, str, str, int | None, str, bool, tuple[str, ...]]


def row_resume_key(r: ResultRow) -> ResumeKey:
    """A row's ``RunSpec.resume_key``; rows from before a field was recorded ran cold, measured, given nothing."""
    return (
        r.campaign,
        r.model,
        r.experiment,
        r.scenario_name,
        r.repeat,
        r.node_state or "cold",
        bool(r.capture),
        r.service_args or (),
    )


@dataclass(frozen=True)
class RunSpec:
    model: str
    experiment: str
    repeat: int
    campaign: str = "default"
    # "cold": the weights are evicted from the page cache before the run (a node that never served the model);
    # "warm": they are read into it (the node served this model before and scaled to zero).
    node_state: str = "cold"
    scenario: str = "single"  # registry.SCENARIOS: the traffic the run sends
    capture: bool = False  # the run fills a compile cache: its miss is the point (--capture)
    service_args: tuple[str, ...] = ()  # what its service.py is given after the matrix's `--`

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.campaign, self.model, self.experiment, self.scenario, self.repeat)

    @property
    def resume_key(self) -> ResumeKey:
        """What a row must match to answer this run: ``key`` and how the run is made. A campaign (one machine,
        named by date and hardware) holds cold and warm runs, capture runs and runs given other service args."""
        return (*self.key, self.node_state, self.capture, self.service_args)

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
    capture: bool = False,
    service_args: Sequence[str] = (),
    user_models: Mapping[str, Model] | None = None,
) -> list[RunSpec]:
    """Valid pairs under each scenario in a stable order: repeat-major, so a cut-short campaign still covers
    every pair once. ``user_models``: name -> the Model of a user's own model (``--model-id``), checked as it
    is, since no registry entry holds it."""
    pairs = [(m, e) for m in models for e in experiments if pair_problem(m, e, user_models) is None]
    return [
        RunSpec(m, e, r, campaign, node_state, scenario, capture, tuple(service_args))
        for r in range(repeats)
        for scenario in scenarios
        for m, e in pairs
    ]


def pair_problem(model: str, experiment: str, user_models: Mapping[str, Model] | None = None) -> str | None:
    """Why (model, experiment) cannot run (``InvalidPairError``'s words), or None when it can."""
    own = (user_models or {}).get(model)
    try:
        if own is not None:
            resolve_model(own, experiment)
        else:
            resolve(model, experiment)
    except InvalidPairError as exc:
        return str(exc)
    return None


def done_rows(rows: Sequence[ResultRow], *, capture: bool = False) -> dict[ResumeKey, ResultRow]:
    """resume key -> the newest row that makes the run done: ``ok`` and not failing its audit. ``capture``: the
    runs exist to fill a compile cache, so their miss is the point; ``ok`` alone makes them done."""
    return {row_resume_key(r): r for r in rows if r.status is RunStatus.OK and (capture or r.audit_passed is not False)}


def pending(specs: Sequence[RunSpec], results_path: Path, *, capture: bool = False) -> list[RunSpec]:
    """Resume: runs with an ``ok`` row that passed its audit are done; failed runs and runs that failed the
    audit (a cache run that did not hit, a cold run that did) are tried again, their flagged rows kept.
    ``capture``: see ``done_rows`` (in the campaign 2026-11-30-h200x2 a resumed step re-ran its capture run,
    which then hit)."""
    done = done_rows(load_rows(results_path), capture=capture)
    return [s for s in specs if s.resume_key not in done]


def nothing_to_run(
    specs: Sequence[RunSpec], rows: Sequence[ResultRow], results_path: Path, repeats: int, *, capture: bool = False
) -> str:
    """What a re-run of a finished campaign says instead of "0 ok, 0 failed": which rows already answer
    it, and the two ways to measure again (resume is per campaign, so the same command measures nothing)."""
    done = done_rows(rows, capture=capture)

    def run(spec: RunSpec) -> str:
        row = done[spec.resume_key]
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
