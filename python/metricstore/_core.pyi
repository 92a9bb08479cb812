# Stubs for the compiled module metricstore._core (src/python/). The public
# API is metricstore.Store; this layer takes strict types only, except in
# reads, which take series keys and times as Store.read does.
import datetime
from collections.abc import Iterable, Sequence
from typing import Any, Literal, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import CapsuleType

__all__ = [
    "CHUNK_SLOTS",
    "MAX_READ_SLOTS",
    "CcHost",
    "OpenProgress",
    "ReadResult",
    "SeriesList",
    "Store",
    "__version__",
    "cc_encode_host",
    "inspect",
    "json_float_rows",
    "recovery_bytes",
    "to_path",
]

# A series handle (an int or a NumPy integer), or (metric, path) with the
# path a tuple or list of names or one "/"-joined str.
_SeriesKey = int | np.integer[Any] | tuple[str, str | Sequence[str]]

__version__: str
CHUNK_SLOTS: int
MAX_READ_SLOTS: int

def inspect(path: str) -> dict[str, Any]: ...
def cc_encode_host(
    store: Store,
    since: int,
    until: int,
    members: list[tuple[int, str, tuple[str, ...]]],
    format: str,
) -> tuple[bytes, int, int] | None: ...
def recovery_bytes(path: str, readonly: bool = False) -> int: ...
def json_float_rows(
    values: NDArray[np.float32] | NDArray[np.float64], decimals: int = 3
) -> list[bytes]:
    """One JSON array per row of a 2-D array: ``decimals`` places (at most
    6; ties to even), ``null`` for NaN and infinities."""

@final
class OpenProgress:
    def __new__(cls) -> OpenProgress: ...
    @property
    def total(self) -> int: ...
    @property
    def done(self) -> int: ...
    @property
    def phase(self) -> Literal["starting", "snapshot", "log", "finishing", "done"]: ...
    @property
    def cancelled(self) -> bool: ...
    def cancel(self) -> None: ...

def to_path(path: object, argument: str) -> list[str]: ...

@final
class SeriesList:
    def __new__(cls, series: Sequence[object], argument: str, one: bool = False) -> SeriesList: ...
    def __len__(self) -> int: ...

@final
class ReadResult:
    values: NDArray[np.float32]
    start: int
    step: int
    time_unit: str
    series: object
    unit: str | None
    def __new__(
        cls,
        values: NDArray[np.float32],
        start: int,
        step: int,
        time_unit: str,
        series: object,
        keys: Sequence[object] | None = None,
        times: NDArray[np.int64] | None = None,
        counts: NDArray[np.uint32] | None = None,
        sources: int | NDArray[np.uint32] | None = None,
        method: str | None = None,
        frequency: int | None = None,
        min_count: int = 0,
        unit: str | None = None,
    ) -> ReadResult: ...
    @property
    def counts(self) -> NDArray[np.uint32]: ...
    @property
    def sources(self) -> int | NDArray[np.uint32]: ...
    @property
    def method(self) -> str | None: ...
    @property
    def frequency(self) -> int: ...
    @property
    def min_count(self) -> int: ...
    @property
    def keys(self) -> list[tuple[str, tuple[str, ...]] | int]: ...
    def __len__(self) -> int: ...
    @property
    def stop(self) -> int: ...
    @property
    def ticks(self) -> NDArray[np.int64]: ...
    @property
    def timestamps(self) -> NDArray[np.datetime64]: ...
    def _repr_html_(self) -> str: ...
    def to_pandas(
        self, *, tz: str | datetime.tzinfo | None = None, counts: bool = False
    ) -> Any: ...
    def to_xarray(self, levels: Sequence[str] | None = None) -> Any: ...
    def plot(self, ax: Any = None, *, legend: bool | None = None, **kwargs: Any) -> Any: ...
    def heatmap(
        self,
        ax: Any = None,
        *,
        robust: bool = True,
        vmin: float | None = None,
        vmax: float | None = None,
        colorbar: bool = True,
        **kwargs: Any,
    ) -> Any: ...
    def __arrow_c_stream__(
        self, requested_schema: object | None = None, *, nan_as_null: bool = False
    ) -> CapsuleType: ...
    def __arrow_c_array__(
        self, requested_schema: object | None = None, *, nan_as_null: bool = False
    ) -> tuple[CapsuleType, CapsuleType]: ...
    def to_arrow(self, *, nan_as_null: bool = False) -> Any: ...
    def to_polars(self, *, nan_as_null: bool = False) -> Any: ...
    def __reduce__(self) -> tuple[type[ReadResult], tuple[object, ...]]: ...

