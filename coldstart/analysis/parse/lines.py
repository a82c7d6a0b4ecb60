"""The line lexer: one raw log line -> who wrote it, when, and what it says (``LogLine``).

What a captured terminal log looks like, and how each quirk is handled:

* ANSI colour codes (Ray's prefixes, vLLM's coloured level and timestamp): stripped, also in the two forms
  a paste leaves behind: caret notation (``^[[36m``) and the code with its ESC lost (``[36m``).
* A docker compose column, ``vllm-llm-1  | ``: split off as the outermost prefix.
* A paste wrapped at the terminal width (``... Model loading took 35.6458 Gi`` / ``B and 299.6 seconds``):
  a row with no prefix and no header after a full-width row is that row's tail; ``unwrapped`` joins them.
* Nested process prefixes, ``(ServeReplica:default:LLMServer:llama pid=1) (EngineCore_DP0 pid=2)
  (RayWorkerWrapper pid=3) INFO ...``, and vLLM's multiprocessing workers ``(VllmWorker rank=0 pid=3249)``,
  ``(VllmWorkerProcess pid=7)``, ``(Worker_TP1 pid=8)``: split off into ``LogLine.prefixes`` by the first
  ``PREFIX_RULES`` row that matches; the row says which part is the process name, the rank and the pid.
  The innermost prefix names the process that wrote the line.
* Ray's log dedup, ``... [repeated 3x across cluster]``: the suffix is stripped and recorded in
  ``LogLine.repeated``. It is never used as a multiplier: Ray collapses lines that differ only in their
  numbers, so the repeated line shows one rank's value, not a sum.
* Timestamps: vLLM's have no year and whole seconds (``INFO 10-15 11:56:51 [file.py:123]``; before 0.8 the
  file has no opening bracket, ``INFO 03-19 06:36:19 model_runner.py:1523]``); Ray's have a year and
  milliseconds (``INFO 2025-10-15 11:56:51,123 controller 42 -- ...``). Both become a ``Stamp``
  ``(month, day, hour, minute, second)``; the year, when a line has one, is kept beside it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
class Span:
    """First and last stamp of the lines behind one phase (all ranks)."""

    first: Stamp
    last: Stamp
    year: int | None = None


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


# Every header above has an "HH:MM:SS" time: a scan for that literal-led shape finds the candidate lines fast
# (50 MB of text without one is passed over in well under a second, where lexing every line takes seconds).
_TIME_RE = re.compile(r":\d\d:\d\d")
# The headers unanchored (a process prefix or a compose column may come first), without their groups.
_ANY_HEADER_RE = re.compile(
    rf"(?:{_LEVELS}) (?:\d{{4}}-)?\d\d-\d\d \d\d:\d\d:\d\d"  # vLLM's, Ray Serve's
    rf"|\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)?[ \t]+(?:{_LEVELS}) \S+:\d+ -- "  # Ray core's
    r"|\[\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"  # a bracketed stamp
)


def has_header_line(text: str) -> bool:
    """Whether any line of ``text`` has a header this lexer reads (vLLM, Ray Serve, Ray core, a bracketed
    stamp), in one pass: only the lines with a time in them are cleaned of ANSI codes and matched, each once."""
    pos = 0
    while m := _TIME_RE.search(text, pos):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        line = text[start:end]
        if "\x1b" in line or "[" in line:  # every ANSI form _ANSI_RE strips has one of these
            line = _ANSI_RE.sub("", line)
        if _ANY_HEADER_RE.search(line):
            return True
        pos = end + 1
    return False


# ---------------------------------------------------------------------------------------------------------
# Rows a paste wrapped at the terminal width

# tqdm bars time themselves ("[00:14<00:00, 6.39s/it]"); they are progress, not a phase, and never a wrap.
PROGRESS_RE = re.compile(r"\d+%\||% Completed \||[\d.]+(?:s/it|it/s)\]")

# Narrower rows than this are not taken for a wrap (the narrowest wrapped paste in the corpus is 100+).
_WRAP_MIN_CHARS = 80


def unwrapped(lines: Sequence[LogLine]) -> Iterable[LogLine]:
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
    if len(head) < _WRAP_MIN_CHARS or PROGRESS_RE.search(tail) or tail.lstrip().startswith(("Traceback", "File ")):
        return None
    sep = " " if head[-1:].isspace() or tail[:1].isspace() else ""
    return dataclasses.replace(
        prev,
        raw=prev.raw.rstrip("\r\n") + "\n" + line.raw,
        text=prev.text + sep + tail.strip(),
        message=prev.message + sep + tail.strip(),
        repeated=max(prev.repeated, line.repeated),
    )
