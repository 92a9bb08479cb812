"""Helpers for test suites that use metricstore: assertions, hypothesis
strategies and crash tools.

- :func:`assert_series_equal` and :func:`assert_store_equal` compare read
  results and whole stores bit for bit (or within tolerances) and name the
  first difference: series, timestamp, both values, and how many slots differ.
- :func:`paths`, :func:`metric_names`, :func:`metrics` and
  :func:`write_batches` are hypothesis strategies. hypothesis is optional:
  this module imports without it, and the strategies raise ImportError when
  called without it.
- :func:`kill_writer` runs a writer in a child process and kills it with
  SIGKILL; :func:`truncate_log`, :func:`flip_bit`, :func:`newest_segment`
  and :func:`newest_snapshot` damage and find store files the way crashes
  and bad disks do (names as in docs/format.md).

Importing this module loads neither the compiled core nor hypothesis; the
functions that need them import them when called.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from .store import Metric, PathLike, ReadResult, Store

__all__ = [
    "BlockWrite",
    "Crash",
    "PointsWrite",
    "TickWrite",
    "Write",
    "assert_series_equal",
    "assert_store_equal",
    "block_writer",
    "flip_bit",
    "kill_writer",
    "metric_names",
    "metrics",
    "newest_segment",
    "newest_snapshot",
    "paths",
    "truncate_log",
    "write_batches",
]

# -- comparing series --------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One side of a comparison, resolved to values and the grid they lie on."""

    values: NDArray[np.float32]
    start: int
    step: int
    unit: str | None
    series: object  # what was read: a handle, a (metric, path) key, a list of them, or None


def _as_values(values: object, argument: str) -> NDArray[np.float32]:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{argument}: expected real numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{argument}: expected a 1-D or 2-D array, got shape {array.shape}")
    # Rounded to float32 as a write would store it, so float64 expectations work.
    return array if array.dtype == np.float32 else array.astype(np.float32)


def _resolve(
    value: object,
    other: object,
    argument: str,
    start: int | None,
    step: int | None,
    unit: str | None,
) -> _Side:
    from .store import ReadResult

    if isinstance(value, ReadResult):
        return _Side(
            _as_values(value.values, argument),
            value.start,
            value.step,
            value.time_unit,
            value.series,
        )
    # An array lies on the grid given by the keywords, else on the other side's.
    grid = other if isinstance(other, ReadResult) else None
    return _Side(
        _as_values(value, argument),
        start if start is not None else (0 if grid is None else grid.start),
        step if step is not None else (1 if grid is None else grid.step),
        unit if unit is not None else (None if grid is None else grid.time_unit),
        None,
    )


