"""Opening a large store shows a progress bar when asked and stops on Ctrl-C
without changing a file, releasing the lock and losing nothing."""

from __future__ import annotations

import _thread
import hashlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricstore
from metricstore import _core
from metricstore import store as store_module


def _segment_lsn(name: str) -> int | None:
    if name.startswith("wal-") and name.endswith(".log"):
        return int(name[4:-4])
    return None


def _store_with_snapshot_and_log(path: Path) -> tuple[int, np.ndarray[Any, Any]]:
    """A store whose recovery loads a snapshot and replays a log after it;
    returns the bytes recovery reads (measured here, independently of the
    store) and the values of series ("m", "a") at 0, 1, 2, ..."""
    values = np.arange(300_000, dtype=np.float32) * 0.25
    store = metricstore.open(path, sync="none")
    store.define_metric("m", 1, "sum")
    store.write(("m", "a"), 0, values[:200_000])
    lsn = store.checkpoint().lsn
    store.write(("m", "a"), 200_000, values[200_000:])
    store.close(checkpoint=False)
    read = 0
    for file in path.iterdir():
        first = _segment_lsn(file.name)
        if file.name.endswith(".snap") or (first is not None and first > lsn):
            read += file.stat().st_size
    return read, values


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every tqdm bar made from now on (real bars: they print)."""
    tqdm_auto = pytest.importorskip("tqdm.auto")
    made: list[Any] = []

    class Recorded(tqdm_auto.tqdm):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tqdm_auto, "tqdm", Recorded)
    return made


@pytest.mark.parametrize("readonly", [False, True])
def test_progress_true_shows_a_bar_of_every_byte_recovery_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bars: list[Any], readonly: bool
) -> None:
    expected, values = _store_with_snapshot_and_log(tmp_path)
    assert _core.recovery_bytes(str(tmp_path)) == expected
    capsys.readouterr()
    with metricstore.open(tmp_path, progress=True, readonly=readonly) as store:
        np.testing.assert_array_equal(store.read(("m", "a"), 0, 300_000).values, values)
    [bar] = bars
    assert (bar.total, bar.n, bar.disable) == (expected, expected, True)  # closed
    size = bar.format_sizeof(expected, divisor=1024)
    err = capsys.readouterr().err
    assert "opened: 100%|" in err and f"| {size}/{size} [" in err, err


def test_progress_false_or_no_tqdm_or_no_terminal_prints_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bars: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, values = _store_with_snapshot_and_log(tmp_path)
    # Every store counts as large: the worker thread runs, only the bar is off.
    monkeypatch.setattr(store_module, "_BACKGROUND_BYTES", 0)
    capsys.readouterr()
    for progress in (False, None):  # None: stderr is captured, not a terminal
        with metricstore.open(tmp_path, progress=progress) as store:
            np.testing.assert_array_equal(store.read(("m", "a"), 0, 300_000).values, values)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed
    with metricstore.open(tmp_path, progress=True) as store:
        assert len(store) == 1
    assert bars == []
    assert capsys.readouterr().err == ""


def test_a_small_store_opens_on_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store_with_snapshot_and_log(tmp_path)

    def no_thread(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a small store started a thread to open")

    monkeypatch.setattr(store_module.threading, "Thread", no_thread)
    for progress in (False, None):
        with metricstore.open(tmp_path, progress=progress) as store:
            assert len(store) == 1


def test_progress_must_be_a_bool_or_none(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^progress: expected True, False or None, got 'yes'$"):
        metricstore.open(tmp_path, progress="yes")  # type: ignore[arg-type]
    assert not tmp_path.joinpath("STORE").exists()


SERIES = 2000
TICKS = 8000


def _tick_values(tick: int) -> np.ndarray[Any, Any]:
    return (np.arange(SERIES, dtype=np.float32) + np.float32(tick * 0.5)).astype(np.float32)


def _digests(path: Path) -> dict[str, str]:
    out = {}
    for file in sorted(path.iterdir()):
        with file.open("rb") as f:
            out[file.name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


@pytest.mark.usefixtures("ctrl_c_handled")
def test_ctrl_c_stops_a_long_open_changes_no_file_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long log (about 130 MB of ticks): replaying it takes about a second.
    options: dict[str, Any] = {
        "sync": "none",
        "checkpoint_interval_s": None,
        "checkpoint_log_bytes": None,
    }
    store = metricstore.open(tmp_path, **options)
    store.define_metric("m", 1, "sum")
    handles = np.array([store.series("m", ("c", f"s{i}")) for i in range(SERIES)], dtype=np.uint32)
    for tick in range(TICKS):
        store.write_tick(tick, handles, _tick_values(tick))
    store.close(checkpoint=False)
    assert _core.recovery_bytes(str(tmp_path)) > store_module._BACKGROUND_BYTES
    before = _digests(tmp_path)

    handles_made: list[_core.OpenProgress] = []
    make = _core.OpenProgress

    def recorded() -> _core.OpenProgress:
        handle = make()
        handles_made.append(handle)
        return handle

    monkeypatch.setattr(_core, "OpenProgress", recorded)

    def press_ctrl_c_once_replay_has_begun() -> None:
        deadline = time.monotonic() + 120  # a hang guard, not a speed bound
        while not (handles_made and handles_made[0].done > 0):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        _thread.interrupt_main()

    presser = threading.Thread(target=press_ctrl_c_once_replay_has_begun)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        metricstore.open(tmp_path, progress=False, **options)
    presser.join()
    [handle] = handles_made
    assert handle.cancelled and handle.phase == "log", handle
    assert 0 < handle.done < handle.total
    assert _digests(tmp_path) == before

    # The lock was released (a writer opens) and every tick is there.
    with metricstore.open(tmp_path, **options) as again:
        assert again.recovery is not None and again.recovery.records == 1 + SERIES + TICKS
        got = again.read_many(list(range(SERIES)), 0, TICKS).values
    expected = np.stack([_tick_values(t) for t in range(TICKS)], axis=1)
    np.testing.assert_array_equal(got, expected)
