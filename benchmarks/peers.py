"""Benchmarks against peers: metricstore next to the tools users would pick instead.

One run measures metricstore, NumPy (files, and arrays in memory), Parquet
(pyarrow), DuckDB, ArcticDB (LMDB) and SQLite side by side, each workload of
each tool in a fresh process, next to the machine's limits measured in the
same run, and writes docs/benchmarks.md:

- W1 bulk load: SERIES x POINTS float32 samples, one array per series, until
  durable; W2 collector ticks: one batch of TICK_SERIES values per tick, one
  commit per tick; W3 range reads of random windows from a reopened store;
  W4 cold open: a fresh process opens W1's data and reads every series;
  W5 memory per stored sample in W1 and W4; W6 node-level sums over 64
  children.
- Every figure counts only if the values read back are bit-exact (sums: equal
  to a float64 sum skipping NaN, rounded to float32 once).

    python benchmarks/peers.py --scale small --dir /path/on/the/disk   # minutes
    python benchmarks/peers.py --scale full  --dir /path/on/the/disk

ArcticDB needs pandas < 3; if the interpreter running this has pandas 3, give
one that has arcticdb with ``--arcticdb-python`` (a venv made with
``--system-site-packages`` and ``pip install "pandas<3" arcticdb`` will do).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    FREQUENCY,
    bare_ticks,
    disk_write_fsync,
    drop_from_page_cache,
    make_data,
    rss_bytes,
)

T0 = 1_700_000_000  # first timestamp (seconds): a real-looking epoch on the 10 s grid
CHILDREN = 64
CHECK_SERIES = 100  # W2: series read back and compared per tool
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scale:
    series: int  # W1, W3, W4
    points: int
    tick_series: int  # W2
    ticks: int
    slow_tick_series: int  # W2 for peers too slow for a whole tick: series per tick written
    queries: int  # W3
    window: int  # W3 and W6, points per read
    agg_points: int  # W6: points per child
    windows: int
    repeat: int  # W3, W6 and the latency limits: median of this many runs
    budget: float  # seconds a timed loop may run before it stops (marked partial)


SCALES = {
    "full": Scale(1000, 100_000, 10_000, 1000, 10_000, 10_000, 1000, 100_000, 1000, 5, 120.0),
    "small": Scale(1000, 5_000, 10_000, 50, 500, 1_000, 1000, 5_000, 100, 5, 20.0),
}


def timestamps(n: int) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * FREQUENCY


def tick_data(s: Scale) -> np.ndarray:
    """Row t holds the value of every series at tick t."""
    return make_data(s.ticks, s.tick_series, seed=2)


def agg_data(s: Scale) -> np.ndarray:
    """CHILDREN series with about 1% missing (NaN) samples."""
    block = make_data(CHILDREN, s.agg_points, seed=6)
    block[np.random.default_rng(7).random(block.shape) < 0.01] = np.nan
    return block


def agg_reference(block: np.ndarray) -> np.ndarray:
    """The sum metricstore promises: float64 from -0.0 over the children in
    name order, NaN skipped, NaN where no child has a value, rounded once."""
    total = np.full(block.shape[1], -0.0)
    present = np.zeros(block.shape[1], dtype=bool)
    for row in block:
        have = ~np.isnan(row)
        total[have] += row[have]
        present |= have
    total[~present] = np.nan
    return total.astype(np.float32)


def queries(s: Scale) -> list[tuple[int, int]]:
    rng = np.random.default_rng(3)
    series = rng.integers(0, s.series, s.queries).tolist()
    offsets = rng.integers(0, s.points - s.window + 1, s.queries).tolist()
    return list(zip(series, offsets, strict=True))


def agg_windows(s: Scale) -> list[int]:
    return np.random.default_rng(4).integers(0, s.agg_points - s.window + 1, s.windows).tolist()


def same(got: np.ndarray, want: np.ndarray) -> bool:
    """Bit-exact, except that any NaN equals any NaN (stores may change its payload)."""
    got = np.asarray(got)
    if got.dtype != np.float32 or got.shape != want.shape:
        return False
    nan = np.isnan(want)
    if not np.array_equal(np.isnan(got), nan):
        return False
    return bool(np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32)))


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- peers -------------------------------------------------------------------------
#
# Each peer stores series the way its users would and offers the same five
# operations; the harness below times them. A sink's durable() returns once
# everything written is on disk (None: the peer keeps nothing on disk).


@dataclass
class Sink:
    write: Callable[..., object]
    durable: Callable[[], object] | None
    close: Callable[[], object]
    read_back: Callable[[list[int], int], np.ndarray] | None = None


Reader = Callable[[int, int, int], np.ndarray]  # (series, first point, points) -> values


class Metricstore:
    name = "metricstore"
    modules = ("metricstore", "metricstore.store")  # the package loads its core lazily

    def bulk(self, path: Path, s: Scale, sync: str) -> Sink:
        import metricstore

        store = metricstore.open(path, sync=sync)
        store.define_metric("m", FREQUENCY, "none")
        handles = [store.series("m", ("cluster", f"host{i:04d}")) for i in range(s.series)]
        return Sink(lambda i, row: store.write(handles[i], T0, row), store.flush, store.close)

    def reader(self, path: Path, s: Scale) -> Reader:
        import metricstore

        store = metricstore.open(path, readonly=True)
        handles = [store.find_series("m", ("cluster", f"host{i:04d}")) for i in range(s.series)]
        read = store.read

        def query(series: int, offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            return read(handles[series], start, start + n * FREQUENCY).values

        query.store = store  # type: ignore[attr-defined]
        return query

    def ticks(self, path: Path, s: Scale, sync: str) -> Sink:
        import metricstore

        store = metricstore.open(path, sync=sync)
        store.define_metric("m", FREQUENCY, "none")
        handles = np.array(
            [store.series("m", ("c", f"s{i:05d}")) for i in range(s.tick_series)], np.uint32
        )

        def read_back(series: list[int], done: int) -> np.ndarray:
            picked = [int(handles[i]) for i in series]
            return store.read_many(picked, T0, T0 + done * FREQUENCY).values

        return Sink(
            lambda t, values: store.write_tick(T0 + t * FREQUENCY, handles, values),
            store.flush,
            store.close,
            read_back,
        )

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        import metricstore

        store = metricstore.open(path, sync="none")
        store.define_metric("cpu_load", FREQUENCY, "sum")
        for i, row in enumerate(block):
            store.write(("cpu_load", ("node", f"c{i:02d}")), T0, row)
        store.flush()
        node = ("cpu_load", ("node",))

        def query(offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            return store.read(node, start, start + n * FREQUENCY).values

        return query


class NumpyMemory:
    """Arrays held in memory: the floor any in-memory store is measured against."""

    name = "numpy-memory"
    modules = ("numpy",)

    def bulk(self, path: Path, s: Scale, variant: str) -> Sink:
        copies: list[np.ndarray] = []
        return Sink(
            lambda i, row: copies.append(row.copy()),
            None,
            copies.clear,
            lambda picked, done: np.stack([copies[i][:done] for i in picked]),
        )

    def reader(self, path: Path, s: Scale) -> Reader:
        # W1's NumPy files, loaded whole: "reopening" an in-memory store
        arrays = [np.load(path / f"s{i:04d}.npy") for i in range(s.series)]
        return lambda series, offset, n: arrays[series][offset : offset + n].copy()

    def ticks(self, path: Path, s: Scale, variant: str) -> Sink:
        grid = np.full((s.tick_series, s.ticks), np.nan, dtype=np.float32)

        def write(t: int, values: np.ndarray) -> None:
            grid[:, t] = values

        return Sink(write, None, lambda: None, lambda series, done: grid[series, :done])

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        held = block.copy()

        def query(offset: int, n: int) -> np.ndarray:
            part = held[:, offset : offset + n]
            return np.nansum(part, axis=0, dtype=np.float64).astype(np.float32)

        return query


class NumpyFiles:
    """One .npy file per series (np.save / np.load)."""

    name = "numpy-files"
    modules = ("numpy",)

    def bulk(self, path: Path, s: Scale, variant: str) -> Sink:
        path.mkdir(parents=True)
        files = [path / f"s{i:04d}.npy" for i in range(s.series)]

        def durable() -> None:
            for file in files:
                fsync_path(file)
            fsync_path(path)

        return Sink(lambda i, row: np.save(files[i], row), durable, lambda: None)

    def reader(self, path: Path, s: Scale) -> Reader:
        files = [path / f"s{i:04d}.npy" for i in range(s.series)]

        def query(series: int, offset: int, n: int) -> np.ndarray:
            return np.load(files[series], mmap_mode="r")[offset : offset + n].copy()

        return query

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        path.mkdir(parents=True)
        for i, row in enumerate(block):
            np.save(path / f"c{i:02d}.npy", row)
        maps = [np.load(path / f"c{i:02d}.npy", mmap_mode="r") for i in range(len(block))]

        def query(offset: int, n: int) -> np.ndarray:
            part = np.stack([m[offset : offset + n] for m in maps])
            return np.nansum(part, axis=0, dtype=np.float64).astype(np.float32)

        return query


class Parquet:
    """pyarrow Parquet (default options): a file per series, or per tick."""

    name = "parquet"
    modules = ("pyarrow",)

    def bulk(self, path: Path, s: Scale, variant: str) -> Sink:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.mkdir(parents=True)
        files = [path / f"s{i:04d}.parquet" for i in range(s.series)]
        ts = pa.array(timestamps(s.points))

        def durable() -> None:
            for file in files:
                fsync_path(file)
            fsync_path(path)

        return Sink(
            lambda i, row: pq.write_table(pa.table({"ts": ts, "value": row}), files[i]),
            durable,
            lambda: None,
        )

    def reader(self, path: Path, s: Scale) -> Reader:
        import pyarrow.parquet as pq

        files = [path / f"s{i:04d}.parquet" for i in range(s.series)]

        def query(series: int, offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            table = pq.read_table(
                files[series],
                columns=["value"],
                filters=[("ts", ">=", start), ("ts", "<", start + n * FREQUENCY)],
            )
            return table.column("value").to_numpy()

        return query

    def ticks(self, path: Path, s: Scale, variant: str) -> Sink:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.mkdir(parents=True)
        series = pa.array(np.arange(s.tick_series, dtype=np.int32))

        def write(t: int, values: np.ndarray) -> None:
            ts = pa.array(np.full(s.tick_series, T0 + t * FREQUENCY, dtype=np.int64))
            file = path / f"tick{t:06d}.parquet"
            pq.write_table(pa.table({"ts": ts, "series": series, "value": values}), file)
            fsync_path(file)
            fsync_path(path)

        def read_back(picked: list[int], done: int) -> np.ndarray:
            columns = [
                pq.read_table(path / f"tick{t:06d}.parquet").column("value").to_numpy()
                for t in range(done)
            ]
            return np.stack(columns, axis=1)[picked]

        return Sink(write, None, lambda: None, read_back)

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.mkdir(parents=True)
        ts = pa.array(timestamps(block.shape[1]))
        files = [path / f"c{i:02d}.parquet" for i in range(len(block))]
        for file, row in zip(files, block, strict=True):
            pq.write_table(pa.table({"ts": ts, "value": row}), file)

        def query(offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            window = [("ts", ">=", start), ("ts", "<", start + n * FREQUENCY)]
            part = np.stack(
                [
                    pq.read_table(f, columns=["value"], filters=window).column(0).to_numpy()
                    for f in files
                ]
            )
            return np.nansum(part, axis=0, dtype=np.float64).astype(np.float32)

        return query


class DuckDB:
    """One table (series, ts, value), inserted from Arrow; SQL range queries."""

    name = "duckdb"
    modules = ("duckdb", "pyarrow")
    SCHEMA = "CREATE TABLE samples (series INTEGER, ts BIGINT, value FLOAT)"

    def bulk(self, path: Path, s: Scale, variant: str) -> Sink:
        import duckdb
        import pyarrow as pa

        path.mkdir(parents=True)
        con = duckdb.connect(str(path / "db.duckdb"))
        con.execute(self.SCHEMA)
        ts = pa.array(timestamps(s.points))
        con.begin()

        def write(i: int, row: np.ndarray) -> None:
            ids = pa.array(np.full(len(row), i, dtype=np.int32))
            con.from_arrow(pa.table({"series": ids, "ts": ts, "value": row})).insert_into("samples")

        return Sink(write, con.commit, con.close)

    def reader(self, path: Path, s: Scale) -> Reader:
        import duckdb

        con = duckdb.connect(str(path / "db.duckdb"), read_only=True)
        sql = "SELECT value FROM samples WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts"

        def query(series: int, offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            return con.execute(sql, [series, start, start + n * FREQUENCY]).fetchnumpy()["value"]

        return query

    def ticks(self, path: Path, s: Scale, variant: str) -> Sink:
        import duckdb
        import pyarrow as pa

        path.mkdir(parents=True)
        con = duckdb.connect(str(path / "db.duckdb"))
        con.execute(self.SCHEMA)
        ids = pa.array(np.arange(s.tick_series, dtype=np.int32))

        def write(t: int, values: np.ndarray) -> None:
            ts = pa.array(np.full(s.tick_series, T0 + t * FREQUENCY, dtype=np.int64))
            con.from_arrow(pa.table({"series": ids, "ts": ts, "value": values})).insert_into(
                "samples"
            )  # autocommit: one transaction per tick

        def read_back(picked: list[int], done: int) -> np.ndarray:
            got = con.execute(
                "SELECT value FROM samples WHERE list_contains(?, series) AND ts < ? "
                "ORDER BY series, ts",
                [picked, T0 + done * FREQUENCY],
            ).fetchnumpy()["value"]
            order = np.argsort(np.argsort(picked))  # rows come in series order
            return got.reshape(len(picked), done)[order]

        return Sink(write, None, con.close, read_back)

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        import duckdb
        import pyarrow as pa

        path.mkdir(parents=True)
        con = duckdb.connect(str(path / "db.duckdb"))
        con.execute(self.SCHEMA)
        ts = pa.array(timestamps(block.shape[1]))
        for i, row in enumerate(block):
            ids = pa.array(np.full(len(row), i, dtype=np.int32))
            values = pa.array(row, mask=np.isnan(row))  # missing is NULL in SQL
            con.from_arrow(pa.table({"series": ids, "ts": ts, "value": values})).insert_into(
                "samples"
            )
        sql = (
            "SELECT ts, SUM(value) AS total FROM samples WHERE ts >= ? AND ts < ? "
            "GROUP BY ts ORDER BY ts"
        )

        def query(offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            total = con.execute(sql, [start, start + n * FREQUENCY]).fetchnumpy()["total"]
            return np.ma.filled(np.ma.asarray(total, dtype=np.float64), np.nan).astype(np.float32)

        return query


class SQLite:
    """WAL journal, a WITHOUT ROWID table keyed (series, ts), executemany."""

    name = "sqlite"
    modules = ("sqlite3",)
    SCHEMA = (
        "CREATE TABLE samples (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, "
        "PRIMARY KEY (series, ts)) WITHOUT ROWID"
    )
    INSERT = "INSERT INTO samples VALUES (?, ?, ?)"

    def connect(self, path: Path, synchronous: str) -> Any:
        import sqlite3

        path.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path / "db.sqlite", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        return con

    def bulk(self, path: Path, s: Scale, synchronous: str) -> Sink:
        con = self.connect(path, synchronous)
        con.execute(self.SCHEMA)
        ts = timestamps(s.points).tolist()
        con.execute("BEGIN")

        def write(i: int, row: np.ndarray) -> None:
            con.executemany(self.INSERT, zip(itertools.repeat(i), ts, row.tolist()))

        return Sink(write, lambda: con.execute("COMMIT"), con.close)

    def reader(self, path: Path, s: Scale) -> Reader:
        con = self.connect(path, "FULL")
        sql = "SELECT value FROM samples WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts"

        def query(series: int, offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            rows = con.execute(sql, (series, start, start + n * FREQUENCY)).fetchall()
            return np.array(rows, dtype=np.float64).reshape(-1).astype(np.float32)

        return query

    def ticks(self, path: Path, s: Scale, synchronous: str) -> Sink:
        con = self.connect(path, synchronous)
        con.execute(self.SCHEMA)
        ids = range(s.tick_series)

        def write(t: int, values: np.ndarray) -> None:
            con.execute("BEGIN")
            ts = T0 + t * FREQUENCY
            con.executemany(self.INSERT, zip(ids, itertools.repeat(ts), values.tolist()))
            con.execute("COMMIT")

        def read_back(picked: list[int], done: int) -> np.ndarray:
            sql = "SELECT value FROM samples WHERE series = ? AND ts < ? ORDER BY ts"
            rows = [
                con.execute(sql, (i, T0 + done * FREQUENCY)).fetchall() for i in picked
            ]  # one query per series: keeps the rows in the order asked
            return np.array(rows, dtype=np.float64).reshape(len(picked), done).astype(np.float32)

        return Sink(write, None, con.close, read_back)

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        con = self.connect(path, "FULL")
        con.execute(self.SCHEMA)
        ts = timestamps(block.shape[1]).tolist()
        con.execute("BEGIN")
        for i, row in enumerate(block):  # sqlite3 stores NaN as NULL
            con.executemany(self.INSERT, zip(itertools.repeat(i), ts, row.tolist()))
        con.execute("COMMIT")
        children = ", ".join(str(i) for i in range(len(block)))
        sql = (
            f"SELECT ts, SUM(value) FROM samples WHERE series IN ({children}) "
            "AND ts >= ? AND ts < ? GROUP BY ts ORDER BY ts"
        )

        def query(offset: int, n: int) -> np.ndarray:
            start = T0 + offset * FREQUENCY
            rows = con.execute(sql, (start, start + n * FREQUENCY)).fetchall()
            sums = [np.nan if total is None else total for _, total in rows]
            return np.array(sums, dtype=np.float64).astype(np.float32)

        return query


class ArcticDB:
    """ArcticDB on LMDB: one symbol per series (a DataFrame with a time index)."""

    name = "arcticdb"
    modules = ("arcticdb", "pandas")
    slow_ticks = True  # each symbol append is its own LMDB commit (several fdatasyncs)

    def library(self, path: Path) -> Any:
        from arcticdb import Arctic

        return Arctic(f"lmdb://{path}").get_library("bench", create_if_missing=True)

    def bulk(self, path: Path, s: Scale, variant: str) -> Sink:
        import pandas as pd

        lib = self.library(path)
        index = pd.DatetimeIndex(timestamps(s.points).astype("datetime64[s]").astype("M8[ns]"))

        def write(i: int, row: np.ndarray) -> None:
            lib.write(f"s{i:04d}", pd.DataFrame({"value": row}, index=index))

        return Sink(write, lambda: None, lambda: None)  # LMDB syncs every commit

    def reader(self, path: Path, s: Scale) -> Reader:
        import pandas as pd

        lib = self.library(path)

        def query(series: int, offset: int, n: int) -> np.ndarray:
            first = pd.Timestamp(T0 + offset * FREQUENCY, unit="s")
            last = first + pd.Timedelta(seconds=(n - 1) * FREQUENCY)  # date_range is inclusive
            frame = lib.read(f"s{series:04d}", date_range=(first, last)).data
            return frame["value"].to_numpy()

        return query

    def ticks(self, path: Path, s: Scale, variant: str) -> Sink:
        import pandas as pd
        from arcticdb import WritePayload

        lib = self.library(path)
        symbols = [f"s{i:05d}" for i in range(s.tick_series)]

        def write(t: int, values: np.ndarray) -> None:
            index = pd.DatetimeIndex([pd.Timestamp(T0 + t * FREQUENCY, unit="s")])
            payloads = [
                WritePayload(sym, pd.DataFrame({"value": values[i : i + 1]}, index=index))
                for i, sym in enumerate(symbols)
            ]
            for item in lib.append_batch(payloads):
                if not hasattr(item, "version"):  # a DataError
                    raise RuntimeError(f"append failed: {item}")

        def read_back(picked: list[int], done: int) -> np.ndarray:
            rows = [lib.read(symbols[i]).data["value"].to_numpy()[:done] for i in picked]
            return np.stack(rows)

        return Sink(write, None, lambda: None, read_back)

    def aggregator(self, path: Path, block: np.ndarray) -> Callable[[int, int], np.ndarray]:
        import pandas as pd
        from arcticdb import ReadRequest

        lib = self.library(path)
        index = pd.DatetimeIndex(
            timestamps(block.shape[1]).astype("datetime64[s]").astype("M8[ns]")
        )
        symbols = [f"c{i:02d}" for i in range(len(block))]
        for sym, row in zip(symbols, block, strict=True):
            lib.write(sym, pd.DataFrame({"value": row}, index=index))

        def query(offset: int, n: int) -> np.ndarray:
            first = pd.Timestamp(T0 + offset * FREQUENCY, unit="s")
            last = first + pd.Timedelta(seconds=(n - 1) * FREQUENCY)
            items = lib.read_batch([ReadRequest(sym, date_range=(first, last)) for sym in symbols])
            part = np.stack([item.data["value"].to_numpy() for item in items])
            return np.nansum(part, axis=0, dtype=np.float64).astype(np.float32)

        return query


PEERS = {
    p.name: p for p in (Metricstore, NumpyMemory, NumpyFiles, Parquet, DuckDB, SQLite, ArcticDB)
}


# -- the child: one workload of one peer, in a fresh process --------------------------


def peak_reset() -> None:
    """Starts the high-water mark of this process's resident set afresh.

    ru_maxrss is no good here: a child started with vfork (as subprocess does)
    inherits the parent's peak in it."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed_loop(
    run: Callable[..., np.ndarray], calls: Sequence[tuple[int, ...]], budget: float
) -> tuple[list[float], list[np.ndarray]]:
    """Latency of each call, stopping once `budget` seconds have passed."""
    latencies: list[float] = []
    results: list[np.ndarray] = []
    clock = time.perf_counter
    started = clock()
    for call in calls:
        t0 = clock()
        results.append(run(*call))
        latencies.append(clock() - t0)
        if clock() - started > budget:
            break
    return latencies, results


