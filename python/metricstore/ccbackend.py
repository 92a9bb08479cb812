"""Reading and writing ClusterCockpit cc-backend's files.

cc-backend keeps metrics in three kinds of files, all readable and writable here:

- The job archive (:func:`load_job`): per cluster ``cluster.json`` (the metric
  configuration: name, timestep in seconds, aggregation, native scope) and,
  per job, ``<cluster>/<id1>/<id2>/<start>/meta.json`` and
  ``data.json[.gz]``. The data file maps metric -> scope -> {timestep,
  series: [{hostname, id?, data}]}, where ``data[i]`` is the sample at
  ``startTime + i * timestep`` and ``null`` means missing.
- The metric store's checkpoint directory (:func:`load_checkpoints`,
  :func:`write_checkpoints`): ``<root>/<cluster>/<host>/`` holds binary
  snapshots ``<from>.bin``, JSON checkpoints ``<from>.json`` and the
  write-ahead log ``current.wal``. Each snapshot is a tree: the host's own
  metrics, then children (``cpu3``, ``socket0``, ``accelerator...``) with
  theirs. Byte layouts: docs/format.md; the rules below: docs/decisions.md.
- The Parquet archive its cleanup writes (:func:`export_parquet`,
  :func:`load_parquet`): one row per non-NaN value.

Series land where cc-backend's store keeps them: ``<cluster>/<host>`` for a
host's own metrics, ``<cluster>/<host>/<child>[/<grandchild>]`` below. Times
are seconds, so the store's unit must be "s".

Loading follows cc-backend's startup (``FromCheckpointFiles``) and decides
what it leaves open:

- Per host, snapshots (.json and .bin mixed) load in the order of the time in
  their name, then ``current.wal`` is replayed; later writes win. With
  ``since`` (cc-backend's ``now - retention``), files named before it are
  left out except the newest one before it (when a newer one exists), a file
  whose ``to`` is before it is left out, and log records before it too.
  Files named at the same time load .json first (cc-backend leaves it open).
- Every sample goes to the grid slot nearest its true time. A log record
  carries it. A snapshot block starts at the checkpoint's clock time (or at
  its series' first write); its values go where the series' sample phase
  puts them (from a block that starts at a first write, else from the
  series' log records), and where the phase is unknown, to the slot nearest
  ``start + i * frequency``; the report counts both (docs/decisions.md,
  "Placement"). NaN at either end of a block is not written, so it never
  erases a value loaded before it; NaN inside a block is written as missing.
- A log record that cc-backend's replay rejects as "from the past" (older
  than the start of the series' newest buffer: the newest snapshot block, or
  the buffer the log itself opened) is dropped and counted, as cc-backend
  drops it.
- A metric neither defined in the store nor given by ``metrics=`` or
  ``cluster_config=`` is not loaded; the report counts its values by name.
- A damaged file never stops a load: a snapshot that does not parse whole is
  skipped, a log keeps the records before the first bad one (cc-backend stops
  there too), and both are reported with the offset and the reason. A layout
  cc-backend refuses to start on (a file where a directory belongs, a
  snapshot name that is not a number) is skipped and reported.
"""

from __future__ import annotations

import gzip
import importlib
import json
import math
import os
import re
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._convert import to_ticks
from ._display import job_load_html, job_load_text
from ._parquet import annotate_signed_int64
from ._progress import ctrl_c_held, progress_bar
from .store import Metric, Store

__all__ = [
    "SNAPSHOT_MAGIC",
    "WAL_FILE_MAGIC",
    "WAL_RECORD_MAGIC",
    "CheckpointLoadReport",
    "CheckpointWriteReport",
    "DamagedFile",
    "JobLoad",
    "JobStatistic",
    "MetricConfig",
    "ParquetExportReport",
    "ParquetLoadReport",
    "SkippedFile",
    "cc_unit",
    "export_parquet",
    "load_checkpoints",
    "load_job",
    "load_parquet",
    "read_cluster_config",
    "write_checkpoints",
]


@dataclass(frozen=True)
class MetricConfig:
    """One metric of a cluster's ``cluster.json``; ``unit`` as :func:`cc_unit`
    reads it (None where the file gives none)."""

    name: str
    timestep: int
    aggregation: str
    scope: str
    unit: str | None = None


@dataclass(frozen=True)
class JobStatistic:
    """cc-backend's own summary of one metric of a job (``meta.json``'s
    ``statistics``): the job-wide min, avg and max it computed, in ``unit``."""

    min: float
    avg: float
    max: float
    unit: str | None


@dataclass
class JobLoad:
    """What :func:`load_job` loaded, and the job's metadata from ``meta.json``.

    ``start`` and ``stop`` are seconds since the epoch, ``duration`` seconds
    (cc-backend's figure), ``state`` cc-backend's ``jobState``
    ("completed", "failed", ...). ``units`` is the unit each loaded metric
    was defined with, ``statistics`` cc-backend's per-metric summary.
    """

    cluster: str
    job_id: int
    start: int
    hosts: list[str]
    metrics: list[str]
    series: int = 0
    samples: int = 0
    missing: int = 0
    keys: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    user: str | None = None
    project: str | None = None
    state: str | None = None
    duration: int | None = None
    stop: int | None = None
    partition: str | None = None
    sub_cluster: str | None = None
    units: dict[str, str | None] = field(default_factory=dict)
    statistics: dict[str, JobStatistic] = field(default_factory=dict)

    def __repr__(self) -> str:
        return job_load_text(self)

    def _repr_html_(self) -> str:
        return job_load_html(self)


def cc_unit(unit: object) -> str | None:
    """A unit as cc-backend writes it, ``{"prefix": "G", "base": "F/s"}``,
    as one string ("GF/s"); None for a missing or empty one."""
    if not isinstance(unit, Mapping):
        return None
    base, prefix = unit.get("base") or "", unit.get("prefix") or ""
    if not isinstance(base, str) or not isinstance(prefix, str) or not base:
        return None
    return prefix + base


def read_cluster_config(path: str | Path) -> dict[str, MetricConfig]:
    """The metric configuration of a ``cluster.json``, by metric name.

    cc-backend's aggregation "" (unset) becomes "none"; its unit
    (``{"prefix": "G", "base": "F/s"}``) becomes "GF/s", an empty one None.
    """
    config = json.loads(Path(path).read_text())
    metrics = {}
    for entry in config["metricConfig"]:
        aggregation = entry.get("aggregation") or "none"
        metrics[entry["name"]] = MetricConfig(
            name=entry["name"],
            timestep=int(entry["timestep"]),
            aggregation=aggregation,
            scope=entry.get("scope", "node"),
            unit=cc_unit(entry.get("unit")),
        )
    return metrics


