"""The experiment matrix: for each (model, experiment, repeat) clear -> serve -> time the first token ->
stop -> parse -> append one result row.

The system under test sits behind a three-method interface (MLPerf loadgen style), so the runner's
ordering, resume and failure isolation are tested with a fake, and the real one is the same
``service.py`` / ``client.py`` pair a user runs by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coldstart import paths
from coldstart.analysis import events
from coldstart.analysis.audit import audit
from coldstart.analysis.results import (
    DEFAULT_RESULTS,
    AnswerCheck,
    AnswerCompared,
    Audit,
    ClientResult,
    ClientStatus,
    Provenance,
    RequestGroup,
    RequestRecord,
    ResultRow,
    RunStatus,
    SchemaError,
    StoredTimeline,
    append_row,
    collect_provenance,
    load_rows,
)
from coldstart.analysis.serve_log import replica_spans
from coldstart.lab.client import measure_ttft, positive_int, positive_seconds
from coldstart.lab.traffic import Traffic
from coldstart.registry import (
    EXPERIMENTS,
    MODELS,
    SCENARIOS,
    InvalidPairError,
    UnknownNameError,
    get_scenario,
    resolve,
    with_max_replicas,
)


@dataclass(frozen=True)
class RunSpec:
    model: str
    experiment: str
    repeat: int
    campaign: str = "default"
    # "cold": the weights are evicted from the page cache before the run (a node that never served the model);
    # "warm": they are read into it (the node served this model before and scaled to zero). Not in the key: a
    # campaign has one node state (main() refuses to mix them).
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


@dataclass(frozen=True)
class Deployment:
    url: str
    run_id: str
    log_path: Path
    config: dict[str, Any]


class SystemUnderTest(Protocol):
    def clear(self, spec: RunSpec) -> dict[str, Any]: ...

    def deploy(self, spec: RunSpec, run_id: str) -> contextlib.AbstractContextManager[Deployment]: ...

    def measure(self, deployment: Deployment, spec: RunSpec) -> Traffic: ...


NODE_STATES = ("cold", "warm")


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


def summarize(
    log_text: str, client: ClientResult, experiment: str
) -> tuple[dict[str, float | None], Audit, StoredTimeline]:
    """(phases, audit, timeline) of one run's log."""
    from coldstart.analysis.timeline import summarize_run

    summary = summarize_run(log_text, client)
    return dict(summary.phases), audit(experiment, summary.audit), summary.timeline.stored()


@dataclass(frozen=True)
class ReferenceAnswer:
    """The newest ok ``baseline`` run's greedy answer: what every other experiment's must equal."""

    run_id: str
    text: str
    first_text: str | None  # its first streamed token


def reference_answer(rows: Sequence[ResultRow], model: str, device: str | None) -> ReferenceAnswer | None:
    """The newest ok ``baseline`` run of ``model`` on this device with an answer; None: there is none."""
    for row in reversed(rows):
        text = row.client.text if row.client else None
        same = (row.model, row.experiment, row.device) == (model, "baseline", device)
        if same and row.status is RunStatus.OK and row.client and text:
            return ReferenceAnswer(row.run_id, text, row.client.first_text)
    return None


def answer_check(
    first: ClientResult, requests: Sequence[RequestRecord] | None, reference: ReferenceAnswer | None
) -> AnswerCheck:
    """Same prompt, greedy decoding: the answer must not depend on how the engine started. The whole answer
    of the first request that decoded alone (the run's first when the burst is one; else the first sent after
    ready one at a time, or a lone return); a run whose every request was batched compares its first token."""
    if not requests:  # no scenario records: one request, alone
        index, client, compared = 0, first, AnswerCompared.ANSWER
    elif (alone := _lone_request(requests)) is not None:
        index, client, compared = alone.index, alone.client, AnswerCompared.ANSWER
    else:
        index, client, compared = 0, first, AnswerCompared.FIRST_TOKEN
    if reference is None:
        return AnswerCheck(None, None, index, compared)
    mine, theirs = (
        (client.text, reference.text)
        if compared is AnswerCompared.ANSWER
        else (client.first_text, reference.first_text)
    )
    match = None if mine is None or theirs is None else mine == theirs
    return AnswerCheck(reference.run_id, match, index, compared)


