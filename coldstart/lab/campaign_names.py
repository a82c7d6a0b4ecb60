"""Campaign names by date and hardware: ``<UTC date of its first run>-<gpu><x count>``, e.g. ``2026-11-29-h200x1``.

A campaign is the runs one machine made over a stretch of time; its name says when it began and on what, so
rows of different machines never share one and a reader knows the hardware without opening the provenance.
What used to ride in name suffixes lives in the row's typed fields: ``node_state`` (cold / warm),
``capture`` (a run that fills a compile cache), the audit (cache hit, restore status) and the config.

The matrix (its ``--campaign`` default) and the campaign runner both name campaigns here; this module
imports nothing of the lab, so either may use it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

# The vendor word nvidia-smi puts first, and the family words some boards carry before the model number.
_VENDOR_WORDS = frozenset({"nvidia", "tesla", "geforce", "quadro"})
_COUNT_RE = re.compile(r"^(?P<name>.*?)\s+x(?P<count>\d+)$")
NAME_RE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<hardware>[a-z0-9]+)$")
NO_GPU = "cpu"


def gpu_model(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``h100``, ``NVIDIA A100-SXM4-80GB`` -> ``a100``, ``NVIDIA L40S`` -> ``l40s``:
    the first word that holds a digit (the model number), before its first dash, lowercased. A name without
    one (an unknown board) gives its first non-vendor word."""
    words = [w for w in name.split() if w.lower() not in _VENDOR_WORDS]
    if not words:
        raise ValueError(f"no GPU model in {name!r}")
    word = next((w for w in words if any(c.isdigit() for c in w)), words[0])
    model = re.sub(r"[^a-z0-9]", "", word.split("-")[0].lower())
    if not model:
        raise ValueError(f"no GPU model in {name!r}")
    return model


def hardware(gpu: str | None) -> str:
    """The hardware part of a name from the provenance's GPU field (``NVIDIA H200 x2`` -> ``h200x2``, a name
    without a count is one GPU); None (no NVIDIA GPU on the node) -> ``cpu``."""
    if gpu is None or not gpu.strip():
        return NO_GPU
    match = _COUNT_RE.match(gpu.strip())
    name, count = (match.group("name"), int(match.group("count"))) if match else (gpu.strip(), 1)
    if count < 1:
        raise ValueError(f"GPU count {count} in {gpu!r}")
    return f"{gpu_model(name)}x{count}"


def campaign_name(gpu: str | None, started: datetime | None = None) -> str:
    """The name of a campaign that starts at ``started`` (default: now) on a node with ``gpu``."""
    when = (started or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{when:%Y-%m-%d}-{hardware(gpu)}"


def hardware_of(name: str) -> str | None:
    """The hardware part of a campaign name (``2026-11-30-h200x2`` -> ``h200x2``); None: not a date-hardware
    name (a name the user chose, such as ``demo``)."""
    match = NAME_RE.match(name)
    return match.group("hardware") if match else None
