"""The cache audit of one run, from its parsed log: a cold run must show no compile-cache hit, a cache run
must show one. The runner applies it to each new run, the analysis CLI re-applies it to re-parsed logs."""

from __future__ import annotations

import dataclasses

from coldstart.analysis.results import Audit
from coldstart.registry import EXPERIMENTS


def expected_cache_hit(experiment: str) -> bool:
    return EXPERIMENTS[experiment].compile_cache


def audit(experiment: str, parsed_audit: Audit) -> Audit:
    """A cold run must show no compile-cache hit; a cache run must show one. Otherwise it is flagged."""
    hits = (parsed_audit.compile_cache_hit, parsed_audit.aot_cache_hit)
    want = expected_cache_hit(experiment)
    # Cold: no cache-hit line may appear. Cache run: a hit line must appear; silence is not a hit.
    passed = any(h is True for h in hits) if want else all(h is not True for h in hits)
    return dataclasses.replace(parsed_audit, expected_compile_cache_hit=want, passed=passed)
