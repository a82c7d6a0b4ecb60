"""``python -m coldstart matrix``: check names, node state and writable paths before the first cold start, then
run what is pending through the real system under test and say what came of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coldstart import paths
from coldstart.analysis.results import SchemaError, collect_provenance, load_rows, nvidia_gpus
from coldstart.lab.caches import UnknownRootError
from coldstart.lab.campaign_names import campaign_name
from coldstart.lab.client import positive_int, positive_seconds
from coldstart.lab.matrix.budget import DEFAULT_RUN_OVERHEAD_S
from coldstart.lab.matrix.loop import run_matrix
from coldstart.lab.matrix.plan import NODE_STATES, nothing_to_run, pair_problem, pending, plan
from coldstart.lab.matrix.results_file import ResultsNotWritable, check_writable
from coldstart.lab.matrix.service_sut import ServiceSUT
from coldstart.lab.matrix.user_model import UserModel, cleared_root_holding, user_model_of
from coldstart.registry import EXPERIMENTS, MODELS, SCENARIOS, UnknownNameError, UserModelError, get_scenario


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        default=["tiny"],
        help=f"from: {', '.join(MODELS)}; or the one name of your own model, given after -- with --model-id "
        "HUB_ID_OR_FOLDER [--tp N] as service.py takes it",
    )
    parser.add_argument("--experiments", nargs="+", default=["baseline"], help=f"from: {', '.join(EXPERIMENTS)}")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["single"],
        help=f"the traffic of each run, from: {', '.join(SCENARIOS)} (each experiment runs under each)",
    )
    parser.add_argument(
        "--max-replicas",
        type=positive_int,
        default=None,
        help="replace each scenario's max_replicas (e.g. one replica per GPU of the node)",
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="cold starts per (model, experiment, scenario)")
    parser.add_argument(
        "--campaign",
        default=None,
        help="a name that groups runs (resume works per campaign; default: <UTC date>-<gpu>x<count> of this "
        "node, e.g. 2026-11-29-h200x1)",
    )
    parser.add_argument("--results", type=Path, default=paths.results_file(), help="default: %(default)s")
    parser.add_argument("--no-clear", action="store_true", help="do not clear caches between runs (warm runs)")
    parser.add_argument(
        "--node-state",
        choices=NODE_STATES,
        default="cold",
        help="cold: weights evicted from the page cache before each run; warm: read into it "
        "(the node served the model before and scaled to zero)",
    )
    parser.add_argument(
        "--clear-only",
        nargs="+",
        default=[],
        metavar="ROOT",
        help="clear only these cache roots (see clear_cache.py --dry-run); default: all of them",
    )
    # Checked here: a bad value would otherwise surface only after the first cold start, as a failed row.
    parser.add_argument("--ready-timeout", type=positive_seconds, default=600.0)
    parser.add_argument("--client-timeout", type=positive_seconds, default=1800.0)
    parser.add_argument("--dry-run", action="store_true", help="list the runs it would do and exit")
    parser.add_argument(
        "--capture",
        action="store_true",
        help="the runs exist to fill a compile cache (their miss is the point): a run that ended ok is done "
        "on resume even though its cache audit failed",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar and no live phase line (neither is drawn when the output is not a terminal)",
    )
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="start no run whose estimate (earlier runs of the same model, experiment and GPU) "
        "exceeds the time left; runs with no estimate still start",
    )
    parser.add_argument(
        "--run-overhead-s",
        type=float,
        default=DEFAULT_RUN_OVERHEAD_S,
        help="seconds around the TTFT (clear, start, stop) when only TTFTs are known "
        f"(default {DEFAULT_RUN_OVERHEAD_S:.0f})",
    )
    parser.add_argument(
        "service_args",
        nargs=argparse.REMAINDER,
        help="after --: passed to every service.py (e.g. -- --store s3://b/p --device cpu; -- --model-id DIR "
        "--tp 1 for your own model)",
    )


def _user_model(args: argparse.Namespace, service_args: list[str]) -> UserModel | None:
    """The user's model the service args name (None: none), loaded as service.py loads it; raises UserModelError
    for anything the runs would fail on, the weights of a cold run that the clear would delete included."""
    from coldstart.storage.sources import SourceError
    from coldstart.storage.store import StoreError

    try:
        user = user_model_of(args.models, service_args)
    except (SourceError, StoreError) as exc:
        raise UserModelError(str(exc)) from None
    if user is not None and user.model.local_dir is not None and not args.no_clear:
        root = cleared_root_holding(user.model.local_dir, args.clear_only)
        if root is not None:
            raise UserModelError(
                f"--model-id {user.model.local_dir} lies in the cache root {root}, which the matrix empties "
                "before each run: it would delete your weights. Move the folder, leave that root out of "
                "--clear-only, or pass --no-clear"
            )
    return user


def main(args: argparse.Namespace) -> int:
    service_args = [a for a in args.service_args if a != "--"]
    try:
        for e in args.experiments:
            if e not in EXPERIMENTS:
                raise UnknownNameError(f"unknown experiment {e!r}; valid experiments: {', '.join(EXPERIMENTS)}")
        for name in args.scenarios:
            get_scenario(name)
        # After the names, as service.py does: a mistyped experiment must not wait on a Hub id's config.json.
        user = _user_model(args, service_args)
        for m in args.models:
            if user is None and m not in MODELS:
                raise UnknownNameError(f"unknown model {m!r}; valid models: {', '.join(MODELS)}")
    except (UnknownNameError, UserModelError, UnknownRootError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        earlier = load_rows(args.results)
    except (OSError, SchemaError) as exc:
        print(f"error: cannot read the results file {args.results}: {exc}", file=sys.stderr)
        return 2
    campaign = args.campaign or campaign_name(nvidia_gpus()[0])
    user_models = {user.model.name: user.model} if user is not None else {}
    specs = plan(
        args.models,
        args.experiments,
        args.repeats,
        campaign,
        args.node_state,
        args.scenarios,
        capture=args.capture,
        service_args=service_args,
        user_models=user_models,
    )
    if not specs:
        # plan() drops pairs that cannot run; with none left the matrix would report "0 ok, 0 failed".
        print("error: no (model, experiment) pair can run:", file=sys.stderr)
        for m in args.models:
            for e in args.experiments:
                if (problem := pair_problem(m, e, user_models)) is not None:
                    print(f"  {problem}", file=sys.stderr)
        return 2
    todo = pending(specs, args.results, capture=args.capture)
    # Before the first cold start, not after it: a run costs minutes and its row must have somewhere to go.
    if todo and (problems := check_writable(args.results, todo)):
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("error: nothing was run; fix the paths above (or pass --results elsewhere)", file=sys.stderr)
        return 2
    if args.dry_run:
        for s in specs:
            state = "todo" if s in todo else "done"
            print(f"{state}  {s.campaign}  {s.model}  {s.experiment}  {s.scenario}  #{s.repeat}")
        if user is not None:
            model = user.model
            print(f"{model.name}: your model from {user.source}, {model.arch.hf_architecture} at TP{model.tp_size}")
        print(f"{len(todo)} of {len(specs)} runs to do; service args: {' '.join(service_args) or '(none)'}")
        return 0
    if not todo:
        # Re-running a finished campaign (a second `make demo`) measures nothing; say so and how to measure.
        print(nothing_to_run(specs, earlier, args.results, args.repeats, capture=args.capture))
        return 0
    sut = ServiceSUT(
        service_args,
        clear=not args.no_clear,
        clear_only=args.clear_only,
        ready_timeout_s=args.ready_timeout,
        client_timeout_s=args.client_timeout,
        max_replicas=args.max_replicas,
        user_model=user,
    )
    try:
        rows = run_matrix(
            sut,
            specs,
            args.results,
            provenance=collect_provenance(),
            show_progress=args.progress,
            time_budget_s=args.time_budget_s,
            run_overhead_s=args.run_overhead_s,
            capture=args.capture,
        )
    except ResultsNotWritable as exc:
        print(f"error: {exc}; the campaign stopped there", file=sys.stderr)
        return 1
    failed = [r for r in rows if r.status != "ok"]
    left = len(todo) - len(rows)
    print(
        f"{len(rows) - len(failed)} ok, {len(failed)} failed"
        + (f", {left} not started for lack of time" if left else "")
        + f"; results in {args.results}"
    )
    return 1 if failed else 0
