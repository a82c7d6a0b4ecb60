"""Thin entry point: `python clear_cache.py --help` is `coldstart clear-cache --help`. The logic lives in the coldstart
package."""

import sys

from coldstart.cli import run_tool

if __name__ == "__main__":  # vLLM spawns worker processes that re-import __main__
    sys.exit(run_tool("clear-cache", prog="clear_cache.py"))
