"""Every read says how many stored samples are behind each value
(``counts``), and ``min_count=k`` leaves a value NaN where fewer than k are,
exactly as a NumPy model of the same series computes it: plain and
aggregated reads (sum and avg), several rows at once, and resampled reads.
A bad ``min_count`` is refused with a ValueError naming it."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metricstore

STEP = 10
METHODS = ("avg", "min", "max")


def bits(values: Any) -> Any:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def same(got: Any, want: Any) -> None:
    """Bit for bit, except that any NaN equals any NaN."""
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), (got, want)
    assert np.array_equal(bits(got[~nan]), bits(want[~nan])), (got, want)


# -- the NumPy model -----------------------------------------------------------


def model_slots(
    rows: np.ndarray, aggregation: str, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The value and count of each slot of rows combined as the store
    documents it: float64 sums in path order from -0.0, NaN skipped, avg
    divided by the count, NaN below max(min_count, 1)."""
    counts = np.count_nonzero(~np.isnan(rows), axis=0).astype(np.uint32)
    values = np.full(rows.shape[1], np.nan, dtype=np.float32)
    for i in range(rows.shape[1]):
        total, n = -0.0, 0
        for v in rows[:, i]:
            if not math.isnan(v):
                total += float(v)
                n += 1
        if n >= max(min_count, 1):
            values[i] = np.float32(total / n if aggregation == "avg" else total)
    return values, counts


