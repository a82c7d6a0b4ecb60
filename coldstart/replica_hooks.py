"""Shim: the replica callback lives in ``coldstart.lab.replica_hooks``.

Ray Serve imports the callback by its qualified name, and the committed Serve YAMLs under ``experiments/``
and rows in ``results/results.jsonl`` name ``coldstart.replica_hooks.ColdStartCallback``: keep this path
importable so they stay deployable and traceable.
"""

from coldstart.lab.replica_hooks import ColdStartCallback, apply_streamed_source_fix, engine_model_path

__all__ = ["ColdStartCallback", "apply_streamed_source_fix", "engine_model_path"]
