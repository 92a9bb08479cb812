"""Bad input raises a clear error of the documented class, naming the argument,
and leaves everything already stored exactly as it was."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest

import metricstore
from metricstore import exceptions as exc


def _store() -> tuple[metricstore.Store, list[int]]:
    store = metricstore.Store()
    store.define_metric("load", 60, "avg")
    store.define_metric("power", 10, "sum")
    handles = [
        store.series("load", "emmy/e0102"),
        store.series("load", "emmy/e0103"),
        store.series("power", "emmy/e0102"),
    ]
    for i, h in enumerate(handles):
        store.write(h, 6000, np.arange(50, dtype=np.float32) + 100 * i)
    return store, handles


def _snapshot(store: metricstore.Store) -> tuple[list[bytes], int, int]:
    rows = [store.read(h, 0, 20_000).values.tobytes() for h, _, _ in store.list_series()]
    return rows, len(store), store.stats()["samples"]


BAD_WRITES: dict[str, tuple[Callable[[metricstore.Store, list[int]], object], type, str]] = {
    # A tick whose last handle is unknown must not apply the valid ones before it.
    "tick-unknown-handle": (
        lambda s, h: s.write_tick(6000, [h[0], h[1], 99], [1.0, 2.0, 3.0]),
        ValueError,
        r"^series: element 2 is 99, which is not a series handle",
    ),
    "tick-length-mismatch": (
        lambda s, h: s.write_tick(6000, [h[0], h[1]], [1.0]),
        ValueError,
        r"^values: has 1 elements but series has 2",
    ),
    "points-timestamp-out-of-range": (
        lambda s, h: s.write_points([h[0], h[2]], [6000, 2**63 - 1], [1.0, 2.0]),
        ValueError,
        r"^timestamps: element 1: timestamp 9223372036854775807 is out of range",
    ),
    "points-NaT": (
        lambda s, h: s.write_points(
            [h[0], h[1]], np.array(["2020-01-01", "NaT"], dtype="datetime64[s]"), [1.0, 2.0]
        ),
        ValueError,
        r"^timestamps: element 1 is NaT",
    ),
    "points-length-mismatch": (
        lambda s, h: s.write_points([h[0]], [6000, 6060], [1.0, 2.0]),
        ValueError,
        r"^timestamps: has 2 elements but series has 1",
    ),
    "block-float32-overflow": (
        lambda s, h: s.write(h[0], 6000, np.array([1.0, 1e300])),
        ValueError,
        r"^values: element 1",
    ),
    "block-2d": (
        lambda s, h: s.write(h[0], 6000, np.ones((2, 2), dtype=np.float32)),
        ValueError,
        r"^values: expected a 1-D array",
    ),
    "block-object-values": (
        lambda s, h: s.write(h[0], 6000, np.array([1.0, None], dtype=object)),
        TypeError,
        r"^values: expected real numbers, got dtype object",
    ),
    "block-past-int64": (
        lambda s, h: s.write(h[2], 2**63 - 25, np.ones(10, dtype=np.float32)),
        ValueError,
        r"^values: 10 samples from slot time .* run past the largest int64",
    ),
    "block-unknown-handle": (
        lambda s, h: s.write(7, 0, [1.0]),
        ValueError,
        r"^series: 7 is not a series handle",
    ),
    "block-unknown-metric": (
        lambda s, h: s.write(("nope", "emmy/e0102"), 0, [1.0]),
        exc.UnknownMetricError,
        r'^unknown metric "nope"',
    ),
    "block-dotdot-path": (
        lambda s, h: s.write(("load", "emmy/../etc"), 0, [1.0]),
        exc.InvalidNameError,
        r'^path: invalid path component 1 "\.\."',
    ),
    "block-empty-component": (
        lambda s, h: s.write(("load", "emmy//e0102"), 0, [1.0]),
        exc.InvalidNameError,
        r'^path: invalid path component 1 "": it is empty',
    ),
    "block-nul-component": (
        lambda s, h: s.write(("load", ("emmy", "e\x000")), 0, [1.0]),
        exc.InvalidNameError,
        r"^path: invalid path component 1 .*not allowed",
    ),
    "series-root-path": (
        lambda s, h: s.series("load", ""),
        ValueError,
        r"^path: a series needs a path of at least one name",
    ),
    "series-bad-key-type": (
        lambda s, h: s.write(["load", "emmy"], 0, [1.0]),  # type: ignore[arg-type]
        TypeError,
        r"^series: expected a series handle or a \(metric, path\) pair, got list",
    ),
    "metric-bad-name": (
        lambda s, h: s.define_metric("cpu load", 60, "avg"),
        exc.InvalidNameError,
        r"^name: invalid metric name \"cpu load\": character ' ' is not allowed",
    ),
    # "." and ".." are file names with a meaning in cc-backend's checkpoint
    # layout, where a metric name is a file name.
    "metric-dot": (
        lambda s, h: s.define_metric(".", 60, "avg"),
        exc.InvalidNameError,
        r"^name: invalid metric name \"\.\": '\.' and '\.\.' are not allowed$",
    ),
    "metric-dotdot": (
        lambda s, h: s.define_metric("..", 60, "avg"),
        exc.InvalidNameError,
        r"^name: invalid metric name \"\.\.\": '\.' and '\.\.' are not allowed$",
    ),
    "block-dot-path": (
        lambda s, h: s.write(("load", "emmy/."), 0, [1.0]),
        exc.InvalidNameError,
        r"^path: invalid path component 1 \"\.\": '\.' and '\.\.' are not allowed$",
    ),
    "metric-redefined-frequency": (
        lambda s, h: s.define_metric("load", 30, "avg"),
        exc.MetricConflictError,
        r'^metric "load" is already defined with frequency 60',
    ),
    "metric-bad-aggregation": (
        lambda s, h: s.define_metric("x", 60, "median"),
        ValueError,
        r'^aggregation: unknown aggregation "median"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WRITES))
def test_a_rejected_call_raises_its_class_and_changes_nothing(case: str) -> None:
    call, error, message = BAD_WRITES[case]
    store, handles = _store()
    before = _snapshot(store)
    with pytest.raises(error, match=message):
        call(store, handles)
    assert _snapshot(store) == before
    assert [m.name for m in store.metrics] == ["load", "power"]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda s: s.read(("load", "emmy/e9999"), 0, 60), exc.UnknownSeriesError,
         r'^no series of metric "load" at or below path "emmy/e9999"'),
        (lambda s: s.read(("nope", "emmy"), 0, 60), exc.UnknownMetricError, '"nope"'),
        (lambda s: s.read(0, 600, 0), ValueError, r"^stop: stop \(0\) is before start \(600\)"),
        (lambda s: s.read(0, 0, 2**62), ValueError, r"^stop: the range .* at most 1073741824"),
        (lambda s: s.read(0, "soon", 60), ValueError, r"^start: cannot read 'soon'"),
        (lambda s: s.read(0, 1.5, 60), TypeError, r"^start: got float"),
        (lambda s: s.read_many([0, 2], 0, 600), ValueError,
         r"^series: element 1 has frequency 10 but element 0 has 60"),
        (lambda s: s.read_many(("load", "emmy"), 0, 600), TypeError, "wrap one key in a list"),
    ],
    ids=["unknown-series", "unknown-metric", "stop-before-start", "too-large", "bad-date",
         "float-start", "mixed-frequencies", "bare-key"],
)  # fmt: skip
def test_bad_reads_raise_clear_errors(
    call: Callable[[metricstore.Store], object], error: type, message: str
) -> None:
    store, _ = _store()
    with pytest.raises(error, match=message):
        call(store)


def test_aggregation_none_refuses_to_combine_but_reads_a_single_series() -> None:
    store = metricstore.Store()
    store.define_metric("state", 60, "none")
    store.write(("state", "emmy/e0102"), 0, [1.0, 2.0])
    # One series below the path: nothing to combine, so it is returned.
    np.testing.assert_array_equal(store.read(("state", "emmy"), 0, 120).values, [1.0, 2.0])
    store.write(("state", "emmy/e0103"), 0, [3.0])
    with pytest.raises(exc.AggregationError, match=r'"emmy" holds 2 series'):
        store.read(("state", "emmy"), 0, 120)


def test_every_error_class_is_a_store_error_and_the_generic_builtin() -> None:
    assert issubclass(exc.InvalidNameError, ValueError)
    assert issubclass(exc.MetricConflictError, ValueError)
    assert issubclass(exc.AggregationError, ValueError)
    assert issubclass(exc.UnknownMetricError, KeyError)
    assert issubclass(exc.UnknownSeriesError, KeyError)
    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.StoreError)
        assert getattr(metricstore, name) is getattr(exc, name)


def test_errors_raised_by_the_store_pickle_under_their_public_name() -> None:
    store, _ = _store()
    raised = []
    for call in (
        lambda: store.read(("nope", "x"), 0, 1),
        lambda: store.read(("load", "x"), 0, 1),
        lambda: store.series("load", "a/.."),
        lambda: store.define_metric("load", 1, "avg"),
    ):
        with pytest.raises(exc.StoreError) as info:
            call()
        raised.append(info.value)
    store.close()
    with pytest.raises(exc.ClosedError) as closed:
        store.read(0, 0, 1)
    raised.append(closed.value)
    for error in raised:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert type(error).__module__ == "metricstore.exceptions"
        assert str(copy) == str(error)


def test_a_closed_store_raises_closed_error_everywhere_and_close_is_idempotent() -> None:
    with metricstore.Store() as store:
        store.define_metric("load", 60, "avg")
        h = store.series("load", "a")
    assert store.closed
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: store.define_metric("x", 1, "sum"),
        lambda: store.series("load", "a"),
        lambda: store.find_series("load", "a"),
        lambda: store.series_key(h),
        lambda: store.list_series(),
        lambda: store.metrics,
        lambda: store.write(h, 0, [1.0]),
        lambda: store.write_tick(0, [h], [1.0]),
        lambda: store.write_points([h], [0], [1.0]),
        lambda: store.read(h, 0, 60),
        lambda: store.read(("load", "a"), 0, 60),
        lambda: store.read_many([h], 0, 60),
        lambda: store.stats(),
    ]
    for call in calls:
        with pytest.raises(exc.ClosedError, match=r"^the store is closed$"):
            call()
    assert repr(store) == "<metricstore.Store unit='s' closed>"
