"""The public :class:`Store` and :class:`ReadResult`.

``Store`` is a thin shell over the compiled ``_core.Store``: it converts
arguments with :mod:`metricstore._convert` and passes them on. The core does
the work with the GIL released and is safe to share between threads.

Reads are the exception: they pass their arguments on untouched, and the
core converts series keys and int times itself (calling ``_convert`` only
for other times) and returns the :class:`ReadResult` (``_core.ReadResult``)
directly, so a read runs no Python code beyond the call.
"""

from __future__ import annotations

import os
import threading
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._convert import (
    to_block_values,
    to_frequency,
    to_handles,
    to_path,
    to_ticks,
    to_ticks_array,
    to_values,
)
from ._core import ReadResult
from ._display import (
    recovery_html,
    recovery_text,
    series_stats_html,
    series_stats_text,
    store_html,
    store_text,
)
from ._progress import check_progress, ctrl_c_held, new_bar, wants_bar
from .collector import Collector, HealthReport, HostHealth, IngestReport

__all__ = [
    "CheckpointInfo",
    "Damage",
    "Metric",
    "ReadResult",
    "RecoveryReport",
    "SeriesStats",
    "Store",
    "open",
]

_NS_PER_TICK = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

PathLike: TypeAlias = str | Sequence[str]
"""A path below the root: ``("emmy", "e0102")`` or ``"emmy/e0102"``."""
SeriesKey: TypeAlias = "int | np.integer[Any] | tuple[str, PathLike]"
"""A series handle (an int or a NumPy integer), or a ``(metric, path)`` pair."""


class Metric(NamedTuple):
    """A metric definition: ticks between samples, how series combine, and
    the unit of the values (None when it has none)."""

    name: str
    frequency: int
    aggregation: str
    unit: str | None = None


@dataclass(frozen=True, repr=False)
class SeriesStats:
    """Summary of the samples of a range (:meth:`Store.read_stats`): NaN
    min, max and avg and a zero count when it has none. ``avg`` is summed in
    float64. ``unit`` is the metric's unit (None when it has none)."""

    min: float
    max: float
    avg: float
    count: int
    unit: str | None = None

    def __repr__(self) -> str:
        return series_stats_text(self)

    def _repr_html_(self) -> str:
        return series_stats_html(self)


@dataclass(frozen=True)
class Damage:
    """Where recovery found a damaged log and what it dropped."""

    file: str
    offset: int
    bytes: int
    reason: str


@dataclass(frozen=True)
class CheckpointInfo:
    """What :meth:`Store.checkpoint` wrote and removed.

    ``lsn`` is the last op the snapshot ``file`` covers. Writers waited only
    ``writers_held_seconds`` (to fix the LSN, start a log segment and copy
    the catalog); the series were copied while writes went on.
    """

    lsn: int
    file: str
    bytes: int
    series: int
    removed_segments: int
    removed_snapshots: int
    writers_held_seconds: float
    seconds: float


@dataclass(frozen=True, repr=False)
class RecoveryReport:
    """What opening a store directory found and did.

    Recovery loaded ``snapshot`` (None if there was none usable), which
    covers ops up to ``snapshot_lsn``; ``skipped_snapshots`` lists newer
    snapshots it could not use, as (file, reason). Then ``records`` ops were
    replayed from ``segments`` log segments (``bytes`` of them); ``last_lsn``
    is the log sequence number of the last op recovered.
    ``torn`` is a torn tail cut off the last segment (an append cut short by
    a crash; nothing acknowledged is lost with it unless the sync mode
    allowed it). ``stopped`` is where point-in-time recovery stopped, and
    ``set_aside`` the files it renamed to ``*.broken``.
    """

    snapshot: str | None
    snapshot_lsn: int
    skipped_snapshots: list[tuple[str, str]]
    segments: int
    records: int
    bytes: int
    last_lsn: int
    torn: Damage | None
    stopped: Damage | None
    set_aside: list[str]
    seconds: float

    def __repr__(self) -> str:
        return recovery_text(self)

    def _repr_html_(self) -> str:
        return recovery_html(self)

    @classmethod
    def _from_core(cls, report: dict[str, Any]) -> RecoveryReport:
        fields = dict(report)
        for key in ("torn", "stopped"):
            if fields[key] is not None:
                fields[key] = Damage(**fields[key])
        return cls(**fields)


