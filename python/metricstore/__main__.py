"""The metricstore command line: ``python -m metricstore <command>``.

demo          load a real HPC job into a store, read it back and check it
inspect PATH  log segments (LSN ranges, ops by kind, damage) and snapshots
verify PATH   the same check; exits 1 if recovery would refuse the store
import-cc ROOT STORE   load cc-backend's checkpoint directory (or a .parquet
                       archive) into a store directory; exits 1 if nothing loaded
export-cc STORE ROOT   write a store's data as cc-backend checkpoints (.bin or
                       .json) or a Parquet archive; exits 1 if nothing written
serve --config CONFIG  serve a store over HTTP with cc-metric-store's API
                       (docs/serve.md); stops on SIGTERM or Ctrl-C
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
from pathlib import Path
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


def _time(text: str) -> int | str:
    """Seconds since the epoch, or an ISO 8601 date (converted by the store)."""
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else text


def _add_cc_commands(commands: Any) -> None:
    load = commands.add_parser(
        "import-cc",
        help="load cc-backend's checkpoint directory or Parquet archive into a store",
        description="Loads ROOT (cc-backend's <cluster>/<host>/ checkpoint directory, or a "
        ".parquet archive) into the store directory STORE, created if missing.",
    )
    load.add_argument(
        "root",
        nargs="?",
        help="cc-backend's checkpoint directory, or a .parquet file (default with --config: "
        "the config's checkpoint directory)",
    )
    load.add_argument("store", help="the store directory")
    load.add_argument(
        "--config",
        metavar="CONFIG_JSON",
        help="cc-backend's config.json: its checkpoint directory, retention cutoff and the "
        "cluster.json files of its job archive",
    )
    load.add_argument(
        "--cluster-config",
        action="append",
        metavar="CLUSTER_JSON",
        help="define metrics from a cluster.json (repeatable); others must be defined already",
    )
    load.add_argument("--since", type=_time, help="cc-backend's load cutoff (seconds or ISO date)")
    load.add_argument("--workers", type=int, help="threads (default: CPU count, at most 8)")
    load.add_argument(
        "--no-progress", action="store_true", help="no progress bar (opening STORE, loading)"
    )
    save = commands.add_parser(
        "export-cc",
        help="write a store's data as cc-backend checkpoints or a Parquet archive",
        description="Writes the data of STORE in [--since, --until) (by default all of "
        "it) to ROOT: one <cluster>/<host>/<since>.bin (or .json) per host, or one "
        "Parquet file.",
    )
    save.add_argument("store", help="the store directory (opened read-only)")
    save.add_argument("root", help="the checkpoint directory, or the .parquet file to write")
    save.add_argument("--since", type=_time, help="seconds or ISO date (default: the first sample)")
    save.add_argument(
        "--until",
        type=_time,
        help="seconds or ISO date, exclusive (default: just after the last sample)",
    )
    save.add_argument("--format", choices=("bin", "json", "parquet"), default="bin")
    save.add_argument(
        "--layout",
        choices=("file", "archive"),
        default="file",
        help="parquet: one file ROOT, or cc-backend's archive ROOT/<cluster>/<since>.parquet",
    )
    save.add_argument("--cluster", help="only this cluster")


def _import_cc(args: argparse.Namespace) -> int:
    from . import ccbackend
    from .store import open as open_store

    root = None if args.root is None else Path(args.root)
    if root is None and args.config is None:
        print("import-cc: give ROOT, or --config with cc-backend's config.json", file=sys.stderr)
        return 2
    progress = False if args.no_progress else None
    with open_store(args.store, progress=progress) as store:
        if root is not None and root.suffix == ".parquet" and root.is_file():
            loaded = ccbackend.load_parquet(root, store, cluster_config=args.cluster_config)
            print(loaded.summary())
            values = loaded.values
        else:
            report = ccbackend.load_checkpoints(
                root,
                store,
                cluster_config=args.cluster_config,
                config=args.config,
                since=args.since,
                workers=args.workers,
                progress=progress,
            )
            print(report.summary())
            values = report.values
            root = Path(report.root)
    if values == 0:
        print(
            f"import-cc: nothing loaded from {root} (are its metrics defined? see "
            "--cluster-config)",
            file=sys.stderr,
        )
        return 1
    return 0


def _export_cc(args: argparse.Namespace) -> int:
    from . import ccbackend
    from .store import open as open_store

    with open_store(args.store, readonly=True) as store:
        if args.format == "parquet":
            exported = ccbackend.export_parquet(
                store,
                args.root,
                since=args.since,
                until=args.until,
                cluster=args.cluster,
                layout=args.layout,
            )
            print(exported.summary())
            written = exported.rows
        else:
            report = ccbackend.write_checkpoints(
                store,
                args.root,
                since=args.since,
                until=args.until,
                cluster=args.cluster,
                format=args.format,
            )
            print(report.summary())
            written = report.values
    if written == 0:
        span = (
            "" if args.since is None and args.until is None else f" in [{args.since}, {args.until})"
        )
        print(f"export-cc: nothing to write{span}", file=sys.stderr)
        return 1
    return 0


def _add_serve_command(commands: Any) -> None:
    run = commands.add_parser(
        "serve",
        help="serve a store over HTTP with cc-metric-store's API",
        description="Serves a store directory with cc-metric-store's HTTP API "
        "(/api/write, /api/query, /api/free, /api/healthcheck, /api/debug), configured by "
        "cc-metric-store's config.json. SIGTERM or Ctrl-C stops it: requests under way "
        "finish, then the store is closed.",
    )
    run.add_argument("--config", required=True, help="cc-metric-store's config.json")
    run.add_argument(
        "--store", help="the store directory (default: the config's checkpoints directory)"
    )
    run.add_argument(
        "--addr", help="host:port to listen on (default: the config's, else 127.0.0.1:8082)"
    )
    run.add_argument(
        "--sync",
        choices=("always", "interval", "none"),
        default="interval",
        help="when a write acknowledged with 200 is on disk (see docs/guarantees.md)",
    )
    run.add_argument(
        "--compat",
        choices=("entries", "strict"),
        default="entries",
        help="strict: leave not-found hosts and metrics out of query answers, as "
        "cc-metric-store does (default: an entry with an error keeps positions right)",
    )
    run.add_argument(
        "--max-body", type=int, default=256 << 20, help="largest request body in bytes"
    )
    run.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from .server import read_config, serve
    from .store import open as open_store

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    config = read_config(args.config)
    directory = args.store if args.store is not None else config.store_dir
    if directory is None:
        print("serve: give --store, or a checkpoints directory in the config", file=sys.stderr)
        return 2
    tls = None
    if config.https_cert_file is not None and config.https_key_file is not None:
        tls = (config.https_cert_file, config.https_key_file)
    store = open_store(
        directory,
        sync=args.sync,
        retention=config.retention_seconds,
        memory_limit=config.memory_cap_bytes,
    )
    try:
        for name, (frequency, aggregation) in config.metrics.items():
            store.define_metric(name, frequency, aggregation)
        server = serve(
            store,
            args.addr or config.addr,
            jwt_public_key=config.jwt_public_key,
            tls=tls,
            strict=args.compat == "strict",
            max_body_bytes=args.max_body,
            own_store=True,
            nats=config,
        )
    except BaseException:
        store.close()
        raise
    if config.nats_subscriptions and not config.nats_address:
        logging.getLogger("metricstore.serve").warning(
            'nats-subscriptions are configured but no "nats" address: not subscribing'
        )
    stop = threading.Event()

    def on_signal(number: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("metricstore.serve").info(
        "serving %s on %s (%d metrics, sync=%s)", directory, server.url, len(config.metrics),
        args.sync,
    )  # fmt: skip
    # What start-up made (modules, the store, the server) lives as long as
    # the process: out of the collector's sight, its full collections scan
    # only what requests leave behind.
    gc.freeze()
    print(f"listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.close()
    print(f"stopped; {server.stats()['lines_written']} lines written", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricstore", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="load a real HPC job into a store, read it back and check it")
    for name, text in (
        ("inspect", "show a store directory's log segments and snapshots"),
        ("verify", "check a store directory; exit 1 if recovery would refuse it"),
    ):
        commands.add_parser(name, help=text).add_argument("path", help="the store directory")
    _add_cc_commands(commands)
    _add_serve_command(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run()
    from . import _core
    from .exceptions import StoreError

    if args.command == "serve":
        try:
            return _serve(args)
        except (StoreError, ValueError, TypeError, OSError, ImportError) as error:
            print(f"serve: {error}", file=sys.stderr)
            return 1

    if args.command in ("import-cc", "export-cc"):
        try:
            return _import_cc(args) if args.command == "import-cc" else _export_cc(args)
        except (StoreError, ValueError, TypeError, OSError, ImportError) as error:
            print(f"{args.command}: {error}", file=sys.stderr)
            return 1

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
