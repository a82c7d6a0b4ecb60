"""``python -m analysis [--flags]`` (tables and graphs) and ``python -m analysis {report,trace,startup-json}``:
the same tool as ``coldstart analysis``, its subcommands taken from the one table in ``coldstart.cli``
(``SUBTOOLS["analysis"]``)."""

import sys

from coldstart.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("analysis", prog="python -m analysis"))
