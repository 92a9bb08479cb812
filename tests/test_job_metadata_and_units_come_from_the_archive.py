"""Loading the real emmy job keeps what cc-backend knows about it: each
metric's unit (cluster.json's, else the job's own), the job's metadata
and cc-backend's per-metric statistics from meta.json; cc-backend's
checkpoint files, which carry no units, get them from cluster.json or from
the metrics given."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import metricstore
from metricstore.ccbackend import (
    JobStatistic,
    cc_unit,
    load_checkpoints,
    load_job,
    read_cluster_config,
    write_checkpoints,
)
from metricstore.demo import ARCHIVE, EMMY_JOB

CLUSTER_JSON = ARCHIVE / "emmy" / "cluster.json"

# From cluster.json where it gives a unit; cpu_load's is empty there and
# rapl_power is not there, so theirs come from the job's data file. mem_used
# is "GB" in cluster.json, though the job's data file says "GB/s".
UNITS = {
    "clock": "MHz",
    "cpu_load": "load",
    "flops_any": "GF/s",
    "flops_dp": "GF/s",
    "flops_sp": "GF/s",
    "ipc": "IPC",
    "mem_bw": "GB/s",
    "mem_used": "GB",
    "rapl_power": "W",
}


@pytest.fixture(scope="module")
def loaded() -> tuple[metricstore.Store, metricstore.ccbackend.JobLoad]:
    store = metricstore.Store()
    return store, load_job(EMMY_JOB, store)


def test_units_join_cc_backends_prefix_and_base() -> None:
    assert cc_unit({"prefix": "G", "base": "F/s"}) == "GF/s"
    assert cc_unit({"base": "IPC"}) == "IPC"
    assert cc_unit({"base": ""}) is None
    assert cc_unit({"prefix": "G", "base": ""}) is None
    assert cc_unit(None) is None and cc_unit("GF/s") is None
    config = read_cluster_config(CLUSTER_JSON)
    assert config["flops_any"].unit == "GF/s" and config["cpu_load"].unit is None


def test_every_metric_of_the_job_gets_its_unit(
    loaded: tuple[metricstore.Store, metricstore.ccbackend.JobLoad],
) -> None:
    store, job = loaded
    assert {m.name: m.unit for m in store.metrics} == UNITS
    assert job.units == UNITS
    node = store.read(("flops_any", "emmy/e0320"))
    assert node.unit == "GF/s"
    assert store.read_stats(("mem_used", "emmy")).unit == "GB"


def test_the_job_keeps_its_metadata_and_cc_backends_statistics(
    loaded: tuple[metricstore.Store, metricstore.ccbackend.JobLoad],
) -> None:
    _, job = loaded
    meta = json.loads((Path(EMMY_JOB) / "meta.json").read_text())
    assert (job.cluster, job.job_id, job.user, job.project) == (
        "emmy",
        1403244,
        "emmyUser6",
        "no project",
    )
    assert (job.start, job.stop, job.duration, job.state) == (
        1608923076,
        1609009562,
        86486,
        "completed",
    )
    assert (job.partition, job.sub_cluster) == ("work", "haswell")
    assert len(job.hosts) == meta["numNodes"] == 32
    assert sorted(job.statistics) == sorted(meta["statistics"])
    for name, stat in meta["statistics"].items():
        assert job.statistics[name] == JobStatistic(
            stat["min"], stat["avg"], stat["max"], cc_unit(stat["unit"])
        )
    assert job.statistics["flops_any"] == JobStatistic(0.0, 225.59, 404.62, "GF/s")
    assert job.statistics["cpu_load"].unit == "load"


def test_checkpoints_get_units_from_cluster_json_or_the_metrics_given(
    loaded: tuple[metricstore.Store, metricstore.ccbackend.JobLoad], tmp_path: Path
) -> None:
    store, _ = loaded
    written = write_checkpoints(store, tmp_path / "checkpoints")
    assert written.files == 32
    copy = metricstore.Store()
    report = load_checkpoints(tmp_path / "checkpoints", copy, metrics=store.metrics)
    assert report.unknown_metrics == {}
    assert copy.metrics == store.metrics
    assert copy.read(("flops_any", "emmy")).unit == "GF/s"
    from_config = metricstore.Store()
    report = load_checkpoints(tmp_path / "checkpoints", from_config, cluster_config=CLUSTER_JSON)
    units = {m.name: m.unit for m in from_config.metrics}
    assert units["flops_any"] == "GF/s" and units["mem_used"] == "GB"
    assert units["cpu_load"] is None  # cluster.json gives it none
    assert "rapl_power" in report.unknown_metrics  # not in cluster.json
    assert not math.isnan(from_config.read_stats(("flops_any", "emmy")).avg)