def _read_json(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            return json.load(f)
    return json.loads(path.read_text())


def _find_data_file(job_dir: Path) -> Path:
    for name in ("data.json.gz", "data.json"):
        if (job_dir / name).exists():
            return job_dir / name
    raise FileNotFoundError(f"job directory {job_dir} has neither data.json nor data.json.gz")


def load_job(path: str | Path, store: Store, cluster_config: str | Path | None = None) -> JobLoad:
    """Loads one job of a cc-backend job archive into ``store``.

    ``path`` is the job directory (holding ``meta.json`` and ``data.json[.gz]``).
    Metrics are defined from the cluster's ``cluster.json``, found three levels
    up unless ``cluster_config`` names it; a metric missing there is defined
    from the data's timestep with aggregation "none". A metric's unit is the
    one ``cluster.json`` gives, else the one the job's data file gives for
    it, else the one of ``meta.json``'s statistics, else None. Each series is
    one bulk write. A metric already defined with another frequency or unit
    raises MetricConflictError before anything of that metric is written.
    The result holds the job's metadata (user, project, state, duration,
    cc-backend's statistics).
    """
    if store.unit != "s":
        raise ValueError(f"store: job archives use seconds; the store's unit is {store.unit!r}")
    job_dir = Path(path)
    meta = _read_json(job_dir / "meta.json")
    data = _read_json(_find_data_file(job_dir))
    cluster = meta["cluster"]
    config_path = Path(cluster_config) if cluster_config else job_dir.parents[2] / "cluster.json"
    configs = read_cluster_config(config_path) if config_path.exists() else {}
    start = int(meta["startTime"])
    statistics = {
        name: JobStatistic(
            float(s.get("min", math.nan)),
            float(s.get("avg", math.nan)),
            float(s.get("max", math.nan)),
            cc_unit(s.get("unit")),
        )
        for name, s in sorted((meta.get("statistics") or {}).items())
    }
    load = JobLoad(
        cluster=cluster,
        job_id=int(meta["jobId"]),
        start=start,
        hosts=sorted({r["hostname"] for r in meta["resources"]}),
        metrics=sorted(data),
        user=meta.get("user"),
        project=meta.get("project"),
        state=meta.get("jobState"),
        duration=None if meta.get("duration") is None else int(meta["duration"]),
        stop=None if meta.get("stopTime") is None else int(meta["stopTime"]),
        partition=meta.get("partition"),
        sub_cluster=meta.get("subCluster"),
        statistics=statistics,
    )
    for metric in sorted(data):
        for scope, block in sorted(data[metric].items()):
            timestep = int(block["timestep"])
            config = configs.get(metric)
            aggregation = config.aggregation if config else "none"
            unit = (
                (config.unit if config else None)
                or cc_unit(block.get("unit"))
                or (statistics[metric].unit if metric in statistics else None)
            )
            store.define_metric(metric, timestep, aggregation, unit)
            load.units[metric] = unit
            for series in block["series"]:
                key: tuple[str, ...] = (cluster, series["hostname"])
                if scope != "node":
                    key = (*key, f"{scope}{series['id']}")
                values = np.array(series["data"], dtype=np.float64)
                store.write((metric, key), start, values)
                load.series += 1
                load.samples += int(np.count_nonzero(~np.isnan(values)))
                load.missing += int(np.count_nonzero(np.isnan(values)))
                load.keys.append((metric, key))
    return load


# -- checkpoint files: constants and report types -------------------------------

SNAPSHOT_MAGIC = 0xCC5B0001
"""First u32 of a binary snapshot ``<from>.bin``."""
WAL_FILE_MAGIC = 0xCC1DA701
"""First u32 of ``current.wal``."""
WAL_RECORD_MAGIC = 0xCC1DA7A1
"""First u32 of every log record."""
WAL_NAME = "current.wal"

_SNAPSHOT_HEADER = struct.Struct("<Iqq")  # magic, from, to
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_BLOCK_HEADER = struct.Struct("<qqI")  # frequency, start, value count
_CHECKPOINT_NAME = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt takes


@dataclass(frozen=True)
class SkippedFile:
    """A file, directory or series that was not loaded, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class DamagedFile:
    """A file that does not parse whole: where parsing stopped and why.

    A damaged snapshot is not loaded at all; a damaged log keeps the records
    before ``offset``. ``offset`` is a byte offset in the file (a character
    offset for JSON), None where the problem has no single place.
    """

    path: str
    offset: int | None
    reason: str


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 or word.endswith('series') else 's'}"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


@dataclass(frozen=True)
class CheckpointLoadReport:
    """What :func:`load_checkpoints` read, loaded and left out.

    ``files_read`` counts snapshots loaded and logs replayed (also a damaged
    log's valid prefix), ``bytes_read`` their size. ``values`` counts the
    non-NaN values written to the store (a value a later file overwrites
    counts twice), ``wal_records`` the log records replayed.
    ``stale_wal_records`` are records cc-backend's replay drops as older than
    their series' newest buffer; they were dropped too.
    ``regridded_blocks`` are snapshot blocks whose frequency differs from the
    metric's: their values were placed by time on the metric's grid.
    ``phase_blocks`` are snapshot blocks placed at their samples' times (the
    block starts at its series' first write, or the series' sample phase
    was known from such a block or from the log); ``rounded_blocks`` were
    placed at the nearest slot of their clock-time labels, the phase being
    unknown (regridded blocks count here too). Blocks with no value count
    in neither.
    ``unknown_metrics`` maps each metric that was not loaded (not defined)
    to its count of values.
    """

    root: str
    hosts: int
    files_read: int
    bytes_read: int
    values: int
    wal_records: int
    stale_wal_records: int
    regridded_blocks: int
    phase_blocks: int
    rounded_blocks: int
    skipped: tuple[SkippedFile, ...]
    damaged: tuple[DamagedFile, ...]
    unknown_metrics: dict[str, int]
    seconds: float
    since: int | None = None  # the cutoff applied (from ``since`` or a config's retention)

    def summary(self) -> str:
        """A few lines for people: the counts, then every problem."""
        rate = self.bytes_read / self.seconds / 2**20 if self.seconds > 0 else 0.0
        lines = [
            f"{self.root}: {_plural(self.hosts, 'host')}, read {_plural(self.files_read, 'file')} "
            f"({_size(self.bytes_read)}) in {self.seconds:.2f} s ({rate:.0f} MiB/s)",
            f"loaded {_plural(self.values, 'value')}, {self.wal_records:,} of them from logs",
        ]
        if self.stale_wal_records:
            lines.append(
                f"dropped {_plural(self.stale_wal_records, 'log record')} older than their "
                "series' newest buffer (cc-backend drops them too)"
            )
        if self.rounded_blocks:
            lines.append(
                f"placed {_plural(self.rounded_blocks, 'block')} at the nearest slot of their "
                f"clock-time start (sample phase unknown; {self.phase_blocks:,} by their phase)"
            )
        if self.regridded_blocks:
            lines.append(
                f"{_plural(self.regridded_blocks, 'block')} had another frequency than "
                "their metric; placed by time on the metric's grid"
            )
        if self.unknown_metrics:
            names = ", ".join(f"{m} ({n:,})" for m, n in sorted(self.unknown_metrics.items()))
            lines.append(f"not loaded, metric not defined (values): {names}")
        if self.damaged:
            lines.append(f"damaged: {len(self.damaged)}")
            for d in self.damaged:
                where = "" if d.offset is None else f" at offset {d.offset}"
                lines.append(f"  {d.path}{where}: {d.reason}")
        if self.skipped:
            lines.append(f"skipped: {len(self.skipped)}")
            lines.extend(f"  {s.path}: {s.reason}" for s in self.skipped)
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckpointWriteReport:
    """What :func:`write_checkpoints` wrote.

    ``skipped_series`` are series not below a host (paths shorter than
    cluster/host), which cc-backend's layout cannot hold.
    """

    root: str
    format: str
    files: int
    bytes: int
    series: int
    values: int
    skipped_series: tuple[tuple[str, tuple[str, ...]], ...]
    seconds: float

    def summary(self) -> str:
        text = (
            f"{self.root}: wrote {_plural(self.files, self.format + ' file')} "
            f"({_size(self.bytes)}): {_plural(self.series, 'series')}, "
            f"{_plural(self.values, 'value')} in {self.seconds:.2f} s"
        )
        if self.skipped_series:
            text += f"\nleft out {len(self.skipped_series)} series not below a host"
        return text


@dataclass(frozen=True)
class ParquetExportReport:
    """What :func:`export_parquet` wrote (``skipped_series`` as in
    :class:`CheckpointWriteReport`)."""

    path: str
    rows: int
    series: int
    hosts: int
    bytes: int
    skipped_series: tuple[tuple[str, tuple[str, ...]], ...]
    seconds: float
    files: tuple[str, ...] = ()  # the files written (one per cluster in the archive layout)

    def summary(self) -> str:
        text = (
            f"{self.path}: wrote {_plural(self.rows, 'row')} of {_plural(self.series, 'series')} "
            f"on {_plural(self.hosts, 'host')} ({_size(self.bytes)}) in {self.seconds:.2f} s"
        )
        if self.skipped_series:
            text += f"\nleft out {len(self.skipped_series)} series not below a host"
        return text


@dataclass(frozen=True)
class ParquetLoadReport:
    """What :func:`load_parquet` loaded: ``values`` of ``rows`` into
    ``series``; ``unknown_metrics`` as in :class:`CheckpointLoadReport`."""

    path: str
    rows: int
    values: int
    series: int
    unknown_metrics: dict[str, int]
    seconds: float

    def summary(self) -> str:
        lines = [
            f"{self.path}: {_plural(self.rows, 'row')}, loaded {_plural(self.values, 'value')} "
            f"into {_plural(self.series, 'series')} in {self.seconds:.2f} s"
        ]
        if self.unknown_metrics:
            names = ", ".join(f"{m} ({n:,})" for m, n in sorted(self.unknown_metrics.items()))
            lines.append(f"not loaded, metric not defined (values): {names}")
        return "\n".join(lines)


# -- metric definitions ------------------------------------------------------------

MetricsArg: TypeAlias = (
    "Mapping[str, MetricConfig] | Iterable[Metric | MetricConfig | tuple[str, int, str]]"
)
"""Metrics to define before loading: ``store.metrics`` of another store,
:func:`read_cluster_config`'s result, or (name, frequency, aggregation) tuples
(or (name, frequency, aggregation, unit))."""


def _cc_aggregation(value: object) -> str:
    # cc-backend: "" means none, an unknown string is warned about and means none.
    return value if isinstance(value, str) and value in ("sum", "avg") else "none"


def _cluster_metrics(paths: Sequence[Path]) -> dict[str, tuple[int, str, str | None]]:
    """Metrics of cluster.json files by cc-backend's rule (``BuildMetricList``):
    top-level and sub-cluster configs of every cluster form one namespace; on a
    clash the larger timestep wins and the first aggregation stays, as does
    the first unit given."""
    found: dict[str, tuple[int, str, str | None]] = {}
    for path in paths:
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"cluster_config: {path} is not valid JSON: {error}") from None
        entries = list(config.get("metricConfig") or [])
        for sub in config.get("subClusters") or []:
            entries.extend(sub.get("metricConfig") or [])
        for entry in entries:
            try:
                name, timestep = entry["name"], int(entry["timestep"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"cluster_config: {path}: metric entry {entry!r} lacks a name or an integer "
                    "timestep"
                ) from None
            known = found.get(name)
            unit = cc_unit(entry.get("unit"))
            if known is None:
                found[name] = (timestep, _cc_aggregation(entry.get("aggregation")), unit)
            else:
                found[name] = (max(timestep, known[0]), known[1], known[2] or unit)
    return found


def _define_metrics(
    store: Store,
    metrics: MetricsArg | None,
    cluster_config: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
) -> dict[str, int]:
    """Defines the given metrics in ``store`` (a conflict raises before any
    data is read) and returns every defined metric's frequency by name."""
    wanted: list[tuple[str, int, str, str | None]] = []
    if cluster_config is not None:
        paths = (
            [Path(cluster_config)]
            if isinstance(cluster_config, str | os.PathLike)
            else [Path(p) for p in cluster_config]
        )
        wanted.extend((n, f, a, u) for n, (f, a, u) in _cluster_metrics(paths).items())
    if isinstance(metrics, Mapping):
        wanted.extend(
            (c.name, c.timestep, _cc_aggregation(c.aggregation), c.unit) for c in metrics.values()
        )
    elif metrics is not None:
        for i, entry in enumerate(metrics):
            if isinstance(entry, MetricConfig):
                wanted.append(
                    (entry.name, entry.timestep, _cc_aggregation(entry.aggregation), entry.unit)
                )
            elif isinstance(entry, tuple) and len(entry) in (3, 4):
                wanted.append((entry[0], entry[1], entry[2], entry[3] if len(entry) == 4 else None))
            else:
                raise TypeError(
                    f"metrics[{i}]: expected a Metric or a (name, frequency, aggregation[, "
                    f"unit]) tuple, got {entry!r}"
                )
    for name, frequency, aggregation, unit in wanted:
        store.define_metric(name, frequency, aggregation, unit)
    return {m.name: m.frequency for m in store.metrics}


def _check_unit(store: Store) -> None:
    if store.unit != "s":
        raise ValueError(
            f"store: cc-backend's files use seconds; the store's unit is {store.unit!r}"
        )


# -- parsing checkpoint files -----------------------------------------------------


class _Damage(Exception):
    """Where and why a file stops parsing (internal; becomes a DamagedFile)."""

    def __init__(self, offset: int | None, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _json_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Damage(None, f"{where} is {value!r}, not an integer")
    if not -(2**63) <= value < 2**63:
        raise _Damage(None, f"{where} is {value}, outside the int64 range")
    return value


def _json_name(name: str, where: str) -> bytes:
    """``u16 len | UTF-8`` of a JSON key."""
    try:
        raw = name.encode()
    except UnicodeEncodeError:
        raise _Damage(None, f"{where} has a name that is not valid UTF-8") from None
    if len(raw) > 0xFFFF:
        raise _Damage(None, f"{where} has a name of {len(raw):,} bytes (the limit is 65,535)")
    return _U16.pack(len(raw)) + raw


def _json_as_snapshot(data: bytes) -> bytes:
    """Parses a JSON checkpoint, ``{"metrics": {name: {"frequency": f,
    "start": s, "data": [v|null, ...]}}, "children": {name: <same>},
    "from": F, "to": T}`` (missing keys mean empty or 0, as in Go), and
    returns the same tree in the binary snapshot layout, so that one loader
    (the core's) places the values of both kinds of file. Raises _Damage."""
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as error:
        raise _Damage(error.pos, f"not valid JSON: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise _Damage(error.start, "not UTF-8") from None
    if not isinstance(doc, dict):
        raise _Damage(None, "the top level is not a JSON object")
    header = (_json_int(doc.get("from", 0), "from"), _json_int(doc.get("to", 0), "to"))
    parts = [_SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, *header)]
    # Pre-order, as the binary layout nests: a level's name, its metrics, its
    # child count, then each child's subtree.
    stack: list[tuple[tuple[str, ...], Any]] = [((), doc)]
    while stack:
        path, node = stack.pop()
        where = "".join(f"children.{p}." for p in path)
        if path:
            parts.append(_json_name(path[-1], where.rstrip(".")))
        if not isinstance(node, dict):
            raise _Damage(None, f"{where.rstrip('.') or 'the top level'} is not a JSON object")
        metrics = node.get("metrics") or {}
        children = node.get("children") or {}
        if not isinstance(metrics, dict) or not isinstance(children, dict):
            raise _Damage(None, f"{where}metrics or {where}children is not a JSON object")
        parts.append(_U32.pack(len(metrics)))
        for name, metric in metrics.items():
            at = f"{where}metrics.{name}"
            if not isinstance(metric, dict):
                raise _Damage(None, f"{at} is not a JSON object")
            frequency = _json_int(metric.get("frequency", 0), f"{at}.frequency")
            if frequency <= 0:
                raise _Damage(None, f"{at}.frequency is {frequency}")
            raw = metric.get("data") or []
            try:
                values = np.array(raw, dtype=np.float64).astype("<f4")
            except (TypeError, ValueError):
                raise _Damage(None, f"{at}.data is not a list of numbers and nulls") from None
            if values.ndim != 1 or not isinstance(raw, list):
                raise _Damage(None, f"{at}.data is not a list of numbers and nulls")
            start = _json_int(metric.get("start", 0), f"{at}.start")
            if start + max(values.size - 1, 0) * frequency >= 2**63:
                raise _Damage(None, f"{at}.data runs past the int64 range of times")
            parts.append(_json_name(name, at))
            parts.append(_BLOCK_HEADER.pack(frequency, start, values.size))
            parts.append(values.tobytes())
        parts.append(_U32.pack(len(children)))
        stack.extend(((*path, name), child) for name, child in reversed(children.items()))
    return b"".join(parts)


# -- planning a load: which files, in which order -----------------------------------


@dataclass
class _HostPlan:
    cluster: str
    host: str
    directory: Path
    files: list[tuple[Path, int]]  # snapshots in load order, with sizes
    wal: tuple[Path, int] | None
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files) + (self.wal[1] if self.wal else 0)


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda e: e.name)


