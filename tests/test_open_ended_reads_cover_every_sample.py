"""A read with an open end (None, the default) reads to where the samples
end on that side: ``read(key)`` holds every sample of a series or an
aggregated path, ``read_many`` every sample of all its keys. A key with no
samples reads as empty, a key naming no series raises as it does with
bounds, and ``read_many([])`` is an empty 2-D result."""

from __future__ import annotations

import numpy as np
import pytest

import metricstore


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("load", 60, "sum")
    store.define_metric("power", 10, "avg")
    store.write(("load", "emmy/e0102"), 6000, [1.0, 2.0, np.nan, 4.0])  # 6000..6180
    store.write(("load", "emmy/e0103"), 5880, [10.0, 20.0])  # 5880..5940
    store.write(("power", "emmy/e0102"), 100, [5.0])
    store.series("power", "emmy/e0199")  # exists, never written
    return store


def test_a_read_without_bounds_holds_every_sample_of_a_series(store: metricstore.Store) -> None:
    got = store.read(("load", "emmy/e0102"))
    assert (got.start, got.step, got.stop) == (6000, 60, 6240)
    np.testing.assert_array_equal(got.values, [1.0, 2.0, np.nan, 4.0])
    assert store.extent(("load", "emmy/e0102")) == (6000, 6240)


def test_a_read_without_bounds_of_a_path_spans_every_series_below_it(
    store: metricstore.Store,
) -> None:
    got = store.read(("load", "emmy"))
    assert (got.start, got.stop) == (5880, 6240)
    np.testing.assert_array_equal(got.values, [10.0, 20.0, 1.0, 2.0, np.nan, 4.0])


def test_one_open_end_reads_to_the_samples_end_on_that_side(store: metricstore.Store) -> None:
    key = ("load", "emmy/e0102")
    from_start = store.read(key, 6060)
    assert (from_start.start, from_start.stop) == (6060, 6240)
    np.testing.assert_array_equal(from_start.values, [2.0, np.nan, 4.0])
    # An open end never passes the other one: a range beyond the samples
    # is empty, not an error.
    assert (len(store.read(key, 9000)), store.read(key, 9000).start) == (0, 9000)
    until = store.read(key, stop=6120)
    assert (until.start, until.stop) == (6000, 6120)
    np.testing.assert_array_equal(until.values, [1.0, 2.0])
    assert (len(store.read(key, stop=60)), store.read(key, stop=60).start) == (0, 60)
    # Before the first sample, an explicit start pads with NaN as always.
    padded = store.read(key, 5880)
    np.testing.assert_array_equal(padded.values, [np.nan, np.nan, 1.0, 2.0, np.nan, 4.0])


def test_read_many_without_bounds_spans_all_its_keys(store: metricstore.Store) -> None:
    got = store.read_many([("load", "emmy/e0102"), ("load", "emmy/e0103")])
    assert (got.start, got.step, got.values.shape) == (5880, 60, (2, 6))
    np.testing.assert_array_equal(
        got.values,
        [[np.nan, np.nan, 1.0, 2.0, np.nan, 4.0], [10.0, 20.0] + [np.nan] * 4],
    )
    later = store.read_many([("load", "emmy/e0103"), ("load", "emmy/e0102")], 5940)
    assert (later.start, later.values.shape) == (5940, (2, 5))


def test_open_ended_resampled_reads_and_stats_cover_every_sample(
    store: metricstore.Store,
) -> None:
    coarse = store.read(("load", "emmy"), resolution=120, method="max")
    assert (coarse.start, coarse.step) == (5880, 120)
    np.testing.assert_array_equal(coarse.values, [20.0, 2.0, 4.0])
    # Widened to whole buckets: [6060, 6240) becomes [6000, 6240).
    many = store.read_many([("load", "emmy/e0102")], 6060, resolution=120, method="min")
    assert (many.start, many.step) == (6000, 120)
    np.testing.assert_array_equal(many.values, [[1.0, 4.0]])
    assert store.read_stats(("load", "emmy/e0102")) == metricstore.SeriesStats(1.0, 4.0, 7 / 3, 3)
    assert store.read_stats(("load", "emmy/e0102"), 6060).count == 2


def test_a_series_without_samples_reads_as_empty(store: metricstore.Store) -> None:
    key = ("power", "emmy/e0199")
    empty = store.read(key)
    assert (len(empty), empty.start, empty.step, empty.values.dtype) == (0, 0, 10, np.float32)
    assert (len(store.read(key, 505)), store.read(key, 505).start) == (0, 510)
    assert store.read_many([key]).values.shape == (1, 0)
    assert store.read_stats(key).count == 0


def test_a_key_naming_no_series_raises_as_with_bounds(store: metricstore.Store) -> None:
    with pytest.raises(metricstore.UnknownSeriesError, match=r'"emmy/e9999"'):
        store.read(("load", "emmy/e9999"))
    with pytest.raises(metricstore.UnknownMetricError, match=r'"nope"'):
        store.read_many([("load", "emmy"), ("nope", "emmy")])
    with pytest.raises(ValueError, match=r"^series: 99 is not a series handle"):
        store.read(99)


def test_read_many_of_no_keys_is_an_empty_two_dimensional_result(
    store: metricstore.Store,
) -> None:
    for got, start, step in [
        (store.read_many([]), 0, 1),
        (store.read_many([], 600, 1200), 600, 1),
        (store.read_many(iter([]), 600), 600, 1),
        (store.read_many([], 0, 600, resolution=120), 0, 120),
    ]:
        assert got.values.shape == (0, 0)
        assert got.values.dtype == np.float32
        assert (got.start, got.step, got.keys, len(got)) == (start, step, [], 0)
    with pytest.raises(ValueError, match=r"^stop: stop \(0\) is before start \(600\)$"):
        store.read_many([], 600, 0)
