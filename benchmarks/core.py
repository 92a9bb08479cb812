"""Core benchmark: bulk writes, range reads and memory per sample, next to NumPy.

For SERIES x POINTS float32 samples (default 1,000 x 100,000) it measures, in
one run:

- bulk write rate of ``Store.write`` (one call per series), against NumPy
  holding the same arrays: ``np.copyto`` into a preallocated, already
  touched destination (the machine's memcpy rate, the reference of the
  target) and ``arr.copy()`` (NumPy doing the same copy). Each is measured
  twice: into a fresh process (every load in its own child, so nothing
  reuses memory an earlier run freed: on a VM, first touch of memory is
  most of the cost) and in a process whose allocator already holds the
  memory (the steady state of a long-running process);
- bytes of memory per stored sample: the store's count of chunk bytes, and
  the growth of the child's resident set while loading;
- range reads of READ_POINTS points per second from one Python thread, by
  handle through the public ``Store.read``, against NumPy slicing plus a copy;
- ticks (one value for each of TICK_SERIES series at one time) per second
  through ``Store.write_tick`` into a fresh in-memory store, against NumPy
  writing each tick into a column of a touched (series x ticks) array: both
  write one value per series into memory far from the last.

Each figure is the median of ``--repeat`` runs. Targets (issue 2): writes at
least 30% of the memcpy rate, at least 100,000 reads/s, at most 4.5 B/sample.

    python benchmarks/core.py                 # full size, about a minute
    python benchmarks/core.py --series 100    # quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from _common import FREQUENCY, make_data, rss_bytes

import metricstore


def load_store(data: np.ndarray) -> tuple[metricstore.Store, float]:
    """A store holding every row of ``data`` as one series; and the write seconds."""
    store = metricstore.Store()
    store.define_metric("m", FREQUENCY, "sum")
    handles = [store.series("m", ("cluster", f"host{i}")) for i in range(len(data))]
    t0 = time.perf_counter()
    for i, handle in enumerate(handles):
        store.write(handle, 0, data[i])
    return store, time.perf_counter() - t0


def load_into(store: metricstore.Store, data: np.ndarray) -> float:
    """Seconds to write every row of ``data`` again over the same slots."""
    t0 = time.perf_counter()
    for i, row in enumerate(data):
        store.write(i, 0, row)
    return time.perf_counter() - t0


def child(kind: str, n_series: int, n_points: int) -> None:
    """One fresh load in this process; prints its figures as JSON."""
    data = make_data(n_series, n_points)
    gc.collect()
    before = rss_bytes()
    if kind == "store":
        store, seconds = load_store(data)
        stats = store.stats()
        chunk_bytes = stats["data_bytes"] / stats["samples"]
    else:
        t0 = time.perf_counter()
        copies = [row.copy() for row in data]
        seconds = time.perf_counter() - t0
        chunk_bytes = sum(c.nbytes for c in copies) / data.size
    growth = (rss_bytes() - before) / data.size
    print(json.dumps({"seconds": seconds, "chunk_bytes": chunk_bytes, "rss_bytes": growth}))


def fresh_runs(kind: str, args: argparse.Namespace) -> dict[str, float]:
    """Medians of ``--repeat`` child processes doing one fresh load each."""
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--series", str(args.series),
             "--points", str(args.points)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs.append(json.loads(out.stdout))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def median_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tick_rates(args: argparse.Namespace) -> None:
    """Prints ticks per second into a store and into a NumPy column."""
    n, ticks = args.tick_series, args.ticks
    rng = np.random.default_rng(11)
    rows = rng.random((ticks, n), dtype=np.float32)

    def store_ticks() -> float:
        store = metricstore.Store()
        store.define_metric("m", FREQUENCY, "avg")
        handles = np.array([store.series("m", ("t", f"s{i}")) for i in range(n)], np.uint32)
        t0 = time.perf_counter()
        for t in range(ticks):
            store.write_tick(t * FREQUENCY, handles, rows[t])
        seconds = time.perf_counter() - t0
        got = store.read(int(handles[n // 2]), 0, ticks * FREQUENCY).values
        assert np.array_equal(got.view(np.uint32), rows[:, n // 2].view(np.uint32)), "tick mismatch"
        store.close()
        return seconds

    matrix = np.zeros((n, ticks), np.float32)

    def numpy_ticks() -> None:
        for t in range(ticks):
            matrix[:, t] = rows[t]

    t_store = statistics.median(store_ticks() for _ in range(args.repeat))
    t_numpy = median_time(numpy_ticks, args.repeat)
    print(f"\n{f'ticks of {n:,} series':44} {'ticks/s':>14} {'ns/sample':>10} {'vs numpy':>9}")
    for name, t in [("numpy column write", t_numpy), ("metricstore Store.write_tick", t_store)]:
        print(f"{name:44} {ticks / t:14,.0f} {t / ticks / n * 1e9:10.1f} {t_numpy / t:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--read-points", type=int, default=1000)
    parser.add_argument("--tick-series", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", choices=["store", "numpy"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.series, args.points)
        return

    n_series, n_points = args.series, args.points
    samples = n_series * n_points
    print(
        f"metricstore {metricstore.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"{n_series:,} series x {n_points:,} points = {samples:,} float32 samples "
        f"({samples * 4 / 1e9:.2f} GB), median of {args.repeat} runs\n"
    )

    # -- bulk writes and memory --------------------------------------------
    store_runs = fresh_runs("store", args)
    numpy_runs = fresh_runs("numpy", args)
    data = make_data(n_series, n_points)
    destination = np.empty_like(data)
    destination.fill(0)  # touch every page so copyto measures copying only

    def numpy_copyto() -> None:
        for i in range(n_series):
            np.copyto(destination[i], data[i])

    def numpy_copy() -> list[np.ndarray]:
        return [row.copy() for row in data]

    def store_reload() -> float:
        store, seconds = load_store(data)
        store.close()
        return seconds

    t_copyto = median_time(numpy_copyto, args.repeat)
    destination.resize(0, refcheck=False)
    t_copy_warm = median_time(numpy_copy, args.repeat)
    store_reload()  # the first load in this process takes fresh memory
    t_reload = statistics.median(store_reload() for _ in range(args.repeat))
    t_copy_fresh = numpy_runs["seconds"]
    resident, _ = load_store(data)
    t_rewrite = statistics.median(load_into(resident, data) for _ in range(args.repeat))
    resident.close()
    rows = [
        ("numpy copyto (memcpy, warm destination)", t_copyto),
        ("numpy arr.copy(), fresh process", t_copy_fresh),
        ("metricstore Store.write, fresh process", store_runs["seconds"]),
        ("numpy arr.copy(), memory reused", t_copy_warm),
        ("metricstore Store.write, memory reused", t_reload),
        ("metricstore Store.write, existing chunks", t_rewrite),
    ]
    print(f"{'bulk write':40} {'samples/s':>14} {'GB/s':>6} {'vs memcpy':>10} {'vs arr.copy':>12}")
    for name, t in rows:
        same_copy = t_copy_fresh if "fresh" in name else t_copy_warm
        print(
            f"{name:40} {samples / t:14,.0f} {samples * 4 / t / 1e9:6.2f} "
            f"{t_copyto / t:10.2f} {same_copy / t:12.2f}"
        )
    print(f"\n{'memory per stored sample':44} {'data bytes':>14} {'RSS growth':>12}")
    print(f"{'numpy arrays':44} {numpy_runs['chunk_bytes']:14.3f} {numpy_runs['rss_bytes']:12.3f}")
    print(f"{'metricstore':44} {store_runs['chunk_bytes']:14.3f} {store_runs['rss_bytes']:12.3f}")

    # -- range reads -------------------------------------------------------
    store, _ = load_store(data)
    rng = np.random.default_rng(7)
    span = args.read_points * FREQUENCY
    handles = rng.integers(0, n_series, args.reads).tolist()
    offsets = rng.integers(0, n_points - args.read_points, args.reads).tolist()
    starts = [o * FREQUENCY for o in offsets]
    pairs = list(zip(handles, starts, strict=True))
    slices = list(zip(handles, offsets, strict=True))
    read_points = args.read_points

    def store_reads() -> None:
        read = store.read
        for handle, start in pairs:
            read(handle, start, start + span)

    def numpy_reads() -> None:
        for row, offset in slices:
            data[row, offset : offset + read_points].copy()

    check = store.read(handles[0], starts[0], starts[0] + span).values
    expected = data[handles[0], offsets[0] : offsets[0] + read_points]
    assert np.array_equal(check.view(np.uint32), expected.view(np.uint32)), "read mismatch"

    t_store = median_time(store_reads, args.repeat)
    t_numpy = median_time(numpy_reads, args.repeat)
    print(
        f"\n{'range reads of ' + str(read_points) + ' points':44} {'reads/s':>14} {'vs numpy':>12}"
    )
    print(f"{'numpy slice + copy':44} {args.reads / t_numpy:14,.0f} {1.0:12.2f}")
    print(
        f"{'metricstore Store.read (by handle)':44} {args.reads / t_store:14,.0f} "
        f"{t_numpy / t_store:12.2f}"
    )

    store.close()
    tick_rates(args)

    write_ratio = t_copyto / store_runs["seconds"]  # the strict reading: fresh memory
    reads_per_second = args.reads / t_store
    memory = store_runs["rss_bytes"]
    print(
        f"\ntargets: writes >= 0.30 x memcpy: {'met' if write_ratio >= 0.30 else 'MISSED'} "
        f"({write_ratio:.2f}); reads >= 100,000/s: "
        f"{'met' if reads_per_second >= 1e5 else 'MISSED'} ({reads_per_second:,.0f}); "
        f"<= 4.5 B/sample: {'met' if memory <= 4.5 else 'MISSED'} ({memory:.2f})"
    )


if __name__ == "__main__":
    main()