def _plan_host(cluster: str, host: str, directory: Path, since: int | None) -> _HostPlan:
    plan = _HostPlan(cluster, host, directory, [], None)
    candidates: list[tuple[int, int, str, Path, int]] = []
    for entry in _sorted_entries(directory):
        path = directory / entry.name
        if entry.is_dir():
            plan.skipped.append(
                SkippedFile(str(path), "a subdirectory (cc-backend ignores these: old Avro layout)")
            )
        elif entry.name == WAL_NAME:
            plan.wal = (path, entry.stat().st_size)
        elif entry.name.endswith((".json", ".bin")):
            stem, kind = entry.name.rsplit(".", 1)
            if _CHECKPOINT_NAME.fullmatch(stem) is None:
                plan.skipped.append(
                    SkippedFile(
                        str(path), f"not named <time>.{kind} (cc-backend refuses to start on it)"
                    )
                )
                continue
            # At equal times .json loads before .bin (cc-backend's order is undefined).
            rank = 0 if kind == "json" else 1
            candidates.append((int(stem), rank, entry.name, path, entry.stat().st_size))
        else:
            plan.skipped.append(
                SkippedFile(str(path), "not a checkpoint file (cc-backend ignores it)")
            )
    candidates.sort()
    for i, (stamp, _, _, path, size) in enumerate(candidates):
        # cc-backend's findFiles: every file named at or after the cutoff, and
        # a file named before it only if the next one is named after it.
        newer = i + 1 < len(candidates) and since is not None and since < candidates[i + 1][0]
        if since is None or stamp >= since or newer:
            plan.files.append((path, size))
        else:
            plan.skipped.append(
                SkippedFile(str(path), f"named before since={since} and not the newest such file")
            )
    return plan


