"""Models, experiments and scenarios as frozen data, each registry keyed by name.

``models`` holds the named shapes, ``experiments`` the ways of starting them, ``scenarios`` the traffic a run
sends. Every public name is importable from here (``from coldstart.registry import resolve``).
"""

from __future__ import annotations

from coldstart.registry.base import InvalidPairError, UnknownNameError
from coldstart.registry.experiments import (
    EXPERIMENTS,
    LADDER,
    Experiment,
    get_experiment,
    resolve,
    valid_experiments,
    valid_pairs,
)
from coldstart.registry.models import MODELS, Architecture, Model, Quantization, get_model
from coldstart.registry.scenarios import SCENARIOS, Autoscaling, Scenario, get_scenario, with_max_replicas

__all__ = [
    "EXPERIMENTS",
    "LADDER",
    "MODELS",
    "SCENARIOS",
    "Architecture",
    "Autoscaling",
    "Experiment",
    "InvalidPairError",
    "Model",
    "Quantization",
    "Scenario",
    "UnknownNameError",
    "get_experiment",
    "get_model",
    "get_scenario",
    "resolve",
    "valid_experiments",
    "valid_pairs",
    "with_max_replicas",
]