def repeated_queries(
    run: Callable[..., np.ndarray],
    calls: Sequence[tuple[int, ...]],
    check: Callable[[int, np.ndarray], bool],
    s: Scale,
) -> dict[str, Any]:
    """Medians over up to `s.repeat` runs of the calls (no new run starts once
    `s.budget` seconds have passed); the results of every run are checked."""
    runs = []
    bad = None
    started = time.perf_counter()
    for _ in range(s.repeat):
        left = s.budget - (time.perf_counter() - started)
        if runs and left <= 0:
            break
        latencies, results = timed_loop(run, calls, left)
        for i, got in enumerate(results):
            if bad is None and not check(i, got):
                bad = i
        results.clear()
        runs.append(
            {
                "rate": len(latencies) / sum(latencies),
                "p50": float(np.percentile(latencies, 50)),
                "p99": float(np.percentile(latencies, 99)),
                "done": len(latencies),
            }
        )
        if len(latencies) < len(calls):
            break
    out: dict[str, Any] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out.update(runs=len(runs), total=len(calls), ok=bad is None)
    if bad is not None:
        out["error"] = f"call {bad} returned other values than expected"
    return out


def child_bulk(peer: Any, path: Path, s: Scale, variant: str) -> dict[str, Any]:
    data = make_data(s.series, s.points)
    base = rss_bytes()
    peak_reset()
    sink = peer.bulk(path, s, variant)
    t0 = time.perf_counter()
    for i, row in enumerate(data):
        sink.write(i, row)
    written = time.perf_counter() - t0
    if sink.durable is not None:
        sink.durable()
    durable = time.perf_counter() - t0
    peak = peak_rss() - base
    out: dict[str, Any] = {"written": written, "durable": durable, "peak_bytes": peak}
    if sink.read_back is not None:  # kept in memory only: check it there
        out["ok"] = same(sink.read_back(list(range(s.series)), s.points), data)
    t1 = time.perf_counter()
    sink.close()
    out["close"] = time.perf_counter() - t1
    if isinstance(peer, Metricstore):  # W4 reads back one sync mode; check them all here
        run = peer.reader(path, s)
        out["ok"] = all(same(run(i, 0, s.points), row) for i, row in enumerate(data))
    if path.exists():
        out["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return out


def child_ticks(peer: Any, path: Path, s: Scale, variant: str) -> dict[str, Any]:
    full = s.tick_series
    data = tick_data(s)
    if getattr(peer, "slow_ticks", False):  # fewer series per tick, figures scaled to `full`
        s = dataclasses.replace(s, tick_series=s.slow_tick_series)
        data = np.ascontiguousarray(data[:, : s.tick_series])
    scale = full / s.tick_series
    sink = peer.ticks(path, s, variant)
    logged = log_bytes(path)
    latencies: list[float] = []
    clock = time.perf_counter
    t0 = clock()
    for t, values in enumerate(data):
        t1 = clock()
        sink.write(t, values)
        latencies.append(clock() - t1)
        if clock() - t0 > s.budget:
            break
    if sink.durable is not None:
        sink.durable()
    seconds = clock() - t0
    done = len(latencies)
    picked = np.random.default_rng(5).choice(s.tick_series, CHECK_SERIES, replace=False).tolist()
    assert sink.read_back is not None
    got = np.asarray(sink.read_back(picked, done))
    want = np.ascontiguousarray(data[:done, picked].T)
    extra: dict[str, Any] = {}
    if isinstance(peer, Metricstore):  # where a tick's time goes: the log, or applying it
        extra["record_bytes"] = (log_bytes(path) - logged) // done
        extra["memory_p50"] = store_ticks_in_memory(data[:done], s)
    sink.close()
    return extra | {
        "seconds": seconds,
        "done": done,
        "total": s.ticks,
        "rate": done / seconds / scale,
        "p50": float(np.percentile(latencies, 50)) * scale,
        "p99": float(np.percentile(latencies, 99)) * scale,
        "series_per_tick": s.tick_series,
        "ok": same(got.astype(np.float32, copy=False), want),
    }


def log_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("wal-*.log"))


