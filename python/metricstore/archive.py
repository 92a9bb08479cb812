"""A partitioned Parquet archive of finished days, in cc-backend's columns.

Layout (hive partitioning, which DuckDB, Polars, Spark, pyarrow and Dask
read without any code of ours)::

    root/cluster=C/metric=M/day=YYYY-MM-DD/part-0.parquet

Each file holds cc-backend's archive columns ``cluster, hostname, metric,
scope, scope_id`` (strings), ``timestamp, frequency`` (int64 seconds,
annotated INTEGER(64, signed) as parquet-go writes them) and ``value``
(float32): one row per non-NaN sample of the day ``[day, day + 1)`` in UTC,
sorted by hostname, scope, scope_id, timestamp (the file's sorting columns
say so). Strings are dictionary-coded, timestamps and frequencies
delta-coded, values byte-stream-split, all of it zstd; the page index is on.

Invariants:

- A partition's day is whole or absent. Its file is written as
  ``.part-0.parquet.tmp`` (a name no ``*.parquet`` glob and no :func:`scan`
  takes), fsynced, renamed and the directory fsynced; a writer killed at any
  point leaves at most such a temporary file, which the next :func:`write`
  removes.
- Only finished days are written: days that end at or before ``until``.
  A day already archived is left alone unless ``overwrite=True`` (then it
  is replaced by one rename).
- A day of one (cluster, metric) is one file; ``part-N`` leaves room for
  more. Rows read back into a grid equal ``store.read`` bit for bit (NaN
  where the store has no value: NaN samples are not archived, as in
  cc-backend).

:func:`scan` prunes by the directory names alone (cluster, metric, day)
and hands the remaining files to the engine asked for.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._convert import to_ticks
from ._frames import require
from ._parquet import annotate_signed_int64
from .ccbackend import _PARQUET_COLUMNS, _check_unit, _plural, _scope, _size
from .store import Store

if TYPE_CHECKING:
    import xarray

__all__ = ["ArchiveScan", "ArchiveWriteReport", "scan", "write"]

DAY = 86_400
"""Seconds in an archive day (UTC)."""

_PART = re.compile(r"part-[0-9]+\.parquet")
_TEMPORARY_SUFFIX = ".tmp"
# Rows read from the store per row group: bounds the memory a write holds.
_GROUP_SLOTS = 1 << 22
_STRINGS = ("cluster", "hostname", "metric", "scope", "scope_id")
_SORTING = ("hostname", "scope", "scope_id", "timestamp")


@dataclass(frozen=True)
class ArchiveWriteReport:
    """What :func:`write` did: partitions (one cluster, metric and day)
    written and skipped because they were already archived, the files
    written, their rows and bytes. ``skipped_series`` are series not below
    a host (paths shorter than cluster/host) or a second series with the
    same (host, scope, scope_id) of a metric, which the columns cannot
    tell apart."""

    root: str
    days_written: int
    days_skipped: int
    files: tuple[str, ...]
    rows: int
    bytes: int
    skipped_series: tuple[tuple[str, tuple[str, ...]], ...]
    seconds: float

    def summary(self) -> str:
        text = (
            f"{self.root}: wrote {_plural(self.days_written, 'day')} "
            f"({_plural(len(self.files), 'file')}, {_plural(self.rows, 'row')}, "
            f"{_size(self.bytes)}) in {self.seconds:.2f} s; "
            f"{_plural(self.days_skipped, 'day')} already archived"
        )
        if self.skipped_series:
            text += f"\nleft out {_plural(len(self.skipped_series), 'series')}"
        return text


def _name(value: str) -> str:
    """A partition value as a directory name (percent-encoded, as hive does)."""
    return urllib.parse.quote(value, safe="")


def _day_name(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(path: Path) -> None:
    """Creates ``path`` and its missing parents, each made durable by an
    fsync of the directory that holds it."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_directory(directory.parent)


