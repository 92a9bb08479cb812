"""What collectors use: :class:`Collector`, and the reports of
:meth:`Store.ingest` and :meth:`Store.health`."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from ._display import health_html, health_text, host_health_html, host_health_text
from .exceptions import ClosedError

if TYPE_CHECKING:
    from .store import PathLike, Store

__all__ = ["Collector", "HealthReport", "HostHealth", "IngestReport"]

SampleKey: TypeAlias = "tuple[str, PathLike]"
"""A (metric, path) pair, the path as "c/h" or ("c", "h")."""


@dataclass(frozen=True)
class IngestReport:
    """What :meth:`Store.ingest` did: ``lines`` (not blank or comments),
    ``accepted`` (written), ``rejected`` as (line number from 1, reason),
    ``series_created``, and ``skipped``: lines of undefined metrics left
    out with ``unknown="skip"``."""

    lines: int
    accepted: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    series_created: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """True when every line was written."""
        return not self.rejected


@dataclass(frozen=True, repr=False)
class HostHealth:
    """One host's freshness (see :meth:`Store.health`)."""

    state: Literal["full", "partial", "failed"]
    fresh: list[str]
    stale: list[str]
    missing: list[str]

    def __repr__(self) -> str:
        return host_health_text(self)

    def _repr_html_(self) -> str:
        return host_health_html(self)


class HealthReport(dict[str, HostHealth]):
    """What :meth:`Store.health` returns: a dict of :class:`HostHealth` by
    host path ("emmy/e0102") that shows itself as a table, the hosts that
    are not "full" first."""

    def __repr__(self) -> str:
        return health_text(self.items(), len(self))

    def _repr_html_(self) -> str:
        return health_html(self.items(), len(self))


def _cache_key(metric: object, path: object) -> tuple[object, object]:
    if isinstance(path, list):
        path = tuple(path)
    return (metric, path)


class Collector:
    """Writes collector ticks to a store, caching series handles.

    ``tick(timestamp, {(metric, path): value, ...})`` writes one tick of
    many series as one op; ``tick_arrays`` takes parallel sequences instead.
    Handles are looked up (and series created) on first use only, so a
    steady collector pays for names once. Safe to share between threads.

    ``flush()`` returns once everything written before it is on disk.
    Leaving a ``with`` block flushes and closes the collector (not the
    store); a closed collector raises ClosedError, and a collector in a
    forked child raises the store's WrongProcessError.
    """

    __slots__ = ("_closed", "_default_cluster", "_handles", "_lock", "_store")

    def __init__(self, store: Store, *, default_cluster: str | None = None) -> None:
        self._store = store
        self._default_cluster = default_cluster
        self._handles: dict[tuple[object, object], int] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def store(self) -> Store:
        return self._store

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("the collector is closed")

    def handle(self, metric: str, path: PathLike) -> int:
        """The handle of (metric, path), created in the store if needed."""
        key = _cache_key(metric, path)
        found = self._handles.get(key)
        if found is None:
            self._check()
            found = self._store.series(metric, path)
            with self._lock:
                self._handles[key] = found
        return found

    def tick(self, timestamp: object, samples: Mapping[SampleKey, float]) -> None:
        """Writes ``samples`` ((metric, path) -> value) at ``timestamp``, all
        or nothing."""
        self._check()
        if not isinstance(samples, Mapping):
            raise TypeError(
                f"samples: expected a mapping of (metric, path) to value, "
                f"got {type(samples).__name__}"
            )
        handles = np.empty(len(samples), dtype=np.uint32)
        for i, key in enumerate(samples):
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
                raise TypeError(f"samples: key {key!r} is not a (metric, path) pair")
            handles[i] = self.handle(key[0], key[1])
        values = np.fromiter(samples.values(), dtype=np.float64, count=len(samples))
        self._store.write_tick(timestamp, handles, values)

    def tick_arrays(self, timestamp: object, keys: Sequence[SampleKey], values: object) -> None:
        """Writes ``values[i]`` of ``keys[i]`` at ``timestamp``, all or nothing."""
        self._check()
        handles = np.fromiter(
            (self.handle(metric, path) for metric, path in keys), dtype=np.uint32, count=len(keys)
        )
        self._store.write_tick(timestamp, handles, values)

    def ingest(self, data: str | bytes, *, now: object = None) -> object:
        """:meth:`Store.ingest` with this collector's default cluster."""
        self._check()
        return self._store.ingest(data, default_cluster=self._default_cluster, now=now)

    def flush(self) -> None:
        """Returns once every write acknowledged before it is on disk."""
        self._check()
        self._store.flush()

    def close(self) -> None:
        """Flushes (if the store is still open) and closes the collector;
        closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        if not self._store.closed and not self._store.readonly:
            self._store.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<metricstore.Collector series={len(self._handles)}{state}>"
