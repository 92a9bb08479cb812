"""metricstore: an embedded time-series store for metrics, with a Rust core.

Write NumPy arrays in, read float32 NumPy arrays out::

    import numpy as np
    import metricstore

    store = metricstore.open("metrics/")       # or metricstore.Store() in memory
    store.define_metric("cpu_load", frequency=60, aggregation="avg")
    store.write(("cpu_load", "emmy/e0102"), "2020-12-25T19:05", np.ones(10))
    result = store.read(("cpu_load", "emmy"), "2020-12-25T19:00", "2020-12-25T20:00")
"""

from . import exceptions
from ._core import __version__
from .exceptions import (
    AggregationError,
    ClosedError,
    CorruptionError,
    FormatError,
    InvalidNameError,
    LockedError,
    MetricConflictError,
    PoisonedError,
    ReadOnlyError,
    StoreError,
    StoreIOError,
    UnknownMetricError,
    UnknownSeriesError,
    WrongProcessError,
)
from .store import CheckpointInfo, Damage, Metric, ReadResult, RecoveryReport, Store, open

__all__ = [
    "AggregationError",
    "CheckpointInfo",
    "ClosedError",
    "CorruptionError",
    "Damage",
    "FormatError",
    "InvalidNameError",
    "LockedError",
    "Metric",
    "MetricConflictError",
    "PoisonedError",
    "ReadOnlyError",
    "ReadResult",
    "RecoveryReport",
    "Store",
    "StoreError",
    "StoreIOError",
    "UnknownMetricError",
    "UnknownSeriesError",
    "WrongProcessError",
    "__version__",
    "exceptions",
    "open",
]