def store_ticks_in_memory(data: np.ndarray, s: Scale) -> float:
    """p50 seconds of `write_tick` into a `metricstore.Store()`, which keeps no log."""
    import metricstore

    store = metricstore.Store()
    store.define_metric("m", FREQUENCY, "none")
    handles = np.array(
        [store.series("m", ("c", f"s{i:05d}")) for i in range(s.tick_series)], np.uint32
    )
    latencies = []
    for t, values in enumerate(data):
        t0 = time.perf_counter()
        store.write_tick(T0 + t * FREQUENCY, handles, values)
        latencies.append(time.perf_counter() - t0)
    store.close()
    return float(np.percentile(latencies, 50))


def child_reads(peer: Any, path: Path, s: Scale, variant: str) -> dict[str, Any]:
    data = make_data(s.series, s.points)
    calls = [(series, offset, s.window) for series, offset in queries(s)]
    run = peer.reader(path, s)

    def check(i: int, got: np.ndarray) -> bool:
        series, offset, n = calls[i]
        return same(got, data[series, offset : offset + n])

    out = repeated_queries(run, calls, check, s)
    store = getattr(run, "store", None)
    if store is not None:  # the same calls without the Python wrapper: where the time goes
        core_read = store._core.read
        handles = [store.find_series("m", ("cluster", f"host{i:04d}")) for i in range(s.series)]
        core_calls = [
            (handles[i], T0 + o * FREQUENCY, T0 + (o + n) * FREQUENCY) for i, o, n in calls
        ]
        lat, _ = timed_loop(lambda h, a, b: core_read(h, a, b).values, core_calls, s.budget)
        out["core_rate"] = len(lat) / sum(lat)
    return out


def child_cold(peer: Any, path: Path, s: Scale, variant: str) -> dict[str, Any]:
    data = make_data(s.series, s.points)
    base = rss_bytes()
    peak_reset()
    clock = time.perf_counter
    t0 = clock()
    run = peer.reader(path, s)
    opened = clock() - t0
    reading = 0.0
    first = None
    ok = True
    for i in range(s.series):
        t1 = clock()
        got = run(i, 0, s.points)
        reading += clock() - t1
        if first is None:
            first = opened + reading
        ok = ok and same(got, data[i])
        del got
        if opened + reading > s.budget:
            break
    return {
        "open": opened,
        "seconds": opened + reading,
        "first": first,
        "done": i + 1,
        "total": s.series,
        "peak_bytes": peak_rss() - base,
        "after_bytes": rss_bytes() - base,
        "ok": ok,
    }


def child_agg(peer: Any, path: Path, s: Scale, variant: str) -> dict[str, Any]:
    block = agg_data(s)
    reference = agg_reference(block)
    t0 = time.perf_counter()
    run = peer.aggregator(path, block)
    load = time.perf_counter() - t0
    calls = [(offset, s.window) for offset in agg_windows(s)]

    def check(i: int, got: np.ndarray) -> bool:
        offset, n = calls[i]
        return same(got, reference[offset : offset + n])

    out = repeated_queries(run, calls, check, s)
    out["load"] = load
    return out


def child_probe(peer: Any) -> dict[str, Any]:
    versions = {}
    for module in peer.modules:
        mod = importlib.import_module(module)
        version = getattr(mod, "sqlite_version", None) or getattr(mod, "__version__", None)
        if version:
            versions[module] = version
    return {"versions": versions, "python": platform.python_version(), "ok": True}


CHILDREN_RUN = {
    "bulk": child_bulk,
    "ticks": child_ticks,
    "reads": child_reads,
    "cold": child_cold,
    "agg": child_agg,
}


def child(args: argparse.Namespace) -> None:
    tool, workload = args.child
    s = SCALES[args.scale]
    t0 = time.perf_counter()
    try:
        for module in PEERS[tool].modules:
            importlib.import_module(module)
    except ImportError as e:
        print(json.dumps({"ok": False, "missing": str(e)}))
        return
    imports = time.perf_counter() - t0
    peer = PEERS[tool]()
    if workload == "probe":
        out = child_probe(peer)
    else:
        out = CHILDREN_RUN[workload](peer, args.dir, s, args.variant)
    out["imports"] = imports
    print(json.dumps(out))


# -- the parent: machine, limits, running every child, the page ------------------------


def libc() -> Any:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
    lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


def resident_bytes(path: Path) -> tuple[int, int]:
    """(bytes of the files under `path` in the page cache, bytes of the files), by mincore."""
    lib = libc()
    page = os.sysconf("SC_PAGE_SIZE")
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    resident = total = 0
    for file in files:
        size = file.stat().st_size
        if size == 0:
            continue
        total += size
        fd = os.open(file, os.O_RDONLY)
        try:
            addr = lib.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), f"mmap {file}")
            vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
            if lib.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {file}")
            resident += sum(v & 1 for v in vec) * page
            lib.munmap(addr, size)
        finally:
            os.close(fd)
    return min(resident, total), total


def drop_cache(path: Path) -> float:
    """Asks the kernel to drop the files under `path` from the page cache;
    returns the fraction still resident afterwards."""
    drop_from_page_cache(path)
    resident, total = resident_bytes(path)
    return resident / total if total else 0.0


def read_file(path: Path) -> float:
    """Seconds to read `path` sequentially in 4 MiB reads."""
    buffer = bytearray(4 << 20)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass
    return time.perf_counter() - t0


