import sys

from coldstart.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("analyze", prog="python -m analysis"))
