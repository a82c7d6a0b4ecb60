"""Pure parsers: Ray Serve LLM + vLLM log text -> startup phases.

Everything here is a function of text, so a log recorded on an 8-GPU box parses the same on a laptop, and
so does a log a user pasted into an issue. The rules are data (``PREFIX_RULES``, ``VLLM_RULES``): a new
wording or prefix style is one more row, and ``explain`` shows which row read which line.

The modules, bottom up:

* ``lines``: the line lexer (ANSI codes, process prefixes, Ray's dedup suffix, stamps, wrapped pastes).
* ``rules``: the vLLM wordings, one ``Rule`` row each.
* ``collect``: one engine start's rule hits per model and rank.
* ``engine``: engine starts and their phases per model, with the multi-rank rule.
* ``ray``: Serve controller and Ray LLM milestones.
* ``log``: a whole log (``parse_log``) and its phase-table row (``to_phase_table``).
* ``explain``: the ``--explain LOG`` report.
"""

from coldstart.analysis.parse.engine import EngineStart, Evidence, VllmPhases, parse_starts, parse_vllm
from coldstart.analysis.parse.explain import explain
from coldstart.analysis.parse.lines import (
    PREFIX_RULES,
    LogLine,
    Prefix,
    PrefixRule,
    Span,
    Stamp,
    clean_line,
    parse_line,
    parse_lines,
)
from coldstart.analysis.parse.log import PHASE_COLUMNS, ParsedLog, parse_log, to_phase_table
from coldstart.analysis.parse.ray import RayEvent, RayPhases, parse_ray
from coldstart.analysis.parse.rules import VLLM_RULES, Rule

__all__ = [
    "PHASE_COLUMNS",
    "PREFIX_RULES",
    "VLLM_RULES",
    "EngineStart",
    "Evidence",
    "LogLine",
    "ParsedLog",
    "Prefix",
    "PrefixRule",
    "RayEvent",
    "RayPhases",
    "Rule",
    "Span",
    "Stamp",
    "VllmPhases",
    "clean_line",
    "explain",
    "parse_line",
    "parse_lines",
    "parse_log",
    "parse_ray",
    "parse_starts",
    "parse_vllm",
    "to_phase_table",
]