def _check_lengths(array: NDArray[Any], argument: str, series: int) -> None:
    """Refuses a write whose ``argument`` does not hold one element per
    series, before any series is created (the core checks it too)."""
    if len(array) != series:
        raise ValueError(f"{argument}: has {len(array)} elements but series has {series}")


class Store:
    """A metric store: in memory with ``Store()``, or in a directory with
    :func:`metricstore.open`.

    ``unit`` fixes the unit of every timestamp and frequency: ``"s"``
    (default, as cc-backend), ``"ms"``, ``"us"`` or ``"ns"``. Plain ints are
    always ticks of this unit; datetimes of any kind are converted to it.
    A store is safe to use from many threads at once.
    """

    __slots__ = ("__weakref__", "_core", "_recovery", "_unit")

    def __init__(
        self, *, unit: str = "s", memory_limit: int | None = None, retention: object = None
    ) -> None:
        self._attach(_core.Store(unit))
        self._limit(memory_limit, retention)

    def _limit(self, memory_limit: int | None, retention: object) -> None:
        if memory_limit is not None:
            self.set_memory_limit(memory_limit)
        if retention is not None:
            self.set_retention(retention)

    def set_memory_limit(self, limit: int | None) -> None:
        """Limits the bytes of series data (``stats()["data_bytes"]``). When a
        write passes the limit, the oldest data across all series is dropped
        until it is back under 90% of the limit; the cut is logged like any
        write. None removes the limit."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"memory_limit: expected an int of bytes or None, got {limit!r}")
        if limit is not None and limit <= 0:
            raise ValueError(f"memory_limit: must be positive or None, got {limit}")
        self._core.set_memory_limit(limit)

    def set_retention(self, keep: object) -> None:
        """Keeps only data newer than ``keep`` (ticks of the store unit or a
        timedelta) before the wall clock; older data is cut as writes arrive
        (at most every tenth of ``keep``, between 1 s and 60 s). None keeps
        everything."""
        ticks = None if keep is None else to_frequency(keep, self._unit, "retention")
        self._core.set_retention(ticks)

    def drop_before(self, before: object) -> None:
        """Drops every sample before ``before`` from every series (one logged
        op, so recovery repeats it)."""
        self._core.drop_before(to_ticks(before, self._unit, "before"))

    def drop_series_before(self, series: object, before: object) -> None:
        """Drops every sample before ``before`` from each of ``series`` (an
        array or list of handles) and from no other series: one logged op,
        so recovery repeats it."""
        handles = to_handles(series, "series")
        self._core.drop_series_before(handles, to_ticks(before, self._unit, "before"))

    def _attach(self, core: _core.Store) -> None:
        self._core = core
        self._unit: str = core.unit
        report = core.recovery
        self._recovery = None if report is None else RecoveryReport._from_core(report)

    @property
    def path(self) -> str | None:
        """The store directory, or None for an in-memory store."""
        return self._core.path

    @property
    def readonly(self) -> bool:
        return self._core.readonly

    @property
    def recovery(self) -> RecoveryReport | None:
        """What opening the directory found and did (None in memory)."""
        return self._recovery

    def refresh(self) -> RecoveryReport:
        """Brings a store opened with ``readonly=True`` up to date with the
        writer of its directory, and returns what that took.

        A read-only store is a fixed view of the directory as it was when
        opened (or last refreshed). ``refresh()`` applies the log records
        the writer wrote since, without reading the snapshot again: it
        reads the log segment it stopped in (``segment_bytes`` at most) and
        the ones after it, and replays only what is new. A record the
        writer is still appending is left for the next refresh. When the
        writer has meanwhile written a snapshot and removed the log
        segments that held those records, it opens the directory again (as
        ``metricstore.open(path, readonly=True)`` would; the report then
        names the snapshot it loaded). Reads running in other threads
        finish on the view they started on. Only read-only stores refresh:
        a writer, or an in-memory store, raises ValueError.
        """
        return RecoveryReport._from_core(self._core.refresh())

    def flush(self) -> None:
        """Returns once every write acknowledged before the call is on disk
        (a durability barrier); a no-op in memory."""
        self._core.flush()

    def seal(self) -> int:
        """Compresses the chunks no longer being written, now, and returns
        how many. Each series' newest chunk stays raw if it was written
        since the last pass (ticks go on landing there). Passes also run
        by themselves: after every checkpoint, and, in an in-memory store,
        in the background once 64 MiB of raw chunks were added.
        ``stats()`` shows the tiers."""
        return self._core.seal()

    def set_seal_after(self, nbytes: int | None) -> None:
        """Sets how many bytes of raw chunks may be added before a seal pass
        starts in the background (at first 64 MiB in memory, None for a
        store opened on a directory, which seals at its checkpoints); None
        turns background passes off, leaving :meth:`seal` and checkpoints."""
        self._core.set_seal_after(nbytes)

    # -- lifecycle -----------------------------------------------------------

    @property
    def unit(self) -> str:
        """The unit of timestamps and frequencies: "s", "ms", "us" or "ns"."""
        return self._unit

    @property
    def closed(self) -> bool:
        return self._core.closed

    def close(self, *, checkpoint: bool = True) -> None:
        """Writes a final snapshot (if anything changed since the last one and
        ``checkpoint`` is true), syncs the log, releases the directory and the
        data. Later calls raise ClosedError; closing twice is fine. If the
        final snapshot fails, the store is closed all the same (the log keeps
        every write; the next open replays it) and the error is raised."""
        self._core.close(checkpoint)

    def checkpoint(self) -> CheckpointInfo:
        """Writes a snapshot of the store, so reopening replays only the log
        written after it, and deletes log segments and snapshots no longer
        needed (the newest two snapshots are kept)."""
        return CheckpointInfo(**self._core.checkpoint())

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- metrics and series ----------------------------------------------------

    def define_metric(
        self, name: str, frequency: object, aggregation: str, unit: str | None = None
    ) -> None:
        """Defines a metric.

        ``frequency`` is the time between samples: ticks of the store unit or a
        timedelta. ``aggregation`` ("sum", "avg" or "none") says how a read
        above the stored level combines the series below it. ``unit`` is the
        unit of the values ("GF/s", "GB"; 1 to 64 printable characters) or
        None: a label that reads, plots and conversions carry, never a
        conversion. Defining a metric again with the same settings is a
        no-op; with other settings (the unit included) it raises
        MetricConflictError.
        """
        if unit is not None and not isinstance(unit, str):
            raise TypeError(f"unit: expected a str or None, got {type(unit).__name__}")
        self._core.define_metric(
            name, to_frequency(frequency, self._unit, "frequency"), aggregation, unit
        )

    @property
    def metrics(self) -> list[Metric]:
        """The defined metrics, in definition order."""
        return [Metric(*m) for m in self._core.metrics()]

    def series(self, metric: str, path: PathLike) -> int:
        """The handle of the series (metric, path), created if it does not exist."""
        return self._core.series(metric, to_path(path, "path"))

    def find_series(self, metric: str, path: PathLike) -> int | None:
        """The handle of the series (metric, path), or None if it does not exist."""
        return self._core.find_series(metric, to_path(path, "path"))

    def series_key(self, series: int | np.integer[Any]) -> tuple[str, tuple[str, ...]]:
        """The (metric, path) of a handle (an int or a NumPy integer)."""
        metric, path = self._core.series_key(series)
        return metric, tuple(path)

    def list_series(
        self, metric: str | None = None, path: PathLike | None = None
    ) -> list[tuple[int, str, tuple[str, ...]]]:
        """The series as (handle, metric, path), in handle order: all of
        them, or those of ``metric`` and those whose path matches the
        pattern ``path``.

        A pattern has one component per path level, each matched like
        :func:`fnmatch.fnmatchcase`: ``"emmy/*"`` is every host of emmy (not
        the levels below them), ``"emmy/e01*/cpu*"`` the cpus of hosts
        e01...; ``*`` any run of characters, ``?`` one, ``[seq]`` one of
        seq, ``[!seq]`` one not in seq, and ``[*]`` a literal ``*``. A path
        without such characters selects that exact path. An undefined
        metric raises UnknownMetricError.
        """
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric: expected a str or None, got {type(metric).__name__}")
        pattern = None if path is None else to_path(path, "path")
        return [(h, m, tuple(p)) for h, m, p in self._core.list_series(metric, pattern)]

    def __len__(self) -> int:
        return self._core.series_count()

    def _handles_later(
        self, series: object, argument: str, *, one: bool = False
    ) -> tuple[int, Callable[[], NDArray[np.uint32]]]:
        """How many series ``series`` names, and what gives their handles.
        Checks ``series`` (an array of handles, or a list that may mix
        handles, ints or NumPy integers, and (metric, path) keys in any
        order) now, and returns what gives their handles, creating the
        series of keys that have none. A write converts all its other
        arguments in between, so that a call rejected for any of them
        creates no series; the series of one call are created together,
        as one log record with one sync. A list with keys is converted in
        the core, in one pass."""
        if not isinstance(series, list | tuple) or all(
            issubclass(kind, int | np.integer) and kind is not bool
            for kind in set(map(type, series))
        ):
            handles = to_handles(series, argument)
            return len(handles), lambda: handles
        parsed = _core.SeriesList(series, argument, one)
        return len(parsed), lambda: self._core.series_many(parsed)

    # -- writes ------------------------------------------------------------------

    def write(self, series: SeriesKey, start: object, values: object) -> None:
        """Writes consecutive samples of one series, the first at ``start``.

        ``values`` is an array (or list) of samples, or one number for one
        sample. Sample ``i`` lands in the grid slot nearest ``start + i *
        frequency``. A (metric, path) key creates the series if needed. The
        call is applied whole or not at all.
        """
        _, handle = self._handles_later([series], "series", one=True)
        ticks = to_ticks(start, self._unit, "start")
        block = to_block_values(values, "values")
        self._core.write_block(int(handle()[0]), ticks, block)

    def write_tick(self, timestamp: object, series: object, values: object) -> None:
        """Writes one value for each of many series at one timestamp.

        ``series`` holds handles (ints or NumPy integers) and (metric, path)
        keys, mixed in any order, and ``values`` one value per series.
        Applied whole or not at all.
        """
        count, handles = self._handles_later(series, "series")
        ticks = to_ticks(timestamp, self._unit, "timestamp")
        converted = to_values(values, "values")
        _check_lengths(converted, "values", count)
        self._core.write_tick(ticks, handles(), converted)

    def write_points(self, series: object, timestamps: object, values: object) -> None:
        """Writes independent samples: ``values[i]`` of ``series[i]`` at ``timestamps[i]``.

        ``series`` holds handles and keys as in :meth:`write_tick`. Where
        one call writes a slot twice, the later element wins. Applied whole
        or not at all.
        """
        count, handles = self._handles_later(series, "series")
        times = to_ticks_array(timestamps, self._unit, "timestamps")
        converted = to_values(values, "values")
        _check_lengths(times, "timestamps", count)
        _check_lengths(converted, "values", count)
        self._core.write_points(handles(), times, converted)

    # -- reads -------------------------------------------------------------------

    def read(
        self,
        series: SeriesKey,
        start: object = None,
        stop: object = None,
        *,
        resolution: object = None,
        method: str = "avg",
        min_count: int | None = None,
    ) -> ReadResult:
        """Reads the grid slots in ``[start, stop)`` of one series.

        ``series`` is a handle or a (metric, path) pair. If no series of the
        metric is stored at the path itself, the series below it are combined
        with the metric's aggregation (NaN skipped). The result is NaN-padded
        to the whole range.

        An open end (None, the default) is where the samples end on that
        side (see :meth:`extent`): ``read(key)`` holds every sample,
        ``read(key, start)`` every sample from ``start`` on. With no sample
        at all, the result is empty (a key that names no series raises, as
        with bounds).

        ``resolution`` (ticks or a timedelta, a multiple of the frequency)
        reads coarser buckets instead, widened to whole buckets aligned to
        multiples of it: ``method`` "avg", "min" or "max" of each bucket's
        samples (NaN if it has none), or "lttb", which keeps one real sample
        per bucket to preserve the shape of a plot (``result.ticks`` then
        holds their times).

        Coverage: ``result.counts`` holds how many stored samples are behind
        each value (the series with a sample in the slot; for a resampled
        read, the samples of the bucket, summed over its series), and
        ``result.sources`` how many series the read combines. With
        ``min_count=k`` a value is NaN where fewer than ``k`` samples are
        behind it, as pandas' ``min_count``: ``read(("flops_any", "emmy"),
        min_count=32)`` sums only the slots where all 32 nodes report (None,
        0 and 1 leave NaN only where there is no sample). LTTB picks among
        the slots with at least ``k``.
        """
        if resolution is not None:
            return self._core.read_resampled(series, start, stop, resolution, method, min_count)
        if min_count is None:  # a fourth argument costs a plain read 1%
            return self._core.read(series, start, stop)
        return self._core.read(series, start, stop, min_count)

    def read_many(
        self,
        series: Iterable[SeriesKey],
        start: object = None,
        stop: object = None,
        *,
        resolution: object = None,
        method: str = "avg",
        min_count: int | None = None,
    ) -> ReadResult:
        """Reads ``[start, stop)`` of several series (or aggregated paths) of one
        frequency into a 2-D array, one row per entry of ``series`` in order.

        A (metric, path) key whose path holds a pattern (``("cpu_load",
        "emmy/*")``; the rules of :meth:`list_series`) stands for every
        stored series of the metric whose path matches, one row each in
        path order (none if nothing matches); ``result.keys`` names them.
        Without a pattern, a path reads the series there or the aggregate
        below it, as in :meth:`read`.

        An open end (None) is where the samples of all the keys together end
        on that side. No keys give an empty result: shape (0, 0), starting
        at ``start`` (or 0), as no metric fixes a grid. ``resolution``,
        ``method`` ("avg", "min" or "max") and ``min_count`` as in
        :meth:`read`; ``counts`` has the shape of ``values`` and ``sources``
        one entry per row."""
        if resolution is None:
            return self._core.read_many(series, start, stop, min_count)
        return self._core.read_many_resampled(series, start, stop, resolution, method, min_count)

    def read_stats(
        self,
        series: SeriesKey,
        start: object = None,
        stop: object = None,
        *,
        min_count: int | None = None,
    ) -> SeriesStats:
        """Min, max, mean and count of the samples in ``[start, stop)`` of one
        series or aggregated path, from the raw data (NaN and zero count when
        there are none). An open end (None) takes every sample on that side.
        An aggregated path is summarised after aggregation: ``count`` is its
        slots with a value, and with ``min_count=k`` only the slots where at
        least ``k`` series have a sample are summarised."""
        low, high, avg, count, unit = self._core.read_stats(series, start, stop, min_count)
        return SeriesStats(low, high, avg, count, unit)

    def extent(self, series: SeriesKey | None = None) -> tuple[int, int] | None:
        """Where the samples lie, as ``(start, stop)`` in ticks of the store's
        unit: the time of the first sample and one period after the last, so
        ``read(series, start, stop)`` holds them all. Of one series or
        aggregated path, or of the whole store when ``series`` is None; None
        when there is no sample."""
        return self._core.extent(series)

    # -- collectors --------------------------------------------------------------

    def ingest(
        self,
        data: str | bytes,
        *,
        default_cluster: str | None = None,
        now: object = None,
        unknown: Literal["reject", "skip"] = "reject",
    ) -> IngestReport:
        """Writes metrics in InfluxDB line protocol, cc-backend's dialect:
        ``<metric>[,cluster=c][,hostname=h][,type=t,type-id=i][,stype=s,stype-id=j]
        value=<v> [<timestamp>]`` goes to the path ``c/h[/<t><i>[/<s><j>]]``
        (``type=node`` is the host itself; other tags are ignored).

        Timestamps may be s, ms, us or ns (told from their magnitude); lines
        without one are written at ``now`` (default: the wall clock). Lines
        without a cluster tag go to ``default_cluster``. A bad line (unknown
        metric, bad tag, value or timestamp, a path name such as ".." or one
        holding "/") is reported with its line number and reason and never
        stops the others; the accepted lines are written as one op. Parsing
        runs in Rust without the GIL. ``unknown="skip"`` leaves lines of
        metrics the store does not define out without a reason each, and
        counts them in ``report.skipped`` (collectors send more metrics
        than a store keeps).
        """
        if isinstance(data, str):
            raw = data.encode()
        elif isinstance(data, bytes):
            raw = data
        elif isinstance(data, bytearray | memoryview):
            raw = bytes(data)
        else:
            raise TypeError(f"data: expected str or bytes, got {type(data).__name__}")
        if default_cluster is not None and not isinstance(default_cluster, str):
            raise TypeError(
                f"default_cluster: expected a str or None, got {type(default_cluster).__name__}"
            )
        if unknown not in ("reject", "skip"):
            raise ValueError(f'unknown: expected "reject" or "skip", got {unknown!r}')
        lines, accepted, rejected, created, skipped = self._core.ingest(
            raw, default_cluster, self._now(now), unknown == "skip"
        )
        return IngestReport(lines, accepted, rejected, created, skipped)

    def _now(self, now: object) -> int:
        if now is None:
            return _time.time_ns() // _NS_PER_TICK[self._unit]
        return to_ticks(now, self._unit, "now")

    def health(
        self, hosts: Iterable[PathLike], metrics: Sequence[str], *, now: object = None
    ) -> HealthReport:
        """How fresh each of ``metrics`` is on each host (a path such as
        "emmy/e0102"), as cc-backend's health check judges it.

        A metric is *stale* if some series of it at or below the host has
        data ending more than 5 periods before ``now`` (default: the wall
        clock), *missing* if it has no series there (or is not defined), and
        *fresh* otherwise. A series' data ends where its last slot ends,
        half a period (rounded up) after its last sample, as in cc-backend;
        so with a frequency of 10 s a series is fresh while its last sample
        is at most 55 s old. A host is "full" when every metric is fresh,
        "failed" when it has no data at all or no fresh metric, and
        "partial" otherwise. Keys of the result are the "/"-joined paths;
        the result is a dict that shows itself as a table.
        """
        if isinstance(metrics, str):
            raise TypeError("metrics: expected a sequence of metric names, not one str")
        names = list(metrics)
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise TypeError(f"metrics[{i}]: expected a str, got {type(name).__name__}")
        when = self._now(now)
        report = HealthReport()
        for i, host in enumerate([hosts] if isinstance(hosts, str) else hosts):
            path = to_path(host, f"hosts[{i}]")
            states = self._core.health(path, names, when)
            key = "/".join(path)
            state: Literal["full", "partial", "failed"]
            if states is None:
                report[key] = HostHealth("failed", [], [], list(names))
                continue
            by = {s: [m for m, st in zip(names, states, strict=True) if st == s] for s in
                  ("fresh", "stale", "missing")}  # fmt: skip
            if not by["stale"] and not by["missing"]:
                state = "full"
            elif not by["fresh"]:
                state = "failed"
            else:
                state = "partial"
            report[key] = HostHealth(state, by["fresh"], by["stale"], by["missing"])
        return report

    def collector(self, *, default_cluster: str | None = None) -> Collector:
        """A writer for collector loops: caches series handles by (metric,
        path), writes a tick from a dict, and is safe to share between
        threads. See :class:`Collector`."""
        return Collector(self, default_cluster=default_cluster)

    # -- introspection -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and sizes: metrics, series, samples (non-NaN values stored),
        calls and samples written and read, and the memory of the data:
        ``chunks`` of 1,024 slots each (4 KiB raw), of which ``raw_chunks``
        hold their slots as they are, ``sealed_chunks`` are compressed into
        ``sealed_bytes``, and ``mapped_chunks`` (read-only stores) stay
        compressed in the snapshot file, ``mapped_bytes`` of it, read when a
        read needs them; ``data_bytes`` is all tiers together (what
        ``memory_limit`` counts). ``sync`` is the log's sync mode ("always",
        "interval" or "none"; None for a store without a log, in memory or
        read-only)."""
        return self._core.stats()

    def __repr__(self) -> str:
        return store_text(self)

    def _repr_html_(self) -> str:
        """A summary for notebooks: place, unit, state, size, metrics and what
        recovery did; works on a closed store too."""
        return store_html(self)


