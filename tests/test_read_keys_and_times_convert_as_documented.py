"""Reads convert their series keys and times in the compiled core (so that a
read runs no Python code): every spelling docs/decisions.md allows reads the
same data, every other one is refused with the documented class and a message
naming the argument, and the result is a full ``metricstore.ReadResult``."""

from __future__ import annotations

import datetime as dt
import enum
import gc
import pickle
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import metricstore


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("load", 60, "avg")
    store.define_metric("power", 10, "sum")
    for i, host in enumerate(("e0102", "e0103")):
        store.write(("load", ("emmy", host)), 6000, np.arange(10, dtype=np.float32) + 10 * i)
    store.write(("power", "emmy/e0102"), 6000, np.ones(5, dtype=np.float32))
    return store


PATH_SPELLINGS = ["emmy/e0102", ("emmy", "e0102"), ["emmy", "e0102"]]


@pytest.mark.parametrize("path", PATH_SPELLINGS, ids=["str", "tuple", "list"])
def test_every_path_spelling_reads_the_same_series(store: metricstore.Store, path: Any) -> None:
    by_handle = store.read(0, 6000, 6600)
    by_key = store.read(("load", path), 6000, 6600)
    np.testing.assert_array_equal(by_key.values, by_handle.values)
    assert by_key.series == ("load", path)
    assert by_key.keys == [("load", ("emmy", "e0102"))]
    many = store.read_many([("load", path), 1, ("load", "emmy")], 6000, 6600)
    np.testing.assert_array_equal(many.values[0], by_handle.values)
    np.testing.assert_array_equal(many.values[1], store.read(1, 6000, 6600).values)
    np.testing.assert_array_equal(many.values[2], (by_handle.values * 2 + 10) / 2)
    assert many.series == [("load", path), 1, ("load", "emmy")]


def test_the_root_and_subclasses_of_str_and_tuple_are_paths_too(store: metricstore.Store) -> None:
    class Name(str):
        pass

    root = np.arange(10, dtype=np.float32) + 5  # avg of the two hosts
    np.testing.assert_array_equal(store.read(("load", ""), 6000, 6600).values, root)
    np.testing.assert_array_equal(store.read(("load", ()), 6000, 6600).values, root)
    key = (Name("load"), (Name("emmy"), "e0103"))
    np.testing.assert_array_equal(
        store.read(key, 6000, 6600).values, store.read(1, 6000, 6600).values
    )


@pytest.mark.parametrize(
    "start, stop",
    [
        ("1970-01-01T01:40", "1970-01-01T01:50"),
        (dt.datetime(1970, 1, 1, 1, 40), dt.datetime(1970, 1, 1, 1, 50, tzinfo=dt.UTC)),
        (np.datetime64(6000, "s"), np.datetime64(6_600_000, "ms")),
        (np.int64(6000), np.uint16(6600)),
        (dt.date(1970, 1, 1), 6600),
    ],
    ids=["iso", "datetime", "datetime64", "numpy-int", "date"],
)
def test_reads_take_every_timestamp_form_as_ints_do(
    store: metricstore.Store, start: object, stop: object
) -> None:
    expect_start = 0 if isinstance(start, dt.date) and not isinstance(start, dt.datetime) else 6000
    want = store.read(0, expect_start, 6600)
    got = store.read(0, start, stop)
    assert (got.start, got.step, len(got)) == (want.start, want.step, len(want))
    np.testing.assert_array_equal(got.values, want.values)
    many = store.read_many([0], start, stop)
    np.testing.assert_array_equal(many.values[0], want.values)
    coarse = store.read(0, start, stop, resolution=dt.timedelta(minutes=2))
    assert (coarse.start, coarse.step) == (want.start, 120)


class Handle(enum.IntEnum):
    FIRST = 0


NOT_A_KEY = r"expected a series handle or a \(metric, path\) pair, got "
BAD_KEYS: list[tuple[object, type[Exception], str]] = [
    (True, TypeError, NOT_A_KEY + "bool$"),
    (np.bool_(False), TypeError, NOT_A_KEY + "bool$"),
    (np.float64(0.0), TypeError, NOT_A_KEY + "float64$"),
    (Handle.FIRST, TypeError, NOT_A_KEY + "Handle$"),
    (0.0, TypeError, NOT_A_KEY + "float$"),
    (["load", "emmy"], TypeError, NOT_A_KEY + "list$"),
    (("load",), TypeError, NOT_A_KEY + "tuple$"),
    ((3, "emmy"), TypeError, NOT_A_KEY + "tuple$"),
    (-1, ValueError, r"-1 is not a series handle"),
    (np.int64(-1), ValueError, r"-1 is not a series handle"),
    (np.uint64(2**32), ValueError, r"4294967296 is not a series handle"),
    (2**32, ValueError, r"4294967296 is not a series handle"),
    (2**70, ValueError, r"1180591620717411303424 is not a series handle"),
]
BAD_PATHS: list[tuple[object, str]] = [
    (("emmy", 3), r"\[1\]: element 1 is a int, not a str$"),
    (3, r"\[1\]: expected a tuple of names or a '/'-joined str, got int$"),
    (b"emmy", r"\[1\]: expected a tuple of names or a '/'-joined str, got bytes$"),
]


