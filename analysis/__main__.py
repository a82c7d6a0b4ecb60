import sys

from coldstart.cli import run_tool

# `python -m analysis trace RUN_ID` / `python -m analysis report`: new subcommands in their own modules. The
# plain `python -m analysis [--flags]` (tables and graphs) is untouched: neither word was a valid argument.
SUBCOMMANDS = {
    "trace": ("coldstart.analysis.trace", "one run's timeline as a Chrome trace-event JSON (Perfetto)"),
    "report": ("coldstart.analysis.report", "a static HTML report of every run, opens from disk"),
    "startup-json": ("coldstart.analysis.vllm_startup", "the runs as `vllm bench startup --output-json` files"),
}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import argparse
        import importlib

        module_name, help_text = SUBCOMMANDS[sys.argv[1]]
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"python -m analysis {sys.argv[1]}", description=help_text)
        module.add_cli_args(parser)
        sys.exit(module.main(parser.parse_args(sys.argv[2:])))
    sys.exit(run_tool("analyze", prog="python -m analysis"))