def _names(values: Iterable[str] | None, argument: str) -> set[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return {values}
    names = set(values)
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{argument}: expected names (str), got {bad[0]!r}")
    return names


@dataclass
class _Group:
    """The series of one (cluster, metric), in archive order."""

    cluster: str
    metric: str
    frequency: int
    handles: list[int]
    hosts: list[str]
    scopes: list[tuple[str, str]]


def _groups(
    store: Store, metrics: set[str] | None, clusters: set[str] | None
) -> tuple[list[_Group], list[tuple[str, tuple[str, ...]]]]:
    frequencies = {m.name: m.frequency for m in store.metrics}
    if metrics is not None:
        unknown = sorted(metrics - frequencies.keys())
        if unknown:
            raise ValueError(f"metrics: {', '.join(unknown)} not defined in the store")
    members: dict[tuple[str, str], list[tuple[str, str, str, int, tuple[str, ...]]]] = {}
    skipped: list[tuple[str, tuple[str, ...]]] = []
    for handle, metric, path in store.list_series():
        if metrics is not None and metric not in metrics:
            continue
        if clusters is not None and (not path or path[0] not in clusters):
            continue
        if len(path) < 2:
            skipped.append((metric, path))
            continue
        scope, scope_id = _scope(path[2:])
        members.setdefault((path[0], metric), []).append((path[1], scope, scope_id, handle, path))
    groups = []
    for (cluster, metric), rows in sorted(members.items()):
        rows.sort()
        group = _Group(cluster, metric, frequencies[metric], [], [], [])
        seen: set[tuple[str, str, str]] = set()
        for host, scope, scope_id, handle, path in rows:
            if (host, scope, scope_id) in seen:
                skipped.append((metric, path))
                continue
            seen.add((host, scope, scope_id))
            group.handles.append(handle)
            group.hosts.append(host)
            group.scopes.append((scope, scope_id))
        groups.append(group)
    return groups, sorted(skipped)


def _schema(pa: Any) -> Any:
    return pa.schema(
        [
            pa.field(
                name,
                pa.dictionary(pa.int32(), pa.string()) if kind == "string" else getattr(pa, kind)(),
                nullable=False,
            )
            for name, kind in _PARQUET_COLUMNS
        ]
    )


def _strings(pa: Any, codes: NDArray[np.int32], dictionary: list[str]) -> Any:
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(dictionary, pa.string()))


