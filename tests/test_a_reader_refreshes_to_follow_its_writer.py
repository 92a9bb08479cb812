"""A read-only store is a fixed view until it refreshes: refresh() applies
exactly what the writer logged since the last look (new metrics, series,
overwrites), opens the directory again when the writer's checkpoints
removed that log, and ends up equal to a fresh read-only open, also while
the writer goes on writing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore.testing import assert_store_equal

T0 = 1_608_923_040


def writer_at(path: Path) -> metricstore.Store:
    return metricstore.open(path, sync="none", checkpoint_interval_s=None)


def test_refresh_applies_what_the_writer_logged_since_the_last_look(tmp_path: Path) -> None:
    path = tmp_path / "store"
    writer = writer_at(path)
    writer.define_metric("load", 60, "avg", "load")
    writer.write(("load", "emmy/e0102"), T0, np.arange(10, dtype=np.float32))
    writer.flush()
    reader = metricstore.open(path, readonly=True)
    first = reader.recovery
    assert first is not None

    writer.write(("load", "emmy/e0102"), T0 + 600, [7.5, 8.5])  # appends
    writer.write(("load", "emmy/e0102"), T0, [-1.0])  # overwrites slot 0
    writer.define_metric("flops_any", 60, "sum", "GF/s")
    writer.write(("flops_any", "emmy/e0103"), T0, [100.0, 200.0])
    writer.flush()
    assert reader.extent() == (T0, T0 + 600)  # a fixed view until it refreshes
    assert [m.name for m in reader.metrics] == ["load"]

    report = reader.refresh()
    assert report.snapshot is None  # followed the log, did not open again
    # Three writes, a definition, and the record creating the new series.
    assert report.records == 5
    assert report.last_lsn == first.last_lsn + 5
    assert reader.metrics[1] == ("flops_any", 60, "sum", "GF/s")
    np.testing.assert_array_equal(
        reader.read(("load", "emmy/e0102"), T0, T0 + 720).values,
        np.array([-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7.5, 8.5], dtype=np.float32),
    )
    assert reader.read(("flops_any", "emmy")).unit == "GF/s"
    again = reader.refresh()  # nothing new
    assert (again.records, again.last_lsn) == (0, report.last_lsn)
    with metricstore.open(path, readonly=True) as fresh:
        assert_store_equal(reader, fresh)
    reader.close()
    writer.close()


def test_refresh_opens_again_when_checkpoints_removed_the_log_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "store"
    writer = writer_at(path)
    writer.define_metric("load", 60, "avg")
    writer.write(("load", "emmy/e0102"), T0, np.ones(5, dtype=np.float32))
    writer.flush()
    reader = metricstore.open(path, readonly=True)
    for i in range(3):  # each checkpoint starts a segment; older ones go
        writer.write(("load", "emmy/e0102"), T0 + 300 * (i + 1), np.full(5, i, np.float32))
        writer.checkpoint()
    writer.write(("load", "emmy/e0103"), T0, [4.0])
    writer.flush()
    report = reader.refresh()
    assert report.snapshot is not None and report.snapshot.endswith(".snap")
    assert report.last_lsn == writer.checkpoint().lsn
    with metricstore.open(path, readonly=True) as fresh:
        assert_store_equal(reader, fresh)
    assert reader.read(("load", "emmy/e0103"), T0, T0 + 60).values.tolist() == [4.0]
    reader.close()
    writer.close()


def test_refresh_follows_a_writer_that_keeps_writing(tmp_path: Path) -> None:
    path = tmp_path / "store"
    writer = writer_at(path)
    writer.define_metric("load", 10, "avg")
    handles = [writer.series("load", f"c/h{i}") for i in range(50)]
    writer.flush()
    reader = metricstore.open(path, readonly=True)
    stop = threading.Event()

    def write() -> None:
        for k in range(2000):
            writer.write_tick(T0 + 10 * k, handles, np.full(50, k, np.float32))
            if k % 500 == 499:
                writer.checkpoint()
        stop.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    while not stop.is_set():
        reader.refresh()  # a record half-appended at the end is left for later
        extent = reader.extent()
        if extent is not None:
            seen.append(extent[1])
            # Whatever it sees is whole: every tick it holds has all 50 series.
            last = reader.read_many([("load", "c/*")], extent[1] - 10, extent[1])
            assert not np.isnan(last.values).any()
    thread.join()
    writer.flush()
    reader.refresh()
    assert seen == sorted(seen)  # never goes back
    with metricstore.open(path, readonly=True) as fresh:
        assert_store_equal(reader, fresh)
    assert reader.extent() == (T0, T0 + 20_000)
    reader.close()
    writer.close()


def test_only_a_read_only_store_refreshes(tmp_path: Path) -> None:
    only = r"^refresh: only a store opened with readonly=True"
    with metricstore.open(tmp_path / "store") as writer, pytest.raises(ValueError, match=only):
        writer.refresh()
    with pytest.raises(ValueError, match=only):
        metricstore.Store().refresh()
    reader = metricstore.open(tmp_path / "store", readonly=True)
    reader.close()
    with pytest.raises(metricstore.ClosedError):
        reader.refresh()
