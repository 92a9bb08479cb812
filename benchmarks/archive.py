"""Archive benchmark: the Parquet archive's bytes, write speed and a DuckDB
query, next to cc-backend's one-file Parquet export and the store itself,
measured in one run.

- emmy: the real job (288 series of 60 s metrics, gaps included) archived
  with ``archive.write``; bytes per present (archived) sample, split into
  keys, timestamps and frequency (every column but ``value``) and values.
  Next to it ``ccbackend.export_parquet`` (cc-backend's file: zstd, no
  chosen encodings) of the same store.
- cluster: --hosts hosts x --metrics node metrics at 10 s for --days days,
  random walks rounded to 2 decimals (what collectors send); ``archive.write``
  in samples per second on one thread (the store's reads included),
  against ``export_parquet`` of the same data. Then DuckDB (a fresh
  connection, --threads threads) runs plain SQL over
  ``read_parquet('root/**/*.parquet', hive_partitioning = true)`` for one
  metric over one day of all hosts, fetching hostname, timestamp and value
  into NumPy; next to it ``archive.scan(...).to_xarray()`` (the same day as
  a (host, time) grid) and ``store.read_many`` of the same from memory.

Targets (issue 18): keys, timestamps and frequency at most 0.2 B/sample;
the emmy job's archive at most 2.5 B/sample; writing at least 5 M
samples/s per core; the DuckDB query under 1 s on 2 cores. Each time is
the median of --repeat runs.

    python benchmarks/archive.py --dir /path/on/the/disk   # about a minute
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

import metricstore
from metricstore import archive, ccbackend
from metricstore.demo import EMMY_JOB

DAY = archive.DAY
T0 = 18_600 * DAY


def column_bytes(files: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Compressed bytes of each column over ``files``."""
    sizes: dict[str, int] = {}
    for file in files:
        metadata = pq.ParquetFile(file).metadata
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                sizes[column.path_in_schema] = (
                    sizes.get(column.path_in_schema, 0) + column.total_compressed_size
                )
    return sizes


def median_time(run: object, repeat: int) -> tuple[float, float]:
    """Median wall and CPU (this process, all threads) seconds of ``run()``."""
    times, cpu = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return statistics.median(times), statistics.median(cpu)


def emmy(base: Path) -> dict[str, float]:
    store = metricstore.Store()
    job = ccbackend.load_job(EMMY_JOB, store)
    root = base / "emmy-archive"
    shutil.rmtree(root, ignore_errors=True)
    report = archive.write(store, root)
    sizes = column_bytes(report.files)
    keys = sum(n for name, n in sizes.items() if name != "value")
    single = ccbackend.export_parquet(store, base / "emmy.parquet")
    return {
        "samples": job.samples,
        "archive": report.bytes / job.samples,
        "keys": keys / job.samples,
        "values": sizes["value"] / job.samples,
        "footers": (report.bytes - sum(sizes.values())) / job.samples,
        "files": len(report.files),
        "export": single.bytes / job.samples,
    }


def cluster_store(hosts: int, metrics: int, days: int) -> metricstore.Store:
    rng = np.random.default_rng(18)
    store = metricstore.Store()
    slots = days * DAY // 10
    for m in range(metrics):
        store.define_metric(f"m{m}", 10, "avg")
        for h in range(hosts):
            walk = np.cumsum(rng.standard_normal(slots)).astype(np.float32) + 100
            store.write((f"m{m}", ("emmy", f"e{h:04}")), T0, np.round(walk, 2))
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--metrics", type=int, default=4)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="archive-bench-"))
    base.mkdir(parents=True, exist_ok=True)

    e = emmy(base)
    print(f"## emmy job ({e['samples']:,.0f} archived samples, {e['files']:.0f} files)")
    print(f"archive:                       {e['archive']:.3f} B/sample (target <= 2.5)")
    print(f"  keys, timestamps, frequency: {e['keys']:.3f} B/sample (target <= 0.2)")
    print(f"  values:                      {e['values']:.3f} B/sample")
    print(f"  footers and page indexes:    {e['footers']:.3f} B/sample")
    print(
        f"cc-backend one-file export:    {e['export']:.3f} B/sample "
        f"(archive / export: {e['archive'] / e['export']:.2f})"
    )

    store = cluster_store(args.hosts, args.metrics, args.days)
    samples = args.hosts * args.metrics * args.days * DAY // 10
    root = base / "cluster-archive"

    def write_archive() -> None:
        shutil.rmtree(root, ignore_errors=True)
        archive.write(store, root, until=T0 + args.days * DAY)

    def write_export() -> None:
        ccbackend.export_parquet(store, base / "cluster.parquet")

    archive_s, archive_cpu = median_time(write_archive, args.repeat)
    export_s, _ = median_time(write_export, args.repeat)
    report = archive.write(store, root, until=T0 + args.days * DAY, overwrite=True)
    sizes = column_bytes(report.files)
    keys = sum(n for name, n in sizes.items() if name != "value")
    print(
        f"\n## cluster: {args.hosts} hosts x {args.metrics} metrics x {args.days} days at 10 s "
        f"({samples:,} samples)"
    )
    print(
        f"archive.write:        {samples / archive_s / 1e6:6.2f} M samples/s, "
        f"{samples / archive_cpu / 1e6:.2f} M per CPU second (target >= 5 per core)"
    )
    print(
        f"export_parquet:       {samples / export_s / 1e6:6.2f} M samples/s "
        f"(archive / export: {export_s / archive_s:.2f}x as fast)"
    )
    print(
        f"archive bytes:        {report.bytes / samples:.3f} B/sample, keys, timestamps, "
        f"frequency {keys / samples:.3f} B/sample"
    )

    day = T0 + DAY
    sql = f"""SELECT hostname, timestamp, value
        FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)
        WHERE metric = 'm0' AND day = DATE '{np.datetime64(day, "s").astype("datetime64[D]")}'"""
    rows = 0

    def query() -> None:
        nonlocal rows
        con = duckdb.connect(config={"threads": args.threads})
        rows = len(con.sql(sql).fetchnumpy()["value"])
        con.close()

    def direct() -> None:
        store.read_many([("m0", "emmy/*")], day, day + DAY)

    def grid() -> None:
        archive.scan(root, metric="m0", start=day, stop=day + DAY).to_xarray()

    query_s, _ = median_time(query, args.repeat)
    grid_s, _ = median_time(grid, args.repeat)
    direct_s, _ = median_time(direct, args.repeat)
    print(
        f"\n## DuckDB, one metric x one day x {args.hosts} hosts ({rows:,} rows, "
        f"{args.threads} threads)"
    )
    print(f"plain SQL over the archive: {query_s * 1e3:7.1f} ms (target < 1000)")
    print(f"archive.scan().to_xarray(): {grid_s * 1e3:7.1f} ms (the same day as a grid)")
    print(
        f"store.read_many in memory:  {direct_s * 1e3:7.1f} ms "
        f"(DuckDB / store: {query_s / direct_s:.1f}x)"
    )
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
