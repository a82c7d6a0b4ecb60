"""Pure parsers: Ray Serve LLM + vLLM log text -> startup phases.

Everything here is a function of text, so a log recorded on an 8-GPU box parses the same on a laptop, and
so does a log a user pasted into an issue. The rules are data (``PREFIX_RULES``, ``VLLM_RULES``): a new
wording or prefix style is one more row, and ``explain`` shows which row read which line.

What a captured terminal log looks like, and how each quirk is handled:

* ANSI colour codes (Ray's prefixes, vLLM's coloured level and timestamp): stripped, also in the two forms
  a paste leaves behind: caret notation (``^[[36m``) and the code with its ESC lost (``[36m``).
* A docker compose column, ``vllm-llm-1  | ``: split off as the outermost prefix.
* A paste wrapped at the terminal width (``... Model loading took 35.6458 Gi`` / ``B and 299.6 seconds``):
  a row with no prefix and no header after a full-width row is that row's tail; rules read the joined line.
* Nested process prefixes, ``(ServeReplica:default:LLMServer:llama pid=1) (EngineCore_DP0 pid=2)
  (RayWorkerWrapper pid=3) INFO ...``, and vLLM's multiprocessing workers ``(VllmWorker rank=0 pid=3249)``,
  ``(VllmWorkerProcess pid=7)``, ``(Worker_TP1 pid=8)``: split off into ``LogLine.prefixes`` by the first
  ``PREFIX_RULES`` row that matches; the row says which part is the process name, the rank and the pid.
  The innermost prefix names the process that wrote the line. A worker's line often appears twice, once
  directly and once echoed through the engine core's stdout; both copies carry the same text and count once.
* Ray's log dedup, ``... [repeated 3x across cluster]``: the suffix is stripped and recorded in
  ``LogLine.repeated``. It is never used as a multiplier: Ray collapses lines that differ only in their
  numbers, so the repeated line shows one rank's value, not a sum.
* Timestamps: vLLM's have no year and whole seconds (``INFO 10-15 11:56:51 [file.py:123]``; before 0.8 the
  file has no opening bracket, ``INFO 03-19 06:36:19 model_runner.py:1523]``); Ray's have a year and
  milliseconds (``INFO 2025-10-15 11:56:51,123 controller 42 -- ...``). Both become a ``Stamp``
  ``(month, day, hour, minute, second)``; the year, when a line has one, is kept beside it.

Engine starts: one log can hold several (an offline script building two engines, a replica restarting its
engine). Each ``Initializing ... LLM engine (vX) with config`` line opens one; every line up to the next
belongs to it (the lines before the first belong to the first). Each start has its own phases, ranks and
cache status; the run's phases are those of the start that served (the last one that got to engine init,
KV cache sizing or CUDA graph capture, else the last one); the others are reported in
``ParsedLog.starts``, never merged.

Models: with a draft model (speculative decoding, MTP, Medusa) one start loads two models. A rank switches
to the draft at ``Loading drafter model`` or at its second ``Starting to load model``, and back to the main
model at the engine-wide ``Model loading took`` line; a torch.compile cache directory other than
``backbone`` (``eagle_head``) marks the draft's compile. Weights, torch.compile and compile-cache lines
count for the model in force on their rank; memory, KV cache, CUDA graphs and engine init are engine-wide.

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

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields

from coldstart.analysis.events import iter_events

# (month, day, hour, minute, second); second is a float because Ray's stamps carry milliseconds.
Stamp = tuple[int, int, int, int, float]

_LEVELS = r"DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL"

# CSI sequences (colours, cursor moves), the lone ESC+char forms some terminals emit, and the colour codes
# a copy-paste leaves behind: caret notation "^[[36m" and "[36m" whose ESC the paste dropped.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\^\[\[[0-9;]*m|\[\d{1,3}(?:;\d{1,3})*m")
# The dedup suffix; Ray sometimes appends its "(Ray deduplicates logs by default ...)" hint after it.
_REPEATED_RE = re.compile(r"\s*\[repeated (\d+)x across cluster\].*$")
# docker compose prefixes each line with its service column; the name has no spaces, so a message is not
# mistaken for one (tqdm bars have a "|" too, but after words with spaces).
_COMPOSE_RE = re.compile(r"(?P<name>[A-Za-z0-9][\w.\-]*)\s+\|\s?")


@dataclass(frozen=True)
class PrefixRule:
    """One style of process prefix: the regex's groups say which part is the name, rank, pid and ip."""

    style: str
    pattern: re.Pattern[str]


