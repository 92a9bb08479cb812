"""close() whose final checkpoint fails still closes the store: it raises the
checkpoint's error, but the log (which holds every acknowledged write) is
synced, the directory is released for the next writer, and later calls
raise ClosedError. A failed close used to leave the store open and locked.

The checkpoint is made to fail on the real file system by putting a
directory where its temporary snapshot file goes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore import _core


def last_lsn(path: Path) -> int:
    segments = _core.inspect(str(path))["segments"]
    lsns = [s["lsns"][1] for s in segments if s["lsns"] is not None]
    return max(lsns)


def test_a_close_whose_checkpoint_fails_closes_releases_and_loses_nothing(tmp_path: Path) -> None:
    values = np.array([1.5, -0.0, np.nan, 3e38], dtype=np.float32)
    store = metricstore.open(tmp_path, sync="always")
    store.define_metric("m", 10, "sum")
    store.write(("m", "c/a"), 0, values)
    store.write_tick(40, [("m", "c/a"), ("m", "c/b")], [7.0, 8.0])
    blocker = tmp_path / f"snapshot-{last_lsn(tmp_path):020d}.snap.tmp"
    blocker.mkdir()
    (blocker / "in-the-way").touch()

    with pytest.raises(metricstore.StoreIOError) as raised:
        store.close()
    assert blocker.name in str(raised.value)
    assert store.closed
    with pytest.raises(metricstore.ClosedError):
        store.write(("m", "c/a"), 50, [1.0])
    assert not list(tmp_path.glob("snapshot-*.snap"))

    shutil.rmtree(blocker)
    # `store` is still alive: the directory was released by the close.
    with metricstore.open(tmp_path) as again:
        assert again.recovery is not None and again.recovery.snapshot is None
        got = again.read(("m", "c/a"), 0, 50).values
        assert got.view(np.uint32).tolist() == [*values.view(np.uint32).tolist(), 0x40E00000]
        assert again.read(("m", "c/b"), 40, 50).values.tolist() == [8.0]
    assert store.closed
