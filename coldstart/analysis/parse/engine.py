"""Engine starts: a log cut at each ``Initializing ... LLM engine`` line, and each start's phases per model.

One log can hold several starts (an offline script building two engines, a replica restarting its
engine). Each ``Initializing ... LLM engine (vX) with config`` line opens one; every line up to the next
belongs to it (the lines before the first belong to the first). Each start has its own phases, ranks and
cache status; the run's phases are those of the start that served (the last one that got to engine init,
KV cache sizing or CUDA graph capture, else the last one); the others are reported in
``ParsedLog.starts``, never merged.

Models: with a draft model (speculative decoding, MTP, Medusa) one start loads two models. A rank switches
to the draft at ``Loading drafter model`` or at its second ``Starting to load model``, and back to the main
model at the engine-wide ``Model loading took`` line; a torch.compile cache directory other than
``backbone`` (``eagle_head``) marks the draft's compile. Weights, torch.compile, compile-cache and
profiling-run lines count for the model in force on their rank (a draft compiles and profiles on its own,
after the main model); memory, KV cache, CUDA graphs and engine init are engine-wide. ``EngineStart.total``
is the engine's own: each model's durations added up per rank (the engine waited for both), and the phase
table and the timeline count it. Before vLLM's torch.compile monitor timed each module on its own, its
"torch.compile takes X s in total" was the process's running total, so that line counts once per engine.

Stated before derived: a value a line states is taken as stated. The compile-cache load is the "Directly
load the compiled graph(s) ... took X s" lines; only where none states it (an AOT artifact loaded whole) is
it derived from the torch.compile monitor's total minus the Dynamo pass before the load.

Multi-rank rule (tensor/pipeline parallel: one worker process per rank, each logging its own timings):

* Durations: per rank, a phase logged once per model is that line's value (a copy of the line, echoed or
  torn by an interleaved write, counts once); a phase logged once per compile range (Inductor compile,
  compiled-graph cache load) is the sum over distinct ranges. Across ranks the MAX is taken, because the
  engine waits for its slowest rank.
* Capacities: ``kv_cache_gib`` / ``kv_cache_tokens`` take the MIN (the engine sizes its KV cache to the
  tightest rank); ``model_load_gib`` / ``cuda_graph_gib`` take the MAX (the heaviest rank).
* A rank is identified by the pid (and ip, when Ray adds one) of the innermost prefix; a log without
  prefixes is one rank. With Ray dedup on, some ranks' lines are hidden behind ``[repeated Nx]``, so the
  max is over the ranks that are visible; run with ``RAY_DEDUP_LOGS=0`` for exact per-rank numbers.

A phase that does not appear in the log is ``None``, never 0. A flag with no evidence either way is
``None``. The stamp of a line that reports a duration marks the END of that phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coldstart.analysis.parse.collect import ENGINE, Collector, apply_rules
from coldstart.analysis.parse.lines import LogLine, Stamp, parse_lines, unwrapped
from coldstart.analysis.parse.rules import MAIN, PP_RE, START_RE, TP_RE


@dataclass(frozen=True)
class VllmPhases:
    vllm_version: str | None = None
    world_size: int | None = None
    weights_download_s: float | None = None
    runai_streamer: bool | None = None
    runai_stream_s: float | None = None
    runai_stream_gib: float | None = None
    weights_load_s: float | None = None
    model_load_s: float | None = None
    model_load_gib: float | None = None
    dynamo_s: float | None = None
    inductor_s: float | None = None
    compile_cache_load_s: float | None = None
    torch_compile_s: float | None = None
    # True when the only torch.compile figure is 0.25's non-AOT "torch.compile and initial
    # profiling/warmup run together took X s", which has the profiling run folded in.
    torch_compile_includes_profiling: bool | None = None
    profiling_s: float | None = None
    kv_cache_gib: float | None = None
    kv_cache_tokens: int | None = None
    cuda_graph_s: float | None = None
    cuda_graph_gib: float | None = None
    engine_init_s: float | None = None
    engine_compile_s: float | None = None
    compile_cache_disabled: bool | None = None
    compile_cache_hit: bool | None = None
    aot_cache_hit: bool | None = None


@dataclass(frozen=True)
class Evidence:
    """One log line a rule read: which rule, the value it took, and where the line is."""

    rule: str
    quantity: str
    value: float
    line_number: int
    text: str
    model: str
    rank_key: object


@dataclass(frozen=True)
class EngineStart:
    """One engine start: its phases per model (``main``, and ``draft`` where one is loaded) and who logged.

    ``ranks`` are the writer processes (rank keys) that logged a phase line; ``evidence`` the lines behind
    every phase value, for ``explain``.
    """

    index: int
    line_number: int
    ts: Stamp | None
    vllm_version: str | None
    ranks: tuple[object, ...]
    models: dict[str, VllmPhases]
    # The engine's own figures: each model's weights load, torch.compile, cache load and profiling run added
    # up per rank (main + draft, where a draft loads); equal to the main model's phases where none does.
    total: VllmPhases
    evidence: tuple[Evidence, ...] = ()

    @property
    def phases(self) -> VllmPhases:
        return self.models[MAIN]

    @property
    def reached_init(self) -> bool:
        p = self.phases
        return any(v is not None for v in (p.engine_init_s, p.kv_cache_gib, p.kv_cache_tokens, p.cuda_graph_s))


@dataclass
class _StartLines:
    line_number: int
    ts: Stamp | None
    version: str | None
    world_from_config: int | None
    lines: list[LogLine]


# Data-parallel engines start together with one config: markers this close with the same text are one start.
_SAME_START_WINDOW_S = 5.0


def _stamp_s(ts: Stamp) -> float:
    """Seconds within the year, near enough to compare two stamps minutes apart (month lengths are moot)."""
    mo, d, h, mi, sec = ts
    return (((mo * 31 + d) * 24 + h) * 60 + mi) * 60 + sec


def _same_start(marker: LogLine, last: LogLine | None) -> bool:
    """An echoed copy of the last marker, or a data-parallel sibling of it (another writer, same config)."""
    if last is None or marker.message != last.message:
        return False
    if marker.ts is None or last.ts is None:
        return marker.ts == last.ts
    return abs(_stamp_s(marker.ts) - _stamp_s(last.ts)) <= _SAME_START_WINDOW_S


def split_starts(lines: Sequence[LogLine]) -> list[_StartLines]:
    """Cut the log at each engine start marker (see ``_same_start`` for the markers that are not a new start)."""
    starts: list[_StartLines] = []
    prelude: list[LogLine] = []
    last_marker: LogLine | None = None
    for line in lines:
        m = START_RE.search(line.message) if "LLM engine" in line.message else None
        if m and not _same_start(line, last_marker):
            last_marker = line
            tp, pp = TP_RE.search(line.message), PP_RE.search(line.message)
            world = int(tp.group(1)) * (int(pp.group(1)) if pp else 1) if tp else None
            # The lines before the first start (API server, Ray) belong to it.
            starts.append(_StartLines(line.number, line.ts, m.group("version"), world, [*prelude, line]))
            prelude = []
            continue
        (starts[-1].lines if starts else prelude).append(line)
    if not starts:
        starts.append(_StartLines(prelude[0].number if prelude else 0, None, None, None, prelude))
    return starts


def _cache_load_s(col: Collector, model: str | None, aot_cache_hit: bool | None) -> float | None:
    """The compile-cache load as vLLM states it ("Directly load the compiled graph(s) ... took X s", summed
    over compile ranges). Only where no line states it (an AOT artifact loaded with no per-range line) is it
    derived, per rank: the torch.compile monitor's total minus the Dynamo pass that ran before the load."""
    stated = col.rank_sum_max("compile_cache_load_s", model)
    if stated is not None or not aot_cache_hit:
        return stated
    dynamo = col.per_rank("dynamo_s", model)
    derived = [
        round(total - dynamo[rank], 6) if rank in dynamo and dynamo[rank] < total else total
        for rank, total in col.per_rank("torch_compile_s", model).items()
    ]
    return max(derived) if derived else None


