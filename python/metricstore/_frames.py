"""A :class:`ReadResult` as a pandas object, an xarray DataArray, a plot, or
Arrow data for pyarrow and polars.

Every conversion keeps the values bit for bit (float32, NaN where nothing is
stored) and the time axis exact: ``datetime64`` in the store's unit at
``start + i * step``, named ``"time"``. A series is named by its key,
``"metric:path/parts"`` (``"cpu_load:emmy/e0102"``), or by its handle (an
int) when the read got a handle whose key it does not know.

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

if TYPE_CHECKING:
    import xarray
    from matplotlib.axes import Axes

    from ._core import ReadResult

__all__ = [
    "SeriesKey",
    "SeriesName",
    "axis_label",
    "column_names",
    "plot",
    "require",
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
_RESERVED = ("series", "time", "metric", "path")


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


def to_pandas(result: ReadResult, tz: object = None) -> Any:
    """A Series (1-D read) or a DataFrame with one column per series (2-D).
    The index is naive (UTC times) unless ``tz`` names a time zone; it then
    holds the same instants, tz-aware, shown in that zone."""
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
        return pd.Series(result.values, index=index, name=names[0])
    columns = pd.Index(names, name="series")
    return pd.DataFrame(result.values.T, index=index, columns=columns)


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
    metrics = {metric for metric, _ in known}
    name = metrics.pop() if len(metrics) == 1 and len(known) == len(keys) else None
    return xr.DataArray(  # type: ignore[no-any-return]
        result.values,
        dims=dims,
        coords=coords,
        name=name,
        attrs=_xarray_attrs(result),
    )


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
        pyplot = require("matplotlib.pyplot", "plot", "ReadResult.plot()")
        _, ax = pyplot.subplots(figsize=(8, 3), layout="constrained")
    assert ax is not None
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
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax
