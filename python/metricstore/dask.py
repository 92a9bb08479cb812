"""One Dask array (or DataFrame) over the stores of many shards.

A site keeps one store per shard (a cluster or a group of hosts) on the
disk of the machine that collects it; an analysis reads them all at once.
:func:`read` lists the matching series of every store here, once, and
builds a graph of tasks that each open one store read-only inside the
worker, read one block with ``read_many`` and close it again: what travels
is the directory, the metric, the series paths and the bounds (strings and
ints), never a store handle.

Invariants: rows are in store order, then path order within a store; the
time axis is the metric's grid over ``[start, stop)``, NaN-padded as
``store.read_many`` pads it; every block is bit for bit what that store's
``read_many`` returns for its rows and slots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._convert import literal_pattern, to_ticks
from ._frames import require
from .exceptions import UnknownMetricError
from .store import Store
from .store import open as open_store

__all__ = ["read"]

PathPattern = str | tuple[str, ...]


def _open(directory: str) -> Store:
    return open_store(directory, readonly=True, progress=False)


def _read_block(
    directory: str, metric: str, paths: tuple[str, ...], start: int, stop: int
) -> NDArray[np.float32]:
    """Rows ``paths`` of ``metric`` in ``[start, stop)`` of one store (a task)."""
    with _open(directory) as store:
        values = store.read_many([(metric, p) for p in paths], start, stop).values
    return np.asarray(values, dtype=np.float32).reshape(len(paths), -1)


def _read_frame(part: tuple[str, str, tuple[str, ...], int, int, int, str]) -> Any:
    """A block as a long pandas DataFrame: store, path, time, value (a partition)."""
    pd = require("pandas", "scale", "metricstore.dask.read(frame=True)")
    directory, metric, paths, start, stop, frequency, unit = part
    values = _read_block(directory, metric, paths, start, stop)
    slots = values.shape[1]
    times = (start + np.arange(slots, dtype=np.int64) * frequency).astype(f"datetime64[{unit}]")
    return pd.DataFrame(
        {
            "store": pd.Series([directory] * values.size, dtype=object),
            "path": pd.Series(np.repeat(np.array(paths, dtype=object), slots), dtype=object),
            "time": np.tile(times, len(paths)),
            "value": values.reshape(-1),
        }
    )


class _Shard:
    def __init__(self, directory: str, paths: list[str], extent: tuple[int, int] | None) -> None:
        self.directory = directory
        self.paths = paths
        self.extent = extent


def _plan(
    stores: Sequence[str | os.PathLike[str]], metric: str, path: PathPattern
) -> tuple[list[_Shard], int, str]:
    """The matching series of each store, the metric's frequency and the unit."""
    shards = []
    frequency: int | None = None
    unit: str | None = None
    for i, entry in enumerate(stores):
        directory = os.fspath(entry)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"stores[{i}]: {directory} is not a store directory")
        with _open(directory) as store:
            if unit is None:
                unit = store.unit
            elif store.unit != unit:
                raise ValueError(
                    f"stores[{i}]: {directory} counts time in {store.unit!r}, stores[0] in {unit!r}"
                )
            defined = {m.name: m.frequency for m in store.metrics}
            if metric not in defined:
                shards.append(_Shard(directory, [], None))
                continue
            if frequency is None:
                frequency = defined[metric]
            elif defined[metric] != frequency:
                raise ValueError(
                    f"stores[{i}]: {directory} stores {metric!r} every {defined[metric]} "
                    f"ticks, the stores before it every {frequency}"
                )
            try:
                found = sorted(p for _, _, p in store.list_series(metric, path))
            except UnknownMetricError:
                found = []
            extents = [store.extent((metric, p)) for p in found]
            known = [e for e in extents if e is not None]
            extent = (min(e[0] for e in known), max(e[1] for e in known)) if known else None
            shards.append(_Shard(directory, [literal_pattern(p) for p in found], extent))
    if frequency is None or unit is None:
        raise ValueError(f"metric: {metric!r} is defined in none of the stores")
    return shards, frequency, unit


def read(
    stores: Sequence[str | os.PathLike[str]],
    metric: str,
    path: PathPattern,
    start: object = None,
    stop: object = None,
    *,
    frame: bool = False,
    time_chunk: int | None = None,
) -> Any:
    """``[start, stop)`` of the series of ``metric`` whose path matches
    ``path`` (a pattern as in ``Store.list_series``; ``"*/*"`` is every
    host of every cluster) in every store of ``stores`` (directories),
    as one lazy Dask array of shape (series, time), float32, NaN-padded.

    Rows are in store order, then path order; a store that lacks the metric
    adds none. An open end (None) is where the samples of all the rows end
    on that side. Each store is one block of rows; ``time_chunk`` (slots)
    splits the time axis too. ``frame=True`` gives a Dask DataFrame with the
    columns store, path, time, value instead (one partition per block).
    The stores are opened read-only (here once, to list the series, and in
    each task), so a writer may have them open. Needs dask.
    """
    da = require("dask.array", "scale", "metricstore.dask.read()")
    dask = require("dask", "scale", "metricstore.dask.read()")
    if isinstance(stores, str | os.PathLike) or not isinstance(stores, Sequence):
        raise TypeError(
            f"stores: expected a list of store directories, got {type(stores).__name__}"
        )
    if not isinstance(metric, str):
        raise TypeError(f"metric: expected a str, got {type(metric).__name__}")
    if time_chunk is not None and (not isinstance(time_chunk, int) or time_chunk < 1):
        raise ValueError(f"time_chunk: expected a positive number of slots, got {time_chunk!r}")
    shards, frequency, unit = _plan(stores, metric, path)
    extents = [s.extent for s in shards if s.extent is not None]
    begin = (
        to_ticks(start, unit, "start")
        if start is not None
        else min((e[0] for e in extents), default=0)
    )
    end = (
        to_ticks(stop, unit, "stop")
        if stop is not None
        else max((e[1] for e in extents), default=begin)
    )
    if end < begin:
        raise ValueError(f"stop: {end} is before start ({begin})")
    first = -(-begin // frequency)
    slots = max(0, -(-end // frequency) - first)
    step = slots if time_chunk is None else time_chunk
    bounds = [(a, min(a + step, slots)) for a in range(0, slots, max(step, 1))] or [(0, 0)]
    parts = [
        (
            shard.directory,
            metric,
            tuple(shard.paths),
            (first + a) * frequency,
            (first + b) * frequency,
            frequency,
            unit,
        )
        for shard in shards
        if shard.paths
        for a, b in bounds
    ]
    if frame:
        dd = require("dask.dataframe", "scale", "metricstore.dask.read(frame=True)")
        pd = require("pandas", "scale", "metricstore.dask.read(frame=True)")
        meta = pd.DataFrame(
            {
                "store": pd.Series([], dtype=object),
                "path": pd.Series([], dtype=object),
                "time": np.array([], dtype=f"datetime64[{unit}]"),
                "value": np.array([], dtype=np.float32),
            }
        )
        if not parts:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_map(
            _read_frame, parts, meta=meta, label="metricstore-read", enforce_metadata=False
        )
    rows = []
    for shard in shards:
        if not shard.paths:
            continue
        row = []
        for a, b in bounds:
            block = dask.delayed(_read_block, pure=True)(
                shard.directory,
                metric,
                tuple(shard.paths),
                (first + a) * frequency,
                (first + b) * frequency,
            )
            row.append(da.from_delayed(block, (len(shard.paths), b - a), dtype=np.float32))
        rows.append(row)
    if not rows:
        return da.zeros((0, slots), dtype=np.float32)
    return da.block(rows)