@final
class Store:
    def __new__(cls, unit: str = "s") -> Store: ...
    @staticmethod
    def open(
        path: str,
        unit: str | None = None,
        sync: str = "interval",
        sync_interval_ms: int = 200,
        recovery: str = "tolerate_tail",
        readonly: bool = False,
        segment_bytes: int = 67108864,
        checkpoint_interval_s: float | None = None,
        checkpoint_log_bytes: int | None = None,
        progress: OpenProgress | None = None,
    ) -> Store: ...
    @property
    def path(self) -> str | None: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def recovery(self) -> dict[str, Any] | None: ...
    def flush(self) -> None: ...
    def series_many(self, series: SeriesList) -> NDArray[np.uint32]: ...
    def seal(self) -> int: ...
    def set_seal_after(self, nbytes: int | None) -> None: ...
    def outline(self) -> tuple[list[int], list[str]]: ...
    def refresh(self) -> dict[str, Any]: ...
    def drop_before(self, before: int) -> None: ...
    def drop_series_before(self, series: NDArray[np.uint32], before: int) -> None: ...
    def set_memory_limit(self, limit: int | None) -> None: ...
    def set_retention(self, keep: int | None) -> None: ...
    @property
    def unit(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self, checkpoint: bool = True) -> None: ...
    def checkpoint(self) -> dict[str, Any]: ...
    def define_metric(
        self, name: str, frequency: int, aggregation: str, unit: str | None = None
    ) -> None: ...
    def metrics(self) -> list[tuple[str, int, str, str | None]]: ...
    def series(self, metric: str, path: list[str]) -> int: ...
    def find_series(self, metric: str, path: list[str]) -> int | None: ...
    def series_key(self, series: int | np.integer[Any]) -> tuple[str, list[str]]: ...
    def series_count(self) -> int: ...
    def list_series(
        self, metric: str | None = None, path: list[str] | None = None
    ) -> list[tuple[int, str, list[str]]]: ...
    def write_block(self, series: int, start: int, values: NDArray[np.float32]) -> None: ...
    def write_tick(
        self, timestamp: int, series: NDArray[np.uint32], values: NDArray[np.float32]
    ) -> None: ...
    def write_points(
        self,
        series: NDArray[np.uint32],
        timestamps: NDArray[np.int64],
        values: NDArray[np.float32],
    ) -> None: ...
    def read(
        self,
        series: _SeriesKey,
        start: object = None,
        stop: object = None,
        min_count: object = None,
    ) -> ReadResult: ...
    def read_many(
        self,
        series: Iterable[_SeriesKey],
        start: object = None,
        stop: object = None,
        min_count: object = None,
    ) -> ReadResult: ...
    def read_resampled(
        self,
        series: _SeriesKey,
        start: object,
        stop: object,
        resolution: object,
        method: str,
        min_count: object = None,
    ) -> ReadResult: ...
    def read_many_resampled(
        self,
        series: Iterable[_SeriesKey],
        start: object,
        stop: object,
        resolution: object,
        method: str,
        min_count: object = None,
    ) -> ReadResult: ...
    def read_stats(
        self,
        series: _SeriesKey,
        start: object = None,
        stop: object = None,
        min_count: object = None,
    ) -> tuple[float, float, float, int, str | None]: ...
    def health(self, path: list[str], metrics: list[str], now: int) -> list[str] | None: ...
    def extent(self, series: _SeriesKey | None = None) -> tuple[int, int] | None: ...
    def ingest(
        self, data: bytes, default_cluster: str | None, now: int, skip_unknown: bool = False
    ) -> tuple[int, int, list[tuple[int, str]], int, int]: ...
    def stats(self) -> dict[str, Any]: ...

@final
class CcHost:
    """One host's load of cc-backend snapshots and log (metricstore.ccbackend)."""

    def __new__(
        cls, cluster: str, host: str, known: dict[str, int], since: int | None = None
    ) -> CcHost: ...
    def load_snapshot(self, store: Store, data: bytes) -> dict[str, Any]: ...
    def scan_wal(self, data: bytes) -> tuple[int, str] | None: ...
    def replay_wal(self, store: Store) -> dict[str, Any] | None: ...
    def handle(
        self, store: Store, metric: str, below: list[str] | tuple[str, ...]
    ) -> tuple[int | None, str | None]: ...
    def head(
        self, metric: str, below: list[str] | tuple[str, ...]
    ) -> tuple[int, int, int] | None: ...
