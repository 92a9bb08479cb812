"""Cuts of old data (the memory limit's evictions, retention, drop_before)
are logged ops, so reopening repeats each cut exactly (docs/guarantees.md,
"Old data: retention and the memory limit"): the recovered store equals
the live one bit for bit, across series of different frequencies, from the
log alone or from a snapshot plus the log after it, and its stats() agree.

The counters stats() derives from the data (series, chunks, samples, data
bytes) always agree. The counters of calls and cuts (write_calls, drops,
dropped_chunks) are not persisted in snapshots: they agree when the whole
log is replayed. `evictions` counts what this process's memory limit did,
and the limit is an option of each open, not of the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import metricstore

CHUNK_BYTES = 4096  # 1,024 float32 slots
KEYS = [("fast", "c/h0"), ("fast", "c/h1"), ("slow", "c/h0"), ("slow", "c/h1/x")]
FREQUENCY = {"fast": 1, "slow": 10}
FROM_DATA = ("metrics", "series", "nodes", "chunks", "samples", "data_bytes")
FROM_LOG = ("write_calls", "samples_written", "drops", "dropped_chunks")


def define(store: metricstore.Store) -> None:
    store.define_metric("fast", FREQUENCY["fast"], "sum")
    store.define_metric("slow", FREQUENCY["slow"], "avg")


def state(store: metricstore.Store, start: int, stop: int) -> list[NDArray[np.uint32]]:
    return [store.read(key, start, stop).values.view(np.uint32).copy() for key in KEYS]


def assert_same_state(
    got: list[NDArray[np.uint32]], want: list[NDArray[np.uint32]], start: int
) -> None:
    for key, g, w in zip(KEYS, got, want, strict=True):
        differ = np.flatnonzero(g != w)
        assert differ.size == 0, (
            f"{key}: slot at tick {start + int(differ[0]) * FREQUENCY[key[0]]} holds "
            f"{g[differ[0]]:#010x} after recovery, {w[differ[0]]:#010x} live"
        )


def assert_same_stats(got: dict[str, Any], want: dict[str, Any], names: tuple[str, ...]) -> None:
    assert {n: got[n] for n in names} == {n: want[n] for n in names}


def marching_writes(store: metricstore.Store, rng: np.random.Generator, start: int, n: int) -> int:
    """Blocks, ticks and points moving forward in time from ``start``;
    returns where they ended."""
    cursor = start
    for i in range(n):
        cursor += int(rng.integers(200, 900))
        key = KEYS[i % len(KEYS)]
        if i % 3 == 0:
            values = rng.standard_normal(int(rng.integers(300, 1500))).astype(np.float32)
            store.write(key, cursor - FREQUENCY[key[0]] * len(values), values)
        elif i % 3 == 1:
            store.write_tick(cursor, KEYS, rng.standard_normal(len(KEYS)).astype(np.float32))
        else:
            ts = cursor - rng.integers(0, 3000, size=8)
            store.write_points([KEYS[j % len(KEYS)] for j in range(8)], ts,
                               rng.standard_normal(8).astype(np.float32))  # fmt: skip
    return cursor


@pytest.mark.parametrize("checkpoint", [False, True], ids=["log-only", "snapshot-and-log"])
def test_memory_limit_evictions_replay_exactly(tmp_path: Path, checkpoint: bool) -> None:
    rng = np.random.default_rng(7)
    store = metricstore.open(
        tmp_path, sync="interval", checkpoint_interval_s=None, checkpoint_log_bytes=None
    )
    define(store)
    store.set_memory_limit(12 * CHUNK_BYTES)
    cursor = marching_writes(store, rng, 0, 60)
    if checkpoint:
        store.checkpoint()
    cursor = marching_writes(store, rng, cursor, 60)
    store.drop_before(cursor - 40_000)
    cursor = marching_writes(store, rng, cursor, 30)
    live_stats = store.stats()
    assert live_stats["evictions"] >= 3, live_stats
    assert live_stats["drops"] == live_stats["evictions"] + 1
    assert live_stats["data_bytes"] <= 12 * CHUNK_BYTES
    live = state(store, -1000, cursor + 1000)
    # Something is left, and something old is gone.
    assert any((bits != 0x7FC00000).any() for bits in live)
    assert np.isnan(store.read(KEYS[0], 0, 20_000).values).all()
    store.close(checkpoint=False)

    with metricstore.open(tmp_path, checkpoint_interval_s=None) as again:
        assert again.recovery is not None
        assert (again.recovery.snapshot is not None) == checkpoint
        assert_same_state(state(again, -1000, cursor + 1000), live, -1000)
        stats = again.stats()
        assert_same_stats(stats, live_stats, FROM_DATA)
        if not checkpoint:
            assert_same_stats(stats, live_stats, FROM_LOG)
        assert stats["evictions"] == 0 and stats["memory_limit"] is None


def test_retention_cuts_replay_exactly_however_late_the_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    keep = 3600
    store = metricstore.open(
        tmp_path, sync="always", checkpoint_interval_s=None, checkpoint_log_bytes=None
    )
    define(store)
    now = int(time.time())
    start = now - 3 * keep
    # Old data, then retention: setting it cuts at once (one logged op).
    marching_writes(store, rng, start, 12)
    for key in KEYS:
        f = FREQUENCY[key[0]]
        store.write(key, start, np.arange(3 * keep // f, dtype=np.float32))
    store.set_retention(keep)
    cut_stats = store.stats()
    assert cut_stats["drops"] == 1
    # Data right after the cut: a replay that cut again by a later clock
    # would lose the first of it.
    for key in KEYS:
        store.write(key, now - keep, np.full(60, 7.5, dtype=np.float32))
    assert not np.isnan(store.read(KEYS[0], now - keep, now - keep + 1).values).any()
    assert np.isnan(store.read(KEYS[0], start, now - keep - 1).values).all()
    # Later writes, some before the window (the next retention cut comes
    # a minute after the last: keep / 10, at most 60 s).
    marching_writes(store, rng, now - keep - 2000, 20)
    live_stats = store.stats()
    live = state(store, start - 1000, now + 20_000)
    store.close(checkpoint=False)
    # Reopen a little later than the last cut, without retention.
    time.sleep(1.5)
    with metricstore.open(tmp_path, checkpoint_interval_s=None) as again:
        assert_same_state(state(again, start - 1000, now + 20_000), live, start - 1000)
        stats = again.stats()
        assert_same_stats(stats, live_stats, FROM_DATA + FROM_LOG)