_BACKGROUND_BYTES = 64 << 20
"""Opening a store with at least this much snapshot and log to read (about
0.1 to 0.5 s of work) runs in a worker thread, so Ctrl-C can stop it and a
progress bar can follow it. Smaller stores open on the calling thread."""

_POLL_SECONDS = 0.1

_PHASES = {
    "snapshot": "loading snapshot",
    "log": "replaying log",
    "finishing": "finishing",
    "done": "opened",
}


def open(
    path: str | os.PathLike[str],
    *,
    unit: str | None = None,
    sync: str = "interval",
    sync_interval_ms: int = 200,
    recovery: str = "tolerate_tail",
    readonly: bool = False,
    segment_bytes: int = 64 << 20,
    checkpoint_interval_s: float | None = 600.0,
    checkpoint_log_bytes: int | None = 512 << 20,
    memory_limit: int | None = None,
    retention: object = None,
    progress: bool | None = None,
) -> Store:
    """Opens (or creates) the store in directory ``path`` and recovers it.

    ``sync`` says when acknowledged writes reach the disk: ``"always"``
    (every write waits for fdatasync; concurrent writers share one),
    ``"interval"`` (the default: a background sync every
    ``sync_interval_ms``; a killed process loses nothing acknowledged, a
    power cut at most the interval) or ``"none"`` (only at segment rotation,
    ``flush()`` and ``close()``). ``recovery`` is ``"tolerate_tail"``
    (default: a torn end of the log is cut off and reported), ``"strict"``
    or ``"point_in_time"``. ``readonly=True`` takes no lock and writes
    nothing, so it can read a store a writer has open. ``unit`` is the time
    unit of a new store (default "s"); for an existing one it must match.

    A background thread writes a snapshot (see :meth:`Store.checkpoint`)
    every ``checkpoint_interval_s`` and whenever the log has grown by
    ``checkpoint_log_bytes`` since the last one (None turns either off), so
    reopening never replays much log. ``close()`` writes a final snapshot.
    ``memory_limit`` and ``retention``: see :meth:`Store.set_memory_limit`
    and :meth:`Store.set_retention`.

    A store with 64 MiB or more of snapshot and log to read is recovered in
    a worker thread. Ctrl-C then stops recovery and raises
    KeyboardInterrupt: no file is changed, the lock is released and nothing
    is lost (a Ctrl-C that comes once recovery has started changing files,
    such as cutting a torn tail, lets it finish, then closes the store).
    ``progress`` shows a tqdm bar of the bytes read (``pip install
    'metricstore[progress]'``): None (default) for such stores when stderr
    is a terminal or in a notebook, True for any store, False never.

    One writer per directory: a second one raises LockedError. See
    ``store.recovery`` for what opening found.
    """
    check_progress(progress)
    where = os.fspath(path)

    def run(handle: _core.OpenProgress | None) -> _core.Store:
        return _core.Store.open(
            where,
            unit=unit,
            sync=sync,
            sync_interval_ms=sync_interval_ms,
            recovery=recovery,
            readonly=readonly,
            segment_bytes=segment_bytes,
            checkpoint_interval_s=checkpoint_interval_s,
            checkpoint_log_bytes=checkpoint_log_bytes,
            progress=handle,
        )

    if progress is True or _core.recovery_bytes(where, readonly) >= _BACKGROUND_BYTES:
        core = _open_in_worker(run, wants_bar(progress))
    else:
        core = run(None)
    store = Store.__new__(Store)
    store._attach(core)
    if not readonly:
        store._limit(memory_limit, retention)
    return store


