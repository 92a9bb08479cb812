"""The Parquet archive (metricstore.archive): finished days in cc-backend's
columns, hive-partitioned, each day whole or absent, read back by every
engine to exactly what the store holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore import archive, ccbackend
from metricstore.demo import EMMY_JOB

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
pytest.importorskip("xarray")

DAY = archive.DAY
D0 = 18_600 * DAY  # 2020-12-04


def bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)


def synthetic(store: metricstore.Store, days: int = 3) -> None:
    """Two clusters; per host a node metric with NaN gaps and a per-cpu metric."""
    rng = np.random.default_rng(7)
    store.define_metric("mem_used", 600, "sum")
    store.define_metric("cpu_load", 300, "avg")
    for cluster in ("emmy", "fritz"):
        for host in ("h02", "h01", "h10"):
            values = rng.standard_normal(days * DAY // 600).astype(np.float32)
            values[rng.random(values.size) < 0.1] = np.nan
            store.write(("mem_used", (cluster, host)), D0, values)
            for cpu in (0, 1, 11, 2):
                load = rng.random(days * DAY // 300 - 5).astype(np.float32)
                store.write(("cpu_load", (cluster, host, f"cpu{cpu}")), D0 + 1500, load)


def test_the_emmy_job_reads_back_bit_for_bit_from_every_engine(tmp_path: Path) -> None:
    store = metricstore.Store()
    job = ccbackend.load_job(EMMY_JOB, store)
    report = archive.write(store, tmp_path / "arc")
    assert report.rows == job.samples
    assert report.days_written == 2 * len(job.metrics) == len(report.files)
    assert report.bytes == sum(os.path.getsize(f) for f in report.files)
    for metric in job.metrics:
        expected = store.read_many([(metric, "emmy/*")])
        grid = archive.scan(tmp_path / "arc", metric=metric).to_xarray()
        assert list(grid.host.values) == [p[1] for _, p in expected.keys]
        assert grid.time.values[0] == np.datetime64(expected.start, "s")
        np.testing.assert_array_equal(bits(grid.values), bits(expected.values))
    # The same rows through Arrow, DuckDB, Polars and Dask.
    selection = archive.scan(tmp_path / "arc", metric="mem_bw", hosts=["e0102", "e0103"])
    table = pa.table(selection).sort_by([("hostname", "ascending"), ("timestamp", "ascending")])
    want = [store.read(("mem_bw", f"emmy/{h}")) for h in ("e0102", "e0103")]
    want_values = np.concatenate([r.values[r.values == r.values] for r in want])
    np.testing.assert_array_equal(bits(table.column("value").to_numpy()), bits(want_values))
    assert table.num_rows == want_values.size
    from_duckdb = selection.to_duckdb(duckdb.connect()).order("hostname, timestamp").fetchnumpy()
    np.testing.assert_array_equal(bits(from_duckdb["value"]), bits(want_values))
    from_polars = selection.to_polars().sort("hostname", "timestamp").collect()
    np.testing.assert_array_equal(bits(from_polars["value"].to_numpy()), bits(want_values))
    from_dask = selection.to_dask().compute(scheduler="synchronous")
    from_dask = from_dask.sort_values(["hostname", "timestamp"])
    np.testing.assert_array_equal(bits(from_dask["value"].to_numpy()), bits(want_values))


def test_plain_duckdb_sql_reads_the_archive_without_metricstore(tmp_path: Path) -> None:
    store = metricstore.Store()
    synthetic(store)
    archive.write(store, tmp_path / "arc", until=D0 + 3 * DAY)
    rows = duckdb.sql(
        f"""SELECT hostname, timestamp, value, frequency
        FROM read_parquet('{tmp_path}/arc/**/*.parquet', hive_partitioning = true)
        WHERE metric = 'mem_used' AND cluster = 'fritz' AND day = DATE '2020-12-05'
        ORDER BY hostname, timestamp"""
    ).fetchnumpy()
    start, stop = D0 + DAY, D0 + 2 * DAY
    expected = store.read_many([("mem_used", "fritz/*")], start, stop)
    present = expected.values == expected.values
    hosts = np.array([p[1] for _, p in expected.keys])
    np.testing.assert_array_equal(rows["hostname"], np.repeat(hosts, present.sum(axis=1)))
    slots = np.nonzero(present)[1]
    np.testing.assert_array_equal(rows["timestamp"], start + 600 * slots)
    np.testing.assert_array_equal(bits(rows["value"]), bits(expected.values[present]))
    assert set(rows["frequency"].tolist()) == {600}


def test_files_are_sorted_and_encoded_for_size(tmp_path: Path) -> None:
    store = metricstore.Store()
    synthetic(store)
    report = archive.write(store, tmp_path, until=D0 + 3 * DAY, clusters=["emmy"])
    assert report.days_written == 6
    file = tmp_path / "cluster=emmy" / "metric=cpu_load" / "day=2020-12-05" / "part-0.parquet"
    assert str(file) in report.files
    table = pq.read_table(file)
    assert table.column_names == [
        "cluster", "hostname", "metric", "scope", "scope_id", "timestamp", "frequency", "value"
    ]  # fmt: skip
    keys = list(
        zip(
            *(table.column(c).to_pylist() for c in ("hostname", "scope", "scope_id", "timestamp")),
            strict=True,
        )
    )
    assert keys == sorted(keys)
    assert set(table.column("scope").to_pylist()) == {"hwthread"}
    assert set(table.column("scope_id").to_pylist()) == {"0", "1", "2", "11"}
    metadata = pq.ParquetFile(file).metadata
    columns = {metadata.schema.column(i).name: metadata.row_group(0).column(i) for i in range(8)}
    assert "DELTA_BINARY_PACKED" in columns["timestamp"].encodings
    assert "BYTE_STREAM_SPLIT" in columns["value"].encodings
    assert "RLE_DICTIONARY" in columns["hostname"].encodings
    assert {c.compression for c in columns.values()} == {"ZSTD"}
    assert all(c.has_column_index and c.has_offset_index for c in columns.values())
    schema = pq.ParquetFile(file).schema
    assert json.loads(schema.column(5).logical_type.to_json()) == {
        "Type": "Int",
        "bitWidth": 64,
        "isSigned": True,
    }
    # Per-cpu grids come back as (host, hwthread, time).
    grid = archive.scan(tmp_path, metric="cpu_load", cluster="emmy").to_xarray(scope="hwthread")
    assert grid.dims == ("host", "hwthread", "time")
    assert list(grid.hwthread.values) == ["0", "1", "2", "11"]
    for h, host in enumerate(("h01", "h02", "h10")):
        for c, cpu in enumerate(("0", "1", "2", "11")):
            expected = store.read(("cpu_load", f"emmy/{host}/cpu{cpu}"))
            np.testing.assert_array_equal(bits(grid.values[h, c]), bits(expected.values))


def test_only_finished_days_are_written_and_existing_ones_kept(tmp_path: Path) -> None:
    store = metricstore.Store()
    synthetic(store)
    first = archive.write(store, tmp_path, until=D0 + 2 * DAY + 5)
    assert first.days_written == 8  # 2 clusters x 2 metrics x 2 days: the third is not over
    assert not any("2020-12-06" in f for f in first.files)
    original = (
        tmp_path / "cluster=emmy/metric=mem_used/day=2020-12-04/part-0.parquet"
    ).read_bytes()
    store.write(("mem_used", "emmy/h01"), D0, np.float32(123.0))
    second = archive.write(store, tmp_path, until=D0 + 3 * DAY)
    assert (second.days_written, second.days_skipped) == (4, 8)
    assert (
        tmp_path / "cluster=emmy/metric=mem_used/day=2020-12-04/part-0.parquet"
    ).read_bytes() == (original)
    third = archive.write(store, tmp_path, until=D0 + 3 * DAY, metrics=["mem_used"], overwrite=True)
    assert (third.days_written, third.days_skipped) == (6, 0)
    grid = archive.scan(tmp_path, metric="mem_used", cluster="emmy").to_xarray()
    np.testing.assert_array_equal(
        bits(grid.values), bits(store.read_many([("mem_used", "emmy/*")]).values)
    )
    assert grid.values[0, 0] == np.float32(123.0)


def test_a_query_for_one_metric_and_day_opens_one_partition(tmp_path: Path) -> None:
    store = metricstore.Store()
    synthetic(store)
    archive.write(store, tmp_path, until=D0 + 3 * DAY)
    # Garbage where pruning must keep every reader away.
    for garbage in (
        "cluster=emmy/metric=mem_used/day=2020-12-04/part-0.parquet",
        "cluster=emmy/metric=mem_used/day=2020-12-06/part-0.parquet",
        "cluster=emmy/metric=cpu_load/day=2020-12-05/part-0.parquet",
        "cluster=fritz/metric=mem_used/day=2020-12-05/part-0.parquet",
    ):
        (tmp_path / garbage).write_bytes(b"not parquet at all")
    (tmp_path / "cluster=emmy/metric=mem_used/day=2020-12-05/.part-1.parquet.tmp").write_bytes(
        b"a killed writer's leftovers"
    )
    selection = archive.scan(
        tmp_path, metric="mem_used", cluster="emmy", start=D0 + DAY, stop=D0 + 2 * DAY
    )
    assert selection.files == (
        str(tmp_path / "cluster=emmy/metric=mem_used/day=2020-12-05/part-0.parquet"),
    )
    expected = store.read_many([("mem_used", "emmy/*")], D0 + DAY, D0 + 2 * DAY)
    np.testing.assert_array_equal(bits(selection.to_xarray().values), bits(expected.values))
    count = int(np.count_nonzero(expected.values == expected.values))
    assert selection.to_duckdb(duckdb.connect()).aggregate("count(*)").fetchall() == [(count,)]
    assert selection.to_polars().collect().height == count
    assert pa.table(selection).num_rows == count


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    store = metricstore.Store(unit="ms")
    with pytest.raises(ValueError, match=r"store: .*seconds"):
        archive.write(store, tmp_path)
    store = metricstore.Store()
    synthetic(store, days=1)
    with pytest.raises(ValueError, match="metrics: nope not defined"):
        archive.write(store, tmp_path, metrics=["nope"])
    with pytest.raises(FileNotFoundError, match="root: "):
        archive.scan(tmp_path / "missing")
    store.define_metric("power", 600, "sum")
    store.write(("power", "emmy/h01"), D0, np.ones(4, np.float32))
    archive.write(store, tmp_path, until=D0 + DAY)
    with pytest.raises(ValueError, match="metric: the scan holds several metrics"):
        archive.scan(tmp_path, cluster="emmy").to_xarray()
    with pytest.raises(ValueError, match=r"stop: .* is before start"):
        archive.scan(tmp_path, start=D0 + 10, stop=D0)
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_a_writer_killed_mid_write_leaves_each_day_whole_or_absent(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    rng = np.random.default_rng(3)
    with metricstore.open(directory, sync="none") as store:
        store.define_metric("power", 10, "sum")
        store.define_metric("temp", 10, "avg")
        for metric in ("power", "temp"):
            for host in range(12):
                values = rng.standard_normal(6 * DAY // 10).astype(np.float32)
                store.write((metric, ("emmy", f"h{host:02}")), D0, values)
    child = Path(__file__).parent / "archive_child.py"
    # Kill while a file is being written, after a random number of whole days.
    done = int(rng.integers(1, 11))
    for attempt in range(8):
        root = tmp_path / f"archive{attempt}"
        process = subprocess.Popen([sys.executable, str(child), str(directory), str(root)])
        while process.poll() is None and not (
            len(list(root.glob("*/*/*/part-0.parquet"))) >= done
            and list(root.glob("*/*/*/.part-0.parquet.tmp"))
        ):
            time.sleep(0.001)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
    else:
        pytest.fail("the writer finished before it could be killed mid-file in 8 attempts")
    assert process.returncode == -signal.SIGKILL
    with metricstore.open(directory, readonly=True) as store:
        whole = archive.scan(root)
        assert all(Path(f).name == "part-0.parquet" for f in whole.files)
        assert done <= len(whole.files) < 12  # of 2 metrics x 6 days; the killed one is absent
        for file in whole.files:
            metric = Path(file).parts[-3].removeprefix("metric=")
            day = np.datetime64(Path(file).parts[-2].removeprefix("day="), "s").astype(int)
            grid = archive.scan(root, metric=metric, start=day, stop=day + DAY).to_xarray()
            expected = store.read_many([(metric, "emmy/*")], day, day + DAY)
            np.testing.assert_array_equal(bits(grid.values), bits(expected.values))
        # DuckDB's glob takes no leftover either.
        total = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
        ).fetchall()
        assert total == [(pa.table(whole).num_rows,)]
        report = archive.write(store, root, until=D0 + 6 * DAY)
        assert report.days_written + report.days_skipped == 12
        assert report.days_skipped == len(whole.files)
        assert list(root.glob("**/*.tmp")) == []
        for metric in ("power", "temp"):
            grid = archive.scan(root, metric=metric).to_xarray()
            expected = store.read_many([(metric, "emmy/*")])
            np.testing.assert_array_equal(bits(grid.values), bits(expected.values))


def test_series_the_columns_cannot_hold_are_reported_not_written(tmp_path: Path) -> None:
    store = metricstore.Store()
    store.define_metric("m", 600, "sum")
    store.write(("m", "emmy/h1/cpu3"), D0, np.float32(1.0))
    store.write(("m", "emmy/h1/hwthread3"), D0, np.float32(2.0))  # the same scope and id
    store.write(("m", "emmy"), D0, np.float32(3.0))  # above any host
    report = archive.write(store, tmp_path, until=D0 + DAY)
    assert report.skipped_series == (("m", ("emmy",)), ("m", ("emmy", "h1", "hwthread3")))
    assert report.rows == 1
    table = pa.table(archive.scan(tmp_path))
    assert table.column("value").to_pylist() == [1.0]
    assert table.column("scope_id").to_pylist() == ["3"]
    assert "left out 2 series" in report.summary()