def _check_tolerance(value: float, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{argument}: expected a number, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{argument}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _row_name(series: object, row: int | None) -> str:
    if row is None:
        return "array" if series is None else f"series {series!r}"
    if isinstance(series, list | tuple) and row < len(series) and not isinstance(series[0], str):
        return f"series {series[row]!r} (row {row})"
    return f"row {row}" + ("" if series is None else f" of series {series!r}")


def _format_time(tick: int, unit: str | None) -> str:
    if unit is None:
        return f"tick {tick}"
    when = np.array([tick], dtype=np.int64).astype(f"datetime64[{unit}]")[0]
    return f"{when} (tick {tick} of {unit!r})"


def _format_value(value: np.float32, exact: bool) -> str:
    text = str(value)
    if exact:
        text += f" (bits 0x{int(np.array(value).view(np.uint32)):08x})"
    return text


def _differences(
    actual: NDArray[np.float32],
    expected: NDArray[np.float32],
    rtol: float,
    atol: float,
    check_nan: bool,
) -> NDArray[np.bool_]:
    """A mask of the slots that differ. NaN (missing) matches NaN whatever its
    payload; with ``check_nan`` false, a slot missing on either side matches."""
    nan_actual, nan_expected = np.isnan(actual), np.isnan(expected)
    differ: NDArray[np.bool_]
    if rtol == 0.0 and atol == 0.0:
        differ = actual.view(np.uint32) != expected.view(np.uint32)
    else:
        wide_actual, wide_expected = actual.astype(np.float64), expected.astype(np.float64)
        with np.errstate(invalid="ignore"):
            close = (wide_actual == wide_expected) | (
                np.isfinite(wide_actual)
                & np.isfinite(wide_expected)
                & (np.abs(wide_actual - wide_expected) <= atol + rtol * np.abs(wide_expected))
            )
        differ = ~close
    both_missing = nan_actual & nan_expected
    if check_nan:
        return differ & ~both_missing
    return differ & ~(nan_actual | nan_expected)


def _first_difference(
    actual: _Side,
    expected: _Side,
    differ: NDArray[np.bool_],
    rtol: float,
    atol: float,
    labels: tuple[str, str] = ("actual", "expected"),
    counts: tuple[int, int] | None = None,
) -> str:
    """The message for a value mismatch: the earliest differing time (across
    rows), its row, both values and the number of differing slots (of all
    compared), which ``counts`` gives when ``differ`` covers only part."""
    columns = differ if differ.ndim == 1 else differ.any(axis=0)
    column = int(np.argmax(columns))
    row = None if differ.ndim == 1 else int(np.argmax(differ[:, column]))
    index = (column,) if row is None else (row, column)
    got, want = actual.values[index], expected.values[index]
    exact = rtol == 0.0 and atol == 0.0
    series = actual.series if actual.series is not None else expected.series
    tick = actual.start + column * actual.step
    width = max(map(len, labels)) + 1
    differing, compared = (int(differ.sum()), differ.size) if counts is None else counts
    lines = [
        f"{_row_name(series, row)}: {differing} of {compared} slots differ; "
        f"the first at {_format_time(tick, actual.unit)}, slot {column}:",
        f"  {labels[0] + ':':{width}} {_format_value(got, exact)}",
        f"  {labels[1] + ':':{width}} {_format_value(want, exact)}",
    ]
    if not exact and not (np.isnan(got) or np.isnan(want)):
        allowed = atol + rtol * abs(float(want))
        lines.append(
            f"  difference {abs(float(got) - float(want))!r} exceeds "
            f"atol + rtol * |expected| = {allowed!r}"
        )
    return "\n".join(lines)


def _grid_problems(actual: _Side, expected: _Side) -> list[str]:
    problems = []
    if actual.unit != expected.unit and None not in (actual.unit, expected.unit):
        problems.append(f"  unit:  actual {actual.unit!r}, expected {expected.unit!r}")
    for name in ("start", "step"):
        got, want = getattr(actual, name), getattr(expected, name)
        if got != want:
            problems.append(f"  {name}: actual {got}, expected {want}")
    if actual.values.shape != expected.values.shape:
        problems.append(f"  shape: actual {actual.values.shape}, expected {expected.values.shape}")
    return problems


def assert_series_equal(
    actual: ReadResult | NDArray[Any] | Sequence[float],
    expected: ReadResult | NDArray[Any] | Sequence[float],
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    check_nan: bool = True,
    start: int | None = None,
    step: int | None = None,
    unit: str | None = None,
) -> None:
    """Asserts that two reads hold the same values on the same grid.

    Each side is a :class:`~metricstore.ReadResult` (1-D from ``read``, 2-D
    from ``read_many``) or an array of values. An array lies on the grid
    ``start``, ``step``, ``unit`` when given, else on the grid of the other
    side (both arrays: start 0, step 1, no unit). Arrays that are not
    float32 are first rounded to float32, as a write would store them.

    With ``rtol`` and ``atol`` both 0 (the default) the comparison is exact:
    the float32 bit patterns must be equal, so ``-0.0`` differs from ``0.0``.
    Otherwise a slot matches when both are finite and ``|actual - expected|
    <= atol + rtol * |expected|``, or both are the same infinity. In both
    modes NaN means missing and matches any NaN, whatever its payload bits.
    With ``check_nan=False``, slots missing on either side are not compared.

    Raises AssertionError naming what differs: unit, start, step or shape;
    or the series (the row, for 2-D), the first differing timestamp (as
    datetime64 in the store unit and as ticks), both values, and how many
    slots differ.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    rtol = _check_tolerance(rtol, "rtol")
    atol = _check_tolerance(atol, "atol")
    got = _resolve(actual, expected, "actual", start, step, unit)
    want = _resolve(expected, actual, "expected", start, step, unit)
    problems = _grid_problems(got, want)
    if problems:
        name = _row_name(got.series if got.series is not None else want.series, None)
        raise AssertionError(f"{name}: the grids differ:\n" + "\n".join(problems))
    differ = _differences(got.values, want.values, rtol, atol, check_nan)
    if differ.any():
        raise AssertionError(_first_difference(got, want, differ, rtol, atol))


# -- comparing stores ----------------------------------------------------------------

# Slots per read when comparing stores, so memory stays bounded (16 MiB per side).
_WINDOW_SLOTS = 1 << 22


def _catalog_problem(a: Store, b: Store) -> str | None:
    if a.unit != b.unit:
        return f"the stores differ in unit: a {a.unit!r}, b {b.unit!r}"
    metrics_a = {m.name: m for m in a.metrics}
    metrics_b = {m.name: m for m in b.metrics}
    for name in sorted(metrics_a.keys() | metrics_b.keys()):
        if name not in metrics_b:
            return f"metric {name!r} is defined in a only"
        if name not in metrics_a:
            return f"metric {name!r} is defined in b only"
        ma, mb = metrics_a[name], metrics_b[name]
        if ma != mb:
            return (
                f"metric {name!r} differs: a has frequency {ma.frequency}, aggregation "
                f"{ma.aggregation!r} and unit {ma.unit!r}, b has frequency {mb.frequency}, "
                f"aggregation {mb.aggregation!r} and unit {mb.unit!r}"
            )
    keys_a = {(m, p) for _, m, p in a.list_series()}
    keys_b = {(m, p) for _, m, p in b.list_series()}
    if keys_a != keys_b:
        metric, path = min(keys_a ^ keys_b)
        which = "a" if (metric, path) in keys_a else "b"
        return f"series {(metric, '/'.join(path))!r} exists in {which} only"
    return None


def assert_store_equal(a: Store, b: Store, *, start: object = None, stop: object = None) -> None:
    """Asserts that two stores hold the same metrics, series and data.

    Metrics must agree in name, frequency and aggregation; the series must
    have the same (metric, path) keys (handles may differ); every series'
    values in ``[start, stop)`` must be equal bit for bit (NaN matches NaN).
    ``start`` and ``stop`` are timestamps of any kind ``Store.read``
    accepts; left out, they span every sample of both stores
    (:meth:`Store.extent`). Given, the helper also checks that each store
    holds no sample outside them (``stats()["samples"]`` counts them all):
    no data escapes the comparison.

    Raises AssertionError naming the first difference: the unit, a metric,
    a series present on one side only, or the first differing series (in
    (metric, path) order) with the time and values of its first differing
    slot and the number of its slots that differ.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    from ._convert import to_ticks

    problem = _catalog_problem(a, b)
    if problem is not None:
        raise AssertionError(problem)
    samples = {"a": a.stats()["samples"], "b": b.stats()["samples"]}
    # A bound left out spans every sample of both stores.
    needed = start is None or stop is None
    spans = [span for span in (a.extent(), b.extent()) if span is not None] if needed else []
    if needed and not spans:
        return  # no sample on either side
    begin = min(s for s, _ in spans) if start is None else to_ticks(start, a.unit, "start")
    end = max(e for _, e in spans) if stop is None else to_ticks(stop, a.unit, "stop")
    if end < begin:
        raise ValueError(f"stop: {stop!r} is before start {start!r}")
    frequency = {m.name: m.frequency for m in a.metrics}
    handles_b = {(m, p): h for h, m, p in b.list_series()}
    seen = {"a": 0, "b": 0}
    for handle, metric, path in sorted(a.list_series(), key=lambda s: (s[1], s[2])):
        key = (metric, "/".join(path))
        step = frequency[metric]
        first: tuple[_Side, _Side, NDArray[np.bool_]] | None = None
        differing = 0
        for low in range(begin, end, step * _WINDOW_SLOTS):
            high = min(low + step * _WINDOW_SLOTS, end)
            got, want = a.read(handle, low, high), b.read(handles_b[metric, path], low, high)
            seen["a"] += int(np.count_nonzero(~np.isnan(got.values)))
            seen["b"] += int(np.count_nonzero(~np.isnan(want.values)))
            differ = _differences(got.values, want.values, 0.0, 0.0, True)
            if differ.any():
                differing += int(differ.sum())
                if first is None:
                    first = (
                        _Side(got.values, got.start, got.step, got.time_unit, key),
                        _Side(want.values, want.start, want.step, want.time_unit, key),
                        differ,
                    )
        if first is not None:
            slots = -(-end // step) + (-begin // step)  # the k with begin <= k * step < end
            detail = _first_difference(*first, 0.0, 0.0, ("a", "b"), (differing, slots))
            raise AssertionError(f"the stores differ in {detail}")
    for side in ("a", "b"):
        if seen[side] != samples[side]:
            outside = samples[side] - seen[side]
            raise AssertionError(
                f"store {side} holds {outside} sample{'s' * (outside != 1)} outside "
                f"[{begin}, {end}), which were not compared; widen start and stop"
            )


# -- hypothesis strategies -------------------------------------------------------------


def _require_hypothesis(function: str) -> None:
    try:
        import hypothesis.strategies  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"metricstore.testing.{function}() is a hypothesis strategy and needs hypothesis: "
            "pip install hypothesis"
        ) from error


_METRIC_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:"
_AGGREGATIONS = ("sum", "avg", "none")


def metric_names(*, max_size: int = 32) -> SearchStrategy[str]:
    """Metric names the store accepts: 1 to ``max_size`` (at most 255) ASCII
    letters, digits, ``_``, ``.``, ``-`` and ``:``, but not ``.`` or ``..``."""
    _require_hypothesis("metric_names")
    from hypothesis import strategies as st

    if not 1 <= max_size <= 255:
        raise ValueError(f"max_size: expected 1 to 255, got {max_size!r}")
    return st.text(alphabet=_METRIC_CHARACTERS, min_size=1, max_size=max_size).filter(
        lambda name: name not in (".", "..")
    )


def paths(
    *, min_depth: int = 1, max_depth: int = 4, max_name_size: int = 12
) -> SearchStrategy[tuple[str, ...]]:
    """Paths the store accepts, as tuples of ``min_depth`` to ``max_depth``
    names (at most 16). Names are 1 to ``max_name_size`` characters of any
    Unicode except ``/``, ``\\`` and control characters, never ``.`` or
    ``..``; at 4 UTF-8 bytes a character at most, they stay within the
    255-byte limit while ``max_name_size`` is at most 63."""
    _require_hypothesis("paths")
    from hypothesis import strategies as st

    if not 1 <= min_depth <= max_depth <= 16:
        raise ValueError(
            f"min_depth, max_depth: expected 1 <= min_depth <= max_depth <= 16, "
            f"got {min_depth!r} and {max_depth!r}"
        )
    if not 1 <= max_name_size <= 63:
        raise ValueError(f"max_name_size: expected 1 to 63, got {max_name_size!r}")
    characters = st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/\\"
    )
    names = st.text(characters, min_size=1, max_size=max_name_size).filter(
        lambda name: name not in (".", "..")
    )
    return st.lists(names, min_size=min_depth, max_size=max_depth).map(tuple)


