"""Pure parsers: Ray Serve LLM + vLLM log text -> startup phases.

Everything here is a function of text, so a log recorded on an 8-GPU box parses the same on a laptop.

What a captured terminal log looks like, and how each quirk is handled:

* ANSI colour codes (Ray's prefixes, vLLM's coloured level and timestamp): stripped.
* Nested process prefixes, ``(ServeReplica:default:LLMServer:llama pid=1) (EngineCore_DP0 pid=2)
  (RayWorkerWrapper pid=3) INFO ...``: split off into ``LogLine.prefixes``; the innermost one names the
  process that wrote the line. A worker's line often appears twice, once directly and once echoed
  through the engine core's stdout; both copies carry the same text and count once.
* Ray's log dedup, ``... [repeated 3x across cluster]``: the suffix is stripped and recorded in
  ``LogLine.repeated``. It is never used as a multiplier: Ray collapses lines that differ only in their
  numbers, so the repeated line shows one rank's value, not a sum.
* Timestamps: vLLM's have no year and whole seconds (``INFO 10-15 11:56:51 [file.py:123]``); Ray's have a
  year and milliseconds (``INFO 2025-10-15 11:56:51,123 controller 42 -- ...``). Both become a ``Stamp``
  ``(month, day, hour, minute, second)``; the year, when a line has one, is kept beside it.

Multi-rank rule (tensor/pipeline parallel: one worker process per rank, each logging its own timings):

* Durations: per rank, distinct lines of a phase are summed (vLLM logs one line per compile range, and
  the ranges are compiled one after another); across ranks the MAX is taken, because the engine waits
  for its slowest rank. ``inductor_s`` and ``compile_cache_load_s`` are therefore "sum over compile
  ranges, max over ranks"; a phase logged once per rank is simply the slowest rank's value.
* Capacities: ``kv_cache_gib`` / ``kv_cache_tokens`` take the MIN (the engine sizes its KV cache to the
  tightest rank); ``model_load_gib`` / ``cuda_graph_gib`` take the MAX (the heaviest rank).
* A rank is identified by the pid (and ip, when Ray adds one) of the innermost prefix; a log without
  prefixes is one rank. With Ray dedup on, some ranks' lines are hidden behind ``[repeated Nx]``, so the
  max is over the ranks that are visible; run with ``RAY_DEDUP_LOGS=0`` for exact per-rank numbers.

A phase that does not appear in the log is ``None``, never 0. A flag with no evidence either way is
``None``. The stamp of a line that reports a duration marks the END of that phase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from coldstart.analysis.events import iter_events

# (month, day, hour, minute, second); second is a float because Ray's stamps carry milliseconds.
Stamp = tuple[int, int, int, int, float]

_LEVELS = r"DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL"

# CSI sequences (colours, cursor moves) plus the lone ESC+char forms some terminals emit.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# The dedup suffix; Ray sometimes appends its "(Ray deduplicates logs by default ...)" hint after it.
_REPEATED_RE = re.compile(r"\s*\[repeated (\d+)x across cluster\].*$")
# One Ray/vLLM process prefix: "(Name pid=123)", "(Name pid=123, ip=10.0.0.1)", "(pid=123)",
# "(autoscaler +19s)". The name has no spaces, so a message that starts with "(" is not mistaken for one.
_PREFIX_RE = re.compile(
    r"\((?P<name>[\w:.\-/]*?)\s*(?:pid=(?P<pid>\d+))?(?:,\s*ip=(?P<ip>[\w.:\-]+))?"
    r"(?P<extra>\s\+[\d.]+[smh])?\)\s?"
)
_TP_RANK_RE = re.compile(r"_TP(\d+)")

_VLLM_HEADER_RE = re.compile(
    rf"^(?P<level>{_LEVELS}) (?P<mo>\d\d)-(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d(?:\.\d+)?)"
    r" \[(?P<where>[^\]]+)\] ?(?P<msg>.*)$"
)
# Ray Serve's formatter: "LEVEL YYYY-MM-DD HH:MM:SS,mmm component component_id -- message".
_SERVE_HEADER_RE = re.compile(
    rf"^(?P<level>{_LEVELS}) (?P<y>\d{{4}})-(?P<mo>\d\d)-(?P<d>\d\d) "
    r"(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[,.](?P<frac>\d+))? (?P<msg>.*)$"
)
_SERVE_COMPONENT_RE = re.compile(r"^(?P<component>\S+) (?P<component_id>\S+) -- (?P<msg>.*)$")
# Ray core's LOGGER_FORMAT: "YYYY-MM-DD HH:MM:SS,mmm\tLEVEL file.py:123 -- message".
_RAY_CORE_HEADER_RE = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[,.](?P<frac>\d+))?"
    rf"\s+(?P<level>{_LEVELS}) (?P<where>\S+:\d+) -- (?P<msg>.*)$"
)
# Bracketed stamp, e.g. the RunAI streamer's own logger: "[2026-02-15 05:16:38] INFO file.py:66: msg".
_BRACKET_HEADER_RE = re.compile(
    r"^\[(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[ T](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[,.](?P<frac>\d+))?\]"
    rf"\s+(?:(?P<level>{_LEVELS})\s+)?(?:(?P<where>\S+:\d+):?\s+)?(?P<msg>.*)$"
)


@dataclass(frozen=True)
class Prefix:
    name: str | None
    pid: int | None
    ip: str | None = None


@dataclass(frozen=True)
class LogLine:
    """One physical log line, split into who wrote it, when, and what it says.

    ``text`` is the line without ANSI codes, process prefixes or the dedup suffix (header included);
    ``message`` is ``text`` without the log header. ``process``/``pid`` come from the innermost prefix.
    """

    raw: str
    text: str
    message: str
    process: str | None
    pid: int | None
    rank: int | None
    level: str | None
    ts: Stamp | None
    year: int | None
    repeated: int
    where: str | None
    prefixes: tuple[Prefix, ...]

    @property
    def rank_key(self) -> tuple[str | None, int] | str | None:
        """What tells one writer process from another (None: an unprefixed, single-process log)."""
        if self.pid is not None:
            ip = self.prefixes[-1].ip if self.prefixes else None
            return (ip, self.pid)
        return self.process


@dataclass(frozen=True)
class Span:
    """First and last stamp of the lines behind one phase (all ranks)."""

    first: Stamp
    last: Stamp
    year: int | None = None


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
class RayEvent:
    """A Serve controller / Ray LLM milestone, kept for every deployment (ingress included)."""

    kind: str
    ts: Stamp | None
    year: int | None
    deployment: str | None = None
    value_s: float | None = None
    text: str = ""
    replicas_from: int | None = None  # an upscale's replica counts, before and after
    replicas_to: int | None = None


@dataclass(frozen=True)
class RayPhases:
    """Milestones of the LLM deployment (the first one whose name holds ``LLMServer``, else the first).

    Each field is the FIRST occurrence: a cold start is the first scale-up, not a later one.
    """

    year: int | None = None
    deploy_ts: Stamp | None = None
    upscale_ts: Stamp | None = None
    upscale_from: int | None = None
    upscale_to: int | None = None
    replica_add_ts: Stamp | None = None
    replicas_added: int | None = None
    replica_started_ts: Stamp | None = None
    replica_startup_s: float | None = None
    replica_init_s: float | None = None
    app_ready_ts: Stamp | None = None
    download_tasks_ts: Stamp | None = None
    cloud_download_ts: Stamp | None = None
    cloud_download_s: float | None = None
    model_download_done_ts: Stamp | None = None
    engine_started_ts: Stamp | None = None
    events: tuple[RayEvent, ...] = ()


@dataclass(frozen=True)
class ParsedLog:
    vllm: VllmPhases
    ray: RayPhases
    events: tuple[dict, ...]
    spans: dict[str, Span] = field(default_factory=dict)
    year: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Lines


def clean_line(line: str) -> str:
    """Strip ANSI codes, the trailing newline and Ray's ``[repeated Nx across cluster]`` suffix.

    Process prefixes are kept here; ``parse_line`` splits them into ``LogLine.prefixes``.
    """
    text = _ANSI_RE.sub("", line.rstrip("\r\n"))
    return _REPEATED_RE.sub("", text).rstrip()


def _stamp(m: re.Match) -> Stamp:
    second = float(m.group("s"))
    frac = m.groupdict().get("frac")
    if frac:
        second += int(frac) / 10 ** len(frac)
    return (int(m.group("mo")), int(m.group("d")), int(m.group("h")), int(m.group("mi")), second)


def parse_line(line: str) -> LogLine:
    stripped = _ANSI_RE.sub("", line.rstrip("\r\n"))
    rep = _REPEATED_RE.search(stripped)
    repeated = int(rep.group(1)) if rep else 1
    body = stripped[: rep.start()] if rep else stripped

    prefixes: list[Prefix] = []
    pos = 0
    while True:
        m = _PREFIX_RE.match(body, pos)
        if not m or not (m.group("name") or m.group("pid")):
            break
        pid = m.group("pid")
        prefixes.append(Prefix(m.group("name") or None, int(pid) if pid else None, m.group("ip")))
        pos = m.end()
    text = body[pos:]
    # tqdm redraws with "\r"; only the last drawing is what the reader saw.
    if "\r" in text:
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    text = text.strip()

    level = where = None
    ts: Stamp | None = None
    year: int | None = None
    message = text
    if m := _VLLM_HEADER_RE.match(text):
        level, where, message, ts = m.group("level"), m.group("where"), m.group("msg"), _stamp(m)
    elif m := _SERVE_HEADER_RE.match(text):
        level, message, ts, year = m.group("level"), m.group("msg"), _stamp(m), int(m.group("y"))
        if c := _SERVE_COMPONENT_RE.match(message):
            where, message = c.group("component"), c.group("msg")
    elif (m := _RAY_CORE_HEADER_RE.match(text)) or (m := _BRACKET_HEADER_RE.match(text)):
        level, where, message = m.group("level"), m.group("where"), m.group("msg")
        ts, year = _stamp(m), int(m.group("y"))

    inner = prefixes[-1] if prefixes else None
    process = inner.name if inner else None
    rank_m = _TP_RANK_RE.search(process) if process else None
    return LogLine(
        raw=line,
        text=text,
        message=message,
        process=process,
        pid=inner.pid if inner else None,
        rank=int(rank_m.group(1)) if rank_m else None,
        level=level,
        ts=ts,
        year=year,
        repeated=repeated,
        where=where,
        prefixes=tuple(prefixes),
    )


def parse_lines(text: str) -> list[LogLine]:
    return [parse_line(line) for line in text.splitlines()]


# ---------------------------------------------------------------------------------------------------------
# vLLM

_NUM = r"(\d+(?:\.\d+)?)"

# Each pattern is searched in LogLine.message. Both wordings where vLLM changed them: the ancestor logs'
# older vLLM ("takes", "for dynamic shape", "GiB and") and 0.25.1 ("took", "for compile range (a, b)",
# "GiB memory and", "took X s (compilation: Y s)").
_V = {
    "version": re.compile(r"Initializing a V1 LLM engine \(v(\S+?)\) with config"),
    "world": re.compile(r"rank \d+ in world size (\d+) is assigned as"),
    "download": re.compile(rf"Time spent downloading weights for .+?: {_NUM} seconds"),
    # runai-model-streamer's own summary; newer releases add " to <device>" and a "Distributed" flavour.
    "runai_overall": re.compile(
        rf"\[RunAI (?:Distributed )?Streamer\] Overall time to stream {_NUM} ([KMGTP]?i?B|Bytes)"
        rf"(?: of all files)?(?: to \S+?)?: {_NUM}s"
    ),
    # vLLM's tqdm bar over the streamed tensors; only the finished bar says how long it took.
    "runai_tqdm": re.compile(
        r"Loading safetensors using Runai Model Streamer:\s+100% Completed \| \d+/\d+ "
        r"\[(?:(\d+):)?(\d+):(\d+)<"
    ),
    "runai_any": re.compile(r"\[RunAI (?:Distributed )?Streamer\]|Runai Model Streamer"),
    "weights_load": re.compile(rf"Loading weights took {_NUM} seconds"),
    "model_load": re.compile(rf"Model loading took {_NUM} GiB(?: memory)? and {_NUM} seconds"),
    "dynamo": re.compile(rf"Dynamo bytecode transform time: {_NUM} s"),
    "inductor": re.compile(rf"Compiling a graph for (.+?) takes {_NUM} s"),
    "graph_cached": re.compile(r"Cache the graph (?:of|for) .+? for later use"),
    "cache_load": re.compile(rf"Directly load the compiled graph\(s\) for (.+?) from the cache, took {_NUM} s"),
    "aot_load": re.compile(r"Directly load AOT compilation from path (\S+)"),
    "aot_miss": re.compile(
        r"saved AOT compiled function to |unable to save AOT compiled function to "
        r"|Compiling model again due to a load failure from "
    ),
    "torch_compile": re.compile(rf"torch\.compile (?:takes|took) {_NUM} s in total"),
    "torch_compile_with_profiling": re.compile(
        rf"torch\.compile and initial profiling/warmup run together took {_NUM} s in total"
    ),
    "profiling": re.compile(rf"Initial profiling/warmup run took {_NUM} s"),
    "kv_gib": re.compile(rf"Available KV cache memory: {_NUM} GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "cuda_graph": re.compile(rf"Graph capturing finished in {_NUM} secs?, took {_NUM} GiB"),
    "engine_init": re.compile(
        rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} (?:s|seconds)"
        rf"(?: \(compilation: {_NUM} s)?"
    ),
    "cache_disabled": re.compile(r"vLLM's torch\.compile cache is disabled"),
}

_UNIT_GIB = {"B": 2**-30, "Bytes": 2**-30, "KiB": 2**-20, "MiB": 2**-10, "GiB": 1.0, "TiB": 2**10, "PiB": 2**20}


@dataclass(frozen=True)
class _Hit:
    key: object
    text: str
    value: float
    ts: Stamp | None
    year: int | None


class _Collector:
    """Per-quantity hits, deduplicated by (rank, line text): an echoed copy of a line counts once."""

    def __init__(self) -> None:
        self.hits: dict[str, dict[tuple, _Hit]] = {}

    def add(self, name: str, line: LogLine, value: float) -> None:
        hit = _Hit(line.rank_key, line.text, value, line.ts, line.year)
        self.hits.setdefault(name, {}).setdefault((hit.key, hit.text), hit)

    def get(self, name: str) -> list[_Hit]:
        return list(self.hits.get(name, {}).values())

    def rank_sum_max(self, name: str) -> float | None:
        per_rank: dict[object, float] = {}
        for hit in self.get(name):
            per_rank[hit.key] = per_rank.get(hit.key, 0.0) + hit.value
        return max(per_rank.values()) if per_rank else None

    def extreme(self, name: str, pick) -> float | None:
        values = [hit.value for hit in self.get(name)]
        return pick(values) if values else None

    def span(self, *names: str) -> Span | None:
        hits = [h for n in names for h in self.get(n) if h.ts is not None]
        if not hits:
            return None
        first = min(hits, key=lambda h: h.ts)
        last = max(hits, key=lambda h: h.ts)
        year = next((h.year for h in hits if h.year is not None), None)
        return Span(first.ts, last.ts, year)


# Every pattern in _V needs one of these words; most lines of a log have none.
_GATE_WORDS = (
    "Initializing a V1",
    "world size",
    "downloading weights",
    "RunAI",
    "Runai",
    "took",
    "takes",
    "Dynamo",
    "Cache the graph",
    "Directly load",
    "AOT",
    "Compiling",
    "KV cache",
    "torch.compile",
)


def _collect_vllm(lines: Iterable[LogLine]) -> tuple[_Collector, dict[str, object]]:
    col = _Collector()
    facts: dict[str, object] = {}
    for line in lines:
        msg = line.message
        if not any(w in msg for w in _GATE_WORDS):
            continue
        if "version" not in facts and (m := _V["version"].search(msg)):
            facts["version"] = m.group(1)
        if m := _V["world"].search(msg):
            col.add("world_size", line, float(m.group(1)))
        if m := _V["download"].search(msg):
            col.add("weights_download_s", line, float(m.group(1)))
        if _V["runai_any"].search(msg):
            facts["runai"] = True
        if m := _V["runai_overall"].search(msg):
            col.add("runai_stream_s", line, float(m.group(3)))
            col.add("runai_stream_gib", line, float(m.group(1)) * _UNIT_GIB.get(m.group(2), 1.0))
        if m := _V["runai_tqdm"].search(msg):
            h, mi, s = m.groups()
            col.add("runai_tqdm_s", line, int(h or 0) * 3600 + int(mi) * 60 + int(s))
        if m := _V["weights_load"].search(msg):
            col.add("weights_load_s", line, float(m.group(1)))
        if m := _V["model_load"].search(msg):
            col.add("model_load_gib", line, float(m.group(1)))
            col.add("model_load_s", line, float(m.group(2)))
        if m := _V["dynamo"].search(msg):
            col.add("dynamo_s", line, float(m.group(1)))
        if m := _V["inductor"].search(msg):
            col.add("inductor_s", line, float(m.group(2)))
        if _V["graph_cached"].search(msg):
            col.add("graph_cached", line, 1.0)
        if m := _V["cache_load"].search(msg):
            col.add("compile_cache_load_s", line, float(m.group(2)))
        if _V["aot_load"].search(msg):
            col.add("aot_load", line, 1.0)
        if _V["aot_miss"].search(msg):
            col.add("aot_miss", line, 1.0)
        if m := _V["torch_compile"].search(msg):
            col.add("torch_compile_s", line, float(m.group(1)))
        if m := _V["torch_compile_with_profiling"].search(msg):
            col.add("torch_compile_with_profiling_s", line, float(m.group(1)))
        if m := _V["profiling"].search(msg):
            col.add("profiling_s", line, float(m.group(1)))
        if m := _V["kv_gib"].search(msg):
            col.add("kv_cache_gib", line, float(m.group(1)))
        if m := _V["kv_tokens"].search(msg):
            col.add("kv_cache_tokens", line, float(m.group(1).replace(",", "")))
        if m := _V["cuda_graph"].search(msg):
            col.add("cuda_graph_s", line, float(m.group(1)))
            col.add("cuda_graph_gib", line, float(m.group(2)))
        if m := _V["engine_init"].search(msg):
            col.add("engine_init_s", line, float(m.group(1)))
            if m.group(2) is not None:
                col.add("engine_compile_s", line, float(m.group(2)))
        if _V["cache_disabled"].search(msg):
            facts["cache_disabled"] = True
    return col, facts


def _vllm_phases(col: _Collector, facts: dict[str, object]) -> VllmPhases:
    s = col.rank_sum_max
    compiled = bool(col.get("inductor_s") or col.get("graph_cached"))
    aot_loaded = bool(col.get("aot_load"))
    loaded = bool(col.get("compile_cache_load_s")) or aot_loaded
    # Dynamo lines are no evidence either way: Dynamo re-traces even when Inductor's graphs come from the
    # cache. Only Inductor work ("Compiling a graph", "Cache the graph") is a miss.
    compile_cache_hit = False if compiled else (True if loaded else None)
    aot_missed = bool(col.get("aot_miss"))
    aot_cache_hit = False if aot_missed else (True if aot_loaded else None)

    torch_compile_s = s("torch_compile_s")
    includes_profiling: bool | None = None
    if torch_compile_s is None and (together := s("torch_compile_with_profiling_s")) is not None:
        torch_compile_s, includes_profiling = together, True

    # An AOT hit skips Dynamo and Inductor; the torch.compile monitor then times only the artifact load.
    cache_load_s = s("compile_cache_load_s")
    if aot_cache_hit:
        candidates = [v for v in (cache_load_s, s("torch_compile_s")) if v is not None]
        cache_load_s = max(candidates) if candidates else None

    runai_s = s("runai_stream_s")
    if runai_s is None:
        runai_s = s("runai_tqdm_s")
    kv_tokens = col.extreme("kv_cache_tokens", min)
    world = col.extreme("world_size", max)
    return VllmPhases(
        vllm_version=facts.get("version"),  # type: ignore[arg-type]
        world_size=int(world) if world is not None else None,
        weights_download_s=s("weights_download_s"),
        runai_streamer=True if facts.get("runai") else None,
        runai_stream_s=runai_s,
        runai_stream_gib=col.extreme("runai_stream_gib", max),
        weights_load_s=s("weights_load_s"),
        model_load_s=s("model_load_s"),
        model_load_gib=col.extreme("model_load_gib", max),
        dynamo_s=s("dynamo_s"),
        inductor_s=s("inductor_s"),
        compile_cache_load_s=cache_load_s,
        torch_compile_s=torch_compile_s,
        torch_compile_includes_profiling=includes_profiling,
        profiling_s=s("profiling_s"),
        kv_cache_gib=col.extreme("kv_cache_gib", min),
        kv_cache_tokens=int(kv_tokens) if kv_tokens is not None else None,
        cuda_graph_s=s("cuda_graph_s"),
        cuda_graph_gib=col.extreme("cuda_graph_gib", max),
        engine_init_s=s("engine_init_s"),
        engine_compile_s=s("engine_compile_s"),
        compile_cache_disabled=True if facts.get("cache_disabled") else None,
        compile_cache_hit=compile_cache_hit,
        aot_cache_hit=aot_cache_hit,
    )


def parse_vllm(text: str) -> VllmPhases:
    """Every vLLM startup phase in ``text``; see the module docstring for the multi-rank rule."""
    return _vllm_phases(*_collect_vllm(parse_lines(text)))


# ---------------------------------------------------------------------------------------------------------
# Ray Serve / Ray LLM

_DEPLOYMENT = r"Deployment\(name='(?P<dep>[^']*)'(?:, app='[^']*')?\)"
_R = {
    "deploy": re.compile(rf"Deploying new version of {_DEPLOYMENT}"),
    "upscale": re.compile(rf"Upscaling {_DEPLOYMENT} from (?P<a>\d+) to (?P<b>\d+) replicas"),
    "add": re.compile(rf"Adding (?P<n>\d+) replicas? to {_DEPLOYMENT}"),
    "started": re.compile(
        r"Replica\(id='[^']*', deployment='(?P<dep>[^']*)'[^)]*\) started successfully "
        rf"on node .*? after {_NUM}s"
    ),
    "init": re.compile(rf"Replica constructor, reconfigure method, and initial health check took {_NUM}s"),
    "app_ready": re.compile(r"Application '(?P<app>[^']*)' is ready"),
    "download_tasks": re.compile(r"Running tasks to download model files on worker nodes"),
    "cloud_download": re.compile(rf"CloudDownloader: Files downloaded in {_NUM} seconds"),
    "download_done": re.compile(r"Finished downloading (?:model and tokenizer|tokenizer) for "),
    "engine_started": re.compile(r"Started vLLM engine"),
}


def _ray_events(lines: Iterable[LogLine]) -> list[RayEvent]:
    seen: set[tuple] = set()
    out: list[RayEvent] = []

    def emit(
        kind: str,
        line: LogLine,
        dep: str | None,
        value: float | None = None,
        text: str = "",
        replicas: tuple[int, int] | None = None,
    ) -> None:
        # An echoed copy of a line (same writer, same text) is one event.
        if (kind, line.rank_key, line.text) not in seen:
            seen.add((kind, line.rank_key, line.text))
            counts = replicas or (None, None)
            out.append(RayEvent(kind, line.ts, line.year, dep, value, text or line.message, *counts))

    for line in lines:
        msg = line.message
        if m := _R["deploy"].search(msg):
            emit("deploy", line, m.group("dep"))
        if m := _R["upscale"].search(msg):
            emit("upscale", line, m.group("dep"), replicas=(int(m.group("a")), int(m.group("b"))))
        if m := _R["add"].search(msg):
            emit("add", line, m.group("dep"), text=m.group("n"))
        if m := _R["started"].search(msg):
            emit("started", line, m.group("dep"), float(m.group(2)))
            if i := _R["init"].search(msg):
                emit("replica_init", line, m.group("dep"), float(i.group(1)))
        if m := _R["app_ready"].search(msg):
            emit("app_ready", line, None)
        if _R["download_tasks"].search(msg):
            emit("download_tasks", line, None)
        if m := _R["cloud_download"].search(msg):
            emit("cloud_download", line, None, float(m.group(1)))
        if _R["download_done"].search(msg):
            emit("download_done", line, None)
        if _R["engine_started"].search(msg):
            emit("engine_started", line, None)
    return out


def _ray_phases(events: Sequence[RayEvent]) -> RayPhases:
    deployments = [e.deployment for e in events if e.deployment]
    target = next((d for d in deployments if "LLMServer" in d), deployments[0] if deployments else None)

    def first(kind: str) -> RayEvent | None:
        # Lines without a deployment name (Ray LLM's own) belong to the LLM deployment by construction.
        return next((e for e in events if e.kind == kind and e.deployment in (None, target)), None)

    up, add, started, init = first("upscale"), first("add"), first("started"), first("replica_init")
    cloud = first("cloud_download")
    years = [e.year for e in events if e.year is not None]

    def ts(kind: str) -> Stamp | None:
        e = first(kind)
        return e.ts if e else None

    return RayPhases(
        year=years[0] if years else None,
        deploy_ts=ts("deploy"),
        upscale_ts=up.ts if up else None,
        upscale_from=up.replicas_from if up else None,
        upscale_to=up.replicas_to if up else None,
        replica_add_ts=add.ts if add else None,
        replicas_added=int(add.text) if add else None,
        replica_started_ts=started.ts if started else None,
        replica_startup_s=started.value_s if started else None,
        replica_init_s=init.value_s if init else None,
        app_ready_ts=ts("app_ready"),
        download_tasks_ts=ts("download_tasks"),
        cloud_download_ts=cloud.ts if cloud else None,
        cloud_download_s=cloud.value_s if cloud else None,
        model_download_done_ts=ts("download_done"),
        engine_started_ts=ts("engine_started"),
        events=tuple(events),
    )


def parse_ray(text: str) -> RayPhases:
    """Serve controller and Ray LLM milestones in ``text`` (absolute stamps where Ray logged a year)."""
    return _ray_phases(_ray_events(parse_lines(text)))


# ---------------------------------------------------------------------------------------------------------
# Both, plus the harness's own events

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
_SPAN_SOURCES = {
    "runai_stream_s": ("runai_stream_s", "runai_tqdm_s"),
    "compile_cache_load_s": ("compile_cache_load_s", "aot_load"),
    "torch_compile_s": ("torch_compile_s", "torch_compile_with_profiling_s"),
}


def parse_log(text: str, lines: Sequence[LogLine] | None = None) -> ParsedLog:
    """``lines``: ``parse_lines(text)`` when the caller already has them (the timeline reads them too)."""
    lines = parse_lines(text) if lines is None else lines
    col, facts = _collect_vllm(lines)
    ray_events = _ray_events(lines)
    ray = _ray_phases(ray_events)

    spans: dict[str, Span] = {}
    for column in PHASE_COLUMNS:
        if span := col.span(*_SPAN_SOURCES.get(column, (column,))):
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
        vllm=_vllm_phases(col, facts),
        ray=ray,
        events=tuple(events),
        spans=spans,
        year=years[0] if years else None,
    )


def to_phase_table(parsed: ParsedLog) -> dict[str, float | None]:
    """One row of durations (seconds), keyed by ``PHASE_COLUMNS``; an absent phase stays ``None``."""
    values = {f.name: getattr(parsed.vllm, f.name) for f in fields(parsed.vllm)}
    values.update(
        cloud_download_s=parsed.ray.cloud_download_s,
        replica_init_s=parsed.ray.replica_init_s,
        replica_startup_s=parsed.ray.replica_startup_s,
    )
    return {column: values[column] for column in PHASE_COLUMNS}
