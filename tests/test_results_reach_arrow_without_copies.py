"""A ReadResult is Arrow data (the Arrow PyCapsule interface): pyarrow, polars
and DuckDB read its float32 values where NumPy holds them, with the times in
the store's unit (UTC), the columns named as to_pandas() names them, NaN kept
as NaN unless asked to be null, and no pandas needed."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import metricstore
from metricstore import ReadResult

UNITS = ("s", "ms", "us", "ns")


def address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def two_hosts(unit: str = "s") -> tuple[metricstore.Store, ReadResult]:
    """Two series on a 60-tick grid with NaN gaps; the read spans 5 slots."""
    store = metricstore.Store(unit=unit)
    store.define_metric("cpu_load", frequency=60, aggregation="avg")
    store.write(("cpu_load", "emmy/e0102"), 600, np.array([1.5, np.nan, 3.25], np.float32))
    store.write(("cpu_load", "emmy/e0103"), 660, np.array([-2.0, 7.0], np.float32))
    return store, store.read_many([("cpu_load", "emmy/*")], 600, 900)


def test_the_table_is_time_then_one_float32_column_per_series_named_as_pandas_names_them():
    _, result = two_hosts()
    table = pa.table(result)
    frame = result.to_pandas()
    assert table.schema.names == ["time", *frame.columns]
    assert table.schema.names == ["time", "cpu_load:emmy/e0102", "cpu_load:emmy/e0103"]
    assert table.schema.field("time").type == pa.timestamp("s", tz="UTC")
    assert [f.type for f in table.schema][1:] == [pa.float32(), pa.float32()]
    assert table.column("time").cast(pa.int64()).to_pylist() == [600, 660, 720, 780, 840]
    for name, row in zip(table.schema.names[1:], result.values, strict=True):
        np.testing.assert_array_equal(table.column(name).to_numpy(), row, strict=True)


def test_every_float32_column_is_the_numpy_row_itself():
    _, result = two_hosts()
    table = pa.table(result)
    for i, row in enumerate(result.values):
        (chunk,) = table.column(i + 1).chunks
        validity, data = chunk.buffers()
        assert validity is None
        assert data.address == address(row)
        assert data.size == row.nbytes
    batch = pa.record_batch(result)  # through __arrow_c_array__
    assert batch.column(2).buffers()[1].address == address(result.values[1])
    frame = pl.DataFrame(result)
    assert address(frame["cpu_load:emmy/e0103"].to_numpy()) == address(result.values[1])


def test_a_one_series_read_is_a_two_column_table_sharing_its_values():
    store, _ = two_hosts()
    result = store.read(("cpu_load", "emmy/e0102"), 600, 840)
    table = pa.table(result)
    assert table.schema.names == ["time", result.to_pandas().name]
    assert table.column(1).chunks[0].buffers()[1].address == address(result.values)
    np.testing.assert_array_equal(
        table.column(1).to_numpy(), np.array([1.5, np.nan, 3.25, np.nan], np.float32), strict=True
    )


def test_nan_stays_nan_unless_asked_to_be_null():
    _, result = two_hosts()
    column = pa.table(result).column("cpu_load:emmy/e0102")
    assert column.null_count == 0
    assert np.isnan(column.to_numpy()).tolist() == [False, True, False, True, True]
    assert pl.DataFrame(result)["cpu_load:emmy/e0102"].null_count() == 0

    table = result.to_arrow(nan_as_null=True)
    column = table.column("cpu_load:emmy/e0102")
    assert column.to_pylist() == [1.5, None, 3.25, None, None]
    assert table.column("cpu_load:emmy/e0103").to_pylist() == [None, -2.0, 7.0, None, None]
    # The values are still NumPy's; only the validity bitmap is new.
    assert column.chunks[0].buffers()[1].address == address(result.values[0])
    frame = result.to_polars(nan_as_null=True)
    assert frame["cpu_load:emmy/e0102"].to_list() == [1.5, None, 3.25, None, None]


@pytest.mark.parametrize("unit", UNITS)
def test_times_are_in_the_store_unit_and_utc(unit: str):
    store = metricstore.Store(unit=unit)
    store.define_metric("m", frequency=1_000, aggregation="sum")
    start = 1_608_923_100 * 1_000
    store.write(("m", "a"), start, np.array([1, 2, 3], np.float32))
    result = store.read(("m", "a"), start, start + 3_000)
    table = pa.table(result)
    assert table.schema.field("time").type == pa.timestamp(unit, tz="UTC")
    assert table.column("time").cast(pa.int64()).to_pylist() == result.ticks.tolist()
    assert table.column("time").to_numpy().astype(f"datetime64[{unit}]").tolist() == (
        result.timestamps.tolist()
    )
    assert pl.DataFrame(result)["time"].dtype.time_zone == "UTC"


def test_lttb_times_are_the_kept_samples_times():
    store = metricstore.Store()
    store.define_metric("m", frequency=10, aggregation="avg")
    store.write(("m", "a"), 0, np.sin(np.arange(100, dtype=np.float32)))
    result = store.read(("m", "a"), 0, 1_000, resolution=100, method="lttb")
    table = pa.table(result)
    assert table.column("time").cast(pa.int64()).to_pylist() == result.ticks.tolist()
    np.testing.assert_array_equal(table.column(1).to_numpy(), result.values, strict=True)


def test_rows_read_by_handle_are_named_by_the_handle_digits():
    store, _ = two_hosts()
    handle = store.series("cpu_load", "emmy/e0103")
    result = store.read_many([handle], 600, 900)
    assert pa.table(result).schema.names == ["time", str(handle)]


def test_a_read_of_no_series_is_a_table_of_times_only():
    store = metricstore.Store()
    result = store.read_many([], 0, 10)
    table = pa.table(result)
    assert table.schema.names == ["time"]
    assert table.num_rows == 0


def test_polars_and_duckdb_read_the_same_values():
    _, result = two_hosts()
    frame = pl.DataFrame(result)
    assert frame.columns == ["time", "cpu_load:emmy/e0102", "cpu_load:emmy/e0103"]
    assert frame["cpu_load:emmy/e0103"].to_list()[1:3] == [-2.0, 7.0]
    assert result.to_polars().equals(frame)
    rows = duckdb.sql(
        'SELECT epoch(time)::BIGINT, "cpu_load:emmy/e0103" FROM result '
        'WHERE NOT isnan("cpu_load:emmy/e0103") ORDER BY time'
    ).fetchall()
    assert rows == [(660, -2.0), (720, 7.0)]
    nan_count = duckdb.sql('SELECT count(*) FROM result WHERE isnan("cpu_load:emmy/e0102")')
    assert nan_count.fetchall() == [(3,)]


def test_the_table_keeps_the_values_alive_and_lets_them_go_after():
    _, result = two_hosts()
    expected = result.values.copy()
    values = weakref.ref(result.values)
    table = pa.table(result)
    del result
    gc.collect()
    assert values() is not None
    np.testing.assert_array_equal(table.column(2).to_numpy(), expected[1], strict=True)
    del table
    gc.collect()
    assert values() is None


def test_values_set_by_hand_are_converted_when_not_contiguous_float32():
    _, result = two_hosts()
    wide = np.arange(20, dtype=np.float64).reshape(2, 10)
    result.values = wide[:, ::2]
    table = pa.table(result)
    assert table.column(1).to_pylist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert table.column(2).type == pa.float32()


def test_bad_shapes_are_refused_with_the_argument_named():
    flat = np.zeros(3, np.float32)
    cube = ReadResult(np.zeros((1, 1, 3), np.float32), 0, 1, "s", [("m", ("a",))])
    with pytest.raises(ValueError, match="values: expected a 1-D or 2-D array"):
        pa.table(cube)
    names = ReadResult(np.zeros((2, 3), np.float32), 0, 1, "s", [("m", ("a",))])
    with pytest.raises(ValueError, match="keys: 1 names for 2 rows"):
        pa.table(names)
    unit = ReadResult(flat, 0, 1, "min", ("m", ("a",)))
    with pytest.raises(ValueError, match="unit: expected 's', 'ms', 'us' or 'ns', got \"min\""):
        pa.table(unit)


def test_every_consumer_works_with_pandas_absent():
    script = textwrap.dedent(
        """
        import sys

        class NoPandas:  # as if pandas were not installed
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "pandas":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NoPandas())
        import duckdb, numpy as np, polars as pl, pyarrow as pa
        import metricstore

        store = metricstore.Store(unit="ms")
        store.define_metric("m", frequency=1000, aggregation="sum")
        store.write(("m", "a/b"), 5000, np.array([1.0, np.nan, 2.5], np.float32))
        r = store.read(("m", "a/b"), 5000, 8000)
        try:
            r.to_pandas()
        except ImportError as error:
            print("pandas:", error)
        t = pa.table(r)
        print(t.schema.field("time").type, t.column("m:a/b").to_pylist()[::2])
        print(pl.DataFrame(r)["m:a/b"].to_list()[::2], r.to_polars().shape)
        print(duckdb.sql('SELECT sum("m:a/b") FROM r WHERE NOT isnan("m:a/b")').fetchall())
        print(r.to_arrow(nan_as_null=True).column(1).null_count)
        print("pandas" in sys.modules)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "pandas: ReadResult.to_pandas() needs pandas, which is not installed: "
        "pip install 'metricstore[pandas]'",
        "timestamp[ms, tz=UTC] [1.0, 2.5]",
        "[1.0, 2.5] (3, 2)",
        "[(3.5,)]",
        "1",
        "False",
    ]


def test_a_missing_optional_library_names_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pyarrow"] = None
        sys.modules["polars"] = None
        import numpy as np
        import metricstore

        r = metricstore.ReadResult(np.zeros(2, np.float32), 0, 1, "s", ("m", ("a",)))
        for convert in (r.to_arrow, r.to_polars):
            try:
                convert()
            except ImportError as error:
                print(error)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "ReadResult.to_arrow() needs pyarrow, which is not installed: "
        "pip install 'metricstore[arrow]'",
        "ReadResult.to_polars() needs polars, which is not installed: "
        "pip install 'metricstore[polars]'",
    ]


def test_pandas_sees_the_same_table():
    # pyarrow's own pandas conversion agrees with to_pandas(): same names, times, values.
    _, result = two_hosts()
    frame = pa.table(result).to_pandas().set_index("time")
    expected = result.to_pandas(tz="UTC")
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_index_equal(frame.index, expected.index, check_names=True)
    np.testing.assert_array_equal(frame.to_numpy().T, result.values, strict=True)