def model_buckets(
    slots: np.ndarray, slot_counts: np.ndarray, factor: int, method: str, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Buckets of ``factor`` slots: avg (float64, in order), min or max of
    the slots' values; count the sum of the slots' counts; NaN below
    min_count or with no value."""
    n = len(slots) // factor
    values = np.full(n, np.nan, dtype=np.float32)
    counts = slot_counts.reshape(n, factor).sum(axis=1).astype(np.uint32)
    for j in range(n):
        present = [float(v) for v in slots[j * factor : (j + 1) * factor] if not math.isnan(v)]
        if not present or counts[j] < min_count:
            continue
        if method == "avg":
            total = 0.0
            for v in present:
                total += v
            values[j] = np.float32(total / len(present))
        else:
            values[j] = np.float32(min(present) if method == "min" else max(present))
    return values, counts


# -- generated stores ----------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """1 to 5 series of one host's cores with random gaps, of small dyadic
    values (so that every sum is exact and the model needs no tolerance)."""
    series = draw(st.integers(1, 5))
    factor = draw(st.integers(1, 4))
    buckets = draw(st.integers(1, 6))
    length = factor * buckets
    cells = st.one_of(st.just(np.nan), st.integers(-4000, 4000).map(lambda i: i / 8))
    rows = np.array(
        draw(st.lists(st.lists(cells, min_size=length, max_size=length), min_size=series,
                      max_size=series)),
        dtype=np.float32,
    )  # fmt: skip
    return {
        "rows": rows,
        "factor": factor,
        "aggregation": draw(st.sampled_from(["sum", "avg"])),
        "min_count": draw(st.integers(0, series + 1)),
        "method": draw(st.sampled_from(METHODS)),
    }


def load(case: dict[str, Any]) -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("m", STEP, case["aggregation"])
    for i, row in enumerate(case["rows"]):
        store.write(("m", f"c/h/core{i}"), 0, row)
    return store


@settings(max_examples=150, deadline=None)
@given(cases())
def test_an_aggregated_read_counts_the_series_of_each_slot_as_numpy_does(
    case: dict[str, Any],
) -> None:
    rows, k = case["rows"], case["min_count"]
    store = load(case)
    stop = rows.shape[1] * STEP
    want, want_counts = model_slots(rows, case["aggregation"], k)
    got = store.read(("m", "c/h"), 0, stop, min_count=k)
    same(got.values, want)
    assert got.counts.dtype == np.uint32
    assert np.array_equal(got.counts, want_counts)
    assert (got.sources, got.method, got.frequency, got.min_count) == (len(rows), None, STEP, k)
    # One series: a count of 1 where it has a sample; min_count above 1 leaves nothing.
    one = store.read(("m", "c/h/core0"), 0, stop, min_count=k)
    assert np.array_equal(one.counts, (~np.isnan(rows[0])).astype(np.uint32))
    same(one.values, rows[0] if k <= 1 else np.full(rows.shape[1], np.nan))
    # Rows of read_many count as the reads of each alone.
    many = store.read_many([("m", "c/h"), ("m", "c/h/core0")], 0, stop, min_count=k)
    same(many.values, np.stack([want, one.values]))
    assert np.array_equal(many.counts, np.stack([want_counts, one.counts]))
    assert many.counts.dtype == np.uint32
    assert many.sources.tolist() == [len(rows), 1]


@settings(max_examples=150, deadline=None)
@given(cases())
def test_a_resampled_read_counts_the_samples_of_each_bucket_as_numpy_does(
    case: dict[str, Any],
) -> None:
    rows, k, factor, method = case["rows"], case["min_count"], case["factor"], case["method"]
    store = load(case)
    stop = rows.shape[1] * STEP
    slots, slot_counts = model_slots(rows, case["aggregation"], 0)
    want, want_counts = model_buckets(slots, slot_counts, factor, method, k)
    resolution = factor * STEP
    got = store.read(("m", "c/h"), 0, stop, resolution=resolution, method=method, min_count=k)
    same(got.values, want)
    assert np.array_equal(got.counts, want_counts)
    assert (got.method, got.frequency, got.step) == (method, STEP, resolution)
    one_want, one_counts = model_buckets(
        rows[0], (~np.isnan(rows[0])).astype(np.uint32), factor, method, k
    )
    many = store.read_many(
        [("m", "c/h"), ("m", "c/h/core0")], 0, stop, resolution=resolution, method=method,
        min_count=k,
    )  # fmt: skip
    same(many.values, np.stack([want, one_want]))
    assert np.array_equal(many.counts, np.stack([want_counts, one_counts]))
    assert many.sources.tolist() == [len(rows), 1]


def test_lttb_picks_among_the_slots_with_min_count_and_counts_them() -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "sum")
    store.write(("m", "c/a"), 0, [1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    store.write(("m", "c/b"), 0, [10.0, np.nan, 30.0, 40.0, np.nan, 60.0])
    every = store.read(("m", "c"), 0, 60, resolution=30, method="lttb")
    assert every.ticks.tolist() == [0, 50]
    assert every.values.tolist() == [11.0, 66.0] and every.counts.tolist() == [2, 2]
    full = store.read(("m", "c"), 0, 60, resolution=20, method="lttb", min_count=2)
    # Slots 0, 3 and 5 have both series: LTTB keeps all three (three buckets).
    assert full.ticks.tolist() == [0, 30, 50]
    assert full.values.tolist() == [11.0, 44.0, 66.0]
    assert full.counts.tolist() == [2, 2, 2]


def test_read_stats_with_min_count_summarises_only_the_well_covered_slots() -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "sum")
    store.write(("m", "c/a"), 0, [1.0, 2.0, np.nan, 4.0])
    store.write(("m", "c/b"), 0, [10.0, np.nan, np.nan, 40.0])
    every = store.read_stats(("m", "c"), 0, 40)
    full = store.read_stats(("m", "c"), 0, 40, min_count=2)
    assert (every.count, every.avg, every.min) == (3, (11.0 + 2.0 + 44.0) / 3, 2.0)
    assert (full.count, full.avg, full.min, full.max) == (2, 27.5, 11.0, 44.0)


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True, None.__class__, [2]])
def test_a_bad_min_count_is_a_value_error_naming_it(bad: object) -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "sum")
    store.write(("m", "c/a"), 0, [1.0, 2.0])
    for read in (
        lambda: store.read(("m", "c"), 0, 20, min_count=bad),  # type: ignore[arg-type]
        lambda: store.read_many([("m", "c")], 0, 20, min_count=bad),  # type: ignore[arg-type]
        lambda: store.read(("m", "c"), 0, 20, resolution=20, min_count=bad),  # type: ignore[arg-type]
        lambda: store.read_stats(("m", "c"), 0, 20, min_count=bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=r"^min_count: expected an int of at least 0, got "):
            read()
    assert store.read(("m", "c/a"), 0, 20).values.tolist() == [1.0, 2.0]


def test_numpy_integers_and_huge_ints_are_taken_as_min_count() -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "sum")
    store.write(("m", "c/a"), 0, [1.0])
    store.write(("m", "c/b"), 0, [2.0])
    assert store.read(("m", "c"), 0, 10, min_count=np.int64(2)).values.tolist() == [3.0]
    huge = store.read(("m", "c"), 0, 10, min_count=2**70)
    assert np.isnan(huge.values).all() and huge.counts.tolist() == [2]


def test_a_result_pickles_with_its_counts_and_resampling() -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "avg")
    store.write(("m", "c/a"), 0, [1.0, np.nan, 3.0, 4.0])
    store.write(("m", "c/b"), 0, [5.0, 6.0, np.nan, np.nan])
    result = store.read_many([("m", "c")], 0, 40, resolution=20, min_count=3)
    back = pickle.loads(pickle.dumps(result))
    assert back.counts.tolist() == [[3, 2]] and back.sources.tolist() == [2]
    # Bucket 0: the mean of the slots (1 + 5) / 2 and 6, of 3 samples.
    assert np.isnan(back.values[0, 1]) and back.values[0, 0] == np.float32(4.5)
    assert (back.method, back.frequency, back.min_count, back.step) == ("avg", STEP, 3, 20)