_UNITS = ("GF/s", "GB", "°C", "%", "load")


def metrics(*, max_frequency: int = 600) -> SearchStrategy[Metric]:
    """Metric definitions: a name from :func:`metric_names`, a frequency of
    1 to ``max_frequency`` ticks, an aggregation ("sum", "avg" or "none")
    and a unit (None, or one of a few such as "GF/s" and "°C"). Define one
    in a store with ``store.define_metric(*metric)``;
    draw several with ``st.lists(metrics(), unique_by=lambda m: m.name)``."""
    _require_hypothesis("metrics")
    from hypothesis import strategies as st

    if isinstance(max_frequency, bool) or not isinstance(max_frequency, int) or max_frequency < 1:
        raise ValueError(f"max_frequency: expected a positive int, got {max_frequency!r}")
    from .store import Metric

    return st.builds(
        Metric,
        metric_names(),
        st.integers(1, max_frequency),
        st.sampled_from(_AGGREGATIONS),
        st.none() | st.sampled_from(_UNITS),
    )


_Key: TypeAlias = "tuple[str, PathLike]"  # (metric, path)


@dataclass(frozen=True, eq=False)
class BlockWrite:
    """``store.write(series, start, values)``: consecutive samples of one series."""

    series: _Key
    start: int
    values: NDArray[np.float32]

    def apply(self, store: Store) -> None:
        store.write(self.series, self.start, self.values)


