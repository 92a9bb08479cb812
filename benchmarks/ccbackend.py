"""Loading cc-backend's checkpoint files: throughput of load_checkpoints.

Generates checkpoint trees of hosts with 10 node metrics and cores x 5
metrics at 10 s, in three shapes, plus a log after the snapshots; then loads
them into fresh in-memory stores, from the page cache, and prints the median
throughput against its target. ``defaults`` and ``short`` (72 cores, 5
minutes of log) load the snapshots alone and the logs alone, against 500 MB/s
of .bin on 2 cores.

- ``defaults``: cc-backend's default checkpoint interval (12 h) and a 48 h
  retention: 4 snapshots of 12 h (17,280 values per series), 16 hosts. The
  shape a site's checkpoint directory has; the target is judged on it.
- ``short``: 4 snapshots of 30 min (720 values per series), 64 hosts: short
  blocks, so per-block costs and memory for partly filled chunks weigh most.
- ``logheavy``: 64 hosts of 10 node metrics and 4 cores x 5 metrics, one
  12 h snapshot and 168 min of log after it (106 MiB, 75 MiB of it
  ``current.wal``): a site some hours after its last checkpoint. The tree
  loads whole (snapshots and logs together), against the target of 500 MiB/s
  with 2 workers, and, given ``--go-loader DIR``, against cc-backend's own
  loading code in the same run: DIR holds a Go main package (standard
  library only, built here with ``go build``) made of cc-backend's
  ``pkg/metricstore`` loading functions (``FromCheckpoint`` and what it
  calls), taking ``-root DIR -workers N -freq S -metrics a,b,c`` and
  printing ``{"seconds": s, "values": n, "wal_records": r}``: the load's
  wall time, the non-NaN values in its buffers and the log records it
  replayed. cc-backend's code is not part of this repository; take it from
  its sources.

    python benchmarks/ccbackend.py [--shape defaults|short|logheavy|all] [--runs 5]
                                   [--workers 2] [--profile] [--go-loader DIR]

Files go to /work/bench-tmp/ccbackend-<shape> (made again when a shape changes).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

import metricstore
from metricstore import ccbackend
from metricstore.ccbackend import load_checkpoints, write_checkpoints

TARGET_MB_S = 500.0
TARGET_MIB_S = 500.0  # the log-heavy tree, snapshots and logs together
# name: (hosts, cores, hours, snapshots, log minutes)
SHAPES = {
    "defaults": (16, 72, 48.0, 4, 5),
    "short": (64, 72, 2.0, 4, 5),
    "logheavy": (64, 4, 12.0, 1, 168),
}
STEP = 10
START = 1_700_000_000 // 3600 * 3600
NODE_METRICS = [f"node_metric_{i}" for i in range(10)]
CORE_METRICS = ["cpu_load_core", "ipc", "flops_any", "clock", "core_power"]


def define(store: metricstore.Store) -> None:
    for name in NODE_METRICS + CORE_METRICS:
        store.define_metric(name, STEP, "avg")


def wal_record(ts: int, metric: bytes, selector: bytes, value: float) -> bytes:
    body = struct.pack("<qH", ts, len(metric)) + metric
    body += bytes([1, len(selector)]) + selector if selector else b"\0"
    body += struct.pack("<f", value)
    return struct.pack("<II", 0xCC1DA7A1, len(body)) + body + struct.pack("<I", zlib.crc32(body))


def generate(
    root: Path, hosts: int, cores: int, hours: float, snapshots: int, wal_minutes: int
) -> None:
    shape = {"hosts": hosts, "cores": cores, "hours": hours, "snapshots": snapshots,
             "wal_minutes": wal_minutes, "version": 2}  # fmt: skip
    stamp = root / "shape.json"
    if stamp.exists() and json.loads(stamp.read_text()) == shape:
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"generating {root} ...", flush=True)
    began = time.perf_counter()
    rng = np.random.default_rng(7)
    n = int(hours * 3600 / STEP)
    span = n * STEP
    for first_host in range(0, hosts, 8):  # 8 hosts per store keeps memory small
        store = metricstore.Store()
        define(store)
        for h in range(first_host, min(first_host + 8, hosts)):
            host = f"c{h:04}"
            for metric in NODE_METRICS:
                values = rng.normal(100, 10, n).astype(np.float32)
                values[rng.random(n) < 0.01] = np.nan
                store.write((metric, ("fritz", host)), START, values)
            for core in range(cores):
                for metric in CORE_METRICS:
                    values = rng.random(n).astype(np.float32)
                    store.write((metric, ("fritz", host, f"core{core}")), START, values)
        for i in range(snapshots):
            since = START + i * span // snapshots
            until = START + (i + 1) * span // snapshots
            write_checkpoints(store, root / "bin", since=since, until=until)
        store.close()
    # The log: every series, every 10 s, for wal_minutes after the snapshots.
    for h in range(hosts):
        host = f"c{h:04}"
        parts = [struct.pack("<I", 0xCC1DA701)]
        for tick in range(wal_minutes * 60 // STEP):
            ts = START + span + tick * STEP
            for metric in NODE_METRICS:
                parts.append(wal_record(ts, metric.encode(), b"", float(tick)))
            for core in range(cores):
                selector = f"core{core}".encode()
                for metric in CORE_METRICS:
                    parts.append(wal_record(ts, metric.encode(), selector, float(core)))
        path = root / "wal" / "fritz" / host / "current.wal"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(parts))
    # The whole tree, as a site has it: the snapshots and the log side by side.
    for source in [*(root / "bin").rglob("*.bin"), *(root / "wal").rglob("*.wal")]:
        target = root / "whole" / source.relative_to(source.parents[2])
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    stamp.write_text(json.dumps(shape))
    print(f"generated in {time.perf_counter() - began:.1f} s", flush=True)


def tree_bytes(root: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in root.rglob(f"*{suffix}") if p.is_file())


def load_once(root: Path, workers: int) -> tuple[float, metricstore.ccbackend.CheckpointLoadReport]:
    store = metricstore.Store()
    define(store)
    began = time.perf_counter()
    report = load_checkpoints(root, store, progress=False, workers=workers)
    return time.perf_counter() - began, report


def measure(name: str, root: Path, suffix: str, runs: int, workers: int) -> float:
    size = tree_bytes(root, suffix)
    load_once(root, workers)  # warms the page cache
    seconds = []
    for _ in range(runs):
        elapsed, report = load_once(root, workers)
        assert not report.damaged and not report.unknown_metrics, report.summary()
        seconds.append(elapsed)
    median = statistics.median(seconds)
    rate = size / median / 1e6
    extra = f", {report.wal_records / median / 1e6:.2f} M records/s" if report.wal_records else ""
    print(
        f"{name}: {size / 1e6:.1f} MB, {report.values:,} values in {median:.3f} s "
        f"(median of {runs}; runs {', '.join(f'{s:.3f}' for s in seconds)}) = "
        f"{rate:.0f} MB/s{extra} with {workers} worker(s)"
    )
    return rate


def profile(root: Path, label: str) -> None:
    """Profiles loading every host on this thread (load_checkpoints runs them
    on workers, which cProfile does not see), by own time."""
    store = metricstore.Store()
    define(store)
    known = {m.name: m.frequency for m in store.metrics}
    plans, _ = ccbackend._plan(root, None)
    loader = ccbackend._Loader(store, known, None)
    profiler = cProfile.Profile()
    profiler.enable()
    for plan in plans:
        loader.load_host(plan)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(f"--- profile of the {label} load, 1 thread, by own time ---")
    print("\n".join(out.getvalue().splitlines()[4:]))


def go_loader(source: Path | None, build: Path) -> Path | None:
    """Builds the Go loader in ``source`` (stdlib only) into ``build``; None
    without one or without go."""
    if source is None:
        print("no --go-loader given: no comparison with cc-backend's loader")
        return None
    go = shutil.which("go")
    if go is None:
        print("go not found: no comparison with cc-backend's loader (apt-get install golang-go)")
        return None
    binary = build / "ccload"
    env = {**os.environ, "GO111MODULE": "off", "CGO_ENABLED": "0"}
    env.setdefault("GOCACHE", str(build / "gocache"))
    subprocess.run([go, "build", "-o", str(binary), "."], check=True, env=env, cwd=source)
    return binary


def measure_go(binary: Path, root: Path, runs: int, workers: int) -> tuple[float, int, int]:
    """Median MiB/s of the Go loader on ``root`` (it times itself, files
    from the page cache, process start-up left out)."""
    size = tree_bytes(root, ".bin") + tree_bytes(root, ".wal")
    command = [str(binary), "-root", str(root), "-workers", str(workers), "-freq", str(STEP)]
    command += ["-metrics", ",".join(NODE_METRICS + CORE_METRICS)]
    subprocess.run(command, check=True, capture_output=True)  # warms the page cache
    seconds = []
    for _ in range(runs):
        out = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
        seconds.append(out["seconds"])
    values = f"{out['values']:,} values, {out['wal_records']:,} log records"
    median = statistics.median(seconds)
    rate = size / median / 2**20
    print(
        f"cc-backend's loader (Go): {size / 2**20:.1f} MiB, {values} in {median:.3f} s "
        f"(median of {runs}; runs {', '.join(f'{s:.3f}' for s in seconds)}) = "
        f"{rate:.0f} MiB/s with {workers} worker(s)"
    )
    return rate, out["values"], out["wal_records"]


def log_heavy(root: Path, runs: int, workers: int, go: Path | None, build: Path) -> None:
    whole = root / "whole"
    size = tree_bytes(whole, ".bin") + tree_bytes(whole, ".wal")
    print(f"  {tree_bytes(whole, '.wal') / 2**20:.1f} MiB of the {size / 2**20:.1f} MiB are logs")
    ours = measure("snapshots and logs", whole, "", runs, workers) * 1e6 / 2**20
    _, report = load_once(whole, workers)
    print(
        f"  = {ours:.0f} MiB/s, {ours / TARGET_MIB_S:.2f} x the target of {TARGET_MIB_S:.0f} MiB/s"
    )
    binary = go_loader(go, build)
    if binary is not None:
        theirs, values, records = measure_go(binary, whole, runs, workers)
        same = (values, records) == (report.values, report.wal_records)
        print(f"  same values and log records as metricstore's load: {same}")
        print(f"  metricstore / cc-backend's loader = {ours / theirs:.2f} x (same files, same run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--cores", type=int, help="cores per host (default: the shape's)")
    parser.add_argument("--wal-minutes", type=int, help="log minutes (default: the shape's)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also profile one load of each")
    parser.add_argument("--dir", type=Path, default=Path("/work/bench-tmp"))
    parser.add_argument(
        "--go-loader", type=Path, help="a Go main package of cc-backend's loading code"
    )
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs available (the machine may be shared; figures vary with its load)")
    for shape in SHAPES if args.shape == "all" else [args.shape]:
        hosts, cores, hours, snapshots, minutes = SHAPES[shape]
        cores = cores if args.cores is None else args.cores
        minutes = minutes if args.wal_minutes is None else args.wal_minutes
        root = args.dir / f"ccbackend-{shape}"
        generate(root, hosts, cores, hours, snapshots, minutes)
        print(
            f"== {shape}: {hosts} hosts x {cores} cores, {hours:g} h in {snapshots} snapshot(s), "
            f"{minutes} min of log"
        )
        if shape == "logheavy":
            log_heavy(root, args.runs, args.workers, args.go_loader, args.dir / "ccbackend-go")
            continue
        rate = measure(".bin snapshots", root / "bin", ".bin", args.runs, args.workers)
        print(f"  = {rate / TARGET_MB_S:.2f} x the target of {TARGET_MB_S:.0f} MB/s on 2 cores")
        if args.workers != 1:
            measure(".bin snapshots", root / "bin", ".bin", args.runs, 1)
        measure("current.wal logs", root / "wal", ".wal", args.runs, args.workers)
        if args.profile:
            profile(root / "bin", ".bin")
            profile(root / "wal", "log")


if __name__ == "__main__":
    main()
