"""A :class:`ReadResult` as a pandas object, an xarray DataArray, a plot or a
heatmap, or Arrow data for pyarrow and polars.

Every conversion keeps the values bit for bit (float32, NaN where nothing is
stored) and the time axis exact: ``datetime64`` in the store's unit at
``start + i * step``, named ``"time"``. A series is named by its key,
``"metric:path/parts"`` (``"cpu_load:emmy/e0102"``), or by its handle (an
int) when the read got a handle whose key it does not know.

A result's coverage goes along: its ``counts`` (samples behind each value)
as a column of ``to_pandas(counts=True)`` and a coordinate of ``to_xarray()``;
a heatmap takes its colour scale from well-covered values only.

The Arrow table (``_core.ReadResult.__arrow_c_stream__``) names its columns
the same way, a handle as its digits (Arrow names are strings).

pandas, xarray, matplotlib, pyarrow and polars are optional: each is
imported on first use, and a missing one raises ImportError naming the extra
that installs it.
"""

from __future__ import annotations

import datetime as _dt
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import xarray
    from matplotlib.axes import Axes

    from ._core import ReadResult

__all__ = [
    "SeriesKey",
    "SeriesName",
    "as_rows",
    "axis_label",
    "colour_limits",
    "column_names",
    "full_count",
    "heatmap",
    "new_axes",
    "plot",
    "require",
    "row_labels",
    "series_keys",
    "series_name",
    "to_arrow",
    "to_pandas",
    "to_polars",
    "to_xarray",
]

SeriesKey: TypeAlias = tuple[str, tuple[str, ...]] | int
"""A row's (metric, path), or its handle when the key is unknown."""
SeriesName: TypeAlias = str | int
"""``"metric:path/parts"``, or a handle whose key is unknown."""

# Coordinates to_xarray always sets; path levels must not shadow them.
_RESERVED = ("series", "time", "metric", "path", "counts", "sources")

MIN_DPI = 100
"""A figure drawn here is at least this sharp (matplotlib's default; notebooks
often lower it to 72)."""
LEGEND_POINTS = 9.0
"""Legend text size: 12.5 px at 100 dpi ("small" at 72 dpi was 7 px)."""
TICK_POINTS = 8.0
"""Heatmap row label size."""
LABEL_SPACING = 1.2
"""Heatmap row labels are thinned to one per this many label heights."""
ROBUST_PERCENTILES = (2.0, 98.0)
"""The colour scale of a robust heatmap, as xarray's ``robust=True``."""


def require(module: str, extra: str, caller: str) -> Any:
    """Imports an optional dependency, or says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.partition(".")[0]
        raise ImportError(
            f"{caller} needs {package}, which is not installed: pip install 'metricstore[{extra}]'"
        ) from error


def series_keys(rows: object) -> list[SeriesKey]:
    """Each row's key as (metric, path tuple), or its handle (an int)."""
    if not isinstance(rows, list | tuple):
        raise TypeError(f"series: expected a list of series keys, got {type(rows).__name__}")
    keys: list[SeriesKey] = []
    for i, row in enumerate(rows):
        if isinstance(row, int | np.integer) and not isinstance(row, bool):
            keys.append(int(row))
        elif isinstance(row, tuple | list) and len(row) == 2 and isinstance(row[0], str):
            metric, path = row
            if isinstance(path, str):  # already validated by the read: "" is the root
                path = path.split("/") if path else ()
            keys.append((metric, tuple(path)))
        else:
            raise TypeError(f"series[{i}]: expected a handle or a (metric, path) pair, got {row!r}")
    return keys


def series_name(key: SeriesKey) -> SeriesName:
    """``"metric:path/parts"`` for a key; a handle stays an int."""
    if isinstance(key, int):
        return key
    metric, path = key
    return f"{metric}:{'/'.join(path)}"


def column_names(result: ReadResult) -> list[str]:
    """The Arrow column name of each row: its series name as a str."""
    return [str(series_name(k)) for k in result.keys]


class _NanAsNull:
    """A result whose Arrow stream marks NaN values null as well."""

    def __init__(self, result: ReadResult) -> None:
        self._result = result

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self._result.__arrow_c_stream__(requested_schema, nan_as_null=True)


def to_arrow(result: ReadResult, nan_as_null: bool = False) -> Any:
    """A ``pyarrow.Table`` over the result's values (no copy)."""
    pa = require("pyarrow", "arrow", "ReadResult.to_arrow()")
    return pa.table(_NanAsNull(result) if nan_as_null else result)