def _plan(root: Path, since: int | None) -> tuple[list[_HostPlan], list[SkippedFile]]:
    plans: list[_HostPlan] = []
    skipped: list[SkippedFile] = []
    for cluster in _sorted_entries(root):
        if not cluster.is_dir():
            skipped.append(
                SkippedFile(
                    str(root / cluster.name),
                    "not a directory: the root holds <cluster>/<host>/ directories "
                    "(cc-backend refuses to start on it)",
                )
            )
            continue
        for host in _sorted_entries(root / cluster.name):
            directory = root / cluster.name / host.name
            if not host.is_dir():
                skipped.append(
                    SkippedFile(
                        str(directory),
                        "not a directory: a cluster holds <host>/ directories "
                        "(cc-backend refuses to start on it)",
                    )
                )
                continue
            plans.append(_plan_host(cluster.name, host.name, directory, since))
    return plans, skipped


# -- loading: one host at a time, hosts in parallel -------------------------------


@dataclass
class _HostResult:
    files_read: int = 0
    bytes_read: int = 0
    values: int = 0
    wal_records: int = 0
    stale: int = 0
    regridded: int = 0
    by_phase: int = 0
    by_rounding: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    damaged: list[DamagedFile] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)


class _Loader:
    """Loads host directories into one store; safe to run on many threads."""

    def __init__(self, store: Store, known: dict[str, int], since: int | None) -> None:
        self.store = store
        self.known = known
        self.since = since
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self.bytes_done = 0

    def _advance(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n

    def load_host(self, plan: _HostPlan) -> _HostResult:
        result = _HostResult(skipped=list(plan.skipped))
        # The core scans the log first (its records' times give each series'
        # sample phase, which places the snapshots' blocks), loads the
        # snapshots, keeping the handles it made and each series' newest
        # block, then replays the log.
        host = _core.CcHost(plan.cluster, plan.host, self.known, self.since)
        wal = None if plan.wal is None else self._scan_wal(host, plan.wal[0], result)
        for path, _ in plan.files:
            if self.cancelled.is_set():
                return result
            data = self._read(path, result)
            if data is None:
                continue
            size = len(data)
            if path.suffix == ".json":
                try:
                    data = _json_as_snapshot(data)
                except _Damage as damage:
                    result.damaged.append(DamagedFile(str(path), damage.offset, damage.reason))
                    continue
            loaded = host.load_snapshot(self.store._core, data)
            if loaded["damage"] is not None:
                offset, reason = loaded["damage"]
                result.damaged.append(DamagedFile(str(path), offset, reason))
                continue
            if loaded["before_since"]:
                result.skipped.append(
                    SkippedFile(str(path), f"ends at to={loaded['to']}, before since={self.since}")
                )
                continue
            if loaded["trailing"]:
                result.damaged.append(
                    DamagedFile(
                        str(path),
                        size - loaded["trailing"],
                        f"{loaded['trailing']} bytes after the level tree, ignored "
                        "(cc-backend ignores them too); the tree was loaded",
                    )
                )
            result.files_read += 1
            result.bytes_read += size
            result.values += loaded["values"]
            result.regridded += loaded["regridded"]
            result.by_phase += loaded["by_phase"]
            result.by_rounding += loaded["by_rounding"]
            result.unknown.update(loaded["unknown"])
            for metric, below, message in loaded["unnamed"]:
                result.skipped.append(
                    SkippedFile(str(path), f"series {metric!r} at {below}: {message}")
                )
        if wal is not None and not self.cancelled.is_set():
            self._replay_wal(host, wal, result)
        return result

    def _read(self, path: Path, result: _HostResult) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError as error:
            result.skipped.append(SkippedFile(str(path), f"cannot be read: {error.strerror}"))
            return None
        self._advance(len(data))
        return data

    def _scan_wal(
        self, host: _core.CcHost, path: Path, result: _HostResult
    ) -> tuple[Path, int] | None:
        """Parses ``current.wal`` in the core; returns its path and size if
        it is to be replayed (see ``engine::ccbackend::wal`` for the rules)."""
        data = self._read(path, result)
        if data is None:
            return None
        damage = host.scan_wal(data)
        if damage is not None:
            result.damaged.append(DamagedFile(str(path), *damage))
            return None
        return path, len(data)

    def _replay_wal(self, host: _core.CcHost, wal: tuple[Path, int], result: _HostResult) -> None:
        path, size = wal
        loaded = host.replay_wal(self.store._core)
        assert loaded is not None
        result.files_read += 1
        result.bytes_read += size
        if loaded["stop"] is not None:
            offset, reason = loaded["stop"]
            kept = f"{loaded['records']:,} records before it were kept"
            result.damaged.append(DamagedFile(str(path), offset, f"{reason}; {kept}"))
        result.skipped.extend(
            SkippedFile(str(path), "records whose names are not UTF-8")
            for _ in range(loaded["not_utf8"])
        )
        if loaded["untimed"]:
            result.skipped.append(
                SkippedFile(
                    str(path),
                    f"{_plural(loaded['untimed'], 'record')} whose time has no slot on "
                    "their metric's grid",
                )
            )
        for metric, below, message in loaded["unnamed"]:
            result.skipped.append(
                SkippedFile(str(path), f"series {metric!r} at {below}: {message}")
            )
        result.unknown.update(loaded["unknown"])
        result.stale += loaded["stale"]
        result.wal_records += loaded["written"]
        result.values += loaded["values"]

    def run(self, plans: list[_HostPlan], workers: int, bar: Any) -> list[_HostResult]:
        """Loads every host on ``workers`` threads. On Ctrl-C (or an error in a
        worker) every worker stops after its current file, all are joined, and
        the exception propagates."""
        queue = deque(plans)
        results: list[_HostResult] = []
        errors: list[BaseException] = []

        def work() -> None:
            while not self.cancelled.is_set():
                try:
                    plan = queue.popleft()
                except IndexError:
                    return
                try:
                    results.append(self.load_host(plan))
                except BaseException as error:  # handed to the main thread
                    errors.append(error)
                    self.cancelled.set()

        threads = [
            threading.Thread(target=work, name=f"metricstore-cc-{i}", daemon=True)
            for i in range(min(workers, len(plans)))
        ]
        try:
            with ctrl_c_held():
                for thread in threads:
                    thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
                    if bar is not None:
                        bar.update(self.bytes_done - bar.n)
            if bar is not None:
                bar.update(self.bytes_done - bar.n)
        except BaseException:
            self.cancelled.set()
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            raise
        if errors:
            raise errors[0]
        return results


_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _go_duration(text: object, where: str) -> float:
    """Seconds of a Go duration string such as "48h" or "1h30m" (Go's
    ``time.ParseDuration``: a sign, then numbers with units)."""
    if not isinstance(text, str):
        raise ValueError(f'{where} is {text!r}, not a duration string such as "48h"')
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _GO_DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(f'{where} is {text!r}, not a duration such as "48h" or "1h30m"')
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in parts)
    return -seconds if text.startswith("-") else seconds


