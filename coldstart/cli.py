"""``python -m coldstart <tool>``: every tool is ``add_cli_args(parser)`` + ``main(args) -> int`` (the vLLM
benchmarks pattern), mounted here as a subcommand. The top-level scripts call the same functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, help). Modules load lazily: `client` must not pay for importing Ray.
TOOLS: dict[str, tuple[str, str]] = {
    "service": ("coldstart.lab.service", "deploy one (model, experiment) from zero replicas"),
    "client": ("coldstart.lab.client", "time one streamed request to the first token"),
    "clear-cache": ("coldstart.lab.caches", "reset the node's caches between cold runs"),
    "checkpoint": ("coldstart.storage.checkpoints", "write a synthetic HF checkpoint of a registry model"),
    "stage": ("coldstart.storage.staging_cli", "put models into the object store, list and verify them"),
    "shard": ("coldstart.storage.sharding", "make vLLM sharded state for a TP size and stage it"),
    "compile-cache": ("coldstart.compile_cache", "capture, publish, restore torch.compile caches"),
    "configs": ("coldstart.lab.configs", "write one Serve YAML per (model, experiment) into experiments/"),
    "matrix": ("coldstart.lab.matrix.cli", "run (model, experiment, repeat) cold starts and record results"),
    "analyze": ("coldstart.analysis.cli", "parse logs into results, tables and graphs"),
    "campaign": ("coldstart.lab.campaign", "run GPU campaign steps (checkpoint, matrix, publish) and archive each"),
    "import-runs": ("coldstart.lab.import_runs", "append runs made on another machine (a campaign archive)"),
}


def run_tool(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    module_name, help_text = TOOLS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=prog or f"coldstart {name}", description=help_text)
    module.add_cli_args(parser)
    return module.main(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TOOLS:
        lines = [f"  {name:14s} {help_text}" for name, (_, help_text) in TOOLS.items()]
        print("usage: python -m coldstart <tool> [args]\n\ntools:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown tool {argv[0]!r}; valid tools: {', '.join(TOOLS)}", file=sys.stderr)
            return 2
        return 0
    return run_tool(argv[0], argv[1:])