def to_polars(result: ReadResult, nan_as_null: bool = False) -> Any:
    """A ``polars.DataFrame`` over the result's values."""
    pl = require("polars", "polars", "ReadResult.to_polars()")
    return pl.DataFrame(_NanAsNull(result) if nan_as_null else result)


def as_rows(array: NDArray[Any]) -> NDArray[Any]:
    """A result's 1-D or 2-D array as 2-D, one row per series (also when
    it has no columns, where ``reshape(-1, 0)`` fails)."""
    return array if array.ndim == 2 else array[np.newaxis, :]


def _rows(result: ReadResult) -> list[Any]:
    """The values as a list of 1-D rows, one per series."""
    values = result.values
    return [values] if values.ndim == 1 else list(values)


def _time_zone(tz: object) -> str | _dt.tzinfo:
    """``tz`` checked: a time zone name or a ``tzinfo`` (pandas would read
    an int as an offset in seconds)."""
    if isinstance(tz, str | _dt.tzinfo):
        return tz
    raise TypeError(f"tz: expected a time zone name or a tzinfo, got {type(tz).__name__}")


def to_pandas(result: ReadResult, tz: object = None, counts: bool = False) -> Any:
    """A Series (1-D read) or a DataFrame with one column per series (2-D).
    The index is naive (UTC times) unless ``tz`` names a time zone; it then
    holds the same instants, tz-aware, shown in that zone. With ``counts``,
    a DataFrame of values and counts: columns "value" and "count" (1-D), or
    those two over the series (2-D)."""
    pd = require("pandas", "pandas", "ReadResult.to_pandas()")
    index = pd.DatetimeIndex(result.timestamps, name="time")
    if tz is not None:
        zone = _time_zone(tz)
        try:
            index = index.tz_localize("UTC").tz_convert(zone)
        except KeyError as error:  # zoneinfo's ZoneInfoNotFoundError
            raise ValueError(f"tz: unknown time zone {tz!r}") from error
    names = [series_name(k) for k in result.keys]
    if result.values.ndim == 1:
        values = pd.Series(result.values, index=index, name=names[0])
        if not counts:
            return values
        return pd.DataFrame({"value": values, "count": result.counts}, index=index)
    columns = pd.Index(names, name="series")
    frame = pd.DataFrame(result.values.T, index=index, columns=columns)
    if not counts:
        return frame
    count = pd.DataFrame(result.counts.T, index=index, columns=columns)
    return pd.concat({"value": frame, "count": count}, axis=1, names=["field", "series"])


def to_xarray(result: ReadResult, levels: Sequence[str] = ()) -> xarray.DataArray:
    """A DataArray with dims ("time",) or ("series", "time").

    Coordinates: ``time``; ``series`` (the series names); and, when every key
    is known, ``metric`` and ``path`` ("/"-joined) per series, plus one per
    name in ``levels`` holding that part of each path (``""`` where a path
    is shorter). The array is named after the metric when there is one.

    ``attrs``: ``units`` (the CF convention's name, which xarray's plots put
    on the axis) when the result has a unit, and the grid: ``step`` in
    ``time_unit`` ticks. The time coordinate carries its unit in its dtype.
    """
    xr = require("xarray", "xarray", "ReadResult.to_xarray()")
    keys = result.keys
    levels = list(levels)
    for level in levels:
        if not isinstance(level, str) or level in _RESERVED or levels.count(level) > 1:
            raise ValueError(
                f"levels: {level!r} must be a str, given once, and not one of {_RESERVED}"
            )
    known = [k for k in keys if not isinstance(k, int)]
    if levels and len(known) < len(keys):
        raise ValueError(
            "levels: the series were read by handle, so their paths are unknown; "
            "read them by (metric, path) to get path levels"
        )
    names = [series_name(k) for k in keys]
    one_row = result.values.ndim == 1
    dims: tuple[str, ...] = ("time",) if one_row else ("series", "time")

    def per_series(values: list[Any]) -> Any:
        return values[0] if one_row else ("series", values)

    coords: dict[str, Any] = {"time": result.timestamps, "series": per_series(names)}
    if len(known) == len(keys):
        coords["metric"] = per_series([metric for metric, _ in known])
        coords["path"] = per_series(["/".join(path) for _, path in known])
        for i, level in enumerate(levels):
            coords[level] = per_series([path[i] if i < len(path) else "" for _, path in known])
    coords["counts"] = (dims, result.counts)
    coords["sources"] = per_series(_row_sources(result))
    metrics = {metric for metric, _ in known}
    name = metrics.pop() if len(metrics) == 1 and len(known) == len(keys) else None
    array = xr.DataArray(
        result.values,
        dims=dims,
        coords=coords,
        name=name,
        attrs=_xarray_attrs(result),
    )
    array.attrs.update(_coverage_attrs(result))
    return array  # type: ignore[no-any-return]


