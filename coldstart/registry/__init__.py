"""Models, experiments and scenarios as frozen data, each registry keyed by name.

``models`` holds the named shapes, ``experiments`` the ways of starting them, ``scenarios`` the traffic a run
sends; ``user_models`` makes a ``Model`` of any ``config.json`` the lab can lay out (a Hub id or a local folder).
Every public name is importable from here (``from coldstart.registry import resolve``).
"""

from __future__ import annotations

from coldstart.registry.base import InvalidPairError, UnknownNameError
from coldstart.registry.experiments import (
    EXPERIMENTS,
    LADDER,
    Experiment,
    get_experiment,
    resolve,
    resolve_model,
    valid_experiments,
    valid_pairs,
)
from coldstart.registry.models import MODELS, Architecture, Model, Quantization, get_model
from coldstart.registry.scenarios import (
    SCENARIOS,
    Autoscaling,
    Queueing,
    Scenario,
    get_scenario,
    with_max_replicas,
)
from coldstart.registry.user_models import UserModelError, model_from_hf_config

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
    "Queueing",
    "Scenario",
    "UnknownNameError",
    "UserModelError",
    "get_experiment",
    "get_model",
    "get_scenario",
    "model_from_hf_config",
    "resolve",
    "resolve_model",
    "valid_experiments",
    "valid_pairs",
    "with_max_replicas",
]
