"""The ancestor's published logs: which captures they are, and what the tables call them.

The ancestor (anyscale/ray-serve-llm-perf-examples, folder replica_initialization/experiment_terminal_output,
published 2025-10-21 with the charts of ``data/ancestor_figures.json``) timed deploys of Llama-3-70B (TP4) and
Qwen3-235B-A22B (TP8) on one 8×H100 host (p5.48xlarge) and published each run's terminal output: no result
row, no client, no node state. The analysis reads them beside its own runs
(``--logs ../shared/fixtures/ancestor-logs``); without a label of their own they read as one of our log-only
runs on an unknown GPU ("GPU", node "?"), which they are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

ANCESTOR_SOURCE = "ancestor (published logs)"  # the ``source`` of their rows in every table and the report
ANCESTOR_HARDWARE = "8×H100"  # the host every published capture ran on
# Not published: the ancestor never said whether the weights were in the page cache.
ANCESTOR_NODE_STATE = "—"

# The nine published file names; a capture only counts as theirs when it also names their engine build, so a
# log of ours saved under one of these names stays ours.
ANCESTOR_FILES: frozenset[str] = frozenset(
    {
        "llama70b-base.txt",
        "llama70b-s3-runai.txt",
        "llama70b-s3-runai-sharded.txt",
        "llama70B-compile-cache.txt",
        "llama70B-all.txt",
        "qwen235B-base.txt",
        "qwen235B-s3-runai-sharded.txt",
        "qwen235B-compile-cache.txt",
        "qwen235B-all.txt",
    }
)
# "Initializing a V1 LLM engine (v0.1.dev10446+g2dcd12d35)": the vLLM build of every published capture.
ANCESTOR_VLLM_BUILD = "v0.1.dev10446+g2dcd12d35"


def is_ancestor_capture(path: Path, log_text: str) -> bool:
    """A flat capture is the ancestor's when its name is one they published and its engine is their build."""
    return path.name in ANCESTOR_FILES and ANCESTOR_VLLM_BUILD in log_text


def ancestor_facts() -> Mapping[str, str]:
    """What a reader needs to place an ancestor row: where it was published, on what, by which engine."""
    return {
        "published": "anyscale/ray-serve-llm-perf-examples, replica_initialization/experiment_terminal_output",
        "date": "2025-10-21",
        "hardware": f"{ANCESTOR_HARDWARE} (p5.48xlarge)",
        "vLLM": ANCESTOR_VLLM_BUILD,
    }
