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
    "InvalidNameError",
    "MetricConflictError",
    "StoreError",
    "UnknownMetricError",
    "UnknownSeriesError",
]


class StoreError(Exception):
    """Base class of every error specific to metricstore."""


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
