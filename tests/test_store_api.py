"""The public Store API: the grid, NaN padding, handles, keys, counters."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

import metricstore


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("load", 60, "avg")
    store.define_metric("power", 10, "sum")
    return store


def test_samples_land_in_the_nearest_slot_and_ties_go_later(store: metricstore.Store) -> None:
    h = store.series("load", "a")
    store.write_points([h] * 4, [29, 31, 150, -30], [1.0, 2.0, 3.0, 4.0])
    # 29 -> slot 0; 31 -> slot 1 (60); 150 is a tie between 120 and 180 -> 180;
    # -30 is a tie between -60 and 0 -> 0, overwriting the 1.0 written before.
    result = store.read(h, -60, 240)
    assert (result.start, result.step) == (-60, 60)
    np.testing.assert_array_equal(result.values, [np.nan, 4.0, 2.0, np.nan, 3.0])


def test_the_extent_spans_exactly_the_samples_of_a_series_a_path_or_the_store(
    store: metricstore.Store,
) -> None:
    assert store.extent() is None
    cpu0 = store.series("power", "n1/cpu0")
    assert store.extent(cpu0) is None
    store.write(cpu0, 100, [np.nan, 1.0, 2.0, np.nan])
    store.write(("power", "n1/cpu1"), 300, [3.0])
    store.write(("load", "n2"), dt.datetime(1970, 1, 1, tzinfo=dt.UTC), [4.0])
    assert store.extent(cpu0) == (110, 130)
    assert store.extent(("power", "n1")) == (110, 310)  # the aggregated path
    assert store.extent() == (0, 310)
    start, stop = store.extent()
    assert store.stats()["samples"] == sum(
        int(np.count_nonzero(~np.isnan(store.read(h, start, stop).values)))
        for h, _, _ in store.list_series()
    )
    with pytest.raises(metricstore.UnknownSeriesError):
        store.extent(("power", "n9"))
    with pytest.raises(ValueError, match=r"^series: 99 is not a series handle of this store"):
        store.extent(99)


def test_reads_are_nan_padded_to_the_whole_requested_range(store: metricstore.Store) -> None:
    h = store.series("load", "a")
    store.write(h, 600, [1.0, 2.0])
    result = store.read(h, 1, 1000)
    # Slots at 60, 120, ..., 960: the first at or after start, the last before stop.
    assert (result.start, result.step, len(result), result.stop) == (60, 60, 16, 1020)
    expected = np.full(16, np.nan, dtype=np.float32)
    expected[9:11] = [1.0, 2.0]
    np.testing.assert_array_equal(result.values, expected)
    assert result.values.dtype == np.float32
    assert len(store.read(h, 700, 700)) == 0


def test_timestamps_of_a_result_are_datetime64_in_the_store_unit(
    store: metricstore.Store,
) -> None:
    h = store.series("load", "a")
    result = store.read(h, "2020-12-25T19:00", dt.datetime(2020, 12, 25, 19, 3))
    assert result.timestamps.dtype == np.dtype("datetime64[s]")
    np.testing.assert_array_equal(
        result.timestamps,
        np.array(["2020-12-25T19:00", "2020-12-25T19:01", "2020-12-25T19:02"], "datetime64[s]"),
    )


def test_a_millisecond_store_takes_datetimes_and_int_milliseconds() -> None:
    store = metricstore.Store(unit="ms")
    store.define_metric("load", dt.timedelta(seconds=1), "avg")
    h = store.series("load", "a")
    store.write(h, np.datetime64("2020-12-25T19:00:00.400"), [1.0, 2.0])
    start = 1608922800_000
    result = store.read(h, start, start + 3000)
    assert store.metrics[0].frequency == 1000
    np.testing.assert_array_equal(result.values, [1.0, 2.0, np.nan])
    assert result.timestamps[0] == np.datetime64("2020-12-25T19:00:00.000")


def test_one_handle_per_series_whatever_the_path_spelling(store: metricstore.Store) -> None:
    a = store.series("load", "emmy/e0102")
    assert store.series("load", ("emmy", "e0102")) == a
    assert store.series("load", ["emmy", "e0102"]) == a
    assert store.find_series("load", "emmy/e0102") == a
    assert store.find_series("load", "emmy/e0103") is None
    assert store.find_series("power", "emmy/e0102") is None
    b = store.series("power", "emmy/e0102")
    assert b != a
    assert store.series_key(a) == ("load", ("emmy", "e0102"))
    assert store.list_series() == [(a, "load", ("emmy", "e0102")), (b, "power", ("emmy", "e0102"))]
    assert len(store) == 2


def test_defining_a_metric_again_identically_is_a_no_op(store: metricstore.Store) -> None:
    store.define_metric("load", 60, "avg")
    assert store.metrics == [
        metricstore.Metric("load", 60, "avg"),
        metricstore.Metric("power", 10, "sum"),
    ]


def test_read_many_returns_rows_in_the_order_asked(store: metricstore.Store) -> None:
    a = store.series("load", "c/h1")
    b = store.series("load", "c/h2")
    store.write(a, 0, [1.0, 2.0, 3.0])
    store.write(b, 60, [10.0, np.nan, 30.0])
    result = store.read_many([b, ("load", "c"), a, ("load", "c/h1")], 0, 240)
    assert result.values.shape == (4, 4) and result.values.dtype == np.float32
    np.testing.assert_array_equal(
        result.values,
        [
            [np.nan, 10.0, np.nan, 30.0],
            [1.0, 6.0, 3.0, 30.0],  # avg of what is there, NaN skipped
            [1.0, 2.0, 3.0, np.nan],
            [1.0, 2.0, 3.0, np.nan],
        ],
    )
    assert (result.start, result.step) == (0, 60)


def test_writing_nan_where_nothing_is_stored_allocates_nothing(store: metricstore.Store) -> None:
    h = store.series("power", "a")
    store.write(h, 0, np.full(5000, np.nan))
    stats = store.stats()
    assert (stats["chunks"], stats["samples"], stats["data_bytes"]) == (0, 0, 0)


def test_stats_count_samples_chunks_and_calls_exactly(store: metricstore.Store) -> None:
    h = store.series("power", "a")
    g = store.series("load", "b/c")
    store.write(h, 0, np.arange(3000, dtype=np.float32))  # slots 0..2999: chunks 0, 1, 2
    store.write(h, 10, [np.nan, np.nan])  # removes two samples
    store.write_tick(0, [h, g], [5.0, 6.0])  # overwrites slot 0 of h, adds one to g
    store.read(h, 0, 100)
    store.read(g, 0, 600)
    stats = store.stats()
    assert stats["samples"] == 3000 - 2 + 1
    assert stats["chunks"] == 4
    assert stats["data_bytes"] == 4 * metricstore._core.CHUNK_SLOTS * 4
    assert (stats["metrics"], stats["series"], stats["nodes"]) == (2, 2, 3)
    assert (stats["write_calls"], stats["samples_written"]) == (3, 3004)
    assert (stats["read_calls"], stats["samples_read"]) == (2, 10 + 10)
    assert repr(store) == (
        "<metricstore.Store unit='s' metrics=2 series=2 samples=2,999 memory=16.0 KiB\n"
        "  time:  1970-01-01T00:00:00 .. 1970-01-01T08:20:00 UTC (8:20:00)\n"
        "  hosts: 1 (b/c)\n"
        "  metric  frequency  aggregation  unit  series\n"
        "  load    60 s       avg          -          1\n"
        "  power   10 s       sum          -          1>"
    )


def test_read_results_describe_themselves(store: metricstore.Store) -> None:
    h = store.series("load", "a")
    result = store.read(h, 0, 600)
    assert repr(result) == (
        "ReadResult(series=0, start=0, step=60, time_unit='s', values=<float32 10>, "
        "mean=nan, coverage=0.0%)"
    )


def test_the_memory_limit_drops_the_oldest_data_across_series() -> None:
    chunk = metricstore._core.CHUNK_SLOTS * 4
    store = metricstore.Store(memory_limit=10 * chunk)
    store.define_metric("m", 1, "sum")
    old, new = store.series("m", "c/old"), store.series("m", "c/new")
    store.write(old, 0, np.ones(8 * 1024, dtype=np.float32))
    store.write(new, 102_400, np.full(8 * 1024, 2.0, dtype=np.float32))  # chunk-aligned
    stats = store.stats()
    # 16 chunks against a limit of 10: down to 90% of it, so the 7 oldest go.
    assert stats["data_bytes"] == 9 * chunk and stats["memory_limit"] == 10 * chunk
    assert (stats["evictions"], stats["dropped_chunks"]) == (1, 7)
    # Everything of "new" is kept; what went came from "old", oldest first.
    np.testing.assert_array_equal(store.read(new, 102_400, 102_400 + 8 * 1024).values, 2.0)
    kept = store.read(old, 0, 8 * 1024).values
    assert np.isnan(kept[: 7 * 1024]).all() and (kept[7 * 1024 :] == 1.0).all()


def test_retention_keeps_only_recent_data() -> None:
    store = metricstore.Store()
    store.define_metric("m", 1, "sum")
    now = int(time.time())
    store.write(("m", "a"), now - 3600, np.ones(3600, dtype=np.float32))
    store.set_retention(dt.timedelta(minutes=10))
    values = store.read(("m", "a"), now - 3600, now).values
    assert 599 <= int((~np.isnan(values)).sum()) <= 601
    assert np.isnan(values[: 3600 - 602]).all()


def test_drop_before_takes_any_timestamp_and_bad_limits_are_named() -> None:
    store = metricstore.Store()
    store.define_metric("m", 60, "sum")
    store.write(("m", "a"), "2020-12-25T19:00", np.arange(10, dtype=np.float32))
    store.drop_before("2020-12-25T19:05")
    values = store.read(("m", "a"), "2020-12-25T19:00", "2020-12-25T19:10").values
    np.testing.assert_array_equal(values, [np.nan] * 5 + [5, 6, 7, 8, 9])
    assert store.stats()["drops"] == 1
    with pytest.raises(ValueError, match=r"^memory_limit: must be positive"):
        store.set_memory_limit(0)
    with pytest.raises(TypeError, match=r"^memory_limit: expected an int"):
        store.set_memory_limit(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^retention: must be positive"):
        store.set_retention(-5)
