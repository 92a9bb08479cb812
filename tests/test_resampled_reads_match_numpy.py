"""Resampled reads (avg, min, max, LTTB) and range stats against NumPy
references computed from the raw read."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

import metricstore

F = 10  # frequency, seconds


@pytest.fixture(scope="module")
def store() -> metricstore.Store:
    """Two series of 10,000 slots from t=0 with about a third missing, and
    whole missing stretches; their node-level sum at "c/h"."""
    store = metricstore.Store()
    store.define_metric("load", F, "sum")
    rng = np.random.default_rng(3)
    for core in ("core0", "core1"):
        values = rng.normal(50, 20, 10_000).astype(np.float32)
        values[rng.random(10_000) < 0.3] = np.nan
        values[2_000:2_600] = np.nan
        store.write(("load", f"c/h/{core}"), 0, values)
    return store


def reference(raw: np.ndarray, factor: int, method: str) -> np.ndarray:
    buckets = raw.reshape(-1, factor).astype(np.float64)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        reduce = {"avg": np.nanmean, "min": np.nanmin, "max": np.nanmax}[method]
        return reduce(buckets, axis=1).astype(np.float32)


@pytest.mark.parametrize("method", ["avg", "min", "max"])
@pytest.mark.parametrize("key", [("load", "c/h/core0"), ("load", "c/h")])
@pytest.mark.parametrize(("start", "stop"), [(0, 100_000), (1234, 98_765), (-500, 3_000)])
def test_buckets_equal_numpy_over_the_raw_read(
    store: metricstore.Store, method: str, key: tuple[str, str], start: int, stop: int
) -> None:
    resolution = 60
    got = store.read(key, start, stop, resolution=resolution, method=method)
    lo, hi = start // resolution * resolution, -(-stop // resolution) * resolution
    raw = store.read(key, lo, hi).values
    assert (got.start, got.step, got.stop) == (lo, resolution, hi)
    np.testing.assert_array_equal(got.values, reference(raw, resolution // F, method))
    assert got.values.dtype == np.float32


def test_read_many_resamples_each_row_like_read(store: metricstore.Store) -> None:
    keys = [("load", "c/h/core0"), ("load", "c/h/core1"), ("load", "c/h")]
    many = store.read_many(keys, 0, 50_000, resolution=timedelta(minutes=5), method="max")
    assert many.values.shape == (3, -(-50_000 // 300)) and many.step == 300
    for row, key in zip(many.values, keys, strict=True):
        one = store.read(key, 0, 50_000, resolution=300, method="max")
        np.testing.assert_array_equal(row, one.values)


def test_a_resolution_that_is_not_a_multiple_of_the_frequency_is_an_error(
    store: metricstore.Store,
) -> None:
    with pytest.raises(ValueError, match=r"^resolution: 25 is not a multiple .* frequency 10"):
        store.read(("load", "c/h"), 0, 100, resolution=25)
    with pytest.raises(ValueError, match=r"^resolution: must be positive"):
        store.read(("load", "c/h"), 0, 100, resolution=0)
    with pytest.raises(ValueError, match=r"^method: "):
        store.read(("load", "c/h"), 0, 100, resolution=20, method="median")
    with pytest.raises(ValueError, match=r"^method: "):
        store.read_many([("load", "c/h")], 0, 100, resolution=20, method="lttb")


def test_lttb_keeps_real_samples_at_their_real_times() -> None:
    """The hand-checked example of the engine's tests: 8 points into 4
    buckets keep points 0, 2, 5 and 7."""
    store = metricstore.Store()
    store.define_metric("m", F, "avg")
    store.write(("m", "a"), 0, [0.0, 1.0, 5.0, 0.0, 0.0, -4.0, 0.0, 0.0])
    got = store.read(("m", "a"), 0, 80, resolution=20, method="lttb")
    assert got.ticks.tolist() == [0, 20, 50, 70]
    assert got.values.tolist() == [0.0, 5.0, -4.0, 0.0]
    assert got.timestamps.tolist() == list(np.array([0, 20, 50, 70], "datetime64[s]"))
    assert got.stop == 71


def test_lttb_keeps_one_sample_per_bucket_even_below_three_buckets() -> None:
    """Two buckets keep the first and last samples, one bucket the first;
    a range with fewer samples than buckets keeps every sample."""
    store = metricstore.Store()
    store.define_metric("m", F, "avg")
    store.write(("m", "a"), 0, [4.0, 1.0, 5.0, np.nan, 0.0, -4.0, 2.0, np.nan])
    two = store.read(("m", "a"), 0, 80, resolution=40, method="lttb")
    assert (two.ticks.tolist(), two.values.tolist()) == ([0, 60], [4.0, 2.0])
    one = store.read(("m", "a"), 0, 80, resolution=80, method="lttb")
    assert (one.ticks.tolist(), one.values.tolist()) == ([0], [4.0])
    sparse = store.read(("m", "a"), 30, 50, resolution=10, method="lttb")
    assert (sparse.ticks.tolist(), sparse.values.tolist()) == ([40], [0.0])


def test_lttb_over_real_sized_data_keeps_real_samples_and_the_ends(
    store: metricstore.Store,
) -> None:
    raw = store.read(("load", "c/h/core0"), 0, 100_000)
    got = store.read(("load", "c/h/core0"), 0, 100_000, resolution=600, method="lttb")
    valid = np.flatnonzero(~np.isnan(raw.values))
    assert len(got) == -(-100_000 // 600)
    # Every kept point is a real sample at its own time, first and last kept.
    slots = (got.ticks - raw.start) // F
    np.testing.assert_array_equal(raw.values[slots], got.values)
    assert (slots[0], slots[-1]) == (valid[0], valid[-1])
    assert np.all(np.diff(slots) > 0)


def test_stats_come_from_the_raw_samples(store: metricstore.Store) -> None:
    for key in [("load", "c/h/core1"), ("load", "c/h")]:
        raw = store.read(key, 123, 77_777).values
        stats = store.read_stats(key, 123, 77_777)
        valid = raw[~np.isnan(raw)]
        assert stats == metricstore.SeriesStats(
            float(valid.min()), float(valid.max()), float(valid.astype(np.float64).mean()),
            len(valid),
        )  # fmt: skip
    empty = store.read_stats(("load", "c/h"), 20_000, 26_000)
    assert empty.count == 0 and np.isnan(empty.min) and np.isnan(empty.avg)
