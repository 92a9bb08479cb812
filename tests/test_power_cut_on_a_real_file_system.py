"""Power cuts on a real file system: each sync mode keeps what
docs/guarantees.md says it keeps, on real files, through the real system
calls (write, fdatasync, fsync of the directory, rename).

The store lives on a FUSE file system (tests/powercut_fs.py) that keeps
each file's data as of its last fsync and each directory's entries as of
the last fsync of the directory apart from what was only written. A
writer process is killed with SIGKILL, then the file system is unmounted,
which drops everything never synced (the power cut), and mounted again;
the store is reopened and must hold an exact prefix of the writes with:
- `always`: every acknowledged write;
- `interval`: every write acknowledged before a background sync completed
  (the writer waits until the file system has seen one);
- `none`: every write acknowledged before the last `flush()`; and here the
  writes after it are really lost, which shows the cut dropped unsynced
  data (else this test would check nothing).

Skipped where FUSE cannot be used: no /dev/fuse, no libfuse 3 or 2, no
mfusepy (the `test` extra installs it), or mounting is not permitted.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricstore
from metricstore.testing import kill_writer

DAEMON = Path(__file__).with_name("powercut_fs.py")
FREQUENCY = 10
BLOCK = 64
SERIES = ("m", "c/h")


def fuse_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "FUSE tests run on Linux only"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"cannot open /dev/fuse: {e}"
    if ctypes.util.find_library("fuse3") is None and ctypes.util.find_library("fuse") is None:
        return "no libfuse (apt-get install fuse3)"
    if importlib.util.find_spec("mfusepy") is None:
        return "mfusepy is not installed (pip install '.[test]')"
    if shutil.which("fusermount3") is None and shutil.which("umount") is None:
        return "neither fusermount3 nor umount to unmount with"
    return None


pytestmark = pytest.mark.skipif(fuse_unavailable() is not None, reason=str(fuse_unavailable()))


class PowerCutDisk:
    """The FUSE file system at ``mountpoint``, whose durable state lives in
    ``state`` between mounts."""

    def __init__(self, where: Path) -> None:
        self.mountpoint = where / "mnt"
        self.mountpoint.mkdir()
        self.state = where / "disk.pickle"
        self.log = where / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    @property
    def syncs(self) -> Path:
        return Path(str(self.state) + ".syncs")

    def mount(self) -> None:
        with open(self.log, "ab") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, str(DAEMON), str(self.mountpoint), str(self.state)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while not os.path.ismount(self.mountpoint):
            if self.daemon.poll() is not None:
                pytest.skip(f"cannot mount a FUSE file system here: {self.log.read_text()}")
            if time.monotonic() > deadline:
                self.daemon.kill()
                pytest.fail(f"the FUSE file system did not mount in 60 s: {self.log.read_text()}")
            time.sleep(0.02)

    def cut_power(self) -> None:
        """Unmounts: the file system keeps only what was synced."""
        assert self.daemon is not None
        unmount, lazy = (
            (["fusermount3", "-u"], "-z") if shutil.which("fusermount3") else (["umount"], "-l")
        )
        for _ in range(100):
            if subprocess.run([*unmount, self.mountpoint], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)  # the killed writer's files may still be closing
        else:
            subprocess.run([*unmount, lazy, self.mountpoint], check=True)
        self.daemon.wait(timeout=60)
        assert self.daemon.returncode == 0, self.log.read_text()
        self.daemon = None


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[PowerCutDisk]:
    disk = PowerCutDisk(tmp_path)
    disk.mount()
    try:
        yield disk
    finally:
        if disk.daemon is not None:
            disk.cut_power()


def block(i: int) -> np.ndarray:
    return np.arange(BLOCK, dtype=np.float32) + np.float32(i * 1000)


def write_blocks(
    store: Any, ack: Callable[[object], None], mode: str, before: int, syncs: str
) -> None:
    """The writer: ``before`` blocks, then the mode's barrier (always:
    none; interval: waits until the file system saw a sync of the log after
    them; none: flush()), acknowledged as ("barrier",), then blocks without
    end until killed."""

    def count() -> int:
        try:
            with open(syncs) as f:
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    store.define_metric(SERIES[0], FREQUENCY, "sum")
    for i in range(10**9):
        if i == before:
            if mode == "interval":
                seen = count()
                while count() <= seen:
                    time.sleep(0.001)
            elif mode == "none":
                store.flush()
            ack(("barrier",))
        store.write(SERIES, i * BLOCK * FREQUENCY, block(i))
        ack(("write", i))


def present_prefix(store: metricstore.Store, upto: int) -> int:
    """How many leading blocks are present, each whole and exact, none
    after a missing one."""
    if store.find_series(*SERIES) is None:  # not even its creation survived
        return 0
    stop = upto * BLOCK * FREQUENCY
    values = store.read(SERIES, 0, stop).values.reshape(upto, BLOCK)
    present = ~np.isnan(values).all(axis=1)
    n = int(present.sum())
    assert present[:n].all() and not present[n:].any(), f"not a prefix: {present}"
    for i in range(n):
        assert np.array_equal(values[i].view(np.uint32), block(i).view(np.uint32)), i
    return n


@pytest.mark.parametrize("sync", ["always", "interval", "none"])
def test_a_power_cut_keeps_what_each_sync_mode_promises(disk: PowerCutDisk, sync: str) -> None:
    before, after = 40, 30
    path = disk.mountpoint / "store"
    crash = kill_writer(
        path,
        write_blocks,
        after_acks=before + 1 + after,
        sync=sync,
        args=(sync, before, str(disk.syncs)),
        open_options={
            "sync_interval_ms": 20,
            "checkpoint_interval_s": None,
            "checkpoint_log_bytes": None,
        },
    )
    acked = 1 + max(a[1] for a in crash.acknowledged if a[0] == "write")
    assert acked >= before + after, crash.output
    disk.cut_power()
    disk.mount()
    with metricstore.open(path, sync="none", checkpoint_interval_s=None) as store:
        recovered = present_prefix(store, acked + 2)
        store.close(checkpoint=False)
    must_keep = acked if sync == "always" else before
    assert must_keep <= recovered <= acked + 1, (
        f"{sync}: {recovered} writes recovered, {acked} acknowledged, "
        f"{must_keep} promised to survive the power cut"
    )
    if sync == "none":
        assert recovered == before, (
            f"the power cut kept {recovered - before} writes never synced: the file system "
            "under test does not drop unsynced data"
        )
