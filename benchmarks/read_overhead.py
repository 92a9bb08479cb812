"""What the Python layer adds to a read: ``Store.read`` and ``Store.read_many``
next to the compiled core's own calls and NumPy slicing the same shapes.

A store of SERIES float32 series of POINTS samples (10 s frequency) is
written to a directory and reopened read-only, as in benchmarks/peers.py W3.
Each variant runs the same QUERIES random windows of WINDOW points and its
per-call time is the median of ``--repeat`` runs, the variants interleaved
so that a busy machine slows them alike:

- ``Store.read(key, start, stop).values`` by handle and by (metric,
  "/"-joined path), and ``_core.Store.read``, which it calls;
- ``Store.read_many`` of ROWS keys (handles, and (metric, "/"-joined path)
  pairs) and ``_core.Store.read_many`` of the same keys;
- NumPy ``arr[i, a:b].copy()`` and ``arr[rows, a:b].copy()`` of the same data;
- ``Store.read(("m", "cluster"), a, b)``, the sum of all SERIES series
  (with their counts of series per slot), the same with ``min_count=SERIES``,
  and NumPy ``nansum`` of the same block;
- ``Store.read(key, a, b).counts`` of one series (counts derived from the
  values when asked).

    python benchmarks/read_overhead.py             # a few seconds
    python benchmarks/read_overhead.py --repeat 9
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from _common import FREQUENCY, make_data

import metricstore

T0 = 1_700_000_000
SERIES = 64
POINTS = 100_000
WINDOW = 1_000
QUERIES = 10_000
ROWS = 64
MANY_QUERIES = 500


def per_call_us(run: Callable[[], None], calls: int) -> float:
    clock = time.perf_counter
    t0 = clock()
    run()
    return (clock() - t0) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (median)")
    args = parser.parse_args()

    data = make_data(SERIES, POINTS)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, SERIES, QUERIES).tolist()
    offsets = rng.integers(0, POINTS - WINDOW, QUERIES).tolist()
    many_offsets = offsets[:MANY_QUERIES]

    with tempfile.TemporaryDirectory() as tmp:
        with metricstore.open(tmp, sync="none") as writer:
            writer.define_metric("m", FREQUENCY, "sum")
            for i, row in enumerate(data):
                writer.write(("m", ("cluster", f"host{i:04d}")), T0, row)
        store = metricstore.open(tmp, readonly=True)
        paths = [("cluster", f"host{i:04d}") for i in range(SERIES)]
        handles = [store.find_series("m", p) for p in paths]
        queries = [
            (handles[s], T0 + o * FREQUENCY, T0 + (o + WINDOW) * FREQUENCY)
            for s, o in zip(picks, offsets, strict=True)
        ]
        rows = handles[:ROWS]
        keys = [("m", "/".join(p)) for p in paths[:ROWS]]
        windows = [(T0 + o * FREQUENCY, T0 + (o + WINDOW) * FREQUENCY) for o in many_offsets]
        read, core_read = store.read, store._core.read
        read_many, core_read_many = store.read_many, store._core.read_many
        by_path = [(("m", "/".join(paths[handles.index(h)])), a, b) for h, a, b in queries]
        by_row = [data[s] for s in picks]

        def store_read(calls: list[tuple[object, int, int]]) -> Callable[[], None]:
            def run() -> None:
                for key, a, b in calls:
                    _ = read(key, a, b).values

            return run

        def core_read_loop(calls: list[tuple[object, int, int]]) -> Callable[[], None]:
            def run() -> None:
                for key, a, b in calls:
                    _ = core_read(key, a, b).values

            return run

        def numpy_read() -> None:
            for row, o in zip(by_row, offsets, strict=True):
                row[o : o + WINDOW].copy()

        def store_many(series: list[object]) -> Callable[[], None]:
            def run() -> None:
                for a, b in windows:
                    _ = read_many(series, a, b).values

            return run

        def core_many(targets: list[object]) -> Callable[[], None]:
            def run() -> None:
                for a, b in windows:
                    _ = core_read_many(targets, a, b).values

            return run

        def numpy_many() -> None:
            block = data[:ROWS]
            for o in many_offsets:
                block[:, o : o + WINDOW].copy()

        def store_sum() -> None:
            for a, b in windows:
                _ = read(("m", "cluster"), a, b).values

        def store_sum_complete() -> None:
            for a, b in windows:
                _ = read(("m", "cluster"), a, b, min_count=SERIES).values

        def store_read_counts() -> None:
            for key, a, b in queries:
                _ = read(key, a, b).counts

        def numpy_sum() -> None:
            for o in many_offsets:
                np.nansum(data[:, o : o + WINDOW], axis=0, dtype=np.float64)

        variants: dict[str, tuple[Callable[[], None], int]] = {
            "Store.read": (store_read(queries), QUERIES),
            "_core.read": (core_read_loop(queries), QUERIES),
            "Store.read ((metric, path))": (store_read(by_path), QUERIES),
            "_core.read ((metric, path))": (core_read_loop(by_path), QUERIES),
            "numpy arr[a:b].copy()": (numpy_read, QUERIES),
            f"Store.read_many ({ROWS} handles)": (store_many(rows), MANY_QUERIES),
            f"Store.read_many ({ROWS} (metric, path))": (store_many(keys), MANY_QUERIES),
            f"_core.read_many ({ROWS} handles)": (core_many(rows), MANY_QUERIES),
            f"_core.read_many ({ROWS} (metric, path))": (core_many(keys), MANY_QUERIES),
            f"numpy arr[:{ROWS}, a:b].copy()": (numpy_many, MANY_QUERIES),
            f"Store.read (sum of {SERIES})": (store_sum, MANY_QUERIES),
            f"Store.read (sum of {SERIES}, min_count)": (store_sum_complete, MANY_QUERIES),
            "Store.read(...).counts": (store_read_counts, QUERIES),
            f"numpy nansum of {SERIES} rows": (numpy_sum, MANY_QUERIES),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, (run, calls) in variants.items():
                runs[name].append(per_call_us(run, calls))
        store.close()

    us = {name: statistics.median(times) for name, times in runs.items()}
    print(f"per call, median of {args.repeat} runs ({WINDOW:,} float32 points per row)")
    for name, value in us.items():
        print(f"  {name:<40} {value:8.2f} us")
    print("ratios")
    pairs = [
        ("Store.read", "_core.read"),
        ("Store.read", "numpy arr[a:b].copy()"),
        ("Store.read ((metric, path))", "_core.read ((metric, path))"),
        (f"Store.read_many ({ROWS} handles)", f"_core.read_many ({ROWS} handles)"),
        (f"Store.read_many ({ROWS} (metric, path))", f"_core.read_many ({ROWS} (metric, path))"),
        (f"Store.read_many ({ROWS} handles)", f"numpy arr[:{ROWS}, a:b].copy()"),
        (f"Store.read (sum of {SERIES})", f"numpy nansum of {SERIES} rows"),
        (f"Store.read (sum of {SERIES}, min_count)", f"Store.read (sum of {SERIES})"),
        ("Store.read(...).counts", "Store.read"),
    ]
    for a, b in pairs:
        print(f"  {a} / {b}: {us[a] / us[b]:.2f}")


if __name__ == "__main__":
    main()