@dataclass(frozen=True)
class _BackendConfig:
    """What a cc-backend ``config.json`` says about loading checkpoints."""

    checkpoints: Path
    file_format: str
    retention: float  # seconds
    cluster_configs: tuple[Path, ...]


def _read_backend_config(path: Path) -> _BackendConfig:
    """The ``metric-store`` section of cc-backend's ``config.json``
    (checkpoint directory, default ``./var/checkpoints``; file format;
    ``retention-in-memory``, required) and the ``cluster.json`` of every
    cluster in its job archive (section ``archive``, default a file archive
    at ``./var/job-archive``). Relative paths are relative to the directory
    of ``config.json``, where cc-backend runs."""
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise FileNotFoundError(f"config: cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"config: {path} is not valid JSON: {error}") from None
    section = config.get("metric-store") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f'config: {path} has no "metric-store" section')
    base = path.parent
    checkpoints = section.get("checkpoints") or {}
    directory = base / str(checkpoints.get("directory") or "./var/checkpoints")
    file_format = str(checkpoints.get("file-format") or "wal")
    if "retention-in-memory" not in section:
        raise ValueError(f'config: {path}: "metric-store" lacks "retention-in-memory"')
    retention = _go_duration(
        section["retention-in-memory"], f'config: {path}: "retention-in-memory"'
    )
    archive = config.get("archive") or {"kind": "file", "path": "./var/job-archive"}
    clusters: tuple[Path, ...] = ()
    if isinstance(archive, dict) and archive.get("kind", "file") == "file":
        jobs = base / str(archive.get("path") or "./var/job-archive")
        if jobs.is_dir():
            clusters = tuple(
                jobs / entry.name / "cluster.json"
                for entry in _sorted_entries(jobs)
                if entry.is_dir() and (jobs / entry.name / "cluster.json").is_file()
            )
    return _BackendConfig(directory, file_format, retention, clusters)


