"""Reading ClusterCockpit cc-backend's files into a store.

A job archive holds, per cluster, ``cluster.json`` (the metric configuration:
name, timestep in seconds, aggregation, native scope) and, per job,
``<cluster>/<id1>/<id2>/<start>/meta.json`` and ``data.json[.gz]``. The data
file maps metric -> scope -> {timestep, series: [{hostname, id?, data}]},
where ``data[i]`` is the sample at ``startTime + i * timestep`` and ``null``
means missing.

Series land where cc-backend's store keeps them: node scope at
``<cluster>/<host>``, other scopes at ``<cluster>/<host>/<scope><id>``
(``socket0``, ``hwthread12``, ...). Timestamps are seconds, so the store's
unit must be "s".
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import Store

__all__ = ["JobLoad", "MetricConfig", "load_job", "read_cluster_config"]


@dataclass(frozen=True)
class MetricConfig:
    """One metric of a cluster's ``cluster.json``."""

    name: str
    timestep: int
    aggregation: str
    scope: str


@dataclass
class JobLoad:
    """What :func:`load_job` loaded."""

    cluster: str
    job_id: int
    start: int
    hosts: list[str]
    metrics: list[str]
    series: int = 0
    samples: int = 0
    missing: int = 0
    keys: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def read_cluster_config(path: str | Path) -> dict[str, MetricConfig]:
    """The metric configuration of a ``cluster.json``, by metric name.

    cc-backend's aggregation "" (unset) becomes "none".
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
    from the data's timestep with aggregation "none". Each series is one bulk
    write. A metric already defined with another frequency raises
    MetricConflictError before anything of that metric is written.
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
    load = JobLoad(
        cluster=cluster,
        job_id=int(meta["jobId"]),
        start=start,
        hosts=sorted({r["hostname"] for r in meta["resources"]}),
        metrics=sorted(data),
    )
    for metric in sorted(data):
        for scope, block in sorted(data[metric].items()):
            timestep = int(block["timestep"])
            config = configs.get(metric)
            aggregation = config.aggregation if config else "none"
            store.define_metric(metric, timestep, aggregation)
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
