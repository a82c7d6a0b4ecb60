"""``python -m coldstart.lab.caches``: the same tool as ``python -m coldstart clear-cache``."""

import argparse
import sys

from coldstart.lab import caches
from coldstart.lab.caches.cli import add_cli_args, main

if __name__ == "__main__":
    description = (caches.__doc__ or "").splitlines()[0]
    sys.exit(main(add_cli_args(argparse.ArgumentParser(description=description)).parse_args()))