@dataclass(frozen=True, eq=False)
class TickWrite:
    """``store.write_tick(timestamp, series, values)``: one value per series at one time."""

    timestamp: int
    series: list[_Key]
    values: NDArray[np.float32]

    def apply(self, store: Store) -> None:
        store.write_tick(self.timestamp, self.series, self.values)


@dataclass(frozen=True, eq=False)
class PointsWrite:
    """``store.write_points(series, timestamps, values)``: independent samples."""

    series: list[_Key]
    timestamps: NDArray[np.int64]
    values: NDArray[np.float32]

    def apply(self, store: Store) -> None:
        store.write_points(self.series, self.timestamps, self.values)


Write: TypeAlias = BlockWrite | TickWrite | PointsWrite
"""One write call; ``write.apply(store)`` makes it."""


def write_batches(
    metrics: Sequence[Metric],
    paths: Sequence[PathLike],
    *,
    start: int = 0,
    stop: int = 10_000,
    min_size: int = 0,
    max_size: int = 20,
    max_values: int = 32,
    values: SearchStrategy[float] | None = None,
) -> SearchStrategy[list[Write]]:
    """Lists of ``min_size`` to ``max_size`` write calls (:class:`BlockWrite`,
    :class:`TickWrite`, :class:`PointsWrite`) to the series ``(metric.name,
    path)`` of the given metrics and paths.

    Every sample's timestamp is a tick in ``[start, stop)``; a sample lands
    in the nearest slot of its metric's grid, so compare stores over
    ``[start - f, stop + f)`` for the largest frequency ``f``. A call writes
    1 to ``max_values`` values, drawn from ``values`` (default: every
    float32, NaN, infinities, -0.0 and subnormals included). Define the
    metrics in the store first, then ``for write in writes:
    write.apply(store)``; the calls create the series they name.
    """
    _require_hypothesis("write_batches")
    from hypothesis import strategies as st

    if not metrics:
        raise ValueError("metrics: expected at least one metric")
    if not paths:
        raise ValueError("paths: expected at least one path")
    if not stop > start:
        raise ValueError(f"stop: expected more than start ({start}), got {stop!r}")
    if max_values < 1:
        raise ValueError(f"max_values: expected at least 1, got {max_values!r}")
    keys = [(m.name, p) for m in metrics for p in paths]
    frequency = {m.name: m.frequency for m in metrics}
    floats = st.floats(width=32) if values is None else values
    times = st.integers(start, stop - 1)

    def float32s(n: int) -> Any:
        return st.lists(floats, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float32))

    @st.composite
    def block(draw: Any) -> BlockWrite:
        series = draw(st.sampled_from(keys))
        step = frequency[series[0]]
        n = min(draw(st.integers(1, max_values)), (stop - 1 - start) // step + 1)
        first = draw(st.integers(start, stop - 1 - (n - 1) * step))
        return BlockWrite(series, first, draw(float32s(n)))

    @st.composite
    def tick(draw: Any) -> TickWrite:
        series = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=max_values, unique=True))
        return TickWrite(draw(times), series, draw(float32s(len(series))))

    @st.composite
    def points(draw: Any) -> PointsWrite:
        n = draw(st.integers(1, max_values))
        series = draw(st.lists(st.sampled_from(keys), min_size=n, max_size=n))
        stamps = draw(st.lists(times, min_size=n, max_size=n))
        return PointsWrite(series, np.array(stamps, dtype=np.int64), draw(float32s(n)))

    return st.lists(st.one_of(block(), tick(), points()), min_size=min_size, max_size=max_size)


