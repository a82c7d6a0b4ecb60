"""One log, whole: the serving engine start's phases, the Ray milestones and the harness's own events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from coldstart.analysis.events import iter_events
from coldstart.analysis.parse.engine import EngineStart, VllmPhases, engine_start, served_index, split_starts
from coldstart.analysis.parse.lines import LogLine, Span, parse_lines
from coldstart.analysis.parse.ray import RayPhases, ray_events, ray_phases


@dataclass(frozen=True)
class ParsedLog:
    """``vllm`` is the main model of the start that served (``starts[served]``), ``engine`` that start's
    engine as a whole (main + draft, ``EngineStart.total``); ``spans`` are the engine's (every model's lines).
    See ``coldstart.analysis.parse.engine`` for the rules."""

    vllm: VllmPhases
    ray: RayPhases
    events: tuple[dict, ...]
    spans: dict[str, Span] = field(default_factory=dict)
    year: int | None = None
    starts: tuple[EngineStart, ...] = ()
    served: int | None = None
    engine: VllmPhases = field(default_factory=VllmPhases)


# Stable phase-table columns, in startup order.
PHASE_COLUMNS: tuple[str, ...] = (
    "cloud_download_s",
    "weights_download_s",
    "runai_stream_s",
    "weights_load_s",
    "model_load_s",
    "dynamo_s",
    "inductor_s",
    "compile_cache_load_s",
    "torch_compile_s",
    "profiling_s",
    "cuda_graph_s",
    "engine_init_s",
    "engine_compile_s",
    "replica_init_s",
    "replica_startup_s",
)

# Columns whose span draws on more than the one quantity of the same name.
SPAN_SOURCES = {
    "runai_stream_s": ("runai_stream_s", "runai_tqdm_s"),
    "compile_cache_load_s": ("compile_cache_load_s", "aot_load"),
    "torch_compile_s": ("torch_compile_s", "torch_compile_with_profiling_s"),
}


def parse_log(text: str, lines: Sequence[LogLine] | None = None) -> ParsedLog:
    """``lines``: ``parse_lines(text)`` when the caller already has them (the timeline reads them too)."""
    lines = parse_lines(text) if lines is None else lines
    events_ray = ray_events(lines)
    ray = ray_phases(events_ray)

    built = [engine_start(i, part) for i, part in enumerate(split_starts(lines))]
    starts = tuple(start for start, _ in built)
    served = served_index(starts)

    spans: dict[str, Span] = {}
    if served is not None:
        col = built[served][1]
        for column in PHASE_COLUMNS:
            if span := col.span(*SPAN_SOURCES.get(column, (column,))):
                spans[column] = span
    # Ray's durations are each one line (the first for the LLM deployment), so first == last.
    for column, stamp in (
        ("cloud_download_s", ray.cloud_download_ts),
        ("replica_init_s", ray.replica_started_ts),
        ("replica_startup_s", ray.replica_started_ts),
    ):
        if stamp is not None:
            spans[column] = Span(stamp, stamp, ray.year)

    events: list[dict] = []
    for body in iter_events(text.splitlines()):
        # The same event echoed through a parent process's stdout is one event, not two.
        if body not in events:
            events.append(body)
    years = [line.year for line in lines if line.year is not None]
    return ParsedLog(
        vllm=starts[served].phases if served is not None else VllmPhases(),
        engine=starts[served].total if served is not None else VllmPhases(),
        ray=ray,
        events=tuple(events),
        spans=spans,
        year=years[0] if years else None,
        starts=starts,
        served=served,
    )


def to_phase_table(parsed: ParsedLog) -> dict[str, float | None]:
    """One row of durations (seconds), keyed by ``PHASE_COLUMNS``; an absent phase stays ``None``.

    The engine's durations, not the main model's: where a draft model loads, compiles and profiles too, the
    engine waited for both, so each phase is main + draft (``ParsedLog.engine``).
    """
    values = {f.name: getattr(parsed.engine, f.name) for f in fields(parsed.engine)}
    values.update(
        cloud_download_s=parsed.ray.cloud_download_s,
        replica_init_s=parsed.ray.replica_init_s,
        replica_startup_s=parsed.ray.replica_startup_s,
    )
    return {column: values[column] for column in PHASE_COLUMNS}
