"""A write rejected for its arguments creates no series, in memory or in a
store directory (where a created series would be logged and survive
reopening): every argument is converted and checked before any series of
the call is created. The series a call does create are created together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import metricstore

FREQ = 10
Write = Callable[[metricstore.Store], None]

REJECTED: dict[str, tuple[Write, type[Exception]]] = {
    "block-value-overflows-float32": (
        lambda s: s.write(("m", "c/new"), 0, [1e39]),
        ValueError,
    ),
    "block-float-start": (lambda s: s.write(("m", "c/new"), 0.5, [1.0]), TypeError),
    "tick-bad-value": (
        lambda s: s.write_tick(0, [("m", "c/new"), ("m", "c/other")], [1.0, "x"]),
        TypeError,
    ),
    "tick-one-value-short": (
        lambda s: s.write_tick(0, [("m", "c/new"), ("m", "c/other")], [1.0]),
        ValueError,
    ),
    "tick-bad-key-after-new-keys": (
        lambda s: s.write_tick(0, [("m", "c/new"), ("m", "c/other"), ("nope", "c/x")], [1, 2, 3]),
        metricstore.UnknownMetricError,
    ),
    "tick-bad-path-after-new-keys": (
        lambda s: s.write_tick(0, [("m", "c/new"), ("m", "c/..")], [1.0, 2.0]),
        metricstore.InvalidNameError,
    ),
    "points-float-timestamp": (
        lambda s: s.write_points([("m", "c/new")], [0.5], [1.0]),
        TypeError,
    ),
    "points-timestamps-short": (
        lambda s: s.write_points([("m", "c/new"), ("m", "c/other")], [0], [1.0, 2.0]),
        ValueError,
    ),
}


def prepared(store: metricstore.Store) -> metricstore.Store:
    store.define_metric("m", FREQ, "none")
    store.write(("m", "c/old"), 0, [5.0])
    return store


def assert_unchanged(store: metricstore.Store) -> None:
    assert store.list_series() == [(0, "m", ("c", "old"))]
    # With aggregation "none", the parent path still names one series.
    assert store.read(("m", "c"), 0, FREQ).values.tolist() == [5.0]


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_a_rejected_write_creates_no_series_in_memory(case: str) -> None:
    write, error = REJECTED[case]
    store = prepared(metricstore.Store())
    with pytest.raises(error):
        write(store)
    assert_unchanged(store)
    with pytest.raises(metricstore.UnknownSeriesError):
        store.read(("m", "c/new"), 0, FREQ)


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_a_rejected_write_logs_no_series_in_a_store_directory(tmp_path: Path, case: str) -> None:
    write, error = REJECTED[case]
    with metricstore.open(tmp_path, sync="always") as store:
        prepared(store)
        with pytest.raises(error):
            write(store)
    with metricstore.open(tmp_path) as again:
        assert_unchanged(again)
        assert again.find_series("m", "c/new") is None


def test_the_series_of_a_first_tick_are_created_together_in_order(tmp_path: Path) -> None:
    keys = [("m", f"c/h{i:04d}") for i in range(2000)]
    with metricstore.open(tmp_path, sync="always") as store:
        store.define_metric("m", FREQ, "sum")
        existing = store.series("m", "c/h0500")
        store.write_tick(0, [*keys, existing, keys[3]], np.arange(2002, dtype=np.float32))
        assert store.series("m", "c/h0500") == existing == 0
        handles = [store.series(*k) for k in keys]
        assert sorted(handles) == list(range(2000))
        # A series named twice in one call is one series; the later value wins.
        expected = {key: float(i) for i, key in enumerate(keys)}
        expected[keys[500]], expected[keys[3]] = 2000.0, 2001.0
        for key in (keys[3], keys[500], keys[1999]):
            assert store.read(key, 0, FREQ).values.tolist() == [expected[key]]
    with metricstore.open(tmp_path) as again:
        assert len(again.list_series()) == 2000
        total = float(np.float32(sum(expected.values())))
        assert again.read(("m", "c"), 0, FREQ).values.tolist() == [total]
