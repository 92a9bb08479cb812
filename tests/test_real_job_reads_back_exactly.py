"""The real emmy job from ClusterCockpit's test data loads and reads back equal
to its JSON (null -> NaN) for every metric and host, and its cluster-level
aggregates equal a NumPy reference."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore.ccbackend import load_job, read_cluster_config
from metricstore.demo import ARCHIVE, EMMY_JOB, expected_aggregate, expected_series

EXPECTED = expected_series()
HOSTS = sorted({host for _, host in EXPECTED})
METRICS = sorted({metric for metric, _ in EXPECTED})
STEP = 60
FIRST = (1608923076 + STEP // 2) // STEP * STEP  # the slot the first sample lands in
N = 1441


@pytest.fixture(scope="module")
def store() -> metricstore.Store:
    store = metricstore.Store()
    load_job(EMMY_JOB, store)
    return store


def bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint32)


def test_the_job_has_the_expected_shape() -> None:
    assert len(HOSTS) == 32 and len(METRICS) == 9
    assert all(len(v) == N for v in EXPECTED.values())


@pytest.mark.parametrize("metric", METRICS)
def test_every_host_series_equals_the_json(store: metricstore.Store, metric: str) -> None:
    for host in HOSTS:
        result = store.read((metric, ("emmy", host)), FIRST, FIRST + N * STEP)
        assert result.start == FIRST and result.step == STEP
        np.testing.assert_array_equal(
            bits(result.values), bits(EXPECTED[metric, host]), err_msg=f"{metric} {host}"
        )


def test_a_2d_read_of_all_hosts_equals_the_json(store: metricstore.Store) -> None:
    keys = [("mem_used", ("emmy", host)) for host in HOSTS]
    result = store.read_many(keys, FIRST, FIRST + N * STEP)
    expected = np.vstack([EXPECTED["mem_used", host] for host in HOSTS])
    np.testing.assert_array_equal(bits(result.values), bits(expected))


@pytest.mark.parametrize("metric", [m for m in METRICS if m != "rapl_power"])
def test_cluster_aggregates_equal_the_numpy_reference(
    store: metricstore.Store, metric: str
) -> None:
    aggregation = read_cluster_config(ARCHIVE / "emmy" / "cluster.json")[metric].aggregation
    rows = [EXPECTED[metric, host] for host in HOSTS]
    result = store.read((metric, "emmy"), FIRST, FIRST + N * STEP)
    np.testing.assert_array_equal(bits(result.values), bits(expected_aggregate(rows, aggregation)))
    # The root aggregates the same series: one cluster below it.
    root = store.read((metric, ()), FIRST, FIRST + N * STEP)
    np.testing.assert_array_equal(bits(root.values), bits(result.values))


def test_a_metric_missing_from_cluster_json_is_not_aggregated(store: metricstore.Store) -> None:
    assert metricstore.Metric("rapl_power", 60, "none", "W") in store.metrics
    with pytest.raises(metricstore.AggregationError):
        store.read(("rapl_power", "emmy"), FIRST, FIRST + STEP)


def test_loading_the_job_twice_changes_nothing(store: metricstore.Store) -> None:
    before = store.stats()
    again = metricstore.Store()
    load_job(EMMY_JOB, again)
    load_job(EMMY_JOB, again)
    after = again.stats()
    assert (after["series"], after["samples"], after["chunks"]) == (
        before["series"], before["samples"], before["chunks"])  # fmt: skip
    assert after["samples"] == sum(int(np.count_nonzero(~np.isnan(v))) for v in EXPECTED.values())


def test_a_conflicting_metric_definition_is_refused(tmp_path: Path) -> None:
    store = metricstore.Store()
    store.define_metric("cpu_load", 30, "avg")
    with pytest.raises(metricstore.MetricConflictError, match='"cpu_load"'):
        load_job(EMMY_JOB, store)
    assert store.find_series("cpu_load", "emmy/e0102") is None


def test_a_store_in_another_unit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^store: job archives use seconds"):
        load_job(EMMY_JOB, metricstore.Store(unit="ms"))


def test_an_uncompressed_job_with_sub_node_scopes_lands_below_the_host(tmp_path: Path) -> None:
    job = tmp_path / "emmy" / "1" / "2" / "100"
    job.mkdir(parents=True)
    shutil.copy(ARCHIVE / "emmy" / "cluster.json", tmp_path / "emmy" / "cluster.json")
    (job / "meta.json").write_text(
        '{"jobId": 7, "cluster": "emmy", "startTime": 120, "resources": [{"hostname": "h1"}]}'
    )
    (job / "data.json").write_text(
        '{"mem_bw": {"socket": {"timestep": 60, "series": ['
        '{"hostname": "h1", "id": "0", "data": [1.5, null]},'
        '{"hostname": "h1", "id": "1", "data": [2.5, 4.0]}]}}}'
    )
    store = metricstore.Store()
    load = load_job(job, store)
    assert (load.series, load.samples, load.missing) == (2, 3, 1)
    assert load.keys == [
        ("mem_bw", ("emmy", "h1", "socket0")),
        ("mem_bw", ("emmy", "h1", "socket1")),
    ]
    np.testing.assert_array_equal(store.read(("mem_bw", "emmy/h1"), 120, 240).values, [4.0, 4.0])


def test_the_demo_command_checks_everything_and_exits_zero() -> None:
    done = subprocess.run([sys.executable, "-m", "metricstore", "demo"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "288 series, 377,019 samples (37,989 missing)" in done.stdout
    assert "every read equals the source JSON bit for bit" in done.stdout