def _row_sources(result: ReadResult) -> list[int]:
    """How many series each row combines, as a list."""
    sources = result.sources
    return [int(sources)] if isinstance(sources, int) else [int(n) for n in sources]


def _coverage_attrs(result: ReadResult) -> dict[str, Any]:
    """What a read did besides reading: its grid and min_count, and its
    resampling method if any (xarray drops None attributes on write)."""
    attrs: dict[str, Any] = {"frequency": result.frequency, "min_count": result.min_count}
    if result.method is not None:
        attrs["method"] = result.method
    return attrs


def full_count(result: ReadResult) -> NDArray[np.int64]:
    """The count of a value with every sample present, per row: its series
    times the slots of a bucket (one slot for a grid or LTTB read)."""
    slots = 1 if result.method in (None, "lttb") else max(result.step // result.frequency, 1)
    return np.array(_row_sources(result), dtype=np.int64) * slots


def new_axes(figsize: tuple[float, float]) -> Axes:
    """An Axes on a new figure of ``figsize`` inches, at least ``MIN_DPI``."""
    pyplot = require("matplotlib.pyplot", "plot", "ReadResult.plot()")
    dpi = max(float(pyplot.rcParams["figure.dpi"]), MIN_DPI)
    _, ax = pyplot.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    return ax  # type: ignore[no-any-return]


def _xarray_attrs(result: ReadResult) -> dict[str, Any]:
    attrs: dict[str, Any] = {} if result.unit is None else {"units": result.unit}
    attrs.update(step=result.step, time_unit=result.time_unit)
    return attrs


def axis_label(name: str, unit: str | None) -> str:
    """``name [unit]``, or the name alone when there is no unit."""
    return name if unit is None else f"{name} [{unit}]"


def plot(
    result: ReadResult,
    ax: Axes | None = None,
    legend: bool | None = None,
    label: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> Axes:
    """Draws one line per series over a date axis; returns the Axes.

    ``label`` names the lines in a legend: a string for a result of one
    series, a sequence of one string per series otherwise (the series'
    names by default). Other keywords go to matplotlib's ``Axes.plot``."""
    if label is None:
        labels = [str(series_name(k)) for k in result.keys]
    elif isinstance(label, str):
        if len(result.keys) != 1:
            raise ValueError(
                f"label: one string for {len(result.keys)} series; give one label per series"
            )
        labels = [label]
    else:
        labels = [str(name) for name in label]
        if len(labels) != len(result.keys):
            raise ValueError(f"label: {len(labels)} labels for {len(result.keys)} series")
    dates = require("matplotlib.dates", "plot", "ReadResult.plot()")
    if ax is None:
        ax = new_axes((8, 3))
    names = [series_name(k) for k in result.keys]
    times = result.timestamps
    for row, name in zip(_rows(result), labels, strict=True):
        ax.plot(times, row, label=name, **kwargs)
    locator = dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    ax.set_xlabel(f"time (UTC, step {result.step} {result.time_unit})")
    metrics = {k[0] for k in result.keys if not isinstance(k, int)}
    if not ax.get_ylabel():
        ax.set_ylabel(axis_label(metrics.pop() if len(metrics) == 1 else "value", result.unit))
    if len(names) == 1 and not ax.get_title():
        ax.set_title(str(names[0]))
    # A legend of dozens of hosts hides the data; ask for it with legend=True.
    if len(names) > 1 and (legend if legend is not None else len(names) <= 12):
        # Outside the axes, to the right: lines of many series fill the plot area.
        ax.legend(fontsize=LEGEND_POINTS, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)  # fmt: skip
    return ax


def row_labels(keys: list[SeriesKey]) -> list[str]:
    """Short names of rows: the parts of their paths that differ (the host
    in a read of ``("cpu_load", "emmy/*")``), prefixed by the metric when
    the metrics differ; a handle stays its number."""
    known = [k for k in keys if not isinstance(k, int)]
    if len(known) < len(keys) or not known:
        return [str(series_name(k)) for k in keys]
    paths = [path for _, path in known]
    common = 0
    while all(len(p) > common + 1 and p[common] == paths[0][common] for p in paths):
        common += 1
    metrics = {m for m, _ in known}
    labels = []
    for metric, path in known:
        tail = "/".join(path[common:]) or "/".join(path)
        labels.append(f"{metric}:{tail}" if len(metrics) > 1 else tail)
    return labels


def colour_limits(
    result: ReadResult, robust: bool = True
) -> tuple[float, float] | tuple[None, None]:
    """The colour scale of a heatmap: the 2nd and 98th percentile (min and
    max unless ``robust``) of the values backed by at least half the samples
    of a full value (see :func:`full_count`), so a short last bucket, or a
    slot where few series report, does not stretch it; of all values when
    none is that well backed; (None, None) when there are no values."""
    values = as_rows(result.values).astype(np.float64)
    counts = as_rows(result.counts)
    backed = counts * 2 >= full_count(result)[:, None]
    finite = np.isfinite(values)
    chosen = values[finite & backed]
    if len(chosen) == 0:
        chosen = values[finite]
    if len(chosen) == 0:
        return None, None
    if not robust:
        return float(chosen.min()), float(chosen.max())
    low, high = np.percentile(chosen, ROBUST_PERCENTILES)
    return float(low), float(high)


def heatmap(
    result: ReadResult,
    ax: Axes | None = None,
    robust: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    **kwargs: Any,
) -> Axes:
    """Rows (series) by time as colours; returns the Axes (see
    ``ReadResult.heatmap``)."""
    if result.method == "lttb":
        raise ValueError(
            "method: an LTTB read keeps its own sample times, which share no time axis; "
            'read with method="avg", "min" or "max" for a heatmap'
        )
    rows = as_rows(result.values)
    if rows.size == 0:
        raise ValueError(f"heatmap: the result has no values to draw (shape {rows.shape})")
    dates = require("matplotlib.dates", "plot", "ReadResult.heatmap()")
    if ax is None:
        ax = new_axes((9, max(2.5, min(0.18 * len(rows) + 1.2, 9))))
    low, high = colour_limits(result, robust)
    vmin = low if vmin is None else vmin
    vmax = high if vmax is None else vmax
    ticks = np.append(result.ticks, result.stop).astype(np.int64)
    edges = dates.date2num(ticks.astype(f"datetime64[{result.time_unit}]"))
    mesh = ax.pcolormesh(
        edges, np.arange(len(rows) + 1), np.ma.masked_invalid(rows), vmin=vmin, vmax=vmax,
        **{"cmap": "viridis", **kwargs},
    )  # fmt: skip
    ax.set_ylim(len(rows), 0)  # the first row on top, as in a table
    labels = row_labels(result.keys)
    # Measure the axes where the figure's layout puts them (constrained
    # layout grows them), not where they start.
    engine = getattr(ax.figure, "get_layout_engine", lambda: None)()
    if engine is not None:
        engine.execute(ax.figure)
    height_points = ax.get_window_extent().height * 72 / ax.figure.dpi
    room = max(int(height_points // (TICK_POINTS * LABEL_SPACING)), 1)
    every = -(-len(rows) // room)
    shown = list(range(0, len(rows), every))
    ax.set_yticks([i + 0.5 for i in shown], [labels[i] for i in shown], fontsize=TICK_POINTS)
    locator = dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    resampled = "" if result.method is None else f", {result.method} of each bucket"
    ax.set_xlabel(f"time (UTC, step {result.step} {result.time_unit}{resampled})")
    metrics = {k[0] for k in result.keys if not isinstance(k, int)}
    metric = metrics.pop() if len(metrics) == 1 else None
    if metric is not None and not ax.get_title():
        ax.set_title(metric)
    if colorbar:
        extend = {
            (False, False): "neither", (True, False): "min", (False, True): "max",
            (True, True): "both",
        }[(_below(rows, vmin), _above(rows, vmax))]  # fmt: skip
        bar = ax.figure.colorbar(mesh, ax=ax, extend=extend, pad=0.01)
        if result.unit is not None:
            bar.set_label(axis_label(metric or "value", result.unit))
    return ax


def _below(rows: NDArray[np.float32], limit: float | None) -> bool:
    return limit is not None and bool(np.nanmin(rows, initial=np.inf) < limit)


def _above(rows: NDArray[np.float32], limit: float | None) -> bool:
    return limit is not None and bool(np.nanmax(rows, initial=-np.inf) > limit)
