"""Core benchmark: bulk writes, range reads and memory per sample, next to NumPy.

For SERIES x POINTS float32 samples (default 1,000 x 100,000) it measures, in
one run and one process:

- bulk write rate of ``Store.write`` (one call per series), against NumPy
  copying the same arrays: ``np.copyto`` into a preallocated, already touched
  destination (the machine's memcpy rate, the target's reference) and
  ``arr.copy()`` into fresh memory (what holding the data in NumPy costs);
- range reads of READ_POINTS points per second from one Python thread, by
  handle through the public ``Store.read``, against NumPy slicing plus a copy;
- bytes of memory per stored sample: the store's own count of chunk bytes,
  and the growth of the process's resident set while loading.

Each timing is the median of ``--repeat`` runs. Targets (issue 2): writes at
least 30% of the memcpy rate, at least 100,000 reads/s, at most 4.5 B/sample.

    python benchmarks/core.py                 # full size
    python benchmarks/core.py --series 100    # quick run
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable

import metricstore
import numpy as np

FREQUENCY = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def median_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--read-points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n_series, n_points = args.series, args.points
    samples = n_series * n_points
    data = np.random.default_rng(42).random((n_series, n_points), dtype=np.float32)

    print(
        f"metricstore {metricstore.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"{n_series:,} series x {n_points:,} points = {samples:,} float32 samples "
        f"({samples * 4 / 1e9:.2f} GB), median of {args.repeat} runs\n"
    )

    # -- bulk writes -------------------------------------------------------
    destination = np.empty_like(data)
    destination.fill(0)  # touch every page so copyto measures copying only

    def numpy_copyto() -> None:
        for i in range(n_series):
            np.copyto(destination[i], data[i])

    def numpy_copy() -> list[np.ndarray]:
        return [data[i].copy() for i in range(n_series)]

    def store_load() -> metricstore.Store:
        store = metricstore.Store()
        store.define_metric("m", FREQUENCY, "sum")
        handles = [store.series("m", ("cluster", f"host{i}")) for i in range(n_series)]
        t0 = time.perf_counter()
        for i, handle in enumerate(handles):
            store.write(handle, 0, data[i])
        store_load.write_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
        return store

    t_copyto = median_time(numpy_copyto, args.repeat)
    t_copy = median_time(numpy_copy, args.repeat)
    write_times = []
    for _ in range(args.repeat):
        gc.collect()
        store_load().close()
        write_times.append(store_load.write_seconds)  # type: ignore[attr-defined]
    t_write = statistics.median(write_times)

    rows = [
        ("numpy copyto (memcpy, warm destination)", t_copyto),
        ("numpy arr.copy() (fresh memory)", t_copy),
        ("metricstore Store.write (fresh chunks)", t_write),
    ]
    print(f"{'bulk write':44} {'samples/s':>14} {'GB/s':>7} {'vs memcpy':>10}")
    for name, t in rows:
        print(f"{name:44} {samples / t:14,.0f} {samples * 4 / t / 1e9:7.2f} {t_copyto / t:10.2f}")

    # -- memory ------------------------------------------------------------
    destination.resize(0, refcheck=False)  # give the copy target's memory back first
    gc.collect()
    before = rss_bytes()
    store = store_load()
    rss_growth = rss_bytes() - before
    stats = store.stats()
    print(
        f"\nmemory per stored sample: {stats['data_bytes'] / stats['samples']:.3f} B "
        f"(chunk bytes), {rss_growth / samples:.3f} B (resident set growth)"
    )

    # -- range reads -------------------------------------------------------
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
        f"\n{'range reads of ' + str(read_points) + ' points':44} {'reads/s':>14} {'vs numpy':>10}"
    )
    print(f"{'numpy slice + copy':44} {args.reads / t_numpy:14,.0f} {1.0:10.2f}")
    print(
        f"{'metricstore Store.read (by handle)':44} {args.reads / t_store:14,.0f} "
        f"{t_numpy / t_store:10.2f}"
    )

    print(
        "\ntargets: write >= 0.30 x memcpy: "
        f"{'met' if t_copyto / t_write >= 0.30 else 'MISSED'} ({t_copyto / t_write:.2f}); "
        f"reads >= 100,000/s: {'met' if args.reads / t_store >= 1e5 else 'MISSED'}; "
        f"<= 4.5 B/sample: {'met' if rss_growth / samples <= 4.5 else 'MISSED'} "
        f"({rss_growth / samples:.2f})"
    )


if __name__ == "__main__":
    main()