def load_checkpoints(
    root: str | os.PathLike[str] | None,
    store: Store,
    *,
    metrics: MetricsArg | None = None,
    since: object = None,
    cluster_config: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    config: str | os.PathLike[str] | None = None,
    now: object = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> CheckpointLoadReport:
    """Loads cc-backend's checkpoint directory ``root`` into ``store``, as
    cc-backend loads it on startup (see the module docstring for the rules).

    ``root`` holds ``<cluster>/<host>/`` directories of ``<from>.bin``,
    ``<from>.json`` and ``current.wal`` files. Series land at
    ``<cluster>/<host>[/<child>...]``. ``metrics`` (for example another
    store's ``.metrics``) and ``cluster_config`` (one or more ``cluster.json``
    paths) define metrics first; a conflict with a defined metric raises
    MetricConflictError before anything is read. Metrics still undefined are
    left out and reported. ``since`` (seconds or a datetime) is cc-backend's
    load cutoff.

    ``config``: cc-backend's ``config.json``, to load what that installation
    loads on startup. Its ``metric-store`` section gives the checkpoint
    directory (used when ``root`` is None) and ``retention-in-memory``,
    which sets ``since`` to ``now`` (seconds or a datetime; default: the
    current time) minus the retention unless ``since`` is given; the
    ``cluster.json`` of each cluster in its file job archive define the
    metrics (cc-backend's rule: one namespace, the larger timestep wins),
    unless ``cluster_config`` is given. Relative paths in it are relative to
    its directory. cc-backend loads .bin, .json and the log whatever its
    ``file-format``, and so does this.

    Hosts load on ``workers`` threads (default: the CPU count,
    at most 8). ``progress``: a tqdm progress bar (None: when stderr is a
    terminal or in a notebook; False: never; True: whenever tqdm is there).

    Damaged files are reported, never fatal. Ctrl-C stops the load after each
    worker's current file and raises KeyboardInterrupt; what was loaded by
    then stays in the store.
    """
    began = time.perf_counter()
    _check_unit(store)
    if config is not None:
        backend = _read_backend_config(Path(config))
        if root is None:
            root = backend.checkpoints
        if since is None:
            at = time.time() if now is None else to_ticks(now, "s", "now")
            since = int(at - backend.retention)
        if cluster_config is None and backend.cluster_configs:
            cluster_config = backend.cluster_configs
    elif root is None:
        raise TypeError("root: None needs config=, cc-backend's config.json naming the directory")
    elif now is not None:
        raise TypeError("now: only used with config= (its retention sets the cutoff)")
    top = Path(root)
    if not top.is_dir():
        raise FileNotFoundError(f"root: {top} is not a directory")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise TypeError(f"workers: expected an int, got {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers: must be at least 1, got {workers}")
    cutoff = None if since is None else to_ticks(since, "s", "since")
    known = _define_metrics(store, metrics, cluster_config)
    plans, skipped = _plan(top, cutoff)
    # Big hosts first, so one big host does not finish alone at the end.
    plans.sort(key=lambda p: p.bytes, reverse=True)
    loader = _Loader(store, known, cutoff)
    bar = progress_bar(progress, sum(p.bytes for p in plans), "loading checkpoints")
    try:
        results = loader.run(plans, workers or min(os.cpu_count() or 1, 8), bar)
    finally:
        if bar is not None:
            bar.close()
    unknown: Counter[str] = Counter()
    for r in results:
        skipped.extend(r.skipped)
        unknown.update(r.unknown)
    return CheckpointLoadReport(
        root=str(top),
        hosts=len(plans),
        files_read=sum(r.files_read for r in results),
        bytes_read=sum(r.bytes_read for r in results),
        values=sum(r.values for r in results),
        wal_records=sum(r.wal_records for r in results),
        stale_wal_records=sum(r.stale for r in results),
        regridded_blocks=sum(r.regridded for r in results),
        phase_blocks=sum(r.by_phase for r in results),
        rounded_blocks=sum(r.by_rounding for r in results),
        skipped=tuple(sorted(skipped, key=lambda s: (s.path, s.reason))),
        damaged=tuple(sorted((d for r in results for d in r.damaged), key=lambda d: d.path)),
        unknown_metrics=dict(sorted(unknown.items())),
        seconds=time.perf_counter() - began,
        since=cutoff,
    )


# -- writing checkpoint files -------------------------------------------------------


_SeriesKey: TypeAlias = tuple[str, tuple[str, ...]]


def _hosts_of(
    store: Store, cluster: str | None
) -> tuple[dict[tuple[str, str], list[tuple[int, str, tuple[str, ...]]]], list[_SeriesKey]]:
    """Series by (cluster, host), with their path below the host; and the
    series that are not below any host."""
    hosts: dict[tuple[str, str], list[tuple[int, str, tuple[str, ...]]]] = {}
    outside: list[_SeriesKey] = []
    for handle, metric, path in store.list_series():
        if cluster is not None and (not path or path[0] != cluster):
            continue
        if len(path) < 2:
            outside.append((metric, path))
            continue
        hosts.setdefault((path[0], path[1]), []).append((handle, metric, path[2:]))
    return hosts, outside


def _range(store: Store, since: object, until: object) -> tuple[int, int]:
    """``[since, until)`` in seconds. A bound left out (None) is where the
    store's samples begin or end; the range is then empty where nothing
    lies in it."""
    _check_unit(store)
    if since is not None and until is not None:
        begin = to_ticks(since, "s", "since")
        end = to_ticks(until, "s", "until")
        if end <= begin:
            raise ValueError(f"until: {end} is not after since ({begin})")
        return begin, end
    extent = store.extent()
    if extent is None:
        return 0, 0
    begin = extent[0] if since is None else to_ticks(since, "s", "since")
    end = extent[1] if until is None else to_ticks(until, "s", "until")
    return begin, max(begin, end)


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes ``path`` through ``<path>.tmp`` (which cc-backend ignores),
    fsynced and renamed, then fsyncs the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_checkpoints(
    store: Store,
    root: str | os.PathLike[str],
    *,
    since: object = None,
    until: object = None,
    cluster: str | None = None,
    format: str = "bin",
) -> CheckpointWriteReport:
    """Writes ``store``'s data in ``[since, until)`` as cc-backend checkpoints:
    one ``<root>/<cluster>/<host>/<since>.bin`` (or ``.json``) per host with
    data, holding the host's series and, as children, those below it. cc-backend
    (and :func:`load_checkpoints`) can start from it.

    ``since`` and ``until`` (seconds or datetimes) default to where the
    store's samples begin and end (:meth:`Store.extent`). ``cluster`` limits
    the export to one cluster. Each series is written from its first to its
    last value in the range (NaN between); series with none are left out. A
    file is written through ``<name>.tmp``, fsynced and renamed, and replaces
    a file of the same name.
    """
    began = time.perf_counter()
    if format not in ("bin", "json"):
        raise ValueError(f"format: expected 'bin' or 'json', got {format!r}")
    begin, end = _range(store, since, until)
    hosts, outside = _hosts_of(store, cluster)
    files = size = series = values = 0
    for (cluster_name, host), members in sorted(hosts.items()):
        # The core reads, trims and encodes the host's series (engine::ccbackend::encode).
        encoded = _core.cc_encode_host(store._core, begin, end, members, format)
        if encoded is None:
            continue
        data, host_series, host_values = encoded
        _write_atomically(Path(root) / cluster_name / host / f"{begin}.{format}", data)
        files += 1
        size += len(data)
        series += host_series
        values += host_values
    return CheckpointWriteReport(
        root=str(root),
        format=format,
        files=files,
        bytes=size,
        series=series,
        values=values,
        skipped_series=tuple(sorted(outside)),
        seconds=time.perf_counter() - began,
    )


# -- the Parquet archive ------------------------------------------------------------

_PARQUET_COLUMNS = (
    ("cluster", "string"),
    ("hostname", "string"),
    ("metric", "string"),
    ("scope", "string"),
    ("scope_id", "string"),
    ("timestamp", "int64"),
    ("frequency", "int64"),
    ("value", "float32"),
)
_SCOPE_PREFIXES = (
    ("socket", "socket"),
    ("memoryDomain", "memoryDomain"),
    ("core", "core"),
    ("hwthread", "hwthread"),
    ("cpu", "hwthread"),
    ("accelerator", "accelerator"),
)


def _pyarrow(function: str) -> tuple[Any, Any]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ImportError(f"{function} needs pyarrow: pip install 'metricstore[parquet]'") from None


def _scope(below: tuple[str, ...]) -> tuple[str, str]:
    """cc-backend's (scope, scope_id) of a series below a host: "node" at the
    host, else parsed from the innermost name (``cpu3`` -> hwthread 3; a
    name without a known prefix and a digit is its own scope, id "")."""
    if not below:
        return "node", ""
    name = below[-1]
    for prefix, scope in _SCOPE_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) : len(prefix) + 1].isdigit():
            return scope, name[len(prefix) :]
    return name, ""


def _strings(pa: Any, codes: NDArray[np.int32], dictionary: list[str]) -> Any:
    """A dictionary-encoded string column: the file stores plain strings."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(dictionary, pa.string()))


def export_parquet(
    store: Store,
    path: str | os.PathLike[str],
    *,
    since: object = None,
    until: object = None,
    cluster: str | None = None,
    layout: str = "file",
) -> ParquetExportReport:
    """Writes ``store``'s values in ``[since, until)`` (by default all of
    them: see :func:`write_checkpoints`) as cc-backend's Parquet
    archive: one row per non-NaN value with the columns ``cluster, hostname,
    metric, scope, scope_id`` (strings), ``timestamp, frequency`` (int64,
    annotated INTEGER(64, signed) as parquet-go writes them) and ``value``
    (float32); Zstd, one row group per host, rows in cc-backend's order (per
    host: metrics sorted, then children sorted, depth first).

    ``layout="file"`` writes one file ``path``; ``layout="archive"`` writes
    cc-backend's archive layout below the directory ``path``: one file per
    cluster, ``<path>/<cluster>/<since>.parquet``. Each file is written
    through ``<name>.tmp`` and renamed.

    Scopes follow cc-backend: "node" at the host, else parsed from the
    innermost name below it (``cpu3`` becomes hwthread 3). Needs pyarrow
    (``pip install 'metricstore[parquet]'``).
    """
    began = time.perf_counter()
    if layout not in ("file", "archive"):
        raise ValueError(f"layout: expected 'file' or 'archive', got {layout!r}")
    pa, pq = _pyarrow("export_parquet")
    begin, end = _range(store, since, until)
    hosts, outside = _hosts_of(store, cluster)
    target = Path(path)
    if layout == "file":
        parts = {target: hosts}
    else:
        parts = {}
        for (cluster_name, host), members in hosts.items():
            file = target / cluster_name / f"{begin}.parquet"
            parts.setdefault(file, {})[cluster_name, host] = members
    rows = series = written_hosts = size = 0
    for file, part in sorted(parts.items()):
        counts = _write_parquet(pa, pq, store, file, part, begin, end)
        rows, series, written_hosts = (
            rows + counts[0],
            series + counts[1],
            written_hosts + counts[2],
        )
        size += file.stat().st_size
    return ParquetExportReport(
        path=str(target),
        rows=rows,
        series=series,
        hosts=written_hosts,
        bytes=size,
        skipped_series=tuple(sorted(outside)),
        seconds=time.perf_counter() - began,
        files=tuple(str(file) for file in sorted(parts)),
    )


def _write_parquet(
    pa: Any,
    pq: Any,
    store: Store,
    target: Path,
    hosts: dict[tuple[str, str], list[tuple[int, str, tuple[str, ...]]]],
    begin: int,
    end: int,
) -> tuple[int, int, int]:
    """Writes ``hosts``' values in ``[begin, end)`` to the Parquet file
    ``target`` (see :func:`export_parquet`); returns (rows, series, hosts)."""
    # Columns are required, as parquet-go writes cc-backend's struct. The
    # strings go in as dictionaries; without the Arrow schema in the file
    # they read back as plain strings.
    schema = pa.schema(
        [
            pa.field(
                name,
                pa.dictionary(pa.int32(), pa.string()) if kind == "string" else getattr(pa, kind)(),
                nullable=False,
            )
            for name, kind in _PARQUET_COLUMNS
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    rows = series = written_hosts = 0
    with pq.ParquetWriter(temporary, schema, compression="zstd", store_schema=False) as writer:
        for (cluster_name, host), members in sorted(hosts.items()):
            # cc-backend's order: at each level metrics before children, both sorted.
            members.sort(key=lambda m: (*((1, n) for n in m[2]), (0, m[1])))
            metrics: list[str] = []
            scopes: list[tuple[str, str]] = []
            metric_codes: list[NDArray[np.int32]] = []
            scope_codes: list[NDArray[np.int32]] = []
            times: list[NDArray[np.int64]] = []
            frequencies: list[NDArray[np.int64]] = []
            values: list[NDArray[np.float32]] = []
            for handle, metric, below in members:
                result = store.read(handle, begin, end)
                present = np.flatnonzero(~np.isnan(result.values))
                if present.size == 0:
                    continue
                if metric not in metrics:
                    metrics.append(metric)
                scope = _scope(below)
                if scope not in scopes:
                    scopes.append(scope)
                metric_codes.append(np.full(present.size, metrics.index(metric), np.int32))
                scope_codes.append(np.full(present.size, scopes.index(scope), np.int32))
                times.append(result.start + present * result.step)
                frequencies.append(np.full(present.size, result.step, dtype=np.int64))
                values.append(result.values[present])
                series += 1
            if not values:
                continue
            by_metric, by_scope = np.concatenate(metric_codes), np.concatenate(scope_codes)
            count = by_metric.size
            zeros = np.zeros(count, np.int32)
            table = pa.table(
                [
                    _strings(pa, zeros, [cluster_name]),
                    _strings(pa, zeros, [host]),
                    _strings(pa, by_metric, metrics),
                    _strings(pa, by_scope, [s for s, _ in scopes]),
                    _strings(pa, by_scope, [i for _, i in scopes]),
                    pa.array(np.concatenate(times).astype(np.int64)),
                    pa.array(np.concatenate(frequencies)),
                    pa.array(np.concatenate(values).astype(np.float32)),
                ],
                schema=schema,
            )
            writer.write_table(table, row_group_size=count)
            rows += count
            written_hosts += 1
    annotate_signed_int64(temporary)
    os.replace(temporary, target)
    return rows, series, written_hosts


def _codes(column: Any) -> tuple[NDArray[np.intp], list[str]]:
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(
        np.intp
    ), encoded.dictionary.to_pylist()


def load_parquet(
    path: str | os.PathLike[str],
    store: Store,
    *,
    metrics: MetricsArg | None = None,
    cluster_config: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
) -> ParquetLoadReport:
    """Loads a cc-backend Parquet archive (see :func:`export_parquet`) into
    ``store``: each row's value at its timestamp, in row order (a later row
    wins a slot). A row of scope "node" lands at ``<cluster>/<hostname>``,
    any other at ``<cluster>/<hostname>/<scope><scope_id>``; cc-backend's
    archive keeps only the innermost name and writes ``cpu3`` as hwthread 3,
    so those come back as ``hwthread3``. Metrics are defined and unknown ones
    reported as in :func:`load_checkpoints`. Needs pyarrow.
    """
    began = time.perf_counter()
    _check_unit(store)
    _, pq = _pyarrow("load_parquet")
    source = Path(path)
    names = [name for name, _ in _PARQUET_COLUMNS]
    table = pq.read_table(source)
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ValueError(
            f"path: {source} lacks the column(s) {', '.join(missing)} of cc-backend's archive"
        )
    known = _define_metrics(store, metrics, cluster_config)
    string_columns = [_codes(table.column(name)) for name in names[:5]]
    timestamps = table.column("timestamp").to_numpy().astype(np.int64)
    values = table.column("value").to_numpy().astype(np.float32)
    # One int64 key per row (mixed radix over the five dictionaries), then its
    # distinct values: far faster than np.unique over rows.
    key = np.zeros(values.size, dtype=np.int64)
    for codes, dictionary in string_columns:
        key = key * max(len(dictionary), 1) + codes
    if math.prod(max(len(d), 1) for _, d in string_columns) >= 2**62:
        raise ValueError(f"path: {source} has too many distinct names to load at once")
    distinct, inverse = np.unique(key, return_inverse=True)
    combos = np.empty((distinct.size, 5), dtype=np.int64)
    rest = distinct
    for column in range(4, -1, -1):
        size = max(len(string_columns[column][1]), 1)
        combos[:, column] = rest % size
        rest = rest // size
    inverse = inverse.reshape(-1)
    handles = np.zeros(len(combos), dtype=np.uint32)
    known_combo = np.zeros(len(combos), dtype=np.bool_)
    unknown: Counter[str] = Counter()
    counts = np.bincount(inverse, minlength=len(combos))
    for i, combo in enumerate(combos.tolist()):
        cluster, host, metric, scope, scope_id = (
            string_columns[c][1][code] for c, code in enumerate(combo)
        )
        if metric not in known:
            unknown[metric] += int(counts[i])
            continue
        below = () if scope == "node" else (f"{scope}{scope_id}",)
        handles[i] = store.series(metric, (cluster, host, *below))
        known_combo[i] = True
    chosen = known_combo[inverse]
    chosen_values = values[chosen]
    if chosen_values.size:
        store.write_points(handles[inverse[chosen]], timestamps[chosen], chosen_values)
    return ParquetLoadReport(
        path=str(source),
        rows=int(values.size),
        values=int(np.count_nonzero(chosen_values == chosen_values)),
        series=int(np.count_nonzero(known_combo)),
        unknown_metrics=dict(sorted(unknown.items())),
        seconds=time.perf_counter() - began,
    )