# First match wins; each pattern is anchored at the current position. Names have no spaces, so a message
# that starts with "(" is not mistaken for a prefix.
PREFIX_RULES: tuple[PrefixRule, ...] = (
    # vLLM's multiprocessing executor before 0.10: "(VllmWorker rank=0 pid=3249)".
    PrefixRule("vllm_worker_rank", re.compile(r"\((?P<name>[\w:.\-/]+) rank=(?P<rank>\d+) pid=(?P<pid>\d+)\)\s?")),
    # Ray actors and vLLM processes: "(RayWorkerWrapper pid=1, ip=10.0.0.1)", "(Worker_TP0 pid=2)",
    # "(VllmWorkerProcess pid=3)", "(pid=4)"; the rank, when there is one, is the name's "_TP<n>".
    PrefixRule("name_pid", re.compile(r"\((?P<name>[\w:.\-/]*?)\s*pid=(?P<pid>\d+)(?:,\s*ip=(?P<ip>[\w.:\-]+))?\)\s?")),
    # Ray's autoscaler: "(autoscaler +19s)".
    PrefixRule("ray_autoscaler", re.compile(r"\((?P<name>[\w:.\-/]+)\s\+[\d.]+[smh]\)\s?")),
    # A bare process name: "(raylet)".
    PrefixRule("name_only", re.compile(r"\((?P<name>[\w:.\-/]+)\)\s?")),
)
_TP_RANK_RE = re.compile(r"_TP(\d+)")

