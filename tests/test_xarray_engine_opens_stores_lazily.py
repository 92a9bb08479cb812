"""xarray.open_dataset(store_dir, engine="metricstore"): one lazy (series,
time) variable per metric, bit for bit what read_many returns."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import metricstore

xr = pytest.importorskip("xarray")

T0 = 1_608_900_000


def bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)


def make_store(directory: Path) -> metricstore.Store:
    rng = np.random.default_rng(11)
    store = metricstore.open(directory, sync="always")
    store.define_metric("cpu_load", 60, "avg")
    store.define_metric("mem_used", 60, "sum")
    store.define_metric("power", 600, "none")
    for host in ("e02", "e01", "e1*"):
        values = rng.standard_normal(3000).astype(np.float32)
        values[rng.random(3000) < 0.1] = np.nan
        store.write(("cpu_load", ("emmy", host)), T0 + 60, values)
        store.write(("cpu_load", ("emmy", host, "cpu1")), T0, values[:100])
        store.write(("power", ("emmy", host)), T0, values[:200])
    store.write(("mem_used", "emmy/e01"), T0 + 6000, np.arange(40, dtype=np.float32))
    return store


def test_each_metric_is_a_variable_equal_to_read_many(tmp_path: Path) -> None:
    with make_store(tmp_path / "s") as store:
        ds = xr.open_dataset(tmp_path / "s", engine="metricstore", metrics=["cpu_load", "mem_used"])
        assert set(ds.data_vars) == {"cpu_load", "mem_used"}
        assert ds.cpu_load.dims == ("series", "time")
        paths = [
            "emmy/e01",
            "emmy/e01/cpu1",
            "emmy/e02",
            "emmy/e02/cpu1",
            "emmy/e1*",
            "emmy/e1*/cpu1",
        ]
        assert list(ds.series.values) == paths
        assert list(ds.host.values) == ["e01", "e01", "e02", "e02", "e1*", "e1*"]
        assert list(ds.level2.values) == ["", "cpu1", "", "cpu1", "", "cpu1"]
        start, stop = store.extent()
        assert ds.time.values[0] == np.datetime64(start, "s")
        assert ds.sizes["time"] == (stop - start) // 60
        for metric in ("cpu_load", "mem_used"):
            for i, path in enumerate(paths):
                key = (metric, path.split("/"))
                expected = (
                    store.read(key, start, stop).values
                    if store.find_series(*key) is not None
                    else np.full(ds.sizes["time"], np.nan, np.float32)
                )
                np.testing.assert_array_equal(bits(ds[metric].values[i]), bits(expected))
        # Basic indexing reads only what it asks for, and gives the same bits.
        window = ds.cpu_load.isel(series=slice(2, 5), time=slice(50, 3000, 7)).values
        np.testing.assert_array_equal(bits(window), bits(ds.cpu_load.values[2:5, 50:3000:7]))
        assert ds.cpu_load.isel(series=0, time=1).values == ds.cpu_load.values[0, 1]


def test_variables_are_lazy_and_read_at_access(tmp_path: Path) -> None:
    with make_store(tmp_path / "s") as store:
        ds = xr.open_dataset(tmp_path / "s", engine="metricstore", drop_variables="power")
        assert set(ds.data_vars) == {"cpu_load", "mem_used"}
        store.write(("cpu_load", "emmy/e02"), T0 + 120, np.float32(42.0))  # after the open
        assert ds.cpu_load.sel(series="emmy/e02").values[2] == np.float32(42.0)
        # What pickles is the directory and the layout, never a store.
        again = pickle.loads(pickle.dumps(ds))
        np.testing.assert_array_equal(bits(again.cpu_load.values), bits(ds.cpu_load.values))


def test_several_frequencies_get_their_own_time_dims_and_dask_chunks(tmp_path: Path) -> None:
    pytest.importorskip("dask")
    with make_store(tmp_path / "s") as store:
        start, stop = T0, T0 + 60 * 20_000
        ds = xr.open_dataset(
            tmp_path / "s", engine="metricstore", chunks={}, start=start, stop=stop,
            levels=("cluster", "node", "cpu"),
        )  # fmt: skip
        assert ds.power.dims == ("series", "time_600")
        assert ds.cpu_load.dims == ("series", "time_60")
        assert ds.cpu_load.chunks == ((6,), (8192, 8192, 3616))
        assert list(ds.node.values[:2]) == ["e01", "e01"]
        power = ds.power.compute(scheduler="synchronous")
        expected = store.read_many([("power", "emmy/*")], start, stop)
        np.testing.assert_array_equal(bits(power.values[[0, 2, 4]]), bits(expected.values))
        assert np.isnan(power.values[[1, 3, 5]]).all()


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    make_store(tmp_path / "s").close()
    with pytest.raises(ValueError, match="metrics: gpu not defined"):
        xr.open_dataset(tmp_path / "s", engine="metricstore", metrics=["gpu"])
    with pytest.raises(ValueError, match="levels: 1 names for paths of 3 levels"):
        xr.open_dataset(tmp_path / "s", engine="metricstore", levels=["cluster"])
    with pytest.raises(FileNotFoundError, match="filename_or_obj: "):
        xr.open_dataset(tmp_path / "nope", engine="metricstore")


def test_a_local_cluster_with_worker_processes_computes_the_same(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    start, stop = T0, T0 + 60 * 20_000
    with make_store(tmp_path / "s") as store:
        expected = store.read_many([("cpu_load", "emmy/*")], start, stop).values
    ds = xr.open_dataset(
        tmp_path / "s",
        engine="metricstore",
        chunks={},
        start=start,
        stop=stop,
        metrics=["cpu_load"],
    )
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        hosts = ds.cpu_load.isel(series=[0, 2, 4]).compute()  # every chunk read on a worker
    assert len(ds.cpu_load.chunks[1]) == 3
    np.testing.assert_array_equal(bits(hosts.values), bits(expected))
