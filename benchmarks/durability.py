"""Durability benchmark: the write-ahead log, group commit, snapshots and
replay, next to what the disk itself does, measured in one run.

- bulk load through the log (sync "none" and "interval") against sequential
  write+fsync bandwidth of the same disk (one file, 4 MiB writes, one fsync);
- ticks of TICK_SERIES series in sync "always" against a bare loop that
  appends the same bytes and fdatasyncs once per tick. Both first run
  --warmup-ticks untimed ticks. The store's warm-up ticks lie just before
  slot 0, so the 1,024 timed ticks (the default) fill exactly one new chunk
  per series: the store's steady state, allocation included;
- commits per second of 4 writer threads against 1 in sync "always";
- a first tick over TICK_SERIES new (metric, path) keys against the steady
  ticks by handle after it, sync "always";
- snapshot write (checkpoint) and load (a writable open with nothing to
  replay, which reads every chunk), GB/s, and a read-only open (which maps
  the snapshot and reads its index), ms;
- log replay at open, MB/s and records/s.

Every figure is the median of --repeat runs, in a fresh directory under
--dir (default: a temporary directory; use a path on the disk you care about).
Targets (issue 3): log load >= 50% of write+fsync bandwidth; always ticks >=
80% of one fdatasync per tick; 4 threads >= 2x one; snapshot load >= 1 GB/s;
replay >= 300 MB/s.

    python benchmarks/durability.py                  # about three minutes
    python benchmarks/durability.py --series 100     # quick
    python benchmarks/durability.py --first-tick-only --repeat 7
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import FREQUENCY, bare_ticks, disk_write_fsync, fresh

import metricstore


def median(run: Callable[[], float], repeat: int) -> float:
    return statistics.median(run() for _ in range(repeat))


def load(base: Path, data: np.ndarray, sync: str) -> float:
    """Seconds to bulk-load `data` (one write per series) and flush."""
    path = fresh(base, f"load-{sync}")
    store = metricstore.open(path, sync=sync)
    store.define_metric("m", FREQUENCY, "sum")
    handles = [store.series("m", ("c", f"h{i}")) for i in range(len(data))]
    t0 = time.perf_counter()
    for handle, row in zip(handles, data, strict=True):
        store.write(handle, 0, row)
    store.flush()
    seconds = time.perf_counter() - t0
    store.close(checkpoint=False)
    return seconds


def store_ticks(base: Path, series: int, ticks: int, threads: int, warmup: int) -> float:
    """Seconds for `ticks` durable tick writes of `series` values in total,
    split over `threads` threads (each its own series), after `warmup`
    untimed ticks per thread."""
    path = fresh(base, f"ticks-{threads}")
    store = metricstore.open(path, sync="always")
    store.define_metric("m", FREQUENCY, "sum")
    per_thread = series // threads
    handles = [
        np.array([store.series("m", (f"t{t}", f"s{i}")) for i in range(per_thread)], np.uint32)
        for t in range(threads)
    ]
    values = np.ones(per_thread, dtype=np.float32)
    barrier = threading.Barrier(threads + 1)

    def writer(t: int) -> None:
        for tick in range(-warmup, 0):
            store.write_tick(tick * FREQUENCY, handles[t], values)
        barrier.wait()
        for tick in range(ticks // threads):
            store.write_tick(tick * FREQUENCY, handles[t], values)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - t0
    store.close(checkpoint=False)
    return seconds


def first_tick(base: Path, series: int, steady: int) -> tuple[float, float]:
    """(seconds of a first durable tick over `series` new (metric, path)
    keys, median seconds of the `steady` ticks by handle that follow)."""
    path = fresh(base, "first-tick")
    store = metricstore.open(path, sync="always")
    store.define_metric("m", FREQUENCY, "sum")
    keys = [("m", ("c", f"s{i}")) for i in range(series)]
    values = np.ones(series, dtype=np.float32)
    t0 = time.perf_counter()
    store.write_tick(0, keys, values)
    first = time.perf_counter() - t0
    handles = np.array([store.series(*k) for k in keys], np.uint32)
    times = []
    for tick in range(1, steady + 1):
        t0 = time.perf_counter()
        store.write_tick(tick * FREQUENCY, handles, values)
        times.append(time.perf_counter() - t0)
    store.close(checkpoint=False)
    return first, statistics.median(times)


def report_first_tick(base: Path, series: int, repeat: int) -> float:
    """Prints the first tick over new keys against the steady ticks after
    it (medians of `repeat` stores); returns their ratio."""
    firsts = [first_tick(base, series, 50) for _ in range(repeat)]
    t_first = statistics.median(f for f, _ in firsts)
    t_steady = statistics.median(s for _, s in firsts)
    print(f"{'first tick over new keys vs a steady tick':44} {t_first * 1e3:11.2f} ms "
          f"{t_first / t_steady:8.1f}x ({t_steady * 1e3:.2f} ms)")  # fmt: skip
    return t_first / t_steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--tick-series", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=1024)
    parser.add_argument("--warmup-ticks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--first-tick-only",
        action="store_true",
        help="run only the first tick over --tick-series new keys against steady ticks",
    )
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="metricstore-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(1).random((args.series, args.points), dtype=np.float32)
    samples = data.size
    log_bytes = samples * 4 + args.series * (20 + 20)
    print(f"metricstore {metricstore.__version__}, numpy {np.__version__}; directory {base}")
    print(f"bulk: {args.series:,} series x {args.points:,} points ({samples * 4 / 1e6:,.0f} MB); "
          f"ticks: {args.tick_series:,} series x {args.ticks} ticks after {args.warmup_ticks}; "
          f"median of {args.repeat} runs\n")  # fmt: skip
    if args.first_tick_only:
        ratio = report_first_tick(base, args.tick_series, args.repeat)
        print(f"\ntarget: first tick over new keys <= 20x a steady one: {ratio:.1f}")
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
        return

    t_disk = median(lambda: disk_write_fsync(base, log_bytes), args.repeat)
    disk_mb = log_bytes / t_disk / 1e6
    print(f"{'bulk load':44} {'samples/s':>14} {'MB/s':>8} {'vs disk':>8}")
    print(f"{'disk: sequential write + fsync':44} {'':>14} {disk_mb:8,.0f} {1.0:8.2f}")
    ratios = {}
    for sync in ("none", "interval"):
        t = median(lambda sync=sync: load(base, data, sync), args.repeat)
        ratios[sync] = t_disk / t
        print(f"{'metricstore, sync=' + sync:44} {samples / t:14,.0f} "
              f"{log_bytes / t / 1e6:8,.0f} {t_disk / t:8.2f}")  # fmt: skip

    warm = args.warmup_ticks
    t_bare = median(lambda: bare_ticks(base, args.tick_series, args.ticks, warm), args.repeat)
    t_one = median(lambda: store_ticks(base, args.tick_series, args.ticks, 1, warm), args.repeat)
    t_four = median(
        lambda: store_ticks(base, args.tick_series, args.ticks * 4, 4, warm), args.repeat
    )
    print(f"\n{'durable ticks (sync=always)':44} {'commits/s':>14} {'vs bare':>8}")
    print(f"{'bare append + fdatasync per tick':44} {args.ticks / t_bare:14,.0f} {1.0:8.2f}")
    print(f"{'metricstore, 1 writer':44} {args.ticks / t_one:14,.0f} {t_bare / t_one:8.2f}")
    four_rate = args.ticks * 4 / t_four
    versus_one = four_rate / (args.ticks / t_one)
    print(f"{'metricstore, 4 writers (group commit)':44} {four_rate:14,.0f} "
          f"{four_rate / (args.ticks / t_bare):8.2f}   {versus_one:.2f}x one writer")  # fmt: skip
    first_ratio = report_first_tick(base, args.tick_series, args.repeat)

    path = fresh(base, "snapshot")
    store = metricstore.open(path, sync="none")
    store.define_metric("m", FREQUENCY, "sum")
    for i, row in enumerate(data):
        store.write(("m", ("c", f"h{i}")), 0, row)
    store.flush()
    checkpoints = []
    for _ in range(args.repeat):
        info = store.checkpoint()
        checkpoints.append((info.seconds, info.bytes, info.writers_held_seconds))
    store.close(checkpoint=False)
    t_snap, snap_bytes, held = (statistics.median(c[i] for c in checkpoints) for i in range(3))

    def reopen(readonly: bool) -> float:
        # A writable open reads and checks every chunk of the snapshot; a
        # read-only one maps it and reads only its catalog and index.
        t0 = time.perf_counter()
        opened = metricstore.open(path, readonly=readonly, checkpoint_interval_s=None)
        seconds = time.perf_counter() - t0
        opened.close(checkpoint=False)
        return seconds

    reopen(False)  # page cache
    t_load = median(lambda: reopen(False), args.repeat)
    t_map = median(lambda: reopen(True), args.repeat)

    path = fresh(base, "replay")
    store = metricstore.open(path, sync="none")
    store.define_metric("m", FREQUENCY, "sum")
    for i, row in enumerate(data):
        store.write(("m", ("c", f"h{i}")), 0, row)
    store.close(checkpoint=False)
    reports = []
    for _ in range(args.repeat + 1):
        t0 = time.perf_counter()
        reader = metricstore.open(path, readonly=True)
        reports.append((time.perf_counter() - t0, reader.recovery))
        reader.close()
    t_replay = statistics.median(t for t, _ in reports[1:])
    report = reports[-1][1]
    assert report is not None
    print(f"\n{'snapshots and replay':44} {'GB/s or MB/s':>14}")
    snap_vs_disk = snap_bytes / t_snap / (disk_mb * 1e6)
    print(f"{'snapshot write (checkpoint)':44} {snap_bytes / t_snap / 1e9:11.2f} GB/s "
          f"= {snap_vs_disk:.2f} x disk write+fsync "
          f"(writers held {held * 1e3:.2f} ms)")  # fmt: skip
    print(f"{'snapshot load (open, page cache)':44} {snap_bytes / t_load / 1e9:11.2f} GB/s")
    print(f"{'read-only open (maps the snapshot)':44} {t_map * 1e3:11.2f} ms")
    print(f"{'log replay (open, page cache)':44} {report.bytes / t_replay / 1e6:11,.0f} MB/s "
          f"({report.records / t_replay:,.0f} records/s)")  # fmt: skip

    print("\ntargets: "
          f"log load >= 0.5 x disk: none {ratios['none']:.2f}, interval {ratios['interval']:.2f}; "
          f"always ticks >= 0.8 x bare: {t_bare / t_one:.2f}; "
          f"4 writers >= 2x one: {versus_one:.2f}; "
          f"first tick over new keys <= 20x a steady one: {first_ratio:.1f}; "
          f"snapshot write vs disk: {snap_vs_disk:.2f}; "
          f"snapshot load >= 1 GB/s: {snap_bytes / t_load / 1e9:.2f}; "
          f"replay >= 300 MB/s: {report.bytes / t_replay / 1e6:,.0f}")  # fmt: skip
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
