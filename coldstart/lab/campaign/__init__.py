"""Campaigns: a plan a user writes (``campaigns/*.yaml``) run on any machine, resumable, its runs packed for
``import-runs`` after every step.

Modules, arrows pointing down: ``cli`` (``python -m coldstart campaign PLAN [STEP ...]``) uses ``steps`` (one
run of a plan: each action becomes commands), which uses ``executor`` (subprocesses, or the dry run's
printer), ``outdir`` (the ``--out`` folder: results, state, archive) and ``plan`` (the plan file as frozen
dataclasses, checked against the registry). Campaign names come from ``coldstart.lab.campaign_names``, which
the matrix uses too. This package re-exports nothing: import a name from its module.
"""