def _lone_request(requests: Sequence[RequestRecord]) -> RequestRecord | None:
    cycles: dict[tuple[RequestGroup, int], int] = {}
    for r in requests:
        cycles[r.group, r.cycle] = cycles.get((r.group, r.cycle), 0) + 1
    for r in requests:  # in send order
        sent_alone = r.group is RequestGroup.AFTER_READY or cycles[r.group, r.cycle] == 1
        if sent_alone and r.group is not RequestGroup.AFTER_READY_CONCURRENT and r.client.text:
            return r
    return None


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
            scenario=spec.scenario,
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
        error=m.error,
        t_start_epoch=t0,
        client=m,
        timeline=timeline,
        wall_s=time.time() - t0,
        node_state=spec.node_state,
        answer=answer_check(m, traffic.requests, reference),
        extra=extra,
        scenario=spec.scenario,
        requests=traffic.requests,
        replicas=replica_spans(text, timeline.utc_offset_s) if timeline else None,
    )


class ResultsNotWritable(RuntimeError):
    """A row could not be appended to the results file; the message says where it was saved instead."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path, what: str) -> str | None:
    """Why nothing could be written into ``folder`` (created later as needed); None when it can.

    Probes with a real temp file in the nearest existing ancestor: os.access says yes to root on a folder a
    quota or a read-only bind mount would still refuse. Creates no folder.
    """
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        return f"{what} {folder}: {anchor} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=anchor, prefix=".coldstart-writable-"):
            pass
    except OSError as exc:
        return f"{what} {folder}: cannot write in {anchor} ({exc.strerror or exc})"
    return None


def check_writable(results_path: Path, specs: Sequence[RunSpec]) -> list[str]:
    """What a campaign will write, checked before the first cold start: the results file, each run's log
    folder, the temp folder the service's ready file goes to. Returns the problems (empty: all writable)."""
    problems = []
    if results_path.exists():
        try:
            with open(results_path, "a"):  # append mode, nothing written: the file stays as it is
                pass
        except OSError as exc:
            problems.append(f"results file {results_path}: {exc.strerror or exc}")
    elif problem := _folder_problem(results_path.parent, "results folder"):
        problems.append(problem)
    log_folders = {paths.run_log_path(s.model, s.experiment, "probe").parent for s in specs}
    problems += [p for folder in sorted(log_folders) if (p := _folder_problem(folder, "log folder"))]
    if problem := _folder_problem(Path(tempfile.gettempdir()), "temp folder"):
        problems.append(problem)
    return problems


def save_row(results_path: Path, row: ResultRow) -> None:
    """Append ``row``; if that fails, keep it beside its run log (else in the temp folder) and raise
    ResultsNotWritable naming that file: a timed cold start is never lost to a late write error."""
    try:
        append_row(results_path, row)
        return
    except OSError as exc:
        failure = f"{type(exc).__name__}: {exc}"
    line = row.to_json() + "\n"
    candidates = [Path(row.log_path).parent] if row.log_path else []
    for folder in [*candidates, Path(tempfile.gettempdir())]:
        rescue = folder / f"{row.run_id}.row.jsonl"
        try:
            rescue.write_text(line)
        except OSError:
            continue
        raise ResultsNotWritable(
            f"cannot append to {results_path} ({failure}); the row is saved in {rescue} "
            f"(append it with: cat {rescue} >> {results_path})"
        )
    raise ResultsNotWritable(f"cannot append to {results_path} ({failure}); the row, not saved anywhere: {line}")


