"""One engine start's rule hits, per model and rank: the bookkeeping behind the multi-rank rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coldstart.analysis.parse.lines import LogLine, Span
from coldstart.analysis.parse.rules import DRAFT, MAIN, VLLM_RULES

# The ``model`` argument that takes every model the engine loaded (main and draft) together.
ENGINE: None = None


@dataclass(frozen=True)
class Hit:
    quantity: str
    model: str
    key: object
    unit: str | None
    value: float
    line: LogLine
    rule: str


class Collector:
    """One engine start's hits, per model and rank; a copy of a line (echo, torn write) counts once."""

    def __init__(self) -> None:
        # (quantity, model) -> (rank key, range or None) -> hit
        self.hits: dict[tuple[str, str], dict[tuple[object, str | None], Hit]] = {}
        self.rank_model: dict[object, str] = {}
        self.loads_seen: dict[object, str] = {}
        self.ranks: dict[object, None] = {}

    def add(self, hit: Hit) -> None:
        slot = self.hits.setdefault((hit.quantity, hit.model), {})
        # Per rank and range the largest copy stands: duplicates carry the same value.
        prev = slot.get((hit.key, hit.unit))
        if prev is None or hit.value > prev.value:
            slot[(hit.key, hit.unit)] = hit
        self.ranks.setdefault(hit.key)

    def get(self, quantity: str, model: str | None = MAIN) -> list[Hit]:
        """The hits of one model, or with ``model`` ``ENGINE`` (None) of every model the engine loaded."""
        if model is ENGINE:
            return [hit for (q, _), slot in self.hits.items() if q == quantity for hit in slot.values()]
        return list(self.hits.get((quantity, model), {}).values())

    def models(self) -> list[str]:
        found = {m for (_, m) in self.hits}
        return [MAIN, *sorted(found - {MAIN})]

    def per_rank(self, quantity: str, model: str | None = MAIN) -> dict[object, float]:
        """Each rank's total: its distinct lines (ranges, models) summed."""
        totals: dict[object, float] = {}
        for hit in self.get(quantity, model):
            totals[hit.key] = totals.get(hit.key, 0.0) + hit.value
        return totals

    def rank_sum_max(self, quantity: str, model: str | None = MAIN) -> float | None:
        totals = self.per_rank(quantity, model)
        return max(totals.values()) if totals else None

    def extreme(self, quantity: str, pick: Callable[[list[float]], float], model: str | None = MAIN) -> float | None:
        values = [hit.value for hit in self.get(quantity, model)]
        return pick(values) if values else None

    def span(self, *quantities: str) -> Span | None:
        """First and last stamp of the lines behind these quantities, every rank and model: the engine's phase
        ends when its last model's does (a draft compiles and profiles after the main model)."""
        stamped = [(h.line.ts, h.line.year) for q in quantities for h in self.get(q, ENGINE) if h.line.ts is not None]
        if not stamped:
            return None
        year = next((y for _, y in stamped if y is not None), None)
        return Span(min(ts for ts, _ in stamped), max(ts for ts, _ in stamped), year)


def apply_rules(col: Collector, line: LogLine, matched: set[int] | None = None) -> bool:
    msg = line.message
    key = line.rank_key
    hit = False
    for rule in VLLM_RULES:
        if rule.needle not in msg or not (m := rule.pattern.search(msg)):
            continue
        hit = True
        if matched is not None:
            matched.update(range(line.number, line.number + line.raw.count("\n") + 1))
        model = col.rank_model.get(key, MAIN)
        if rule.name == "start_load":
            # An echoed copy names the same model again; only another model is the draft.
            first = col.loads_seen.setdefault(key, m.group(1))
            col.rank_model[key] = MAIN if m.group(1) == first else DRAFT
            continue
        elif rule.name == "compile_dir":
            # ".../rank_0_0/backbone" (or plain ".../rank_0_0" before 0.10) is the main model's compile.
            leaf = m.group(1).rstrip("/").rsplit("/", 1)[-1]
            col.rank_model[key] = MAIN if leaf == "backbone" or leaf.startswith("rank_") else DRAFT
            continue
        if rule.scope == "engine":
            model = MAIN
        elif rule.name == "v0_model_weights" and model == MAIN:
            # V0 before 0.6 names neither load: a rank's second, different weights line is the proposer's.
            prev = col.hits.get(("model_load_gib", MAIN), {}).get((key, None))
            if prev is not None and prev.line.text != line.text:
                col.rank_model[key] = model = DRAFT
        unit = m.group(rule.per_range) if rule.per_range else (line.text if rule.per_line else None)
        values = rule.convert(m) if rule.convert else None
        for quantity, group in rule.yields:
            if values is not None:
                if quantity in values:
                    col.add(Hit(quantity, model, key, unit, values[quantity], line, rule.name))
            elif group is None:
                col.add(Hit(quantity, model, key, unit, 1.0, line, rule.name))
            elif (raw := m.group(group)) is not None:
                col.add(Hit(quantity, model, key, unit, float(raw.replace(",", "")), line, rule.name))
        if rule.sets_model is not None:
            col.rank_model[key] = rule.sets_model
    return hit
