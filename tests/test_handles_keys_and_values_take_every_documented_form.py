"""Wherever a series handle is accepted, a NumPy integer scalar (what
iterating an array of handles gives) is accepted as the same handle; lists
of series may mix handles and (metric, path) keys in any order; a block of
one sample may be written as a bare number. Anything else is refused with
an error naming the argument, and changes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import metricstore


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("m", 10, "sum")
    store.series("m", "c/a")
    store.series("m", "c/b")
    return store


NUMPY_HANDLES = [np.int64(1), np.uint32(1), np.int8(1), np.uint64(1)]


@pytest.mark.parametrize("handle", NUMPY_HANDLES, ids=lambda h: type(h).__name__)
def test_a_numpy_integer_is_the_handle_it_holds_everywhere(
    store: metricstore.Store, handle: Any
) -> None:
    store.write(handle, 100, [1.0, 2.0])
    store.write_tick(120, [handle], [3.0])
    store.write_points([handle], [130], [4.0])
    assert store.series_key(handle) == ("m", ("c", "b"))
    assert store.read(handle, 100, 140).values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert store.read(1, 100, 140).values.tolist() == [1.0, 2.0, 3.0, 4.0]
    many = store.read_many([0, handle], 100, 140)
    np.testing.assert_array_equal(many.values, [[np.nan] * 4, [1.0, 2.0, 3.0, 4.0]])
    assert store.read_stats(handle, 100, 140).count == 4
    assert store.extent(handle) == (100, 140)


def test_handles_from_iterating_a_handle_array_write_and_read(store: metricstore.Store) -> None:
    handles = np.array([store.find_series("m", "c/a"), store.find_series("m", "c/b")])
    for i, h in enumerate(handles):
        store.write(h, 0, np.full(3, i + 1.0))
    many = store.read_many(list(handles), 0, 30)
    np.testing.assert_array_equal(many.values, [[1.0] * 3, [2.0] * 3])


@pytest.mark.parametrize("order", ["handle-first", "key-first"])
def test_a_list_of_series_may_mix_handles_and_keys_in_any_order(
    store: metricstore.Store, order: str
) -> None:
    a, b = np.uint32(0), ("m", "c/b")
    series = [a, b] if order == "handle-first" else [b, a]
    store.write_tick(0, series, [1.0, 2.0])
    store.write_points(series, [10, 20], [3.0, 4.0])
    first, second = (0, 1) if order == "handle-first" else (1, 0)
    rows = store.read_many([0, 1], 0, 30).values
    np.testing.assert_array_equal(rows[first], [1.0, 3.0, np.nan])
    np.testing.assert_array_equal(rows[second], [2.0, np.nan, 4.0])
    # A key in the list creates its series, as anywhere else.
    store.write_tick(30, [("m", "c/new"), 0], [5.0, 6.0])
    assert store.read(("m", "c/new"), 30, 40).values.tolist() == [5.0]


@pytest.mark.parametrize(
    "series, error, message",
    [
        ([0, "c/b"], TypeError, r"^series\[1\]: expected a series handle or a \(metric, path\)"),
        ([("m", "c/b"), True], TypeError, r"^series\[1\]: .* got bool$"),
        ([("m", "c/b"), -1], ValueError, r"^series\[1\]: -1 is not a series handle"),
        ([("m", "c/b"), 7], ValueError, r"^series: element 1 is 7, which is not a series handle"),
        ([np.int64(0), ("nope", "c/b")], metricstore.UnknownMetricError, '"nope"'),
    ],
    ids=["str", "bool", "negative", "unknown-handle", "unknown-metric"],
)
def test_a_bad_entry_in_a_mixed_list_names_its_index_and_changes_nothing(
    store: metricstore.Store, series: list[object], error: type[Exception], message: str
) -> None:
    before = (len(store), store.stats()["samples"])
    with pytest.raises(error, match=message):
        store.write_tick(0, series, [1.0, 2.0])
    with pytest.raises(error, match=message):
        store.write_points(series, [0, 10], [1.0, 2.0])
    assert (len(store), store.stats()["samples"]) == before


@pytest.mark.parametrize(
    "value, stored",
    [(5.0, 5.0), (7, 7.0), (np.float32(0.1), np.float32(0.1)), (np.float64(0.1), np.float32(0.1)),
     (np.int16(-3), -3.0), (np.array(2.5), 2.5), (float("nan"), np.nan)],
    ids=["float", "int", "float32", "float64", "int16", "0-d", "nan"],
)  # fmt: skip
def test_a_scalar_value_writes_one_sample(
    store: metricstore.Store, value: object, stored: float
) -> None:
    store.write(0, 100, value)
    store.write(("m", "c/b"), 100, value)
    for key in (0, 1):
        got = store.read(key, 90, 120).values
        np.testing.assert_array_equal(got, np.array([np.nan, stored, np.nan], dtype=np.float32))


@pytest.mark.parametrize(
    "value, error, message",
    [
        (True, TypeError, r"^values: expected real numbers, got dtype bool$"),
        (1 + 2j, TypeError, r"^values: expected real numbers, got dtype complex128$"),
        ("5", ValueError, r"^values: expected a 1-D array, got shape \(\)$"),
        (1e300, ValueError, r"^values: element 0 \(1e\+300\) is beyond the float32 range"),
    ],
    ids=["bool", "complex", "str", "overflow"],
)
def test_a_scalar_that_is_not_a_real_number_is_refused(
    store: metricstore.Store, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.write(0, 100, value)
    assert store.stats()["samples"] == 0
