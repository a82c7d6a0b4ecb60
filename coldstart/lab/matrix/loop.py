"""Run what is pending, one row per run, under a progress bar: the budget decides whether a run starts, the
newest baseline answer is what its answer is checked against, its row is appended before the next starts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from coldstart.analysis.results import Provenance, ResultRow, load_rows
from coldstart.lab.matrix.answer import reference_answer
from coldstart.lab.matrix.budget import DEFAULT_RUN_OVERHEAD_S, estimate_run_s
from coldstart.lab.matrix.plan import RunSpec, pending
from coldstart.lab.matrix.results_file import save_row
from coldstart.lab.matrix.rows import run_one
from coldstart.lab.matrix.sut import SystemUnderTest


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
    """Run what is pending. With ``time_budget_s`` (what is left of a GPU machine's wall-clock limit), a run
    whose estimate no longer fits what is left is not started: a run killed halfway costs its time and leaves
    no row."""
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