@pytest.mark.parametrize("key, error, message", BAD_KEYS)
def test_a_bad_key_names_series_and_its_index_in_read_many(
    store: metricstore.Store, key: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=r"^series: " + message):
        store.read(key, 6000, 6600)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"^series: " + message):
        store.read(key, 6000, 6600, resolution=120)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"^series: " + message):
        store.read_stats(key, 6000, 6600)  # type: ignore[arg-type]
    for call in (
        lambda: store.read_many([0, 1, key], 6000, 6600),  # type: ignore[list-item]
        lambda: store.read_many([0, 1, key], 6000, 6600, resolution=120),  # type: ignore[list-item]
    ):
        with pytest.raises(error, match=r"^series\[2\]: " + message):
            call()


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_a_bad_path_names_the_key_it_is_in(
    store: metricstore.Store, path: object, message: str
) -> None:
    with pytest.raises(TypeError, match=r"^series" + message):
        store.read(("load", path), 6000, 6600)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^series\[1\]" + message):
        store.read_many([0, ("load", path)], 6000, 6600)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^path" + message.replace(r"\[1\]", "")):
        store.series("load", path)  # type: ignore[arg-type]


def test_bad_names_in_a_path_are_refused_by_the_engine(store: metricstore.Store) -> None:
    for path, message in [("emmy/../x", r'component 1 "\.\."'), ("emmy//x", r'component 1 ""')]:
        with pytest.raises(metricstore.InvalidNameError, match=message):
            store.read(("load", path), 6000, 6600)
        with pytest.raises(metricstore.InvalidNameError, match=message):
            store.read_many([0, ("load", path)], 6000, 6600)


def test_a_time_outside_int64_names_its_argument(store: metricstore.Store) -> None:
    for start, stop, name in [(2**63, 2**63 + 60, "start"), (0, 2**63, "stop"),
                              (-(2**63), 0, "start")]:  # fmt: skip
        message = rf"^{name}: -?\d+ is outside the int64 range of timestamps$"
        with pytest.raises(ValueError, match=message):
            store.read(0, start, stop)
        with pytest.raises(ValueError, match=message):
            store.read_many([0], start, stop)


@pytest.mark.parametrize(
    "start, error, message",
    [
        (True, TypeError, r"^start: expected a timestamp, got a bool$"),
        (1.5, TypeError, r"^start: got float 1\.5"),
        (dt.timedelta(seconds=1), TypeError, r"^start: expected a timestamp, got a timedelta$"),
        (np.datetime64("NaT"), ValueError, r"^start: element 0 is NaT"),
        ("soon", ValueError, r"^start: cannot read 'soon'"),
    ],
    ids=["bool", "float", "timedelta", "NaT", "not-a-date"],
)
def test_a_bad_time_is_refused_before_a_bad_key_in_read(
    store: metricstore.Store, start: object, error: type[Exception], message: str
) -> None:
    # read converts start and stop first; read_many its keys first.
    with pytest.raises(error, match=message):
        store.read("not a key", start, 6600)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        store.read_many([0], start, 6600)
    with pytest.raises(TypeError, match=r"^series\[0\]: "):
        store.read_many(["not a key"], start, 6600)  # type: ignore[list-item]


def test_resolutions_are_ticks_or_timedeltas_named_in_errors(store: metricstore.Store) -> None:
    minutes = store.read(0, 6000, 7200, resolution=dt.timedelta(minutes=2))
    ticks = store.read(0, 6000, 7200, resolution=120)
    np.testing.assert_array_equal(minutes.values, ticks.values)
    for resolution, error, message in [
        (-1, ValueError, r"^resolution: must be positive, got -1$"),
        (0, ValueError, r"^resolution: must be positive, got 0$"),
        (True, TypeError, r"^resolution: expected a number of ticks, got a bool$"),
        (1.5, TypeError, r"^resolution: expected an int of 's' ticks or a timedelta"),
    ]:
        with pytest.raises(error, match=message):
            store.read(0, 6000, 7200, resolution=resolution)
        with pytest.raises(error, match=message):
            store.read_many([0], 6000, 7200, resolution=resolution)