# -- crashes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    """What :func:`kill_writer` left: the store directory ``path`` and the
    ``acknowledged`` values, in the order the writer passed them to ``ack``
    (all of them, up to the kill: possibly more than ``after_acks``).
    ``finished`` is true when the writer returned before it was killed (it
    was then killed with the store still open). ``output`` is what the child
    printed to stdout and stderr."""

    path: Path
    acknowledged: list[Any]
    finished: bool
    output: str


_DONE = "#done"  # no repr() starts with "#", so it cannot be an acknowledgement

# The child: takes the parent's sys.path, then runs _writer_child.
_BOOTSTRAP = (
    "import ast, sys; spec = ast.literal_eval(sys.argv[1]); sys.path[:] = spec['sys_path']; "
    "from metricstore.testing import _writer_child; _writer_child(spec)"
)


def _writer_spec(writer: Callable[..., object] | str) -> dict[str, str]:
    if isinstance(writer, str):
        return {"source": writer}
    if not callable(writer):
        raise TypeError(
            f"writer: expected a function or Python source, got {type(writer).__name__}"
        )
    module = getattr(writer, "__module__", None)
    qualname = getattr(writer, "__qualname__", "")
    if module is None or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"writer: {writer!r} cannot be found by name in a child process; pass a function "
            "defined at the top level of an importable module, or Python source"
        )
    try:
        file = inspect.getsourcefile(writer) or ""
    except TypeError:  # a builtin: importable by name alone
        file = ""
    return {"module": module, "qualname": qualname, "file": file}


def _load_writer(spec: Mapping[str, str]) -> Callable[..., object]:
    try:
        module = importlib.import_module(spec["module"])
    except ImportError:
        # A test module imported by pytest from its file, under a name that
        # is not importable from sys.path.
        found = importlib.util.spec_from_file_location(spec["module"], spec["file"])
        if found is None or found.loader is None:
            raise
        module = importlib.util.module_from_spec(found)
        sys.modules[spec["module"]] = module
        found.loader.exec_module(module)
    target: Any = module
    for part in spec["qualname"].split("."):
        target = getattr(target, part)
    writer: Callable[..., object] = target
    return writer


def _writer_child(spec: dict[str, Any]) -> None:
    """Runs in the child: opens the store, runs the writer, acknowledges."""
    import metricstore

    fd = spec["ack_fd"]
    lock = threading.Lock()

    def ack(value: object = None) -> None:
        line = repr(value)
        try:
            same = ast.literal_eval(line) == value
        except (ValueError, SyntaxError):
            same = False
        if not same:
            raise ValueError(
                f"ack: {line} does not read back with ast.literal_eval; acknowledge ints, "
                "finite floats, strings, bytes, None, bools, and tuples, lists or dicts of them"
            )
        data = (line + "\n").encode()
        with lock:
            while data:
                data = data[os.write(fd, data) :]

    store = metricstore.open(spec["path"], sync=spec["sync"], **spec["open_options"])
    writer = spec["writer"]
    if "source" in writer:
        namespace = {"__name__": "__metricstore_writer__", "store": store, "ack": ack}
        namespace["args"] = spec["args"]
        exec(compile(writer["source"], "<writer>", "exec"), namespace)
    else:
        _load_writer(writer)(store, ack, *spec["args"])
    with lock:
        os.write(fd, f"{_DONE}\n".encode())
    threading.Event().wait()  # keep the store open until the kill


def _check_literal(value: object, argument: str) -> None:
    try:
        same = ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        raise ValueError(
            f"{argument}: {value!r} does not survive repr() and ast.literal_eval(), "
            "which carry it to the child process"
        )


def kill_writer(
    path: str | os.PathLike[str],
    writer: Callable[..., object] | str,
    *,
    after_acks: int,
    sync: str = "interval",
    args: Sequence[object] = (),
    open_options: Mapping[str, object] | None = None,
    timeout: float = 60.0,
) -> Crash:
    """Runs ``writer`` in a child process against the store at ``path`` and
    kills the child with SIGKILL once it has acknowledged ``after_acks``
    writes; returns the :class:`Crash` with everything it acknowledged.

    The child opens the store with ``metricstore.open(path, sync=sync,
    **open_options)`` and calls ``writer(store, ack, *args)``. ``writer`` is
    a function defined at the top level of an importable module (a test
    module will do: the child gets this process's ``sys.path``), or Python
    source run with ``store``, ``ack`` and ``args`` as globals. The writer
    calls ``ack(value)`` after each write call returns; ``ack`` is
    thread-safe, and ``value`` (what was written, in any form the test can
    check) must survive ``repr`` and ``ast.literal_eval``: ints, finite
    floats, strings, tuples, lists, dicts. ``args`` and ``open_options``
    must survive the same trip.

    Acknowledgements that arrive after the kill was decided but before it
    landed are included. If the writer returns first, the child is killed
    right then with the store still open (``finished`` is true). If the
    child dies any other way, exits, or sends nothing for ``timeout``
    seconds, this raises RuntimeError (TimeoutError) with its output. POSIX
    only.
    """
    if isinstance(after_acks, bool) or not isinstance(after_acks, int) or after_acks < 1:
        raise ValueError(f"after_acks: expected a positive int, got {after_acks!r}")
    options = dict(open_options or {})
    for name in ("sync", "readonly"):
        if name in options:
            raise ValueError(f"open_options: {name!r} cannot be set here")
    _check_literal(tuple(args), "args")
    _check_literal(options, "open_options")
    spec: dict[str, Any] = {
        "sys_path": list(sys.path),
        "path": os.fspath(path),
        "sync": sync,
        "open_options": options,
        "writer": _writer_spec(writer),
        "args": tuple(args),
    }
    read_end, write_end = os.pipe()
    spec["ack_fd"] = write_end
    with tempfile.TemporaryFile() as output:
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, repr(spec)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        try:
            acknowledged, finished = _collect_acks(child, read_end, after_acks, timeout)
        finally:
            os.close(read_end)
            if child.poll() is None:
                child.kill()
            child.wait()
        output.seek(0)
        text = output.read().decode(errors="replace")
    if finished is None:
        raise TimeoutError(
            f"the writer acknowledged {len(acknowledged)} writes and then nothing for "
            f"{timeout} s; its output:\n{text}"
        )
    if child.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"the writer exited with code {child.returncode} before it was killed, after "
            f"{len(acknowledged)} acknowledgements; its output:\n{text}"
        )
    return Crash(Path(path), acknowledged, finished, text)


def _collect_acks(
    child: subprocess.Popen[bytes], fd: int, after_acks: int, timeout: float
) -> tuple[list[Any], bool | None]:
    """Reads acknowledgements until there are ``after_acks`` or the writer
    has returned, kills the child, and reads those it sent before it died.
    Returns them and whether the writer had returned (None: timed out)."""
    acknowledged: list[Any] = []
    finished = False
    pending = b""
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        if not killed and (len(acknowledged) >= after_acks or finished):
            child.send_signal(signal.SIGKILL)
            killed = True
        if not killed:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return acknowledged, None
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # the child is gone: every copy of the write end is closed
            return acknowledged, finished
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.decode() == _DONE:
                finished = True
            else:
                acknowledged.append(ast.literal_eval(line.decode()))


def block_writer(
    store: Store, ack: Callable[[object], None], series: int = 4, block: int = 16
) -> None:
    """A writer for :func:`kill_writer` (and the ``crashed_store`` fixture):
    defines metric "m" (frequency 10, "sum") and writes blocks of ``block``
    values to the series ``("m", "node/s0")`` .. ``("m", f"node/s{series -
    1}")`` in turn, without end. Block ``i`` starts at tick
    ``(i // series) * block * 10`` and holds ``i * 1000 + 0, 1, ...``;
    after each it acknowledges ``(key, start, values)``, so a test can check
    ``store.read(key, start, start + 10 * len(values))``."""
    store.define_metric("m", 10, "sum")
    offsets = np.arange(block, dtype=np.float32)
    for i in itertools.count():
        key = ("m", f"node/s{i % series}")
        start = (i // series) * block * 10
        values = offsets + np.float32(i * 1000)
        store.write(key, start, values)
        ack((key, start, tuple(float(v) for v in values)))


# -- damaging files ----------------------------------------------------------------------

_SEGMENT = re.compile(r"wal-(\d{20})\.log")
_SNAPSHOT = re.compile(r"snapshot-(\d{20})\.snap")
_SEGMENT_HEADER = 24


def _newest(path: str | os.PathLike[str], pattern: re.Pattern[str], what: str) -> Path:
    directory = Path(path)
    found = [f for f in directory.iterdir() if pattern.fullmatch(f.name)]
    if not found:
        raise FileNotFoundError(f"path: {directory} holds no {what}")
    return max(found, key=lambda f: f.name)  # zero-padded LSNs sort as numbers


def newest_segment(path: str | os.PathLike[str]) -> Path:
    """The newest log segment (``wal-<first LSN>.log``) of the store at ``path``."""
    return _newest(path, _SEGMENT, "log segment (wal-*.log)")


def newest_snapshot(path: str | os.PathLike[str]) -> Path:
    """The newest snapshot (``snapshot-<LSN>.snap``) of the store at ``path``."""
    return _newest(path, _SNAPSHOT, "snapshot (snapshot-*.snap)")


def truncate_log(
    path: str | os.PathLike[str], nbytes: int | None = None, *, to: int | None = None
) -> Path:
    """Cuts the newest log segment of the closed store at ``path``, as a
    crash in the middle of an append does; returns the segment.

    ``nbytes`` cuts that many bytes off the end, never into the 24-byte
    segment header (a segment holding no records cannot be cut this way: a
    clean close leaves one after its snapshot). ``to`` truncates the segment
    to that length instead, header included. Pass one of them.
    """
    segment = newest_segment(path)
    size = segment.stat().st_size
    if (nbytes is None) == (to is None):
        raise TypeError("truncate_log: pass nbytes or to, and not both")
    if nbytes is not None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"nbytes: expected an int >= 0, got {nbytes!r}")
        if nbytes > size - _SEGMENT_HEADER:
            raise ValueError(
                f"nbytes: {segment.name} holds {size - _SEGMENT_HEADER} bytes of records after "
                f"its {_SEGMENT_HEADER}-byte header; cannot cut {nbytes}"
            )
        length = size - nbytes
    else:
        if isinstance(to, bool) or not isinstance(to, int) or not 0 <= to <= size:
            raise ValueError(
                f"to: expected an offset from 0 to {size} ({segment.name}), got {to!r}"
            )
        length = to
    os.truncate(segment, length)
    return segment


def flip_bit(file: str | os.PathLike[str], offset: int, bit: int) -> None:
    """Inverts bit ``bit`` (0 is the least significant) of the byte at
    ``offset`` of ``file`` in place, as a bad disk or cable does. A negative
    ``offset`` counts from the end. Flipping the same bit again restores
    the file."""
    size = os.path.getsize(file)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -size <= offset < size:
        raise ValueError(f"offset: expected -{size} to {size - 1} for {file}, got {offset!r}")
    if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 7:
        raise ValueError(f"bit: expected 0 to 7, got {bit!r}")
    position = offset % size
    fd = os.open(file, os.O_RDWR)
    try:
        byte = os.pread(fd, 1, position)[0]
        os.pwrite(fd, bytes([byte ^ (1 << bit)]), position)
    finally:
        os.close(fd)