def _open_in_worker(
    run: Callable[[_core.OpenProgress], _core.Store], bar_wanted: bool
) -> _core.Store:
    """Runs ``run`` in a worker thread while this one updates a bar (if
    ``bar_wanted``) and waits; on Ctrl-C (or any exception here) cancels the
    open, waits for the worker and re-raises."""
    handle = _core.OpenProgress()
    outcome: list[_core.Store | BaseException] = []

    def work() -> None:
        try:
            outcome.append(run(handle))
        except BaseException as error:  # handed to the waiting thread
            outcome.append(error)

    worker = threading.Thread(target=work, name="metricstore-open", daemon=True)
    bar: Any = None
    try:
        with ctrl_c_held():
            worker.start()
        while worker.is_alive():
            worker.join(_POLL_SECONDS)
            if bar_wanted:
                bar = _show(bar, handle)
        if bar_wanted:
            bar = _show(bar, handle)
    except BaseException as interrupt:
        handle.cancel()
        _stop(worker, outcome, interrupt)
        raise
    finally:
        if bar is not None:
            bar.close()
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _show(bar: Any, handle: _core.OpenProgress) -> Any:
    """Creates or updates the bar from ``handle``; no bar until the open has
    measured its work."""
    phase = handle.phase
    if phase == "starting":
        return bar
    total, done = handle.total, handle.done
    if bar is None:
        return new_bar(total, _PHASES[phase], initial=done)
    if bar.total != total:
        bar.total = total
    bar.set_description(_PHASES[phase], refresh=False)
    if done > bar.n:
        bar.update(done - bar.n)
    return bar


def _stop(
    worker: threading.Thread,
    outcome: list[_core.Store | BaseException],
    interrupt: BaseException,
) -> None:
    """Waits for a cancelled open: it stops at its next snapshot block or
    MiB of log, or, if it has begun changing files, finishes first. More
    Ctrl-C meanwhile are ignored, so the worker is never left running. A
    store it opened anyway is closed."""
    while worker.is_alive():
        try:
            worker.join()
        except KeyboardInterrupt:
            continue
    if outcome and isinstance(outcome[0], _core.Store):
        try:
            outcome[0].close(checkpoint=False)
        except Exception as error:
            interrupt.add_note(f"closing the store opened before the cancel failed: {error!r}")
