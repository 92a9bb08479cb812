"""The metricstore command line: ``python -m metricstore <command>``.

demo          load a real HPC job into a store, read it back and check it
inspect PATH  log segments (LSN ranges, ops by kind, damage) and snapshots
verify PATH   the same check; exits 1 if recovery would refuse the store
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _print_inspection(found: dict[str, Any]) -> None:
    print(f"unit: {found['unit']}")
    print(f"snapshots: {len(found['snapshots'])}")
    for snap in found["snapshots"]:
        state = "ok" if snap["problem"] is None else f"UNUSABLE: {snap['problem']}"
        print(f"  {snap['file']}  LSN {snap['lsn']}  {snap['bytes']:,} bytes  {state}")
    print(f"log segments: {len(found['segments'])}")
    for seg in found["segments"]:
        lsns = "no complete op" if seg["lsns"] is None else "LSN {}..{}".format(*seg["lsns"])
        ops = ", ".join(f"{n} {kind}" for kind, n in seg["ops"].items()) or "-"
        covered = "" if seg["needed"] else "  [covered by the snapshot; kept as a fallback]"
        print(f"  {seg['file']}  {seg['bytes']:,} bytes  {lsns}  ({ops}){covered}")
        if seg["damage"] is not None:
            offset, reason = seg["damage"]
            print(f"    stops at offset {offset}: {reason}")
    for gap in found["gaps"]:
        print(f"gap: {gap}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricstore", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="load a real HPC job into a store, read it back and check it")
    for name, text in (
        ("inspect", "show a store directory's log segments and snapshots"),
        ("verify", "check a store directory; exit 1 if recovery would refuse it"),
    ):
        commands.add_parser(name, help=text).add_argument("path", help="the store directory")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run()
    from . import _core
    from .exceptions import StoreError

    try:
        found = _core.inspect(args.path)
    except (StoreError, ValueError, OSError) as error:
        print(f"{args.path}: {error}", file=sys.stderr)
        return 1
    _print_inspection(found)
    if args.command == "verify":
        segments = found["segments"]
        torn = bool(segments) and segments[-1]["damage"] is not None
        if found["corrupt"]:
            print("CORRUPT: recovery would refuse this store (see above)")
            return 1
        print("ok" + (" (the last segment ends in a torn tail, which recovery cuts off)"
                      if torn else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
