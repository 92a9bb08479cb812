"""The metricstore command line: ``python -m metricstore <command>``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="load a real HPC job into a store, read it back and check it")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run()
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
