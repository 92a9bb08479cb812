"""metricstore: an embedded time-series store for metrics, with a Rust core.

Write NumPy arrays in, read float32 NumPy arrays out::

    import numpy as np
    import metricstore

    store = metricstore.open("metrics/")       # or metricstore.Store() in memory
    store.define_metric("cpu_load", frequency=60, aggregation="avg")
    store.write(("cpu_load", "emmy/e0102"), "2020-12-25T19:05", np.ones(10))
    result = store.read(("cpu_load", "emmy"), "2020-12-25T19:00", "2020-12-25T20:00")
"""

from typing import TYPE_CHECKING

from . import exceptions
from .exceptions import (
    AggregationError,
    ClosedError,
    CorruptionError,
    FormatError,
    InvalidNameError,
    LockedError,
    MetricConflictError,
    OpenCancelledError,
    PoisonedError,
    ReadOnlyError,
    StoreError,
    StoreIOError,
    UnknownMetricError,
    UnknownSeriesError,
    WrongProcessError,
)

# The names below need the compiled core; they are imported on first use
# (PEP 562), so that importing metricstore.testing or the pytest plugin
# loads no extension module until a store is made.
if TYPE_CHECKING:
    from ._core import __version__
    from .collector import Collector, HealthReport, HostHealth, IngestReport
    from .server import Server, serve
    from .store import (
        CheckpointInfo,
        Damage,
        Metric,
        ReadResult,
        RecoveryReport,
        SeriesStats,
        Store,
        open,
    )
else:
    _STORE_NAMES = (
        "CheckpointInfo",
        "Damage",
        "Metric",
        "ReadResult",
        "RecoveryReport",
        "SeriesStats",
        "Store",
        "open",
    )
    _LAZY = {
        "__version__": "._core",
        **dict.fromkeys(("Collector", "HealthReport", "HostHealth", "IngestReport"), ".collector"),
        **dict.fromkeys(("Server", "serve"), ".server"),
        **dict.fromkeys(_STORE_NAMES, ".store"),
    }

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


__all__ = [
    "AggregationError",
    "CheckpointInfo",
    "ClosedError",
    "Collector",
    "CorruptionError",
    "Damage",
    "FormatError",
    "HealthReport",
    "HostHealth",
    "IngestReport",
    "InvalidNameError",
    "LockedError",
    "Metric",
    "MetricConflictError",
    "OpenCancelledError",
    "PoisonedError",
    "ReadOnlyError",
    "ReadResult",
    "RecoveryReport",
    "SeriesStats",
    "Server",
    "Store",
    "StoreError",
    "StoreIOError",
    "UnknownMetricError",
    "UnknownSeriesError",
    "WrongProcessError",
    "__version__",
    "exceptions",
    "open",
    "serve",
]
