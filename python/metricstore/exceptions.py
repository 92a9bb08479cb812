"""The exceptions metricstore raises.

Every store-specific error derives from :class:`StoreError`. Classes that
describe a bad argument also derive from :class:`ValueError`, and lookups of
something that does not exist also derive from :class:`KeyError`, so generic
``except ValueError`` / ``except KeyError`` code keeps working. Bad argument
types raise plain :class:`TypeError` and bad argument values that are not
about the store raise plain :class:`ValueError`; both name the argument.

The classes live here (not in the compiled module) so they pickle under
their public name, for example across ``multiprocessing``.
"""

from __future__ import annotations

__all__ = [
    "AggregationError",
    "ClosedError",
    "CorruptionError",
    "FormatError",
    "InvalidNameError",
    "LockedError",
    "MetricConflictError",
    "OpenCancelledError",
    "PoisonedError",
    "ReadOnlyError",
    "StoreError",
    "StoreIOError",
    "UnknownMetricError",
    "UnknownSeriesError",
    "WrongProcessError",
]


class StoreError(Exception):
    """Base class of every error specific to metricstore."""


class _Detailed(StoreError):
    # The message comes first in args, details after it (so they pickle);
    # str() is the message alone.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _LookupMessage(KeyError):
    # KeyError's str() is the repr of its argument; show the message as is.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidNameError(StoreError, ValueError):
    """A metric name or path component breaks the naming rules; rename it."""


class UnknownMetricError(StoreError, _LookupMessage):
    """The metric was never defined in this store; call ``define_metric`` first."""


class UnknownSeriesError(StoreError, _LookupMessage):
    """No series of the metric exists at or below the path."""


class MetricConflictError(StoreError, ValueError):
    """A metric of this name already exists with another frequency or aggregation."""


class AggregationError(StoreError, ValueError):
    """A read above the stored level needs aggregation, and the metric has none."""


class ClosedError(StoreError):
    """The store was closed; open a new one."""


class CorruptionError(_Detailed):
    """A store file is damaged where damage cannot be a torn write.

    ``file``, ``offset`` and ``lsn`` (None if unknown) say where. Nothing was
    changed: check the file with ``python -m metricstore verify``, restore
    it, or open with ``recovery="point_in_time"`` to keep what comes before
    the damage.
    """

    def __init__(self, message: str, file: str, offset: int, lsn: int | None = None) -> None:
        super().__init__(message, file, offset, lsn)
        self.file, self.offset, self.lsn = file, offset, lsn


class FormatError(_Detailed):
    """A store file has a format version this metricstore cannot read; ``file`` names it."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(message, file)
        self.file = file


class LockedError(_Detailed):
    """Another writer holds the store directory; ``pid`` is its process id if known.

    Open read-only (``readonly=True``) to read while it writes.
    """

    def __init__(self, message: str, path: str, pid: int | None = None) -> None:
        super().__init__(message, path, pid)
        self.path, self.pid = path, pid


class PoisonedError(StoreError):
    """An earlier write or sync failed, so what is on disk is unknown.

    Writes are refused until the store is closed and opened again, which
    recovers from what is really on disk.
    """


class ReadOnlyError(StoreError):
    """The store was opened with ``readonly=True``; writes are refused."""


class WrongProcessError(StoreError):
    """The store was opened for writing in another process (this is a forked
    child); open it again in this process."""


class OpenCancelledError(StoreError):
    """Opening a store was cancelled through its progress handle before it
    changed anything: the directory is as it was and its lock is released.
    :func:`metricstore.open` turns this into KeyboardInterrupt (Ctrl-C)."""


class StoreIOError(StoreError, OSError):
    """An operating-system call on a store file failed; ``errno`` and
    ``filename`` say which and where. Writes after it raise PoisonedError."""
