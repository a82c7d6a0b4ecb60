"""What every part of the registry shares: its errors and its frozen mappings."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class UnknownNameError(ValueError):
    """A model or experiment name the registry does not know; the message lists the valid ones."""


class InvalidPairError(ValueError):
    """A (model, experiment) pair that cannot run, e.g. sharded state at TP1."""


def frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only copy: registry entries are frozen dataclasses, and a plain dict inside one would stay mutable."""
    return MappingProxyType(dict(d or {}))