def _model_phases(col: Collector, model: str | None, start: _StartLines | None) -> VllmPhases:
    """One model's phases, or with ``model`` ``ENGINE`` the engine's: every model's lines added up per rank."""

    def s(quantity: str) -> float | None:
        return col.rank_sum_max(quantity, model)

    compiled = bool(col.get("inductor_s", model) or col.get("graph_cached", model))
    aot_loaded = bool(col.get("aot_load", model))
    loaded = bool(col.get("cache_hit", model)) or aot_loaded
    # Dynamo lines are no evidence either way: Dynamo re-traces even when Inductor's graphs come from the
    # cache. Only Inductor work ("Compiling a graph", "Cache the graph") is a miss.
    compile_cache_hit = False if compiled else (True if loaded else None)
    aot_missed = bool(col.get("aot_miss", model))
    aot_cache_hit = False if aot_missed else (True if aot_loaded else None)

    torch_compile_s = s("torch_compile_s")
    includes_profiling: bool | None = None
    if torch_compile_s is None and (together := s("torch_compile_with_profiling_s")) is not None:
        torch_compile_s, includes_profiling = together, True

    # Engine-wide lines are the main model's; the engine's view reads them too.
    engine = model in (MAIN, ENGINE)

    def e(quantity: str) -> float | None:
        return s(quantity) if engine else None

    runai_s = e("runai_stream_s")
    if runai_s is None:
        runai_s = e("runai_tqdm_s")
    kv_tokens = col.extreme("kv_cache_tokens", min) if engine else None
    world = col.extreme("world_size", max) if engine else None
    if world is None and engine and start is not None:
        world = start.world_from_config
    # One weights figure per model and rank (V0 logs the draft's apart): a rank holds both, so they add up.
    gib = s("model_load_gib")
    return VllmPhases(
        vllm_version=start.version if start else None,
        world_size=int(world) if world is not None else None,
        weights_download_s=e("weights_download_s"),
        runai_streamer=True if engine and col.get("runai") else None,
        runai_stream_s=runai_s,
        runai_stream_gib=col.extreme("runai_stream_gib", max) if engine else None,
        weights_load_s=s("weights_load_s"),
        model_load_s=e("model_load_s"),
        model_load_gib=gib,
        dynamo_s=s("dynamo_s"),
        inductor_s=s("inductor_s"),
        compile_cache_load_s=_cache_load_s(col, model, aot_cache_hit),
        torch_compile_s=torch_compile_s,
        torch_compile_includes_profiling=includes_profiling,
        profiling_s=s("profiling_s"),
        kv_cache_gib=col.extreme("kv_cache_gib", min) if engine else None,
        kv_cache_tokens=int(kv_tokens) if kv_tokens is not None else None,
        cuda_graph_s=e("cuda_graph_s"),
        cuda_graph_gib=col.extreme("cuda_graph_gib", max) if engine else None,
        engine_init_s=e("engine_init_s"),
        engine_compile_s=e("engine_compile_s"),
        compile_cache_disabled=True if engine and col.get("cache_disabled") else None,
        compile_cache_hit=compile_cache_hit,
        aot_cache_hit=aot_cache_hit,
    )