_VLLM_HEADER_RE = re.compile(
    rf"^(?P<level>{_LEVELS}) (?P<mo>\d\d)-(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d(?:\.\d+)?)"
    r" (?:\[(?P<where>[^\]]+)\]|(?P<where_v0>[\w.\-/]+:\d+)\]) ?(?P<msg>.*)$"
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
    rank: int | None = None
    style: str | None = None


@dataclass(frozen=True)
class LogLine:
    """One physical log line, split into who wrote it, when, and what it says.

    ``text`` is the line without ANSI codes, process prefixes or the dedup suffix (header included);
    ``message`` is ``text`` without the log header. ``process``/``pid``/``rank`` come from the innermost
    prefix; ``number`` is the line's 1-based position in the text it was parsed from (0 when parsed alone).
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
    number: int = 0

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
    evidence: tuple[Evidence, ...] = ()

    @property
    def phases(self) -> VllmPhases:
        return self.models["main"]

    @property
    def reached_init(self) -> bool:
        p = self.phases
        return any(v is not None for v in (p.engine_init_s, p.kv_cache_gib, p.kv_cache_tokens, p.cuda_graph_s))


@dataclass(frozen=True)
class ParsedLog:
    """``vllm`` is the main model of the start that served (``starts[served]``); see the module docstring."""

    vllm: VllmPhases
    ray: RayPhases
    events: tuple[dict, ...]
    spans: dict[str, Span] = field(default_factory=dict)
    year: int | None = None
    starts: tuple[EngineStart, ...] = ()
    served: int | None = None


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


def _split_prefixes(body: str) -> tuple[list[Prefix], int]:
    prefixes: list[Prefix] = []
    pos = 0
    if body[:1] != "(" and (m := _COMPOSE_RE.match(body)):
        prefixes.append(Prefix(m.group("name"), None, style="compose"))
        pos = m.end()
    while body.startswith("(", pos):
        for rule in PREFIX_RULES:
            if m := rule.pattern.match(body, pos):
                g = m.groupdict()
                name, pid, rank = g.get("name") or None, g.get("pid"), g.get("rank")
                if rank is None and name and (tp := _TP_RANK_RE.search(name)):
                    rank = tp.group(1)
                prefixes.append(
                    Prefix(name, int(pid) if pid else None, g.get("ip"), int(rank) if rank else None, rule.style)
                )
                pos = m.end()
                break
        else:
            break
    return prefixes, pos


def parse_line(line: str, number: int = 0) -> LogLine:
    stripped = _ANSI_RE.sub("", line.rstrip("\r\n"))
    rep = _REPEATED_RE.search(stripped)
    repeated = int(rep.group(1)) if rep else 1
    body = stripped[: rep.start()] if rep else stripped

    prefixes, pos = _split_prefixes(body)
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
        level, message, ts = m.group("level"), m.group("msg"), _stamp(m)
        where = m.group("where") or m.group("where_v0")
    elif m := _SERVE_HEADER_RE.match(text):
        level, message, ts, year = m.group("level"), m.group("msg"), _stamp(m), int(m.group("y"))
        if c := _SERVE_COMPONENT_RE.match(message):
            where, message = c.group("component"), c.group("msg")
    elif (m := _RAY_CORE_HEADER_RE.match(text)) or (m := _BRACKET_HEADER_RE.match(text)):
        level, where, message = m.group("level"), m.group("where"), m.group("msg")
        ts, year = _stamp(m), int(m.group("y"))

    # A compose column alone says which container, not which process: a process prefix inside it wins.
    inner = prefixes[-1] if prefixes else None
    return LogLine(
        raw=line,
        text=text,
        message=message,
        process=inner.name if inner else None,
        pid=inner.pid if inner else None,
        rank=inner.rank if inner else None,
        level=level,
        ts=ts,
        year=year,
        repeated=repeated,
        where=where,
        prefixes=tuple(prefixes),
        number=number,
    )


def parse_lines(text: str) -> list[LogLine]:
    return [parse_line(line, i) for i, line in enumerate(text.splitlines(), start=1)]


# ---------------------------------------------------------------------------------------------------------
# vLLM

_NUM = r"(-?\d+(?:\.\d+)?)"
_UNIT_GIB = {"B": 2**-30, "Bytes": 2**-30, "KiB": 2**-20, "MiB": 2**-10, "GiB": 1.0, "TiB": 2**10, "PiB": 2**20}


@dataclass(frozen=True)
class Rule:
    """One wording vLLM logs: a literal ``needle`` (cheap pre-filter), the regex, and what it yields.

    ``yields`` maps each quantity to the regex group holding its value; a quantity with group ``None`` is a
    flag (value 1). ``scope`` says whether the line counts for the model in force on its rank ("model") or
    for the whole engine ("engine"). ``per_range`` names the group holding the compile range: those
    quantities are summed over distinct ranges per rank; every other quantity is one value per rank.
    ``convert`` turns the match into values where a group is not a plain number.
    """

    name: str
    needle: str
    pattern: re.Pattern[str]
    yields: tuple[tuple[str, int | None], ...]
    scope: str = "engine"
    per_range: int | None = None
    # Every distinct line counts (the engine logs its KV cache once per KV cache group; min is taken).
    per_line: bool = False
    convert: Callable[[re.Match[str]], dict[str, float]] | None = None
    # The model this rank is on for its next lines ("main" or "draft"), once this line is counted.
    sets_model: str | None = None


def _runai_overall(m: re.Match[str]) -> dict[str, float]:
    return {"runai_stream_s": float(m.group(3)), "runai_stream_gib": float(m.group(1)) * _UNIT_GIB.get(m.group(2), 1.0)}


def _runai_tqdm(m: re.Match[str]) -> dict[str, float]:
    h, mi, s = m.groups()
    return {"runai_tqdm_s": int(h or 0) * 3600 + int(mi) * 60 + int(s)}


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# Each pattern is searched in LogLine.message. Wordings from vLLM 0.5 to 0.25.1: V0's "Loading model weights
# took X GB" and "Graph capturing finished in N secs." (no memory figure), "Model loading took X GB and"
# (0.8), "GiB and" / "GiB memory and", "takes" / "took", "for shape None" / "for dynamic shape" / "for
# compile range (a, b)", and a CUDA graph memory figure that can be negative (freed memory).
VLLM_RULES: tuple[Rule, ...] = (
    Rule("world", "world size", _r(r"rank \d+ in world size (\d+)\b"), (("world_size", 1),)),
    Rule(
        "download",
        "downloading weights",
        _r(rf"Time spent downloading weights for .+?: {_NUM} seconds"),
        (("weights_download_s", 1),),
    ),
    Rule("runai_any", "RunAI", _r(r"\[RunAI (?:Distributed )?Streamer\]"), (("runai", None),)),
    Rule("runai_any_tqdm", "Runai Model Streamer", _r(r"Runai Model Streamer"), (("runai", None),)),
    # runai-model-streamer's own summary; newer releases add " to <device>" and a "Distributed" flavour.
    Rule(
        "runai_overall",
        "Overall time to stream",
        _r(
            rf"\[RunAI (?:Distributed )?Streamer\] Overall time to stream {_NUM} ([KMGTP]?i?B|Bytes)"
            rf"(?: of all files)?(?: to \S+?)?: {_NUM}s"
        ),
        (("runai_stream_s", None), ("runai_stream_gib", None)),
        convert=_runai_overall,
    ),
    # vLLM's tqdm bar over the streamed tensors; only the finished bar says how long it took.
    Rule(
        "runai_tqdm",
        "Runai Model Streamer",
        _r(r"Loading safetensors using Runai Model Streamer:\s+100% Completed \| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<"),
        (("runai_tqdm_s", None),),
        convert=_runai_tqdm,
    ),
    # Which model a rank is loading: the draft from the drafter marker or the second load on.
    Rule("drafter", "Loading drafter model", _r(r"Loading drafter model"), (), sets_model="draft"),
    Rule("start_load", "Starting to load model", _r(r"Starting to load model (\S+?)(?:\.\.\.)?$"), (), "model"),
    Rule(
        "compile_dir",
        "Using cache directory",
        _r(r"Using cache directory: (\S+) for vLLM's torch\.compile"),
        (),
        "model",
    ),
    Rule(
        "weights_load",
        "Loading weights took",
        _r(rf"Loading weights took {_NUM} seconds"),
        (("weights_load_s", 1),),
        "model",
    ),
    Rule(
        "v0_model_weights",
        "Loading model weights took",
        _r(rf"Loading model weights took {_NUM} GB"),
        (("model_load_gib", 1),),
        "model",
    ),
    Rule(
        "model_load",
        "Model loading took",
        # A paste can cut the line after "sec"; 0.8 wrote "GB", later "GiB" and "GiB memory".
        _r(rf"Model loading took {_NUM} G(?:i)?B(?:(?: memory)? and {_NUM} sec)?"),
        (("model_load_gib", 1), ("model_load_s", 2)),
        # The engine-wide total, drafter included: whatever this rank compiles next is the main model's.
        sets_model="main",
    ),
    Rule("dynamo", "Dynamo", _r(rf"Dynamo bytecode transform time: {_NUM} s"), (("dynamo_s", 1),), "model"),
    Rule(
        "inductor",
        "Compiling a graph",
        _r(rf"Compiling a graph for (.+?) takes {_NUM} s"),
        (("inductor_s", 2),),
        "model",
        per_range=1,
    ),
    Rule(
        "graph_cached",
        "Cache the graph",
        _r(r"Cache the graph (?:of|for) .+? for later use"),
        (("graph_cached", None),),
        "model",
    ),
    # Before 0.9 a cache hit is logged without a time ("... for shape None from the cache").
    Rule(
        "cache_load",
        "Directly load the compiled graph",
        _r(rf"Directly load the compiled graph(?:\(s\))? for (.+?) from the cache(?:, took {_NUM} s)?"),
        (("cache_hit", None), ("compile_cache_load_s", 2)),
        "model",
        per_range=1,
    ),
    Rule(
        "aot_load",
        "Directly load AOT",
        _r(r"Directly load AOT compilation from path (\S+)"),
        (("aot_load", None),),
        "model",
    ),
    Rule(
        "aot_miss",
        "AOT compiled function",
        _r(r"saved AOT compiled function to |unable to save AOT compiled function to "),
        (("aot_miss", None),),
        "model",
    ),
    Rule(
        "aot_load_failure",
        "Compiling model again",
        _r(r"Compiling model again due to a load failure from "),
        (("aot_miss", None),),
        "model",
    ),
    Rule(
        "torch_compile",
        "torch.compile",
        _r(rf"torch\.compile (?:takes|took) {_NUM} s in total"),
        (("torch_compile_s", 1),),
        "model",
    ),
    Rule(
        "torch_compile_with_profiling",
        "torch.compile and initial",
        _r(rf"torch\.compile and initial profiling/warmup run together took {_NUM} s in total"),
        (("torch_compile_with_profiling_s", 1),),
        "model",
    ),
    Rule(
        "profiling",
        "profiling/warmup run took",
        _r(rf"Initial profiling/warmup run took {_NUM} s"),
        (("profiling_s", 1),),
    ),
    # V0 (0.6-0.9) times its profiling run in the worker: "Memory profiling takes X seconds", and from 0.6.5
    # "Memory profiling results: duration=X seconds, ...".
    Rule(
        "v0_profiling",
        "Memory profiling",
        _r(rf"Memory profiling (?:takes|took) {_NUM} seconds|Memory profiling results: duration={_NUM} seconds"),
        (("profiling_s", 1), ("profiling_s", 2)),
    ),
    # V0's KV cache budget: "... the rest of the memory reserved for KV Cache is X GiB" (0.7-0.9) and
    # "Memory profiling results: ... kv_cache_size=X GiB" (0.6).
    Rule(
        "v0_kv_gib",
        "KV Cache is",
        _r(rf"reserved for KV Cache is {_NUM} ?GiB"),
        (("kv_cache_gib", 1),),
        per_line=True,
    ),
    Rule("v0_kv_size", "kv_cache_size=", _r(rf"kv_cache_size={_NUM} ?GiB"), (("kv_cache_gib", 1),), per_line=True),
    Rule(
        "kv_gib",
        "KV cache memory",
        _r(rf"Available KV cache memory: {_NUM} GiB"),
        (("kv_cache_gib", 1),),
        per_line=True,
    ),
    Rule(
        "kv_tokens",
        "KV cache size",
        _r(r"GPU KV cache size: ([\d,]+) tokens"),
        (("kv_cache_tokens", 1),),
        per_line=True,
    ),
    Rule(
        "cuda_graph",
        "Graph capturing finished",
        _r(rf"Graph capturing finished in {_NUM} secs?(?:, took {_NUM} GiB)?"),
        (("cuda_graph_s", 1), ("cuda_graph_gib", 2)),
    ),
    Rule(
        "engine_init",
        "init engine",
        _r(
            rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} (?:s|seconds)"
            rf"(?: \(compilation: {_NUM} s)?"
        ),
        (("engine_init_s", 1), ("engine_compile_s", 2)),
    ),
    Rule(
        "cache_disabled",
        "cache is disabled",
        _r(r"vLLM's torch\.compile cache is disabled"),
        (("cache_disabled", None),),
    ),
)

# The engine start marker; its config also gives the world size where no "world size" line does.
# A paste can cut the line short after the version, so "with config" is not required.
_START_RE = re.compile(r"Initializing an? (?:V\d )?LLM engine \(v(?P<version>[^)\s]+)\)")
_TP_RE = re.compile(r"tensor_parallel_size=(\d+)")
_PP_RE = re.compile(r"pipeline_parallel_size=(\d+)")
# A number with a time unit, or "took"/"takes"/"finished in": what explain lists when no rule read it.
# tqdm bars time themselves ("[00:14<00:00, 6.39s/it]"); they are progress, not a phase.
_PROGRESS_RE = re.compile(r"\d+%\||% Completed \||[\d.]+(?:s/it|it/s)\]")
_TIMING_RE = re.compile(r"\b(?:took|takes|finished in|elapsed)\b|\d(?:\.\d+)?\s*(?:s|secs?|seconds|ms)\b")


@dataclass(frozen=True)
class _Hit:
    quantity: str
    model: str
    key: object
    unit: str | None
    value: float
    line: LogLine
    rule: str


class _Collector:
    """One engine start's hits, per model and rank; a copy of a line (echo, torn write) counts once."""

    def __init__(self) -> None:
        # (quantity, model) -> (rank key, range or None) -> hit
        self.hits: dict[tuple[str, str], dict[tuple[object, str | None], _Hit]] = {}
        self.rank_model: dict[object, str] = {}
        self.loads_seen: dict[object, str] = {}
        self.ranks: dict[object, None] = {}

    def add(self, hit: _Hit) -> None:
        slot = self.hits.setdefault((hit.quantity, hit.model), {})
        # Per rank and range the largest copy stands: duplicates carry the same value.
        prev = slot.get((hit.key, hit.unit))
        if prev is None or hit.value > prev.value:
            slot[(hit.key, hit.unit)] = hit
        self.ranks.setdefault(hit.key)

    def get(self, quantity: str, model: str = "main") -> list[_Hit]:
        return list(self.hits.get((quantity, model), {}).values())

    def models(self) -> list[str]:
        found = {m for (_, m) in self.hits}
        return ["main", *sorted(found - {"main"})]

    def rank_sum_max(self, quantity: str, model: str = "main") -> float | None:
        per_rank: dict[object, float] = {}
        for hit in self.get(quantity, model):
            per_rank[hit.key] = per_rank.get(hit.key, 0.0) + hit.value
        return max(per_rank.values()) if per_rank else None

    def extreme(self, quantity: str, pick: Callable[[list[float]], float], model: str = "main") -> float | None:
        values = [hit.value for hit in self.get(quantity, model)]
        return pick(values) if values else None

    def span(self, *quantities: str) -> Span | None:
        stamped = [(h.line.ts, h.line.year) for q in quantities for h in self.get(q) if h.line.ts is not None]
        if not stamped:
            return None
        year = next((y for _, y in stamped if y is not None), None)
        return Span(min(ts for ts, _ in stamped), max(ts for ts, _ in stamped), year)


# Narrower rows than this are not taken for a wrap (the narrowest wrapped paste in the corpus is 100+).
_WRAP_MIN_CHARS = 80


def _apply_rules(col: _Collector, line: LogLine, matched: set[int] | None = None) -> bool:
    msg = line.message
    key = line.rank_key
    hit = False
    for rule in VLLM_RULES:
        if rule.needle not in msg or not (m := rule.pattern.search(msg)):
            continue
        hit = True
        if matched is not None:
            matched.update(range(line.number, line.number + line.raw.count("\n") + 1))
        model = col.rank_model.get(key, "main")
        if rule.name == "start_load":
            # An echoed copy names the same model again; only another model is the draft.
            first = col.loads_seen.setdefault(key, m.group(1))
            col.rank_model[key] = "main" if m.group(1) == first else "draft"
            continue
        elif rule.name == "compile_dir":
            # ".../rank_0_0/backbone" (or plain ".../rank_0_0" before 0.10) is the main model's compile.
            leaf = m.group(1).rstrip("/").rsplit("/", 1)[-1]
            col.rank_model[key] = "main" if leaf == "backbone" or leaf.startswith("rank_") else "draft"
            continue
        if rule.scope == "engine":
            model = "main"
        elif rule.name == "v0_model_weights" and model == "main":
            # V0 before 0.6 names neither load: a rank's second, different weights line is the proposer's.
            prev = col.hits.get(("model_load_gib", "main"), {}).get((key, None))
            if prev is not None and prev.line.text != line.text:
                col.rank_model[key] = model = "draft"
        unit = m.group(rule.per_range) if rule.per_range else (line.text if rule.per_line else None)
        values = rule.convert(m) if rule.convert else None
        for quantity, group in rule.yields:
            if values is not None:
                if quantity in values:
                    col.add(_Hit(quantity, model, key, unit, values[quantity], line, rule.name))
            elif group is None:
                col.add(_Hit(quantity, model, key, unit, 1.0, line, rule.name))
            elif (raw := m.group(group)) is not None:
                col.add(_Hit(quantity, model, key, unit, float(raw.replace(",", "")), line, rule.name))
        if rule.sets_model is not None:
            col.rank_model[key] = rule.sets_model
    return hit


def _unwrapped(lines: Sequence[LogLine]) -> Iterable[LogLine]:
    """The logical lines: each row with the tails a fixed-width paste wrapped onto the rows after it."""
    current: LogLine | None = None
    for line in lines:
        if (joined := _joined(current, line)) is not None:
            current = joined
            continue
        if current is not None:
            yield current
        current = line
    if current is not None:
        yield current


def _joined(prev: LogLine | None, line: LogLine) -> LogLine | None:
    """``prev`` with ``line`` appended, where ``line`` is the tail of ``prev`` wrapped onto the next row.

    A terminal copy wrapped at a fixed width leaves "Model loading took 35.6458 Gi" on one row and "B and
    299.679397 seconds" on the next: the tail has no process prefix and no header of its own.
    """
    if prev is None or prev.ts is None or line.prefixes or line.ts is not None or not line.text:
        return None
    tail = _ANSI_RE.sub("", line.raw.rstrip("\r\n"))
    tail = tail[: m.start()] if (m := _REPEATED_RE.search(tail)) else tail
    head = _ANSI_RE.sub("", prev.raw.rstrip("\r\n").rsplit("\n", 1)[-1])
    # A wrapped row is as wide as the terminal; a short row, a progress bar or a traceback stands alone.
    if len(head) < _WRAP_MIN_CHARS or _PROGRESS_RE.search(tail) or tail.lstrip().startswith(("Traceback", "File ")):
        return None
    sep = " " if head[-1:].isspace() or tail[:1].isspace() else ""
    return dataclasses.replace(
        prev,
        raw=prev.raw.rstrip("\r\n") + "\n" + line.raw,
        text=prev.text + sep + tail.strip(),
        message=prev.message + sep + tail.strip(),
        repeated=max(prev.repeated, line.repeated),
    )


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


def _split_starts(lines: Sequence[LogLine]) -> list[_StartLines]:
    """Cut the log at each engine start marker (see ``_same_start`` for the markers that are not a new start)."""
    starts: list[_StartLines] = []
    prelude: list[LogLine] = []
    last_marker: LogLine | None = None
    for line in lines:
        m = _START_RE.search(line.message) if "LLM engine" in line.message else None
        if m and not _same_start(line, last_marker):
            last_marker = line
            tp, pp = _TP_RE.search(line.message), _PP_RE.search(line.message)
            world = int(tp.group(1)) * (int(pp.group(1)) if pp else 1) if tp else None
            # The lines before the first start (API server, Ray) belong to it.
            starts.append(_StartLines(line.number, line.ts, m.group("version"), world, [*prelude, line]))
            prelude = []
            continue
        (starts[-1].lines if starts else prelude).append(line)
    if not starts:
        starts.append(_StartLines(prelude[0].number if prelude else 0, None, None, None, prelude))
    return starts


def _model_phases(col: _Collector, model: str, start: _StartLines | None) -> VllmPhases:
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

    # An AOT hit still runs Dynamo first when the compiled graphs are loaded by range; the torch.compile
    # monitor's total minus that Dynamo pass is the time spent loading the artifact (and graphs).
    cache_load_s = s("compile_cache_load_s")
    if aot_cache_hit and (total := s("torch_compile_s")) is not None:
        dynamo = s("dynamo_s")
        after_dynamo = round(total - dynamo, 6) if dynamo is not None and dynamo < total else total
        cache_load_s = max(v for v in (cache_load_s, after_dynamo) if v is not None)

    engine = model == "main"

    def e(quantity: str) -> float | None:
        return s(quantity) if engine else None

    runai_s = e("runai_stream_s")
    if runai_s is None:
        runai_s = e("runai_tqdm_s")
    kv_tokens = col.extreme("kv_cache_tokens", min) if engine else None
    world = col.extreme("world_size", max) if engine else None
    if world is None and engine and start is not None:
        world = start.world_from_config
    gib = col.extreme("model_load_gib", max, model)
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
        compile_cache_load_s=cache_load_s,
        torch_compile_s=torch_compile_s,
        torch_compile_includes_profiling=includes_profiling,
        profiling_s=e("profiling_s"),
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


def _engine_start(index: int, part: _StartLines, matched: set[int] | None = None) -> tuple[EngineStart, _Collector]:
    col = _Collector()
    for line in _unwrapped(part.lines):
        _apply_rules(col, line, matched)
    models = {model: _model_phases(col, model, part) for model in col.models()}
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
        evidence=tuple(sorted(evidence, key=lambda ev: ev.line_number)),
    )
    return start, col