def _day_tables(
    pa: Any, store: Store, group: _Group, start: int, stop: int
) -> Iterator[tuple[Any, int]]:
    """The group's rows in ``[start, stop)`` as tables of about
    ``_GROUP_SLOTS`` slots read each, with their row counts."""
    slots = max(1, -(-(stop - start) // group.frequency))
    batch = max(1, _GROUP_SLOTS // slots)
    host_names = sorted(set(group.hosts))
    host_codes = np.searchsorted(host_names, group.hosts).astype(np.int32)
    scope_names = sorted(set(group.scopes))
    scope_codes = np.array([scope_names.index(s) for s in group.scopes], np.int32)
    for first in range(0, len(group.handles), batch):
        result = store.read_many(group.handles[first : first + batch], start, stop)
        values = result.values
        present = values == values
        rows, slot = np.nonzero(present)
        count = int(rows.size)
        if count == 0:
            continue
        series = rows + first
        zeros = np.zeros(count, np.int32)
        by_scope = scope_codes[series]
        table = pa.table(
            [
                _strings(pa, zeros, [group.cluster]),
                _strings(pa, host_codes[series], host_names),
                _strings(pa, zeros, [group.metric]),
                _strings(pa, by_scope, [s for s, _ in scope_names]),
                _strings(pa, by_scope, [i for _, i in scope_names]),
                pa.array(result.start + slot.astype(np.int64) * result.step),
                pa.array(np.full(count, result.step, np.int64)),
                pa.array(values[present]),
            ],
            schema=_schema(pa),
        )
        yield table, count


def _write_day(
    pa: Any, pq: Any, store: Store, group: _Group, day: int, target: Path
) -> tuple[int, int]:
    """Writes one partition's day to ``target`` through its temporary name;
    returns (rows, bytes), (0, 0) when the day holds no value."""
    temporary = target.with_name("." + target.name + _TEMPORARY_SUFFIX)
    rows = 0
    writer = None
    try:
        for table, count in _day_tables(pa, store, group, day * DAY, (day + 1) * DAY):
            if writer is None:
                _make_directories(target.parent)
                writer = pq.ParquetWriter(
                    temporary,
                    table.schema,
                    compression="zstd",
                    compression_level=6,
                    use_dictionary=list(_STRINGS),
                    column_encoding={
                        "timestamp": "DELTA_BINARY_PACKED",
                        "frequency": "DELTA_BINARY_PACKED",
                        "value": "BYTE_STREAM_SPLIT",
                    },
                    write_page_index=True,
                    sorting_columns=[
                        pq.SortingColumn(table.schema.get_field_index(name)) for name in _SORTING
                    ],
                    store_schema=False,
                )
            writer.write_table(table, row_group_size=count)
            rows += count
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return 0, 0
    annotate_signed_int64(temporary)
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    _fsync_directory(target.parent)
    return rows, target.stat().st_size


def _remove_temporaries(directory: Path) -> None:
    """Removes what a killed writer left in a day's directory."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(_TEMPORARY_SUFFIX):
                entry.unlink()


def write(
    store: Store,
    root: str | os.PathLike[str],
    until: object = None,
    metrics: Iterable[str] | None = None,
    clusters: Iterable[str] | None = None,
    overwrite: bool = False,
) -> ArchiveWriteReport:
    """Archives every finished day of ``store`` below ``root`` (see the
    module's docs for the layout and the guarantees).

    A day is finished when it ends at or before ``until`` (a timestamp; by
    default now). ``metrics`` and ``clusters`` restrict the archive to
    those names. A partition's day that is already archived is skipped
    unless ``overwrite``. The store's unit must be seconds. Needs pyarrow
    (``pip install 'metricstore[scale]'``).
    """
    began = time.perf_counter()
    _check_unit(store)
    pa = require("pyarrow", "scale", "archive.write()")
    pq = require("pyarrow.parquet", "scale", "archive.write()")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__}")
    end = int(time.time()) if until is None else to_ticks(until, "s", "until")
    groups, skipped = _groups(store, _names(metrics, "metrics"), _names(clusters, "clusters"))
    base = Path(root)
    written = already = rows = size = 0
    files: list[str] = []
    extent = store.extent()
    days = (
        range(0)
        if extent is None
        else range(extent[0] // DAY, min(end // DAY, -(-extent[1] // DAY)))
    )
    for group in groups:
        partition = base / f"cluster={_name(group.cluster)}" / f"metric={_name(group.metric)}"
        for day in days:
            directory = partition / f"day={_day_name(day)}"
            target = directory / "part-0.parquet"
            _remove_temporaries(directory)
            if target.exists() and not overwrite:
                already += 1
                continue
            count, nbytes = _write_day(pa, pq, store, group, day, target)
            if count:
                written += 1
                rows += count
                size += nbytes
                files.append(str(target))
    return ArchiveWriteReport(
        root=str(base),
        days_written=written,
        days_skipped=already,
        files=tuple(files),
        rows=rows,
        bytes=size,
        skipped_series=tuple(skipped),
        seconds=time.perf_counter() - began,
    )


# -- reading -------------------------------------------------------------------------


def _partition_value(name: str, key: str) -> str | None:
    prefix = key + "="
    return urllib.parse.unquote(name[len(prefix) :]) if name.startswith(prefix) else None


def _day_number(text: str) -> int | None:
    try:
        return (_dt.date.fromisoformat(text) - _dt.date(1970, 1, 1)).days
    except ValueError:
        return None


def _subdirectories(directory: Path, key: str, wanted: set[str] | None) -> list[tuple[str, Path]]:
    found = []
    for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
        value = _partition_value(entry.name, key)
        if value is not None and entry.is_dir() and (wanted is None or value in wanted):
            found.append((value, entry))
    return found


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_file(
    path: str, start: int | None, stop: int | None, hosts: tuple[str, ...] | None
) -> Any:
    """One archive file's rows within the bounds as a pandas DataFrame (a
    Dask partition)."""
    pq = require("pyarrow.parquet", "scale", "ArchiveScan.to_dask()")
    filters = _filters(start, stop, hosts)
    return pq.read_table(path, filters=filters or None).to_pandas()


def _filters(
    start: int | None, stop: int | None, hosts: tuple[str, ...] | None
) -> list[tuple[str, str, Any]]:
    filters: list[tuple[str, str, Any]] = []
    if start is not None:
        filters.append(("timestamp", ">=", start))
    if stop is not None:
        filters.append(("timestamp", "<", stop))
    if hosts is not None:
        filters.append(("hostname", "in", list(hosts)))
    return filters


def _codes(pc: Any, column: Any, key: Callable[[str], Any]) -> tuple[list[str], NDArray[np.intp]]:
    """The distinct strings of an Arrow column sorted by ``key``, and each
    row's index into them."""
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary.to_pylist()
    order = sorted(range(len(dictionary)), key=lambda n: key(dictionary[n]))
    rank = np.empty(len(order), np.intp)
    rank[order] = np.arange(len(order))
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return [dictionary[n] for n in order], rank[indices]


class ArchiveScan:
    """The archive files :func:`scan` selected and the row bounds it keeps,
    read on demand: by any Arrow PyCapsule consumer (``pyarrow.table(s)``,
    ``polars.DataFrame(s)``), or as a DuckDB relation, a Polars LazyFrame, a
    Dask DataFrame or an xarray grid. Nothing is read until then."""

    def __init__(
        self,
        root: Path,
        files: tuple[str, ...],
        start: int | None,
        stop: int | None,
        hosts: tuple[str, ...] | None,
    ) -> None:
        self.root = root
        self.files = files
        """The archive files left after pruning by cluster, metric and day."""
        self.start = start
        self.stop = stop
        self.hosts = hosts

    def __repr__(self) -> str:
        return f"ArchiveScan({str(self.root)!r}, {_plural(len(self.files), 'file')})"

    def _arrow_filter(self) -> Any:
        ds = require("pyarrow.dataset", "scale", "ArchiveScan")
        expression = None
        for column, op, value in _filters(self.start, self.stop, self.hosts):
            field = ds.field(column)
            term = (
                field >= value if op == ">=" else field < value if op == "<" else field.isin(value)
            )
            expression = term if expression is None else expression & term
        return expression

    def to_arrow_reader(self) -> Any:
        """A ``pyarrow.RecordBatchReader`` over the selected rows."""
        pa = require("pyarrow", "scale", "ArchiveScan")
        ds = require("pyarrow.dataset", "scale", "ArchiveScan")
        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _PARQUET_COLUMNS])
        dataset = ds.dataset(list(self.files), schema=schema, format="parquet")
        return dataset.scanner(filter=self._arrow_filter()).to_reader()

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.to_arrow_reader().__arrow_c_stream__(requested_schema)

    def _sql_where(self) -> str:
        terms = []
        if self.start is not None:
            terms.append(f"timestamp >= {self.start}")
        if self.stop is not None:
            terms.append(f"timestamp < {self.stop}")
        if self.hosts is not None:
            terms.append(f"hostname IN ({', '.join(map(_sql_string, self.hosts)) or 'NULL'})")
        return " AND ".join(terms)

    def to_duckdb(self, con: Any = None) -> Any:
        """A DuckDB relation over the selected rows, on ``con`` (by default
        DuckDB's default connection); DuckDB reads the files itself."""
        duckdb = require("duckdb", "scale", "ArchiveScan.to_duckdb()")
        con = duckdb.default_connection() if con is None else con
        if not self.files:
            return con.from_arrow(self.to_arrow_reader().read_all())
        relation = con.read_parquet(list(self.files))
        where = self._sql_where()
        return relation.filter(where) if where else relation

    def to_polars(self) -> Any:
        """A Polars LazyFrame over the selected rows."""
        pl = require("polars", "scale", "ArchiveScan.to_polars()")
        if not self.files:
            return pl.LazyFrame(self.to_arrow_reader().read_all())
        frame = pl.scan_parquet(list(self.files))
        if self.start is not None:
            frame = frame.filter(pl.col("timestamp") >= self.start)
        if self.stop is not None:
            frame = frame.filter(pl.col("timestamp") < self.stop)
        if self.hosts is not None:
            frame = frame.filter(pl.col("hostname").is_in(list(self.hosts)))
        return frame

    def to_dask(self) -> Any:
        """A Dask DataFrame, one partition per selected file."""
        dd = require("dask.dataframe", "scale", "ArchiveScan.to_dask()")
        pa = require("pyarrow", "scale", "ArchiveScan.to_dask()")
        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _PARQUET_COLUMNS])
        meta = schema.empty_table().to_pandas()
        if not self.files:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_map(
            _read_file,
            list(self.files),
            args=(self.start, self.stop, self.hosts),
            meta=meta,
            label="metricstore-archive",
            enforce_metadata=False,
        )

    def to_xarray(self, scope: str = "node") -> xarray.DataArray:
        """The rows of one metric and ``scope`` as a float32 grid, NaN where
        no value is archived: dims ("host", "time") for scope "node", else
        ("host", scope, "time") (``("host", "hwthread", "time")``). The time
        axis is the metric's grid over ``[start, stop)`` of the scan, as
        ``store.read`` pads it; an open end is where the rows end. Hosts
        (coordinate ``cluster`` alongside) and scope ids are sorted."""
        xr = require("xarray", "scale", "ArchiveScan.to_xarray()")
        pc = require("pyarrow.compute", "scale", "ArchiveScan.to_xarray()")
        table = self.to_arrow_reader().read_all()
        table = table.filter(pc.equal(table.column("scope"), scope))
        metrics = pc.unique(table.column("metric")).to_pylist()
        if len(metrics) > 1:
            raise ValueError(
                f"metric: the scan holds several metrics ({', '.join(sorted(metrics))}); "
                "scan one to make a grid"
            )
        frequencies = pc.unique(table.column("frequency")).to_pylist()
        if len(frequencies) > 1:
            raise ValueError(f"the rows have several frequencies: {sorted(frequencies)}")
        timestamps = table.column("timestamp").to_numpy()
        frequency = int(frequencies[0]) if frequencies else 1
        if self.start is not None:
            first = -(-self.start // frequency) * frequency
        else:
            first = int(timestamps.min()) if timestamps.size else 0
        if self.stop is not None:
            count = max(0, -(-self.stop // frequency) - first // frequency)
        else:
            count = (int(timestamps.max()) - first) // frequency + 1 if timestamps.size else 0
        pairs = pc.binary_join_element_wise(
            table.column("cluster"), table.column("hostname"), "/"
        ).combine_chunks()
        hosts, host_index = _codes(pc, pairs, key=lambda h: h)
        clusters = [h.partition("/")[0] for h in hosts]
        names = [h.partition("/")[2] for h in hosts]
        if len(set(names)) < len(names):
            raise ValueError("cluster: hosts of the same name in several clusters; scan one")
        slots = (timestamps - first) // frequency
        values = table.column("value").to_numpy()
        time_axis = (first + np.arange(count, dtype=np.int64) * frequency).astype("datetime64[s]")
        coords: dict[str, Any] = {"host": names, "cluster": ("host", clusters), "time": time_axis}
        if scope == "node":
            grid = np.full((len(hosts), count), np.nan, np.float32)
            grid[host_index, slots] = values
            dims: tuple[str, ...] = ("host", "time")
        else:
            distinct, id_index = _codes(
                pc,
                table.column("scope_id").combine_chunks(),
                key=lambda i: (not i.isdigit(), len(i), i),
            )
            grid = np.full((len(hosts), len(distinct), count), np.nan, np.float32)
            grid[host_index, id_index, slots] = values
            dims = ("host", scope, "time")
            coords[scope] = distinct
        array: xarray.DataArray = xr.DataArray(
            grid,
            dims=dims,
            coords=coords,
            name=metrics[0] if metrics else None,
            attrs={"frequency": frequency, "scope": scope},
        )
        return array


def scan(
    root: str | os.PathLike[str],
    metric: str | Iterable[str] | None = None,
    start: object = None,
    stop: object = None,
    cluster: str | Iterable[str] | None = None,
    hosts: Iterable[str] | None = None,
) -> ArchiveScan:
    """Selects the archive's rows of ``metric`` (a name or several) in
    ``[start, stop)`` (timestamps, seconds), of ``cluster`` and ``hosts``
    (hostnames); None means all. Files are pruned by their directory names
    alone: a partition outside the selection is never opened."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"root: {base} is not a directory")
    begin = None if start is None else to_ticks(start, "s", "start")
    end = None if stop is None else to_ticks(stop, "s", "stop")
    if begin is not None and end is not None and end < begin:
        raise ValueError(f"stop: {end} is before start ({begin})")
    host_names = None
    if hosts is not None:
        host_names = tuple(sorted(_names(hosts, "hosts") or ()))
    files: list[str] = []
    for _, cluster_dir in _subdirectories(base, "cluster", _names(cluster, "cluster")):
        for _, metric_dir in _subdirectories(cluster_dir, "metric", _names(metric, "metric")):
            for day_text, day_dir in _subdirectories(metric_dir, "day", None):
                day = _day_number(day_text)
                if day is None:
                    continue
                if begin is not None and (day + 1) * DAY <= begin:
                    continue
                if end is not None and day * DAY >= end:
                    continue
                files.extend(
                    str(entry)
                    for entry in sorted(day_dir.iterdir())
                    if _PART.fullmatch(entry.name) and entry.is_file()
                )
    return ArchiveScan(base, tuple(files), begin, end, host_names)