def engine_start(index: int, part: _StartLines, matched: set[int] | None = None) -> tuple[EngineStart, Collector]:
    col = Collector()
    for line in unwrapped(part.lines):
        apply_rules(col, line, matched)
    models = {model: _model_phases(col, model, part) for model in col.models()}
    total = _model_phases(col, ENGINE, part)
    evidence = tuple(
        Evidence(h.rule, h.quantity, h.value, h.line.number, h.line.raw, h.model, h.key)
        for slot in col.hits.values()
        for h in slot.values()
    )
    start = EngineStart(
        index=index,
        line_number=part.line_number,
        ts=part.ts,
        vllm_version=part.version,
        ranks=tuple(col.ranks),
        models=models,
        total=total,
        evidence=tuple(sorted(evidence, key=lambda ev: ev.line_number)),
    )
    return start, col


def served_index(starts: Sequence[EngineStart]) -> int | None:
    if not starts:
        return None
    return next((s.index for s in reversed(starts) if s.reached_init), starts[-1].index)


def parse_starts(text: str) -> list[EngineStart]:
    """Every engine start in ``text``, in log order, each with its own phases per model."""
    return [engine_start(i, part)[0] for i, part in enumerate(split_starts(parse_lines(text)))]


def parse_vllm(text: str) -> VllmPhases:
    """The serving start's main-model phases in ``text``; see the module docstring for the rules."""
    starts = parse_starts(text)
    served = served_index(starts)
    return starts[served].phases if served is not None else VllmPhases()