def measure_limits(base: Path, s: Scale) -> dict[str, Any]:
    nbytes = s.series * s.points * 4
    source = make_data(s.series, s.points)
    destination = np.empty_like(source)
    destination.fill(0)  # touch every page: measure copying, not first touch
    copies = []
    for _ in range(s.repeat):
        t0 = time.perf_counter()
        np.copyto(destination, source)
        copies.append(time.perf_counter() - t0)
    del destination
    write = statistics.median(disk_write_fsync(base, nbytes) for _ in range(3))
    path = base / "read.bin"
    with open(path, "wb") as f:
        for row in source:
            f.write(row.tobytes())
    cold, cached, still = [], [], []
    for _ in range(3):
        still.append(drop_cache(path))
        cold.append(read_file(path))
        cached.append(read_file(path))
    path.unlink()
    fd = os.open(base / "sync.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    page = os.urandom(4096)
    syncs = []
    try:
        for _ in range(50 * s.repeat):
            os.write(fd, page)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            syncs.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        (base / "sync.bin").unlink()
    ticks = min(s.ticks, 200)
    tick = statistics.median(bare_ticks(base, s.tick_series, ticks) for _ in range(3)) / ticks
    return {
        "bytes": nbytes,
        "memcpy": nbytes / statistics.median(copies),
        "write_fsync": nbytes / write,
        "read_cold": nbytes / statistics.median(cold),
        "read_cached": nbytes / statistics.median(cached),
        "cold_resident": max(still),
        "fdatasync_p50": float(np.percentile(syncs, 50)),
        "fdatasync_p99": float(np.percentile(syncs, 99)),
        "fdatasyncs": len(syncs),
        "bare_tick": tick,
        "bare_tick_bytes": s.tick_series * 8 + 40,
    }


def machine(base: Path, python_for: dict[str, str], probes: dict[str, dict[str, Any]]) -> str:
    import metricstore
    import metricstore._core

    cpu = "unknown CPU"
    virtual = False
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and " hypervisor" in line:
            virtual = True
    meminfo = Path("/proc/meminfo").read_text().split()
    ram = int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024
    mount = ("?", "?", "?")
    where = str(base.resolve())
    best = -1
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fstype, options = line.split()[:4]
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, mount = len(point), (device, fstype, options)
    disk = Path(mount[0]).name
    rotational = Path(f"/sys/block/{disk}/queue/rotational")
    kind = "" if not rotational.exists() else (
        f" (the kernel reports rotational={rotational.read_text().strip()})"
    )  # fmt: skip
    extension = Path(metricstore._core.__file__)
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(extension.stat().st_mtime))
    versions: dict[str, str] = {"numpy": np.__version__}
    for probe in probes.values():
        versions.update(probe.get("versions", {}))
    versions.pop("sqlite3", None)
    sqlite = probes.get("sqlite", {}).get("versions", {}).get("sqlite3")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    packages = ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("pandas",))
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} cores{' (virtual machine)' if virtual else ''}; "
        f"RAM {ram / 2**30:.1f} GiB; kernel {platform.release()}",
        f"- Disk: `{mount[0]}`{kind}, {mount[1]} ({mount[2]}), data in `{where}`",
        f"- Python {platform.python_version()}; {packages}; SQLite library {sqlite}; "
        f"metricstore from `{Path(metricstore.__file__).parent}` (tree at {commit or '?'}, "
        f"extension built {built})",
    ]
    arctic = probes.get("arcticdb", {})
    if arctic.get("ok"):
        interpreter = python_for.get("arcticdb", sys.executable)
        pandas = arctic["versions"].get("pandas")
        lines.append(
            f"- ArcticDB ran under `{interpreter}` (Python {arctic.get('python')}, pandas {pandas})"
        )
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    if load[1] > 0.5 * cores:
        lines.append(
            f"- **The machine was busy** (5-minute load average {load[1]:.2f} on {cores} "
            "cores): expect noise, most of all in p99 latencies and in short loops."
        )
    lines.append(
        f"- Load average when the run started: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)"
    )
    return "\n".join(lines)


class Runner:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.python_for = {"arcticdb": args.arcticdb_python} if args.arcticdb_python else {}
        self.missing: dict[str, str] = {}

    def run(self, tool: str, workload: str, variant: str = "", path: Path | None = None) -> dict:
        if tool in self.missing:
            return {"ok": False, "skipped": True}
        python = self.python_for.get(tool, sys.executable)
        command = [python, __file__, "--child", tool, workload, "--scale", self.args.scale,
                   "--variant", variant, "--dir", str(path or self.base)]  # fmt: skip
        label = f"{workload} {tool}{' ' + variant if variant else ''}"
        print(f"  {label:36}", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.args.timeout
            )
        except subprocess.TimeoutExpired:
            print("timed out")
            return {"ok": False, "error": f"timed out after {self.args.timeout} s"}
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"FAILED: {error}")
            return {"ok": False, "error": error}
        out = json.loads(lines[-1])
        print(f"{time.perf_counter() - t0:6.1f} s {'' if out.get('ok', True) else 'CHECK FAILED'}")
        return out

    def probe(self) -> dict[str, dict[str, Any]]:
        probes = {}
        for tool in PEERS:
            out = self.run(tool, "probe")
            probes[tool] = out
            if not out.get("ok"):
                why = out.get("missing") or out.get("error", "?")
                self.missing[tool] = why
                print(f"  skipping {tool}: {why}")
        return probes

    def path(self, *parts: str) -> Path:
        path = self.base.joinpath(*parts)
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


BULK = [("metricstore", "none"), ("metricstore", "interval"), ("metricstore", "always"),
        ("numpy-memory", ""), ("numpy-files", ""), ("parquet", ""), ("duckdb", ""),
        ("arcticdb", ""), ("sqlite", "FULL")]  # fmt: skip
TICKS = [("metricstore", "always"), ("metricstore", "interval"), ("metricstore", "none"),
         ("numpy-memory", ""), ("parquet", ""), ("duckdb", ""), ("arcticdb", ""),
         ("sqlite", "FULL"), ("sqlite", "NORMAL")]  # fmt: skip
READS = ["metricstore", "numpy-memory", "numpy-files", "parquet", "duckdb", "arcticdb", "sqlite"]
COLD = ["metricstore", "numpy-files", "parquet", "duckdb", "arcticdb", "sqlite"]
AGG = ["metricstore", "numpy-memory", "numpy-files", "parquet", "duckdb", "arcticdb", "sqlite"]
STORED = {"metricstore": "metricstore-interval", "numpy-memory": "numpy-files"}  # whose W1 data


def run_all(runner: Runner, s: Scale) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print("W1 bulk load")
    for tool, variant in BULK:
        name = f"{tool}-{variant}" if tool == "metricstore" else tool
        results[f"bulk {tool} {variant}"] = runner.run(
            tool, "bulk", variant, runner.path(name, "bulk")
        )
    print("W2 collector ticks")
    for tool, variant in TICKS:
        results[f"ticks {tool} {variant}"] = runner.run(
            tool, "ticks", variant, runner.path(f"{tool}-{variant}", "ticks")
        )
    print("W3 range reads")
    for tool in READS:
        stored = runner.base / STORED.get(tool, tool) / "bulk"
        results[f"reads {tool}"] = runner.run(tool, "reads", "", stored)
    print("W4 cold open (page cache dropped), then the same warm")
    for tool in COLD:
        stored = runner.base / STORED.get(tool, tool) / "bulk"
        if stored.exists():
            still = drop_cache(stored)
            out = runner.run(tool, "cold", "", stored)
            out["resident"] = still
            results[f"cold {tool}"] = out
            results[f"warm {tool}"] = runner.run(tool, "cold", "", stored)
    print("W6 aggregation")
    for tool in AGG:
        results[f"agg {tool}"] = runner.run(tool, "agg", "", runner.path(tool, "agg"))
    return results


# -- the page ----------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if 0 < abs(x) < 0.01:
        return f"{x:.2g}"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:,.1f}"
    return f"{x:.{digits}f}"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else fmt(seconds * 1e3, 3 if seconds < 1e-3 else 2)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def status(out: dict[str, Any]) -> str | None:
    """Why a result does not count, or None if it does."""
    if not out:
        return "did not run"
    if out.get("skipped"):
        return "not installed"
    if "error" in out and not out.get("ok"):
        return f"failed: {out['error'][:80]}"
    if not out.get("ok", True):
        return "values did not match: not counted"
    return None


def partial(out: dict[str, Any]) -> str:
    done, total = out.get("done"), out.get("total")
    return "" if done is None or done >= total else f" ({done:,.0f} of {total:,}: time budget)"


class Page:
    def __init__(self, s: Scale, results: dict[str, Any], limits: dict[str, Any]) -> None:
        self.s = s
        self.r = results
        self.limits = limits
        self.lines: list[str] = []
        self.behind: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def ratio(self, value: float | None, reference: float | None) -> str:
        if value is None or not reference:
            return "-"
        return fmt(value / reference)

    def ahead(
        self,
        workload: str,
        figure: str,
        ms_value: float,
        rows: dict[str, float],
        why: Callable[[], str],
    ) -> None:
        """Records every peer that beat metricstore on `figure` (higher is
        better) and `why()`: the explanation from this run's measurements."""
        better = {k: v for k, v in rows.items() if v > ms_value}
        if better:
            names = ", ".join(f"{k} ({v / ms_value:.2f}x)" for k, v in better.items())
            self.behind.append(f"**{workload}, {figure}**: {names}. {why()}")

    def bulk(self) -> None:
        s, lim = self.s, self.limits
        samples = s.series * s.points
        gb = samples * 4 / 1e9
        self.add(
            f"## W1 bulk load: {s.series:,} series x {s.points:,} points ({gb:.2f} GB)",
            "",
            "One call per series, then a durability barrier: metricstore `open(dir, sync=...)`, "
            "`write` per series, `flush()`; NumPy and Parquet write every file, then fsync each "
            "file and the directory; DuckDB inserts Arrow tables in one transaction and commits; "
            "SQLite `executemany` per series in one transaction, `synchronous=FULL`; ArcticDB "
            "`write` per symbol (LMDB syncs each commit). One run per tool. GB/s counts the "
            "float32 payload. Ratio: tool's durable GB/s / metricstore's (sync=interval); "
            "above 1.00 the tool is faster. Checked: W4 reads every series back bit-exact.",
            "",
        )
        reference = self.r.get("bulk metricstore interval", {})
        ref_rate = gb / reference["durable"] if "durable" in reference else None
        rows = [
            ["limit: memcpy (np.copyto, warm destination)", fmt(lim["memcpy"] / 1e9), "-", "-",
             "-", self.ratio(lim["memcpy"] / 1e9, ref_rate)],
            ["limit: sequential write + fsync", fmt(lim["write_fsync"] / 1e9), "-", "-", "-",
             self.ratio(lim["write_fsync"] / 1e9, ref_rate)],
        ]  # fmt: skip
        peers = {}
        for tool, variant in BULK:
            out = self.r.get(f"bulk {tool} {variant}", {})
            label = f"{tool} sync={variant}" if tool == "metricstore" else tool
            if tool == "sqlite":
                label += " (synchronous=FULL)"
            problem = status(out)
            if not problem and "ok" not in out:  # checked when W4 read it back
                cold = status(self.r.get(f"cold {tool}", {"ok": False, "error": "no W4 run"}))
                problem = cold and f"not checked (W4 {cold})"
            if problem:
                rows.append([label, problem, "", "", "", ""])
                continue
            durable = out["durable"] if out.get("durable") is not None else None
            in_memory = tool == "numpy-memory"
            rate = gb / (out["written"] if in_memory else durable)
            rows.append([
                label + (" (in memory, not durable)" if in_memory else ""),
                fmt(rate),
                fmt(out["written"]),
                "-" if in_memory else fmt(durable),
                fmt(out.get("close")),
                self.ratio(rate, ref_rate),
            ])  # fmt: skip
            if tool != "metricstore" and not in_memory:
                peers[tool] = rate
        self.add(*table(["tool", "durable GB/s", "written s", "durable s", "close s",
                         "ratio"], rows))  # fmt: skip
        if ref_rate:
            self.add(
                f"metricstore (sync=interval) reaches {ref_rate / (lim['write_fsync'] / 1e9):.2f}"
                f" of the disk's sequential write+fsync bandwidth and "
                f"{ref_rate / (lim['memcpy'] / 1e9):.2f} of memcpy. `close s` for metricstore "
                "writes the snapshot that W4 opens.",
                "",
            )
            out = reference
            self.ahead(
                "W1",
                "durable GB/s",
                ref_rate,
                peers,
                lambda: (
                    f"metricstore took {fmt(out['written'])} s to log and apply the writes "
                    f"and {fmt(out['durable'] - out['written'])} s for the final fsync; the "
                    f"disk alone writes and syncs the same {gb:.2f} GB in "
                    f"{fmt(gb / (lim['write_fsync'] / 1e9))} s."
                ),
            )

    def ticks(self) -> None:
        s, lim = self.s, self.limits
        self.add(
            f"## W2 collector ticks: {s.tick_series:,} series x {s.ticks:,} ticks",
            "",
            "One batch (one value per series) per tick, one commit per tick; the clock stops "
            "after a final durability barrier. metricstore `write_tick` with handles; Parquet "
            "one file per tick, fsync of file and directory; DuckDB one autocommitted Arrow "
            "insert per tick; SQLite one `executemany` transaction per tick; ArcticDB one "
            "`append_batch` (one row per symbol) per tick; NumPy assigns a column of a "
            "series-major array. Ratio: tool's ticks/s / metricstore's in the same durability "
            f"class. Checked: {CHECK_SERIES} series read back bit-exact.",
            "",
        )
        durable_ref = self.r.get("ticks metricstore always", {}).get("rate")
        ahead_durable: dict[str, float] = {}
        rows = [
            [
                "limit: append a tick's bytes + fdatasync",
                "fdatasync per tick",
                fmt(1 / lim["bare_tick"]),
                ms(lim["bare_tick"]),
                "-",
                self.ratio(1 / lim["bare_tick"], durable_ref),
            ]
        ]
        durability = {
            ("metricstore", "always"): "fdatasync per tick",
            ("metricstore", "interval"): "fdatasync every 200 ms",
            ("metricstore", "none"): "only at flush",
            ("numpy-memory", ""): "none (memory)",
            ("parquet", ""): "fsync per tick",
            ("duckdb", ""): "fsync per commit",
            ("arcticdb", ""): "LMDB sync per commit",
            ("sqlite", "FULL"): "fsync per commit (FULL)",
            ("sqlite", "NORMAL"): "at WAL checkpoints (NORMAL)",
        }
        lazy_ref = self.r.get("ticks metricstore interval", {}).get("rate")
        scaled: list[str] = []
        for tool, variant in TICKS:
            out = self.r.get(f"ticks {tool} {variant}", {})
            label = f"{tool} sync={variant}" if tool == "metricstore" else tool
            problem = status(out)
            if problem:
                rows.append([label, durability[(tool, variant)], problem, "", "", ""])
                continue
            per_tick = durability[(tool, variant)]
            durable_each = "per tick" in per_tick or "per commit" in per_tick
            reference = durable_ref if durable_each else lazy_ref
            written = out.get("series_per_tick", s.tick_series)
            if written < s.tick_series:
                label += f" ({written:,} series per tick, scaled)"
                scaled.append(tool)
            rows.append([
                label + partial(out), per_tick, fmt(out["rate"]), ms(out["p50"]), ms(out["p99"]),
                self.ratio(out["rate"], reference),
            ])  # fmt: skip
            if tool != "metricstore" and durable_each:
                ahead_durable[tool] = out["rate"]
        self.add(*table(["tool", "durable when", "ticks/s", "p50 ms", "p99 ms", "ratio"], rows))
        if scaled:
            self.add(
                f"{', '.join(scaled)}: one tick of all {s.tick_series:,} series takes minutes "
                "(every symbol append is its own LMDB commit), so each tick appended to fewer "
                f"symbols and ticks/s and latencies are scaled to {s.tick_series:,} series per "
                "tick (the time per symbol append does not depend on the batch size).",
                "",
            )
        if durable_ref:
            self.add(
                f"metricstore sync=always reaches {durable_ref * lim['bare_tick']:.2f} of the "
                "bare append+fdatasync loop. Ratios of tools that are not durable per tick are "
                "against metricstore sync=interval.",
                "",
            )
            always = self.r["ticks metricstore always"]
            self.ahead(
                "W2",
                "durable ticks/s",
                durable_ref,
                ahead_durable,
                lambda: (
                    f"metricstore sync=always spends p50 {ms(always['p50'])} ms per tick; "
                    f"one fdatasync alone takes p50 {ms(lim['fdatasync_p50'])} ms here."
                ),
            )
        lazy = {
            f"{t} {v}".strip(): self.r[f"ticks {t} {v}"]["rate"]
            for t, v in TICKS
            if t != "metricstore"
            and "per" not in durability[(t, v)]
            and status(self.r.get(f"ticks {t} {v}", {})) is None
        }
        if lazy_ref:
            self.ahead("W2", "ticks/s without a sync per tick", lazy_ref, lazy, self.ticks_why)

    def ticks_why(self) -> str:
        none = self.r.get("ticks metricstore none", {})
        numpy = self.r.get("ticks numpy-memory ", {})
        text = (
            "NumPy keeps no log and no per-series structure: a column assignment costs p50 "
            f"{ms(numpy.get('p50'))} ms per tick."
        )
        if "memory_p50" in none:
            logged = 1 - none["memory_p50"] / none["p50"]
            text += (
                f" metricstore sync=none spends p50 {ms(none['p50'])} ms per tick; the same "
                f"ticks into an in-memory `metricstore.Store()` (no log) take p50 "
                f"{ms(none['memory_p50'])} ms, so about {logged:.0%} of a tick is the log "
                f"record ({none['record_bytes']:,} bytes to write(2)) and the rest is applying "
                f"{self.s.tick_series:,} values to {self.s.tick_series:,} series."
            )
        return text

    def reads(self) -> None:
        s = self.s
        self.add(
            f"## W3 range reads: {s.queries:,} random {s.window:,}-point windows",
            "",
            "From a reopened store (W1's data): metricstore `open(dir, readonly=True)` and "
            "`read(handle, start, stop)`; NumPy in memory: W1's files loaded whole, slice + copy; "
            "NumPy files: `np.load(mmap_mode='r')` per query, slice + copy; Parquet "
            "`read_table` with a ts filter; DuckDB and SQLite a `WHERE series = ? AND ts >= ? "
            "AND ts < ?` query; ArcticDB `read(date_range=...)`. One Python thread. Median of "
            f"{s.repeat} runs (fewer if a run hits the time budget); every result of every run "
            "is checked bit-exact. Ratio: tool's queries/s / metricstore's.",
            "",
        )
        ref = self.r.get("reads metricstore", {})
        ref_rate = ref.get("rate") if status(ref) is None else None
        rows, peers = [], {}
        for tool in READS:
            out = self.r.get(f"reads {tool}", {})
            problem = status(out)
            if problem:
                rows.append([tool, problem, "", "", "", ""])
                continue
            rows.append([tool + partial(out), fmt(out["rate"]), ms(out["p50"]), ms(out["p99"]),
                         str(out["runs"]), self.ratio(out["rate"], ref_rate)])  # fmt: skip
            if tool != "metricstore":
                peers[tool] = out["rate"]
        self.add(*table(["tool", "queries/s", "p50 ms", "p99 ms", "runs", "ratio"], rows))
        if ref_rate and "core_rate" in ref:
            self.add(
                f"The same queries through the compiled core directly (`store._core.read`, "
                f"skipping the Python wrapper): {fmt(ref['core_rate'])} queries/s.",
                "",
            )
            numpy = self.r.get("reads numpy-memory", {})
            self.ahead(
                "W3",
                "queries/s",
                ref_rate,
                peers,
                lambda: (
                    f"Slicing an array already in memory is the floor (p50 "
                    f"{ms(numpy.get('p50'))} ms against metricstore's {ms(ref['p50'])} ms). "
                    f"{1 - ref_rate / ref['core_rate']:.0%} of metricstore's time per read is "
                    "the Python wrapper (`Store.read` with its `ReadResult`: "
                    f"{fmt(ref_rate)}/s, the compiled call alone {fmt(ref['core_rate'])}/s); "
                    "the rest is the call into the extension, the walk over the series' "
                    "chunks and the new array."
                ),
            )

    def cold(self) -> None:
        s, lim = self.s, self.limits
        gb = s.series * s.points * 4 / 1e9
        self.add(
            f"## W4 cold open: a fresh process opens W1's data and reads all {s.series:,} series",
            "",
            "Before the cold run the parent asks the kernel to drop every file of the tool's "
            "data from the page cache (`posix_fadvise(DONTNEED)`; `resident` is what `mincore` "
            "still found cached afterwards; a hypervisor may cache below the guest, which "
            "would make a cold read faster than the disk). The warm run follows at once. "
            "Seconds from open to the last series read (imports excluded, listed apart); "
            "first query: open plus the first series. Every series is checked bit-exact. "
            "Ratio: tool's GB/s / metricstore's.",
            "",
        )
        rows = [
            ["limit: sequential read, page cache dropped", "-", fmt(lim["read_cold"] / 1e9),
             "-", "-", f"{lim['cold_resident']:.0%}", "-"],
            ["limit: sequential read, page cache", "-", fmt(lim["read_cached"] / 1e9), "-", "-",
             "-", "-"],
        ]  # fmt: skip
        refs = {}
        for mode in ("cold", "warm"):
            ref = self.r.get(f"{mode} metricstore", {})
            refs[mode] = gb / ref["seconds"] if status(ref) is None and "seconds" in ref else None
        peers: dict[str, float] = {}
        first_better: dict[str, float] = {}
        for tool in COLD:
            for mode in ("cold", "warm"):
                out = self.r.get(f"{mode} {tool}", {})
                problem = status(out)
                if problem:
                    rows.append([f"{tool}, {mode}", problem, "", "", "", "", ""])
                    continue
                rate = gb * out["done"] / out["total"] / out["seconds"]
                resident = f"{out['resident']:.0%}" if "resident" in out else "-"
                rows.append([f"{tool}, {mode}{partial(out)}", fmt(out["seconds"]), fmt(rate),
                             ms(out["first"]), fmt(out["imports"]), resident,
                             self.ratio(rate, refs[mode])])  # fmt: skip
                ref = self.r.get(f"{mode} metricstore", {})
                if tool != "metricstore" and mode == "cold":
                    peers[tool] = rate
                    if ref.get("first") and out["first"] < ref["first"]:
                        first_better[tool] = ref["first"] / out["first"]
        self.add(*table(["tool", "seconds", "GB/s", "first query ms", "imports s",
                         "resident", "ratio"], rows))  # fmt: skip
        if refs["cold"]:
            self.add(
                f"metricstore cold reaches {refs['cold'] / (lim['read_cold'] / 1e9):.2f} of the "
                "dropped-cache sequential read bandwidth"
                + (
                    f", warm {refs['warm'] / (lim['read_cached'] / 1e9):.2f} of the cached one."
                    if refs["warm"]
                    else "."
                ),
                "",
            )
            cold = self.r["cold metricstore"]
            self.ahead(
                "W4",
                "cold GB/s",
                refs["cold"],
                peers,
                lambda: (
                    f"metricstore's open took {fmt(cold['open'])} s of {fmt(cold['seconds'])} "
                    "s: a read-only open reads the snapshot's catalog and index, then each "
                    "series' chunks (mapped) as it is read, decoding them."
                ),
            )
            if first_better:
                self.ahead(
                    "W4",
                    "time to first query (as speed: 1/time)",
                    1.0,
                    first_better,
                    lambda: (
                        f"metricstore answers its first query after {ms(cold['first'])} ms "
                        f"(open {ms(cold['open'])} ms): a read-only open reads the "
                        "snapshot's header, catalog and whole index (the place of every "
                        "chunk) before its first answer, where a file per series needs one "
                        "file opened; the series' chunks are then read from the mapped file "
                        "and decoded."
                    ),
                )

    def memory(self) -> None:
        s = self.s
        samples = s.series * s.points
        self.add(
            "## W5 memory: peak resident bytes per stored sample",
            "",
            "Peak resident set of the W1 and W4 processes above, minus their resident set "
            "after imports and after generating the input data, divided by the "
            f"{samples:,} samples. The peak is the kernel's high-water mark (`VmHWM`, reset "
            "through `/proc/self/clear_refs` at the baseline): `ru_maxrss` would do, but a "
            "child started by `subprocess` (vfork) inherits the parent's peak in it. A store "
            "that keeps the data in memory needs 4 B/sample; one that reads from disk on "
            "demand needs little. Ratio: tool / metricstore (lower is less memory).",
            "",
        )
        rows = []
        ms_load = self.r.get("bulk metricstore interval", {}).get("peak_bytes")
        ms_open = self.r.get("cold metricstore", {}).get("peak_bytes")
        for tool, variant in BULK:
            if tool == "metricstore" and variant != "interval":
                continue
            load = self.r.get(f"bulk {tool} {variant}", {})
            opened = self.r.get(f"cold {tool}", {})
            w1 = load.get("peak_bytes") if status(load) is None else None
            w4 = opened.get("peak_bytes") if status(opened) is None else None
            after = opened.get("after_bytes") if status(opened) is None else None
            rows.append([
                tool,
                "-" if w1 is None else fmt(w1 / samples),
                "-" if w4 is None else fmt(w4 / samples),
                "-" if after is None else fmt(after / samples),
                self.ratio(w1, ms_load),
                self.ratio(w4, ms_open),
            ])  # fmt: skip
        header = ["tool", "W1 peak", "W4 peak", "W4 at the end", "W1 ratio", "W4 ratio"]
        self.add(*table(header, rows))
        cold = self.r.get("cold metricstore", {})
        if ms_open and status(cold) is None:
            peers = {
                tool: ms_open / self.r[f"cold {tool}"]["peak_bytes"]
                for tool in COLD
                if tool != "metricstore"
                and status(self.r.get(f"cold {tool}", {})) is None
                and self.r[f"cold {tool}"]["peak_bytes"] > 0
            }
            self.ahead(
                "W5",
                "peak memory after opening and reading every series (as metricstore's "
                "peak / the tool's)",
                1.0,
                peers,
                lambda: (
                    "A read-only metricstore maps its snapshot: every chunk it has read "
                    "stays resident as a mapped page of the file (compressed; W1's uniform "
                    "random values barely compress), pages the kernel can take back under "
                    "pressure; peers that read from files keep about one series at a time."
                    + (
                        f" Its peak ({fmt(ms_open / samples)} B/sample) is above what stays "
                        f"resident at the end ({fmt(cold['after_bytes'] / samples)}): while "
                        "it loads, the memory-mapped snapshot file counts as resident next to "
                        "the chunks being filled."
                        if ms_open > 1.2 * cold["after_bytes"]
                        else ""
                    )
                ),
            )

    def agg(self) -> None:
        s = self.s
        self.add(
            f"## W6 aggregation: sum over {CHILDREN} children for {s.windows:,} windows of "
            f"{s.window:,} points",
            "",
            f"{CHILDREN} series of {s.agg_points:,} points, about 1% missing (NaN), under one "
            'node. metricstore: metric defined with `aggregation="sum"`, children stored at '
            '`node/cNN`, the query reads `(metric, "node")`. NumPy: `np.nansum` in float64 '
            "over a 2-D slice (in memory, or of 64 memory-mapped files); Parquet: the window "
            "of 64 files, then the same sum; DuckDB and SQLite: `SUM(value) ... GROUP BY ts` "
            "(missing stored as NULL; SQLite with `series IN (...)` so its (series, ts) key "
            "serves the range); ArcticDB: `read_batch` of 64 symbols, then the NumPy sum. "
            "Checked bit-exact against a float64 sum that skips NaN, rounded once to float32 "
            "(what metricstore promises); the data are multiples of 2^-24, so every float64 "
            "summation order is exact and the check is about values, not order. Median of "
            f"{s.repeat} runs; load s is the untimed setup. Ratio: tool's windows/s / "
            "metricstore's.",
            "",
        )
        ref = self.r.get("agg metricstore", {})
        ref_rate = ref.get("rate") if status(ref) is None else None
        rows, peers = [], {}
        for tool in AGG:
            out = self.r.get(f"agg {tool}", {})
            problem = status(out)
            if problem:
                rows.append([tool, problem, "", "", "", "", ""])
                continue
            rows.append([tool + partial(out), fmt(out["rate"]), ms(out["p50"]), ms(out["p99"]),
                         str(out["runs"]), fmt(out["load"]),
                         self.ratio(out["rate"], ref_rate)])  # fmt: skip
            if tool != "metricstore":
                peers[tool] = out["rate"]
        self.add(*table(["tool", "windows/s", "p50 ms", "p99 ms", "runs", "load s", "ratio"], rows))
        if ref_rate:
            numpy = self.r.get("agg numpy-memory", {})

            def why() -> str:
                text = (
                    f"metricstore p50 {ms(ref['p50'])} ms per window (p99 {ms(ref['p99'])}) "
                    f"against NumPy's p50 {ms(numpy.get('p50'))} ms (p99 "
                    f"{ms(numpy.get('p99'))}) on a 2-D array already in memory."
                )
                if numpy.get("p50") and ref["p50"] <= numpy["p50"]:
                    text += (
                        " By the median metricstore is as fast or faster; its windows/s "
                        "(the mean) is lower because of its slow outliers. The node read "
                        "runs on the calling thread, so these are the scheduler's doing when "
                        "the machine is busy, not work metricstore does."
                    )
                else:
                    text += (
                        f" A node read sums {CHILDREN} x {self.s.window:,} values straight "
                        "from the children's chunks in float64, with a count per slot to "
                        "tell missing from zero, one child at a time under its lock."
                    )
                return text

            self.ahead("W6", "windows/s", ref_rate, peers, why)


