"""``coldstart <tool>`` (the console script; also ``python -m coldstart <tool>``): every tool is
``add_cli_args(parser)`` + ``main(args) -> int`` (the vLLM benchmarks pattern), mounted here as a subcommand.
The top-level scripts (service.py, client.py, clear_cache.py) and ``python -m analysis`` call the same functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata

# subcommand -> (module, help). Modules load lazily: `client` must not pay for importing Ray.
TOOLS: dict[str, tuple[str, str]] = {
    "serve": ("coldstart.lab.service", "deploy one (model, experiment) from zero replicas"),
    "client": ("coldstart.lab.client", "time one streamed request to the first token"),
    "clear-cache": ("coldstart.lab.caches", "reset the node's caches between cold runs"),
    "checkpoint": ("coldstart.storage.checkpoints", "write a synthetic HF checkpoint of a registry model"),
    "stage": ("coldstart.storage.staging_cli", "put models into the object store, list and verify them"),
    "shard": ("coldstart.storage.sharding", "make vLLM sharded state for a TP size and stage it"),
    "compile-cache": ("coldstart.compile_cache", "capture, publish, restore torch.compile caches"),
    "configs": ("coldstart.lab.configs", "write one Serve YAML per (model, experiment) into experiments/"),
    "matrix": ("coldstart.lab.matrix.cli", "run (model, experiment, repeat) cold starts and record results"),
    "compare": ("coldstart.analysis.compare", "the runs of one campaign side by side: TTFT and its main phases"),
    "analysis": ("coldstart.analysis.cli", "parse logs into results, tables and graphs"),
    "campaign": ("coldstart.lab.campaign.cli", "run a campaign plan (campaigns/*.yaml): resumable, packs its runs"),
    "one-machine-cluster": ("coldstart.lab.ray_cluster", "run a command against a real Ray cluster on this machine"),
    "node-status": ("coldstart.lab.node_status", "per node of a Ray cluster: idle preloaded workers, caches"),
    "import-runs": ("coldstart.lab.import_runs", "append runs made on another machine (a campaign archive)"),
}

# Names the tools had before: scripts, campaigns and notes written with them keep working.
ALIASES: dict[str, str] = {"service": "serve", "analyze": "analysis"}

# tool -> {its own subcommand -> (module, help)}: `coldstart analysis report` as `python -m analysis report`.
# The tool without one of these words runs as itself (`coldstart analysis --results ...`).
SUBTOOLS: dict[str, dict[str, tuple[str, str]]] = {
    "analysis": {
        "report": ("coldstart.analysis.report", "a static HTML report of every run, opens from disk"),
        "trace": ("coldstart.analysis.trace", "one run's timeline as a Chrome trace-event JSON (Perfetto)"),
        "startup-json": ("coldstart.analysis.vllm_startup", "the runs as `vllm bench startup --output-json` files"),
    },
}


class UnknownToolError(KeyError):
    """A subcommand that is neither a tool nor an alias of one."""


def canonical_name(name: str) -> str:
    """The tool ``name`` stands for (itself, or what its alias points to)."""
    canonical = ALIASES.get(name, name)
    if canonical not in TOOLS:
        raise UnknownToolError(name)
    return canonical


def _load(module_name: str, help_text: str, prog: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=prog, description=help_text)
    module.add_cli_args(parser)
    return int(module.main(parser.parse_args(argv)))


def run_tool(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run tool ``name`` (or an alias) on ``argv`` (None: the process's own arguments after the script)."""
    canonical = canonical_name(name)
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or f"coldstart {canonical}"
    subtools: Mapping[str, tuple[str, str]] = SUBTOOLS.get(canonical, {})
    if args and args[0] in subtools:
        module_name, help_text = subtools[args[0]]
        return _load(module_name, help_text, f"{prog} {args[0]}", args[1:])
    module_name, help_text = TOOLS[canonical]
    if subtools:
        help_text += f"; also: {prog} {{{','.join(subtools)}}} --help"
    return _load(module_name, help_text, prog, args)


def usage() -> str:
    lines = []
    for name, (_, help_text) in TOOLS.items():
        subtools = SUBTOOLS.get(name, {})
        lines.append(f"  {name:14s} {help_text}" + (f"; and {name} {{{','.join(subtools)}}}" if subtools else ""))
    aliases = ", ".join(f"{old} = {new}" for old, new in ALIASES.items())
    return (
        "usage: coldstart <tool> [args]   (or: python -m coldstart <tool> [args])\n\ntools:\n"
        + "\n".join(lines)
        + f"\n\nearlier names, still accepted: {aliases}\n`coldstart <tool> --help` describes each one."
    )


def version() -> str:
    try:
        return metadata.version("coldstart")
    except metadata.PackageNotFoundError:
        # The package run from a checkout it was never installed from: say so rather than invent a number.
        return "not installed (run from a source checkout)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"coldstart {version()}")
        return 0
    try:
        canonical_name(args[0])
    except UnknownToolError:
        print(usage())
        print(f"\nerror: unknown tool {args[0]!r}; valid tools: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    return run_tool(args[0], args[1:])