def _served(starts: Sequence[EngineStart]) -> int | None:
    if not starts:
        return None
    return next((s.index for s in reversed(starts) if s.reached_init), starts[-1].index)


def parse_starts(text: str) -> list[EngineStart]:
    """Every engine start in ``text``, in log order, each with its own phases per model."""
    return [_engine_start(i, part)[0] for i, part in enumerate(_split_starts(parse_lines(text)))]


def parse_vllm(text: str) -> VllmPhases:
    """The serving start's main-model phases in ``text``; see the module docstring for the rules."""
    starts = parse_starts(text)
    served = _served(starts)
    return starts[served].phases if served is not None else VllmPhases()


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
    ray_events = _ray_events(lines)
    ray = _ray_phases(ray_events)

    built = [_engine_start(i, part) for i, part in enumerate(_split_starts(lines))]
    starts = tuple(start for start, _ in built)
    served = _served(starts)

    spans: dict[str, Span] = {}
    if served is not None:
        col = built[served][1]
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
        vllm=starts[served].phases if served is not None else VllmPhases(),
        ray=ray,
        events=tuple(events),
        spans=spans,
        year=years[0] if years else None,
        starts=starts,
        served=served,
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


def _fmt(value: object) -> str:
    return "None" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def explain(text: str, max_unmatched: int = 200) -> str:
    """Each engine start's phases with the line(s) each came from, then the timing-looking lines no rule read.

    The report is for a person checking a parse against the log: line numbers are 1-based, as an editor
    shows them.
    """
    lines = parse_lines(text)
    matched: set[int] = set()
    built = [_engine_start(i, part, matched)[0] for i, part in enumerate(_split_starts(lines))]
    served = _served(built)
    out: list[str] = []
    for start in built:
        tag = " (served)" if start.index == served else " (did not serve)"
        version = f" vLLM {start.vllm_version}" if start.vllm_version else ""
        out.append(
            f"engine start {start.index + 1}/{len(built)}{tag}: line {start.line_number}{version},"
            f" {len(start.ranks)} rank(s) logged phases"
        )
        for model, phases in start.models.items():
            out.append(f"  model {model}:")
            for f in fields(phases):
                value = getattr(phases, f.name)
                if value is None:
                    continue
                out.append(f"    {f.name} = {_fmt(value)}")
                for ev in start.evidence:
                    if ev.model == model and (
                        ev.quantity == f.name or _SPAN_SOURCES.get(f.name, ()).count(ev.quantity)
                    ):
                        out.append(f"      line {ev.line_number}: {clean_line(ev.text)}")
    unmatched = [
        line
        for line in lines
        if line.number not in matched and _TIMING_RE.search(line.message) and not _PROGRESS_RE.search(line.message)
    ]
    out.append(f"timing-looking lines no rule read: {len(unmatched)}")
    for line in unmatched[:max_unmatched]:
        out.append(f"  line {line.number}: {clean_line(line.raw)}")
    if len(unmatched) > max_unmatched:
        out.append(f"  ... {len(unmatched) - max_unmatched} more")
    return "\n".join(out)
