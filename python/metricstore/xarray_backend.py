"""The xarray engine: ``xarray.open_dataset(store_dir, engine="metricstore")``.

A store directory opens as a Dataset with one variable per metric, dims
``("series", "time")``: ``series`` holds every path any chosen metric has
(sorted), with the path (``"emmy/e0102"``) and each path level
(``cluster``, ``host``, then ``level2``, ...; or the names given as
``levels``) as coordinates; ``time`` is the grid of the metric's frequency
over the store's extent (with several frequencies, each gets its own
``time_<frequency>`` dim). A variable is NaN where the metric has no series
at a path, and float32 bit for bit as ``store.read_many`` returns it
elsewhere.

Nothing is read on open but the series list: each variable is lazy, and
every indexing opens the store read-only, reads the rows and slots asked
for with ``read_many`` and closes it again. So the variables pickle as
strings and ints (Dask workers reopen the store themselves) and a writer
may have the store open. ``chunks={}`` gives Dask arrays chunked by whole
store chunks in time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray
from numpy.typing import NDArray
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from ._convert import literal_pattern, to_ticks
from .store import open as open_store

__all__ = ["MetricstoreBackendEntrypoint"]

# Time chunks xarray prefers for chunks={}: multiples of the store's 1024-slot chunks.
_PREFERRED_SLOTS = 8 * 1024


class _MetricArray(BackendArray):
    """One metric as a lazy (series, time) array; ``rows[i]`` is the
    pattern of the series at union row i, or None where it has none."""

    def __init__(
        self,
        directory: str,
        metric: str,
        rows: tuple[str | None, ...],
        first: int,
        frequency: int,
        slots: int,
    ) -> None:
        self.directory = directory
        self.metric = metric
        self.rows = rows
        self.first = first
        self.frequency = frequency
        self.shape = (len(rows), slots)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> NDArray[np.float32]:
        row_key, time_key = key
        rows = np.arange(self.shape[0])[row_key]
        slots = np.arange(self.shape[1])[time_key]
        wanted = np.atleast_1d(rows)
        times = np.atleast_1d(slots)
        out = np.full((wanted.size, times.size), np.nan, np.float32)
        present = [(i, self.rows[r]) for i, r in enumerate(wanted.tolist()) if self.rows[r]]
        if present and times.size:
            low, high = int(times.min()), int(times.max()) + 1
            start = (self.first + low) * self.frequency
            stop = (self.first + high) * self.frequency
            with open_store(self.directory, readonly=True, progress=False) as store:
                values = store.read_many([(self.metric, p) for _, p in present], start, stop).values
            values = np.asarray(values, np.float32).reshape(len(present), high - low)
            out[[i for i, _ in present]] = values[:, times - low]
        if np.ndim(slots) == 0:
            out = out[:, 0]
        if np.ndim(rows) == 0:
            out = out[0]
        return out


class MetricstoreBackendEntrypoint(BackendEntrypoint):
    """Opens a metricstore store directory (read-only, lazily); see the
    module docs. Options: ``metrics`` (names to open), ``levels`` (names of
    the path levels), ``start`` and ``stop`` (bounds of the time axis; by
    default the store's extent)."""

    description = "metricstore store directories: one lazy (series, time) variable per metric"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "metrics",
        "levels",
        "start",
        "stop",
    )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            return os.path.isfile(os.path.join(os.fspath(filename_or_obj), "STORE"))
        except TypeError:
            return False

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        metrics: Sequence[str] | None = None,
        levels: Sequence[str] | None = None,
        start: object = None,
        stop: object = None,
    ) -> xarray.Dataset:
        directory = os.fspath(filename_or_obj)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"filename_or_obj: {directory} is not a store directory")
        dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
        with open_store(directory, readonly=True, progress=False) as store:
            defined = {m.name: m.frequency for m in store.metrics}
            if metrics is not None:
                unknown = [m for m in metrics if m not in defined]
                if unknown:
                    raise ValueError(f"metrics: {', '.join(unknown)} not defined in {directory}")
            chosen = [
                m for m in (metrics if metrics is not None else sorted(defined)) if m not in dropped
            ]
            paths_of = {m: {p for _, _, p in store.list_series(m)} for m in chosen}
            extent = store.extent()
            unit = store.unit
        union = sorted(set().union(*paths_of.values())) if paths_of else []
        depth = max((len(p) for p in union), default=0)
        if levels is None:
            names = ["cluster", "host"][:depth] + [f"level{i}" for i in range(2, depth)]
        else:
            names = list(levels)
        if len(names) < depth:
            raise ValueError(f"levels: {len(names)} names for paths of {depth} levels")
        coords: dict[str, Any] = {
            "series": ("series", ["/".join(p) for p in union]),
            **{
                name: ("series", [p[i] if i < len(p) else "" for p in union])
                for i, name in enumerate(names[:depth])
            },
        }
        begin = to_ticks(start, unit, "start") if start is not None else (extent or (0, 0))[0]
        end = to_ticks(stop, unit, "stop") if stop is not None else (extent or (0, 0))[1]
        if end < begin:
            raise ValueError(f"stop: {end} is before start ({begin})")
        frequencies = sorted({defined[m] for m in chosen})
        variables: dict[str, Any] = {}
        for metric in chosen:
            frequency = defined[metric]
            dim = "time" if len(frequencies) == 1 else f"time_{frequency}"
            first = -(-begin // frequency)
            slots = max(0, -(-end // frequency) - first)
            if dim not in coords:
                ticks = (first + np.arange(slots, dtype=np.int64)) * frequency
                coords[dim] = (dim, ticks.astype(f"datetime64[{unit}]"))
            rows = tuple(literal_pattern(p) if p in paths_of[metric] else None for p in union)
            array = _MetricArray(directory, metric, rows, first, frequency, slots)
            variable = xarray.Variable(
                ("series", dim),
                indexing.LazilyIndexedArray(array),
                attrs={"frequency": frequency},
            )
            variable.encoding["preferred_chunks"] = {"series": len(union), dim: _PREFERRED_SLOTS}
            variables[metric] = variable
        return xarray.Dataset(variables, coords=coords, attrs={"store": directory, "unit": unit})