def render(
    s: Scale,
    scale: str,
    results: dict[str, Any],
    limits: dict[str, Any],
    machine_lines: str,
    missing: dict[str, str],
    command: str,
    seconds: float,
) -> str:
    page = Page(s, results, limits)
    page.add(
        "# Benchmarks against peers",
        "",
        "Generated by `benchmarks/peers.py`; do not edit by hand. Regenerate with:",
        "",
        f"    {command}",
        "",
        f"Scale `{scale}`; the whole run took {seconds / 60:.1f} minutes. Each workload of each "
        "tool ran in its own fresh process; float32 values on a 10-second grid, seeded. "
        f"A timed loop stops after {s.budget:.0f} s (the row then says how much it did).",
        "",
        machine_lines,
        "",
    )
    for tool, why in missing.items():
        hint = "; it needs pandas < 3: see `--arcticdb-python`" if tool == "arcticdb" else ""
        page.add(f"- **{tool} was skipped**: not importable here ({why}){hint}.")
    if missing:
        page.add("")
    page.add(
        "## Machine limits (same run)",
        "",
        f"Over {limits['bytes'] / 1e6:,.0f} MB (W1's size): memcpy "
        f"{fmt(limits['memcpy'] / 1e9)} GB/s (median of {s.repeat}); sequential write + fsync "
        f"{fmt(limits['write_fsync'] / 1e9)} GB/s, read with the page cache dropped "
        f"{fmt(limits['read_cold'] / 1e9)} GB/s ({limits['cold_resident']:.0%} still resident "
        f"after `posix_fadvise(DONTNEED)`, by `mincore`), read from the page cache "
        f"{fmt(limits['read_cached'] / 1e9)} GB/s (medians of 3). fdatasync after a 4 KiB "
        f"append: p50 {ms(limits['fdatasync_p50'])} ms, p99 {ms(limits['fdatasync_p99'])} ms "
        f"({limits['fdatasyncs']} syncs); a tick's {limits['bare_tick_bytes']:,} bytes + "
        f"fdatasync: {ms(limits['bare_tick'])} ms.",
        "",
    )
    page.bulk()
    page.ticks()
    page.reads()
    page.cold()
    page.memory()
    page.agg()
    page.add(
        "## Where metricstore is not ahead",
        "",
        "Every peer that beat metricstore on a workload's main figure, by how much, and why "
        "(from figures measured in this run):",
        "",
    )
    page.add(*(f"- {line}" for line in page.behind) if page.behind else ["- Nowhere in this run."])
    return "\n".join(page.lines).rstrip() + "\n"


# Sections other benchmarks write by hand into the page; a run carries them over.
KEPT_HEADINGS = ("## cc-backend's checkpoint files", "## Compressed chunks and the first query")


def kept_sections(page: str, old: Path) -> str:
    """``page`` with the sections of ``old`` whose heading starts with one of
    KEPT_HEADINGS appended (each to the next heading of its level)."""
    if not old.exists():
        return page
    kept: list[str] = []
    keeping = False
    for line in old.read_text().splitlines():
        if line.startswith("## "):
            keeping = line.startswith(KEPT_HEADINGS)
        if keeping:
            kept.append(line)
    return page if not kept else page + "\n" + "\n".join(kept).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--dir", type=Path, default=None, help="benchmark data (a real disk)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--arcticdb-python", help="interpreter with arcticdb (pandas < 3)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    started = time.perf_counter()
    s = SCALES[args.scale]
    base = args.dir or Path(tempfile.mkdtemp(prefix="metricstore-peers-"))
    base = base / "peers"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    runner = Runner(args, base)
    print(f"scale {args.scale}: {asdict(s)}; data in {base}")
    probes = runner.probe()
    machine_lines = machine(base, runner.python_for, probes)
    print(machine_lines)
    print("machine limits")
    limits = measure_limits(base, s)
    results = run_all(runner, s)
    command = "python benchmarks/peers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    page = render(
        s, args.scale, results, limits, machine_lines, runner.missing, command,
        time.perf_counter() - started,
    )  # fmt: skip
    args.out.write_text(kept_sections(page, args.out))
    print("\n" + page)
    print(f"wrote {args.out}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
