"""The public API with full type annotations; CI checks it with
``mypy --strict examples/typed_usage.py``, and it runs as a script.

Writes two hosts' CPU load to a store directory, reads it back one series
and several at a time, takes a checkpoint, reopens the directory and checks
that recovery brought back exactly what was written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import metricstore
from metricstore.testing import assert_series_equal

START = np.datetime64("2020-12-25T19:00", "s")
HOSTS = ("e0102", "e0103")


def write_load(store: metricstore.Store) -> NDArray[np.float32]:
    """Writes a block per host, then one tick for both; returns host e0102's values."""
    store.define_metric("cpu_load", frequency=60, aggregation="avg")
    block: NDArray[np.float32] = np.linspace(0.0, 1.0, 10, dtype=np.float32)
    for host in HOSTS:
        store.write(("cpu_load", ("emmy", host)), START, block)
    handles: list[int] = [store.series("cpu_load", ("emmy", host)) for host in HOSTS]
    store.write_tick(START + np.timedelta64(600, "s"), handles, np.array([2.0, 3.0]))
    return np.append(block, np.float32(2.0))


def read_back(store: metricstore.Store, expected: NDArray[np.float32]) -> None:
    stop = START + np.timedelta64(11 * 60, "s")
    node: metricstore.ReadResult = store.read(("cpu_load", "emmy/e0102"), START, stop)
    assert_series_equal(node, expected)
    both = store.read_many([("cpu_load", ("emmy", host)) for host in HOSTS], START, stop)
    rows: tuple[int, ...] = both.values.shape
    assert rows == (2, 11), rows
    cluster = store.read(("cpu_load", "emmy"), START, stop)  # the hosts, averaged
    assert_series_equal(cluster, (both.values[0] + both.values[1]) / 2, atol=1e-6)


def main(directory: Path) -> None:
    with metricstore.open(directory, sync="always") as store:
        expected = write_load(store)
        read_back(store, expected)
        info: metricstore.CheckpointInfo = store.checkpoint()
        print(f"snapshot {Path(info.file).name} covers LSN {info.lsn}")
        store.write(("cpu_load", "emmy/e0102"), START + np.timedelta64(660, "s"), [4.0])
        store.close(checkpoint=False)  # leave the last write in the log only

    with metricstore.open(directory, readonly=True) as reopened:
        report: metricstore.RecoveryReport | None = reopened.recovery
        assert report is not None and report.snapshot == info.file
        print(f"recovered: snapshot LSN {report.snapshot_lsn}, {report.records} op replayed")
        read_back(reopened, expected)
        minute = np.timedelta64(60, "s")
        last = reopened.read(("cpu_load", "emmy/e0102"), START + 11 * minute, START + 12 * minute)
        assert_series_equal(last, [4.0])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as temporary:
        main(Path(temporary))
