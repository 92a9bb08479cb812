"""The one conversion module turns user input into the core's strict types
exactly, and rejects what it cannot convert without guessing, naming the
argument."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from metricstore._convert import (
    to_frequency,
    to_handles,
    to_path,
    to_ticks,
    to_ticks_array,
    to_values,
)

# 2020-12-25T19:04:36Z, the emmy job's start, in every unit.
T_S = 1608923076
T = {"s": T_S, "ms": T_S * 10**3, "us": T_S * 10**6, "ns": T_S * 10**9}


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize(
    "value",
    [
        np.datetime64(T_S, "s"),
        np.datetime64(T_S * 1000, "ms"),
        np.datetime64(T_S * 10**6, "us"),
        np.datetime64(T_S * 10**9, "ns"),
        dt.datetime(2020, 12, 25, 19, 4, 36),
        dt.datetime(2020, 12, 25, 20, 4, 36, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        pd.Timestamp("2020-12-25T19:04:36"),
        pd.Timestamp("2020-12-25T14:04:36", tz="America/New_York"),
        "2020-12-25T19:04:36",
        "2020-12-25T19:04:36Z",
        "2020-12-25T20:04:36+01:00",
    ],
    ids=repr,
)
def test_every_timestamp_form_converts_exactly_to_every_unit(value: object, unit: str) -> None:
    assert to_ticks(value, unit, "start") == T[unit]


def test_plain_ints_are_ticks_of_the_store_unit_never_guessed() -> None:
    assert to_ticks(T_S, "ns", "start") == T_S
    assert to_ticks(np.int32(7), "s", "start") == 7


def test_finer_inputs_round_down_to_the_store_unit() -> None:
    assert to_ticks(np.datetime64(T_S * 1000 + 999, "ms"), "s", "t") == T_S
    # Before the epoch "down" means toward the past, not toward zero.
    assert to_ticks(np.datetime64(-1, "ms"), "s", "t") == -1
    assert to_ticks("2020-12-25T19:04:36.000000001", "us", "t") == T["us"]


def test_dates_are_midnight_utc() -> None:
    assert to_ticks(dt.date(2020, 12, 25), "s", "t") == 1608854400


def test_month_and_year_datetimes_are_exact() -> None:
    assert to_ticks(np.datetime64("2020-12", "M"), "s", "t") == 1606780800
    assert to_ticks(np.datetime64("2021", "Y"), "s", "t") == 1609459200


@pytest.mark.parametrize(
    "value, error, words",
    [
        (np.datetime64("NaT"), ValueError, "NaT"),
        (pd.NaT, ValueError, "NaT"),
        (1.5, TypeError, "float"),
        (True, TypeError, "bool"),
        (2**63, ValueError, "int64"),
        ("yesterday", ValueError, "ISO 8601"),
        (object(), TypeError, "object"),
        (np.timedelta64(5, "s"), TypeError, "timedelta"),
        # datetime64[s] of year 3000 does not fit in int64 nanoseconds; NumPy
        # itself would wrap around silently.
        (np.datetime64("3000-01-01", "s"), ValueError, "does not fit"),
    ],
    ids=repr,
)
def test_bad_timestamps_raise_naming_the_argument(
    value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=rf"^start: .*{words}"):
        to_ticks(value, "ns", "start")


def test_timestamp_arrays_in_any_form_convert_elementwise() -> None:
    expected = np.array([T["ms"], T["ms"] + 60_000], dtype=np.int64)
    forms: list[object] = [
        np.array(["2020-12-25T19:04:36", "2020-12-25T19:05:36"], dtype="datetime64[s]"),
        pd.to_datetime(["2020-12-25T19:04:36", "2020-12-25T19:05:36"]),  # us in pandas 3
        pd.DatetimeIndex(["2020-12-25T20:04:36", "2020-12-25T20:05:36"], tz="Europe/Berlin"),
        pd.Series(pd.to_datetime(["2020-12-25T19:04:36", "2020-12-25T19:05:36"], utc=True)),
        [dt.datetime(2020, 12, 25, 19, 4, 36), "2020-12-25T19:05:36"],
        np.array(["2020-12-25T19:04:36", "2020-12-25T19:05:36"]),
        [T["ms"], T["ms"] + 60_000],
        np.array([T["ms"], T["ms"] + 60_000], dtype=np.uint64),
    ]
    for form in forms:
        got = to_ticks_array(form, "ms", "timestamps")
        assert got.dtype == np.int64 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected, err_msg=repr(form))


@pytest.mark.parametrize(
    "value, error, words",
    [
        (np.array(["2020-01-01", "NaT"], dtype="datetime64[s]"), ValueError, "element 1 is NaT"),
        (np.array([1.0, 2.0]), TypeError, "float64"),
        (np.array([dt.datetime(2020, 1, 1)], dtype=object), TypeError, "object"),
        (np.zeros((2, 2), dtype=np.int64), ValueError, "1-D"),
        (np.array([2**64 - 1], dtype=np.uint64), ValueError, "int64"),
        ([1, 2.5], TypeError, r"\[1\]: got float"),
        (np.array(["2020-01-01", "soon"]), ValueError, "dates"),
    ],
    ids=["NaT", "float", "object", "2-D", "uint64", "list-float", "bad-string"],
)
def test_bad_timestamp_arrays_raise_naming_the_argument(
    value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=rf"^timestamps.*{words}"):
        to_ticks_array(value, "s", "timestamps")


def test_float32_values_pass_through_without_a_copy() -> None:
    values = np.arange(5, dtype=np.float32)
    assert to_values(values, "values") is values


def test_float64_values_round_to_nearest_float32_keeping_nan_and_inf() -> None:
    wide = np.array([0.1, np.nan, np.inf, -np.inf, -0.0, 16777217.0, 3.4e38])
    got = to_values(wide, "values")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), wide.astype(np.float32).view(np.uint32))


def test_ints_and_lists_with_none_convert() -> None:
    np.testing.assert_array_equal(to_values(np.array([1, 2], dtype=np.int64), "v"), [1.0, 2.0])
    got = to_values([1, None, 2.5], "v")
    assert got.dtype == np.float32 and np.isnan(got[1]) and got[2] == 2.5


def test_pandas_nullable_values_turn_missing_into_nan() -> None:
    got = to_values(pd.Series([1.0, None], dtype="Float64"), "values")
    assert got.dtype == np.float32 and got[0] == 1.0 and np.isnan(got[1])


@pytest.mark.parametrize(
    "value, error, words",
    [
        (np.array([1.0, 1e39]), ValueError, r"element 1 \(1e\+39\) is beyond the float32"),
        (np.array(["1.5"]), TypeError, "dtype <U3"),
        (np.array([True]), TypeError, "dtype bool"),
        (np.array([1 + 2j]), TypeError, "complex"),
        (np.zeros((3, 1)), ValueError, r"shape \(3, 1\)"),
        ([1.0, "2"], TypeError, "element 1 is a str"),
        ([True], TypeError, "element 0 is a bool"),
    ],
    ids=["overflow", "str", "bool", "complex", "2-D", "list-str", "list-bool"],
)
def test_bad_values_raise_naming_the_argument(
    value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=rf"^values: .*{words}"):
        to_values(value, "values")


def test_handles_become_uint32_and_bad_handles_are_rejected() -> None:
    got = to_handles([0, 5, 7], "series")
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, [0, 5, 7])
    with pytest.raises(ValueError, match=r"^series: -1 is not a series handle"):
        to_handles([0, -1], "series")
    with pytest.raises(ValueError, match=r"^series: 4294967296 is not"):
        to_handles([2**32], "series")
    with pytest.raises(TypeError, match=r"^series: .*float64"):
        to_handles([0.0], "series")
    with pytest.raises(TypeError, match=r"^series: .*bool"):
        to_handles([True], "series")


def test_paths_split_on_slash_and_tuples_stay_as_given() -> None:
    assert to_path("emmy/e0102/cpu3", "path") == ["emmy", "e0102", "cpu3"]
    assert to_path(("emmy", "e0102"), "path") == ["emmy", "e0102"]
    assert to_path("", "path") == []
    with pytest.raises(TypeError, match=r"^path: element 1 is a int"):
        to_path(("emmy", 3), "path")
    with pytest.raises(TypeError, match=r"^path: expected"):
        to_path(3, "path")


def test_frequencies_accept_ticks_and_exact_timedeltas() -> None:
    assert to_frequency(60, "s", "frequency") == 60
    assert to_frequency(dt.timedelta(minutes=1), "ms", "frequency") == 60_000
    assert to_frequency(np.timedelta64(10, "s"), "s", "frequency") == 10
    assert to_frequency(pd.Timedelta("250ms"), "us", "frequency") == 250_000
    with pytest.raises(ValueError, match=r"^frequency: .*whole number of 's' ticks"):
        to_frequency(dt.timedelta(milliseconds=1500), "s", "frequency")
    with pytest.raises(ValueError, match=r"^frequency: must be positive"):
        to_frequency(0, "s", "frequency")
    with pytest.raises(TypeError, match=r"^frequency: "):
        to_frequency(1.5, "s", "frequency")
