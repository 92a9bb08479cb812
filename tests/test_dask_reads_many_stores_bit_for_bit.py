"""metricstore.dask.read: one Dask array over many shard stores, bit for bit
what each store's read_many returns, with tasks that open the stores
read-only in the worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import metricstore

dask = pytest.importorskip("dask")
pytest.importorskip("dask.dataframe")
from metricstore import dask as msdask  # noqa: E402

T0 = 1_608_900_000


def bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)


def make_shards(tmp_path: Path) -> list[str]:
    """Three shard stores: emmy (3 hosts with cpus), fritz (2 hosts), and one
    without the metric."""
    rng = np.random.default_rng(5)
    directories = []
    for cluster, hosts, offset in (("emmy", 3, 0), ("fritz", 2, 370), ("meggie", 0, 0)):
        directory = tmp_path / cluster
        with metricstore.open(directory, sync="none") as store:
            store.define_metric("cpu_load", 60, "avg")
            store.define_metric("mem_used", 60, "sum")
            store.write(("mem_used", (cluster, "n0")), T0, np.ones(3, np.float32))
            for h in range(hosts):
                values = rng.standard_normal(500).astype(np.float32)
                values[rng.random(500) < 0.2] = np.nan
                store.write(("cpu_load", (cluster, f"n{h}")), T0 + offset * 60, values)
                store.write(("cpu_load", (cluster, f"n{h}", "cpu0")), T0, values[:50])
        directories.append(str(directory))
    return directories


def direct(directories: list[str], metric: str, path: str, start: int, stop: int) -> np.ndarray:
    rows = []
    for directory in directories:
        with metricstore.open(directory, readonly=True) as store:
            if store.list_series(metric, path):
                rows.append(store.read_many([(metric, path)], start, stop).values)
    return np.concatenate(rows)


def test_the_array_is_each_store_read_directly_in_store_then_path_order(tmp_path: Path) -> None:
    directories = make_shards(tmp_path)
    start, stop = T0 + 30, T0 + 700 * 60 + 1
    array = msdask.read(directories, "cpu_load", "*/*", start, stop, time_chunk=128)
    assert array.dtype == np.float32
    assert array.shape == (5, 700)
    assert array.chunks[0] == (3, 2)
    computed = array.compute(scheduler="synchronous")
    np.testing.assert_array_equal(
        bits(computed), bits(direct(directories, "cpu_load", "*/*", start, stop))
    )
    # Open ends: where the samples of all the rows together lie.
    whole = msdask.read(directories, "cpu_load", "*/*/cpu*").compute(scheduler="synchronous")
    assert whole.shape == (5, 50)
    np.testing.assert_array_equal(
        bits(whole), bits(direct(directories, "cpu_load", "*/*/cpu*", T0, T0 + 50 * 60))
    )
    opened = msdask.read(directories, "cpu_load", "*/*").compute(scheduler="synchronous")
    extents = []
    for directory in directories:
        with metricstore.open(directory, readonly=True) as store:
            extents += [
                store.extent(("cpu_load", p)) for _, _, p in store.list_series("cpu_load", "*/*")
            ]
    begin = min(e[0] for e in extents if e)
    end = max(e[1] for e in extents if e)
    assert opened.shape == (5, (end - begin) // 60)
    np.testing.assert_array_equal(
        bits(opened), bits(direct(directories, "cpu_load", "*/*", begin, end))
    )


def test_frame_holds_the_same_values_with_store_path_and_time(tmp_path: Path) -> None:
    directories = make_shards(tmp_path)
    start, stop = T0, T0 + 600 * 60
    frame = msdask.read(directories, "cpu_load", "*/*", start, stop, frame=True, time_chunk=250)
    assert frame.npartitions == 6
    df = frame.compute(scheduler="synchronous")
    assert list(df.columns) == ["store", "path", "time", "value"]
    expected = direct(directories, "cpu_load", "*/*", start, stop)
    wide = df.pivot_table(index=["store", "path"], columns="time", values="value", dropna=False)
    order = [
        (d, f"{c}/n{h}")
        for d, c, n in zip(directories[:2], ("emmy", "fritz"), (3, 2), strict=True)
        for h in range(n)
    ]
    wide = wide.reindex(order)
    np.testing.assert_array_equal(bits(wide.to_numpy(np.float32)), bits(expected))
    assert df["time"].iloc[0] == np.datetime64(T0, "s")


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    directories = make_shards(tmp_path)
    with pytest.raises(TypeError, match="stores: expected a list"):
        msdask.read(directories[0], "cpu_load", "*/*")
    with pytest.raises(FileNotFoundError, match=r"stores\[1\]: "):
        msdask.read([directories[0], str(tmp_path / "nope")], "cpu_load", "*/*")
    with pytest.raises(ValueError, match="metric: 'gpu' is defined in none of the stores"):
        msdask.read(directories, "gpu", "*/*")
    with metricstore.open(tmp_path / "other") as store:
        store.define_metric("cpu_load", 10, "avg")
    with pytest.raises(ValueError, match=r"stores\[1\]: .* every 10 ticks"):
        msdask.read([directories[0], str(tmp_path / "other")], "cpu_load", "*/*")


def test_a_local_cluster_with_worker_processes_reads_the_same(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    directories = make_shards(tmp_path)
    start, stop = T0, T0 + 870 * 60
    expected = direct(directories, "cpu_load", "*/*", start, stop)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        array = msdask.read(directories, "cpu_load", "*/*", start, stop, time_chunk=300)
        computed = client.compute(array).result()
        total = client.compute(array.sum(axis=1)).result()  # the reduction runs on the workers
    np.testing.assert_array_equal(bits(computed), bits(expected))
    np.testing.assert_array_equal(bits(total), bits(expected.sum(axis=1)))