def test_read_many_takes_any_iterable_of_keys_and_keeps_them(store: metricstore.Store) -> None:
    def keys() -> Iterator[object]:
        yield 1
        yield ("load", "emmy/e0102")

    result = store.read_many(keys(), 6000, 6600)  # type: ignore[arg-type]
    assert result.series == [1, ("load", "emmy/e0102")]
    assert result.keys == [1, ("load", ("emmy", "e0102"))]
    np.testing.assert_array_equal(result.values[1], store.read(0, 6000, 6600).values)
    assert store.read_many(range(2), 6000, 6600).series == [0, 1]
    # An array of handles iterates as NumPy integers, which are handles too.
    from_array = store.read_many(np.array([1, 0]), 6000, 6600)
    assert from_array.keys == [1, 0]
    np.testing.assert_array_equal(from_array.values[1], store.read(0, 6000, 6600).values)
    given = [0, 1]
    assert store.read_many(given, 6000, 6600).series is not given


@pytest.mark.parametrize(
    "series, error, message",
    [
        (("load", "emmy"), TypeError, "wrap one key in a list"),
        ("ab", TypeError, "wrap one key in a list"),
        (5, TypeError, "'int' object is not iterable"),
        (np.array([0.0, 1.0]), TypeError, r"^series\[0\]: .* got float64$"),
    ],
    ids=["bare-key", "str", "int", "float-ndarray"],
)
def test_read_many_refuses_what_is_not_a_list_of_keys(
    store: metricstore.Store, series: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.read_many(series, 6000, 6600)  # type: ignore[arg-type]


def test_the_core_returns_the_public_read_result(store: metricstore.Store) -> None:
    results = [
        store.read(0, 6000, 6600),
        store.read_many([0, 1], 6000, 6600),
        store.read(0, 6000, 7200, resolution=120, method="lttb"),
        store.read_many([0, 1], 6000, 7200, resolution=120),
    ]
    for result in results:
        assert type(result) is metricstore.ReadResult
        assert type(result).__module__ == "metricstore.store"
        assert result.time_unit == "s"
        assert result.values.dtype == np.float32
    lttb = results[2]
    assert lttb.ticks.dtype == np.int64
    assert len(lttb.ticks) == len(lttb) > 0
    assert lttb.stop == int(lttb.ticks[-1]) + 1


def test_a_result_pickles_with_everything_it_holds() -> None:
    times = np.array([0, 130, 300], dtype=np.int64)
    result = metricstore.ReadResult(
        np.array([1.0, np.nan, 3.0], dtype=np.float32), 0, 60, "ms", 7,
        keys=[("load", ("emmy",))], times=times, unit="GF/s",
    )  # fmt: skip
    copy = pickle.loads(pickle.dumps(result))
    assert type(copy) is metricstore.ReadResult
    np.testing.assert_array_equal(copy.values, result.values)
    assert (copy.start, copy.step, copy.time_unit, copy.series) == (0, 60, "ms", 7)
    assert copy.unit == "GF/s"
    assert copy.keys == [("load", ("emmy",))]
    np.testing.assert_array_equal(copy.ticks, times)
    assert copy.stop == 301


def test_a_result_computes_its_grid_from_its_attributes() -> None:
    result = metricstore.ReadResult(np.zeros((2, 3), dtype=np.float32), 2**63 - 120, 60, "s", [])
    assert len(result) == 3
    assert result.stop == 2**63 + 60  # a Python int, past int64 like the old class
    result.start = 600
    result.series = [4, ("load", "emmy/e0102")]
    assert result.stop == 780
    np.testing.assert_array_equal(result.ticks, [600, 660, 720])
    assert result.keys == [4, ("load", ("emmy", "e0102"))]
    assert repr(result) == (
        "ReadResult(series=[4, ('load', 'emmy/e0102')], start=600, step=60, time_unit='s', "
        "values=<float32 2x3>, mean=0, coverage=100.0%)"
    )


def test_a_result_in_a_reference_cycle_is_collected() -> None:
    class Marker:
        pass

    marker = Marker()
    rows: list[object] = [marker]
    result = metricstore.ReadResult(np.zeros(1, dtype=np.float32), 0, 1, "s", rows)
    rows.append(result)
    alive = weakref.ref(marker)
    del marker, rows, result
    gc.collect()
    assert alive() is None


def test_reads_of_a_closed_store_raise_closed_error_after_argument_errors(
    store: metricstore.Store,
) -> None:
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: store.read(0, 6000, 6600),
        lambda: store.read(("load", "emmy"), 6000, 6600, resolution=120),
        lambda: store.read_many([0, ("load", "emmy")], 6000, 6600),
        lambda: store.read_stats(0, 6000, 6600),
    ]
    for call in calls:
        with pytest.raises(metricstore.ClosedError, match=r"^the store is closed$"):
            call()
    with pytest.raises(TypeError, match=r"^series\[1\]: "):
        store.read_many([0, True], 6000, 6600)
