"""``python -m coldstart campaign PLAN [STEP ...]``: run a campaign plan on this machine.

Exit status: 0 every command of every step succeeded (or ``--dry-run``); 1 some command failed (each named on
stderr; the steps after it still ran); 2 a bad plan, step name or option (nothing was run).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from coldstart import paths
from coldstart.analysis.results import nvidia_gpus
from coldstart.lab.campaign.executor import DryRunExecutor, Executor, SubprocessExecutor
from coldstart.lab.campaign.outdir import CampaignState, OutDir, StateError
from coldstart.lab.campaign.plan import Plan, PlanError, load_plan
from coldstart.lab.campaign.steps import Campaign
from coldstart.lab.campaign_names import campaign_name, hardware, hardware_of


def plan_path(given: Path) -> Path:
    """The plan file: ``given`` as a path, else ``<paths.plans_dir()>/<given>.yaml`` (``tiny-smoke`` for short,
    found in the checkout's ``campaigns/`` from any working directory)."""
    if given.exists() or given.suffix:
        return given
    return paths.plans_dir() / f"{given}.yaml"


def default_out(plan: Plan) -> Path:
    """Outside the checkout, under the lab's home: a campaign's folder outlives the working tree it ran from."""
    return paths.coldstart_home() / "campaigns" / plan.path.stem


def run_campaign(campaign: Campaign, steps: Sequence[str], *, seed: Path | None = None, redo: bool = False) -> int:
    """Run ``steps`` of the campaign's plan in order; 0: every command succeeded, 1: some failed."""
    ex, out = campaign.executor, campaign.out
    state = out.read_state() or CampaignState(campaign.name, str(campaign.plan.path))
    state = dataclasses.replace(state, campaign=campaign.name, plan=str(campaign.plan.path))
    store = campaign.store_uri or "$COLDSTART_STORE, else the local store"
    ex.say(f"campaign {campaign.name}: plan {campaign.plan.path}, folder {out.path}, store {store}")
    if not ex.dry_run:
        if out.seed_results(seed):
            ex.say(f"results: {out.results} starts as a copy of {seed}")
        out.write_state(state)
    failed: list[str] = []
    not_started: list[str] = []
    repeats = campaign.repeats or campaign.plan.repeats
    for name in steps:
        if state.steps_done.get(name, 0) >= repeats and not redo:
            ex.say(f"== step {name}: done in an earlier run of this campaign, skipped (--redo runs it again)")
            if not ex.dry_run:
                continue
        left_s = campaign.time_left_s()
        if left_s is not None and left_s <= 0:
            not_started.append(name)
            continue
        if campaign.run_step(campaign.plan.step(name)):
            failed.append(name)
        elif not ex.dry_run:
            state = dataclasses.replace(state, steps_done={**state.steps_done, name: repeats})
            out.write_state(state)
    if not_started:
        ex.say(f"budget spent: step(s) not started: {', '.join(not_started)}; run the campaign again to resume")
    if failed:
        print(f"error: step(s) with a failed command: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, metavar="PLAN", help="a plan file, or the name of one in campaigns/")
    parser.add_argument(
        "steps", nargs="*", metavar="STEP", help="steps to run, in this order (default: every step, in plan order)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the campaign's folder: its results file, its state (resume) and runs.tgz for import-runs "
        "(default: campaigns/<plan> under the lab's home)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="wall-clock seconds for the whole campaign (a batch job's limit): each matrix starts no run that "
        "would not finish in what is left, and no step starts once it is spent",
    )
    parser.add_argument(
        "--store", default=None, help="store for models and compile caches (folder or s3:// URI); overrides the plan's"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per (model, experiment) (default: the plan's)")
    parser.add_argument(
        "--campaign",
        default=None,
        help="the campaign's name (default: the one --out holds, else <UTC date>-<gpu>x<count> of this node)",
    )
    parser.add_argument(
        "--seed-results",
        type=Path,
        default=paths.results_file(),
        help="a new campaign's results file starts as a copy of this one (default %(default)s): time "
        "estimates and answer checks read earlier runs",
    )
    parser.add_argument("--redo", action="store_true", help="run the steps an earlier run finished again")
    parser.add_argument(
        "--stop-stale-ray",
        action="store_true",
        help="before each step, stop every Ray process on this node (one a killed run left); only on a node "
        "that runs nothing else of Ray",
    )
    parser.add_argument("--dry-run", action="store_true", help="print every command of every step; run nothing")


def detect_gpu() -> str | None:
    return nvidia_gpus()[0]


def _name(args: argparse.Namespace, state: CampaignState | None) -> str:
    """The campaign's name; raises ValueError when the options and ``--out`` disagree."""
    if state is None:
        return args.campaign or campaign_name(detect_gpu())
    if args.campaign and args.campaign != state.campaign:
        raise ValueError(f"the folder holds campaign {state.campaign!r}, not {args.campaign!r}: pass another --out")
    if not args.campaign and (kept := hardware_of(state.campaign)) and kept != (here := hardware(detect_gpu())):
        raise ValueError(
            f"the folder holds campaign {state.campaign!r} of {kept}; this node is {here}: pass another --out"
        )
    return state.campaign


def main(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(plan_path(args.plan))
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("error: the plan has problems; nothing was run", file=sys.stderr)
        return 2
    steps = list(args.steps) or list(plan.step_names)
    if unknown := [s for s in steps if s not in plan.step_names]:
        print(
            f"error: {plan.path} has no step {', '.join(unknown)}; its steps: {', '.join(plan.step_names)}",
            file=sys.stderr,
        )
        return 2
    if args.repeats is not None and args.repeats < 1:
        print(f"error: --repeats must be at least 1, not {args.repeats}", file=sys.stderr)
        return 2
    out = OutDir(args.out or default_out(plan))
    try:
        name = _name(args, out.read_state())
    except (StateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    executor: Executor = DryRunExecutor() if args.dry_run else SubprocessExecutor()
    campaign = Campaign(
        plan=plan,
        name=name,
        executor=executor,
        out=out,
        repeats=args.repeats,
        deadline_s=None if args.budget_s is None else time.time() + args.budget_s,
        store=args.store,
        stop_stale_ray=args.stop_stale_ray,
    )
    return run_campaign(campaign, steps, seed=args.seed_results, redo=args.redo)