def _portable(path: Path | None) -> str | None:
    """Row paths relative to the working directory when inside it, so rows stay valid in any clone."""
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
    ``capture``: see ``done_rows`` (lease s10 re-ran a resumed step's capture run, which then hit)."""
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


# Clear + service start + shutdown + parse around the TTFT itself: 104-117 s per run on the lent GPUs.
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


def run_matrix(
    sut: SystemUnderTest,
    specs: Sequence[RunSpec],
    results_path: Path,
    *,
    provenance: Provenance | None,
    device: str | None = None,
    show_progress: bool = True,
    time_budget_s: float | None = None,
    run_overhead_s: float = DEFAULT_RUN_OVERHEAD_S,
    clock: Callable[[], float] = time.monotonic,
    capture: bool = False,
) -> list[ResultRow]:
    """Run what is pending. With ``time_budget_s`` (a lent machine's call limit), a run whose estimate no
    longer fits what is left is not started: a run killed halfway costs its time and leaves no row."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    t_start = clock()
    gpu = provenance.gpu if provenance is not None else None
    todo = pending(specs, results_path, capture=capture)
    rows = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("cold starts", total=len(todo))
        for spec in todo:
            earlier = load_rows(results_path)  # once per run: the budget estimate and the answer check read it
            if time_budget_s is not None:
                left_s = time_budget_s - (clock() - t_start)
                est = estimate_run_s(spec, earlier, gpu=gpu, overhead_s=run_overhead_s)
                if est is not None and est.seconds > left_s:
                    progress.console.print(
                        f"{spec.label}: not started, needs "
                        f"~{est.seconds:.0f} s ({est.basis}), {max(left_s, 0):.0f} s left "
                        f"of the time budget"
                    )
                    progress.advance(task)
                    continue
            label = spec.label
            progress.update(task, description=label)
            # A live phase only where a line can be redrawn: piped into a CI log it would be noise.
            if show_progress and progress.console.is_terminal and hasattr(sut, "on_status"):
                sut.on_status = lambda text, label=label: progress.update(task, description=f"{label}: {text}")
            reference = reference_answer(earlier, spec.model, device)
            try:
                row = run_one(sut, spec, provenance=provenance, device=device, reference=reference)
            finally:
                if hasattr(sut, "on_status"):
                    sut.on_status = None
                progress.update(task, description=label)
            save_row(results_path, row)  # raises once the row is kept elsewhere: the next run would be lost too
            rows.append(row)
            ttft = "-" if row.ttft_s is None else f"{row.ttft_s:.1f} s"
            late = (row.extra or {}).get("late_errors")
            progress.console.print(
                f"{spec.label}: {row.status}, TTFT {ttft}"
                + (f" ({row.error})" if row.error else "")
                + (f" [after the measurement: {'; '.join(late)}]" if late else "")
            )
            progress.advance(task)
    return rows


def warm_folders(model: str, local_stores: Sequence[Path], checkpoints: Path) -> list[Path]:
    """What a warm node holds in its page cache: the model's files as vLLM reads them, from the local store.
    The checkpoint they were staged from only when there is no local store (an S3 store's weights live
    elsewhere): reading both doubled a warm run's preparation (32 GB for the 8B, ~12 s) for files vLLM never
    opens."""
    staged = [store / "models" / model for store in local_stores]
    return staged if staged else [checkpoints / model]


def read_into_page_cache(folders: Sequence[Path], chunk_bytes: int = 16 << 20) -> int:
    """Read every file under ``folders`` once (what serving the model before left in the page cache)."""
    total = 0
    buf = bytearray(chunk_bytes)
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if path.is_file() and not path.is_symlink():
                with open(path, "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        total += n
    return total


class ServiceSUT:
    """The real system: ``service.py`` in a subprocess (its own process group, so a stop reaches Ray and
    vLLM children), ``clear_cache`` before, the client in this process."""

    def __init__(
        self,
        service_args: Sequence[str],
        *,
        clear: bool = True,
        clear_only: Sequence[str] = (),
        ready_timeout_s: float = 600.0,
        client_timeout_s: float = 1800.0,
        python: str = sys.executable,
        workdir: Path | None = None,
        max_replicas: int | None = None,
    ):
        self.service_args = list(service_args)
        self.clear_enabled = clear
        self.clear_only = list(clear_only)
        self.ready_timeout_s = ready_timeout_s
        self.client_timeout_s = client_timeout_s
        self.python = python
        self.workdir = workdir or Path.cwd()
        self.max_replicas = max_replicas  # replaces each scenario's (service.py --max-replicas)
        # Set by run_matrix on a terminal: gets "<seconds> s since the request: <phase>" while a cold start runs.
        self.on_status: Callable[[str], None] | None = None

    def clear(self, spec: RunSpec) -> dict[str, Any]:
        if not self.clear_enabled:
            return {"skipped": True}
        # Weights read from the lab's local store or checkpoints must come from disk, not the page cache.
        from coldstart.storage.store import default_store_uri, parse_store_uri

        store = parse_store_uri(default_store_uri())
        local = [store.path] if store.path is not None else []
        weights = [p for p in (*local, paths.coldstart_home() / "checkpoints") if p.exists()]
        evict = [str(p) for p in weights] if spec.node_state == "cold" else []
        # Every action named: clear_cache.py does only what it is told (and drops the page cache as before).
        cmd = [
            self.python,
            "clear_cache.py",
            *(["--only", *self.clear_only] if self.clear_only else ["--all"]),
            *(["--evict", *evict] if evict else []),
            "--drop-caches",
        ]
        proc = subprocess.run(cmd, cwd=self.workdir, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"clear_cache.py failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        report: dict[str, Any] = {"ok": True, "node_state": spec.node_state}
        if spec.node_state == "warm":
            report["page_cache_read_bytes"] = read_into_page_cache(
                warm_folders(spec.model, local, paths.coldstart_home() / "checkpoints")
            )
        return report

    @contextlib.contextmanager
    def deploy(self, spec: RunSpec, run_id: str) -> Iterator[Deployment]:
        # The ready file and what service.py says outside its tee go to a temp dir, not the work tree.
        side = Path(tempfile.mkdtemp(prefix=f"coldstart-{run_id}-"))
        ready = side / "ready.json"
        log_path = self.workdir / paths.run_log_path(spec.model, spec.experiment, run_id)
        # service.py tees into the run log only once its checks passed: what it says before (a refused port,
        # a missing checkpoint) or after the tee is caught here instead of vanishing.
        outside_tee = side / "stderr.txt"
        cmd = [
            self.python,
            "service.py",
            spec.model,
            spec.experiment,
            "--run-id",
            run_id,
            "--ready-file",
            str(ready),
            "--scenario",
            spec.scenario,
            *(["--max-replicas", str(self.max_replicas)] if self.max_replicas is not None else []),
            *self.service_args,
        ]
        try:
            with open(outside_tee, "wb") as err:
                proc = subprocess.Popen(
                    cmd, cwd=self.workdir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err
                )
        except BaseException:
            shutil.rmtree(side, ignore_errors=True)
            raise
        try:
            deadline = time.monotonic() + self.ready_timeout_s
            while not ready.exists():
                if proc.poll() is not None:
                    said = keep_outside_output(outside_tee, log_path)
                    raise ServiceExited(
                        f"service.py exited with {proc.returncode} before it was ready: {said or 'it said nothing'}",
                        log_path=log_path,
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service.py not ready after {self.ready_timeout_s:.0f} s")
                time.sleep(0.5)
            info = json.loads(ready.read_text())
            yield Deployment(
                url=info["url"], run_id=run_id, log_path=self.workdir / info["log"], config=info.get("config", {})
            )
        finally:
            stop_process_group(proc)
            keep_outside_output(outside_tee, log_path)
            shutil.rmtree(side, ignore_errors=True)

    def measure(self, deployment: Deployment, spec: RunSpec) -> Traffic:
        from coldstart.lab.traffic import http_control, log_waiter, run_scenario, with_replicas

        scenario = with_max_replicas(get_scenario(spec.scenario), self.max_replicas)
        downscale_s = scenario.autoscaling.downscale_delay_s or 0.0
        with live_status(deployment.log_path, self.on_status):
            traffic = run_scenario(
                scenario,
                model=spec.model,
                send=lambda: measure_ttft(deployment.url, spec.model, timeout_s=self.client_timeout_s),
                control=http_control(deployment.url, timeout_s=self.client_timeout_s),
                # Serve's decision waits out the delay and its look-back window; the replica then drains and
                # stops (vLLM's shutdown): minutes at most, far less than a cold start's own limit.
                wait_until_zero=log_waiter(deployment.log_path, timeout_s=downscale_s + self.ready_timeout_s),
            )
        traffic = dataclasses.replace(traffic, client=explain_failure(traffic.client, deployment.log_path))
        return with_replicas(traffic, wait_for_access_lines(deployment.log_path, traffic))


def wait_for_access_lines(log_path: Path, traffic: Traffic, timeout_s: float = 15.0, poll_s: float = 0.5) -> str:
    """The run log once it names the replica of every answered request (or after ``timeout_s``): Ray forwards
    a replica's access line to the driver a moment after the response, so the last request's line can lag it."""
    from coldstart.analysis.serve_log import served_by

    wanted = {r.client.request_id for r in traffic.requests if r.client.ok and r.client.request_id}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = log_path.read_text(errors="replace")
        except OSError:
            return ""
        if wanted <= set(served_by(text)) or time.monotonic() > deadline:
            return text
        time.sleep(poll_s)


@contextlib.contextmanager
def live_status(log_path: Path, on_status: Callable[[str], None] | None, poll_s: float = 0.5) -> Iterator[None]:
    """While the body runs (the request, for minutes of a cold start), call ``on_status`` every ``poll_s``
    with the seconds since the request and the phase read from the service's log as it grows."""
    if on_status is None:
        yield
        return
    from coldstart.analysis.live import PhaseTracker

    tracker = PhaseTracker()
    t_request = time.monotonic()
    offset, partial, started = 0, "", False
    stop = threading.Event()

    def follow() -> None:
        nonlocal offset, partial, started
        try:
            with open(log_path, errors="replace") as log:
                log.seek(offset)
                chunk = log.read()
                offset = log.tell()
        except OSError:
            chunk = ""  # no log yet: the phase stays what it was
        lines = (partial + chunk).split("\n")
        partial = lines.pop()
        for line in lines:
            tracker.feed(line)
        if not started:
            # What the log said before the request is history; the request itself is the next milestone.
            tracker.feed(events.format_event("client_send"))
            started = True
        on_status(f"{time.monotonic() - t_request:.0f} s since the request: {tracker.phase}")

    def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # a status line must never fail the measurement
                follow()
            if stop.wait(poll_s):
                return

    thread = threading.Thread(target=loop, name="coldstart-live-status", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5.0)


class ServiceExited(RuntimeError):
    """service.py ended before it served; ``log_path`` holds what it said."""

    def __init__(self, message: str, *, log_path: Path):
        super().__init__(message)
        self.log_path = log_path


def keep_outside_output(outside: Path, log_path: Path) -> str | None:
    """Fold what service.py wrote outside its tee into the run log (the log is created when there is none,
    so the row's log path always exists) and return its last line."""
    if not outside.exists():
        return None
    text = outside.read_text(errors="replace")
    outside.unlink()
    if not text.strip():
        return None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(text if text.endswith("\n") else text + "\n")
    return text.strip().splitlines()[-1]


def explain_failure(m: ClientResult, log_path: Path) -> ClientResult:
    """A client that lost its stream because service.py gave up on the app gets Serve's reason, not the
    connection error it saw."""
    if m.ok or not log_path.exists():
        return m
    failed = [e for e in events.read_events(log_path.read_text(errors="replace")) if e["event"] == "serve_app_failed"]
    if not failed:
        return m
    return dataclasses.replace(m, status=ClientStatus.SERVE_FAILED, error=f"{failed[-1]['reason']} (client: {m.error})")


def stop_process_group(proc: subprocess.Popen, grace_s: float = 90.0) -> None:
    """SIGTERM first (service.py shuts Serve and Ray down), SIGKILL the whole group if it hangs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            events.emit("service_killed", pid=proc.pid, grace_s=grace_s)
    # Anything the service left in its group (an engine process that ignored the shutdown) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["tiny"], help=f"from: {', '.join(MODELS)}")
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--campaign", default="default", help="a name that groups runs (resume works per campaign)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-clear", action="store_true", help="do not clear caches between runs (warm runs)")
    parser.add_argument(
        "--node-state",
        choices=NODE_STATES,
        default="cold",
        help="cold: weights evicted from the page cache before each run; warm: read into it "
        "(the node served the model before and scaled to zero). One per campaign.",
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
        help="after --: passed to every service.py (e.g. -- --store s3://b/p --device cpu)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        for m in args.models:
            if m not in MODELS:
                raise UnknownNameError(f"unknown model {m!r}; valid models: {', '.join(MODELS)}")
        for e in args.experiments:
            if e not in EXPERIMENTS:
                raise UnknownNameError(f"unknown experiment {e!r}; valid experiments: {', '.join(EXPERIMENTS)}")
        for name in args.scenarios:
            get_scenario(name)
    except UnknownNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        earlier = load_rows(args.results)
    except (OSError, SchemaError) as exc:
        print(f"error: cannot read the results file {args.results}: {exc}", file=sys.stderr)
        return 2
    other_state = {
        r.node_state or "cold"  # rows from before it was recorded ran on a cold node
        for r in earlier
        if r.campaign == args.campaign
    } - {args.node_state}
    if other_state:
        print(
            f"error: campaign {args.campaign!r} already holds {', '.join(sorted(other_state))}-node runs; "
            f"name another campaign for --node-state {args.node_state}",
            file=sys.stderr,
        )
        return 2
    specs = plan(args.models, args.experiments, args.repeats, args.campaign, args.node_state, args.scenarios)
    if not specs:
        # plan() drops pairs that cannot run; with none left the matrix would report "0 ok, 0 failed".
        print("error: no (model, experiment) pair can run:", file=sys.stderr)
        for m in args.models:
            for e in args.experiments:
                try:
                    resolve(m, e)
                except InvalidPairError as exc:
                    print(f"  {exc}", file=sys.stderr)
        return 2
    todo = pending(specs, args.results, capture=args.capture)
    service_args = [a for a in args.service_args if a != "--"]
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
