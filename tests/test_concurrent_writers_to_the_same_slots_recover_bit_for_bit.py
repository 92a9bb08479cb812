"""Several Python threads writing the *same* slots at once (blocks, ticks
and points): the log records one order, memory applies that order, and so
the store recovered from the log equals the live one bit for bit
(docs/guarantees.md, "When a write is acknowledged"), in `always` mode
(where an apply thread updates memory while writers sync) and in
`interval` mode."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import metricstore

THREADS = 4
CALLS = 600  # per thread
SLOTS = 2048  # every thread writes only slots 0..SLOTS of every series
METRICS = (("a", 1, "sum"), ("b", 10, "avg"))
KEYS = [("a", "c/h0"), ("a", "c/h1"), ("a", "c/h0/x"), ("b", "c/h0"), ("b", "c/h1")]
FREQUENCY = {name: f for name, f, _ in METRICS}


def value(thread: int, call: int, n: int) -> NDArray[np.float32]:
    """Values that name their call: thread * 2**22 + call * 4096 + index
    (exact in float32), with an occasional -0.0."""
    out = (thread * 2**22 + call * 4096 + np.arange(n)).astype(np.float32)
    if call % 17 == 0:
        out[0] = -0.0
    return out


def plan(handles: list[int], thread: int) -> list[tuple[str, tuple[object, ...]]]:
    """A thread's calls, made before the threads start so that they spend
    their time in the store, racing each other."""
    rng = np.random.default_rng(thread)
    calls: list[tuple[str, tuple[object, ...]]] = []
    for call in range(CALLS):
        kind = call % 3
        if kind == 0:
            i = int(rng.integers(len(handles)))
            f = FREQUENCY[KEYS[i][0]]
            # Long blocks: time spent in the store, where threads overlap.
            n = int(rng.integers(SLOTS // 4, SLOTS + 1))
            first = int(rng.integers(0, SLOTS - n + 1))
            calls.append(("write", (handles[i], first * f, value(thread, call, n))))
        elif kind == 1:
            # One timestamp on both grids: slot t of "a", about t / 10 of "b".
            ts = int(rng.integers(0, SLOTS))
            chosen = rng.permutation(len(handles))[: int(rng.integers(1, len(handles) + 1))]
            series = np.array([handles[i] for i in chosen], dtype=np.uint32)
            calls.append(("write_tick", (ts, series, value(thread, call, len(chosen)))))
        else:
            n = int(rng.integers(1, 64))
            chosen = rng.integers(len(handles), size=n)
            slots = rng.integers(0, SLOTS, size=n)
            timestamps = np.array(
                [int(s) * FREQUENCY[KEYS[int(i)][0]] for i, s in zip(chosen, slots, strict=True)],
                dtype=np.int64,
            )
            series = np.array([handles[int(i)] for i in chosen], dtype=np.uint32)
            calls.append(("write_points", (series, timestamps, value(thread, call, n))))
    return calls


def snapshot_bits(store: metricstore.Store) -> list[NDArray[np.uint32]]:
    return [
        store.read(key, 0, SLOTS * FREQUENCY[key[0]]).values.view(np.uint32).copy() for key in KEYS
    ]


@pytest.mark.parametrize("sync", ["always", "interval"])
def test_threads_writing_the_same_slots_recover_bit_for_bit(tmp_path: Path, sync: str) -> None:
    store = metricstore.open(
        tmp_path,
        sync=sync,
        sync_interval_ms=5,
        checkpoint_interval_s=None,
        checkpoint_log_bytes=None,
    )
    for name, frequency, aggregation in METRICS:
        store.define_metric(name, frequency, aggregation)
    handles = [store.series(*key) for key in KEYS]
    plans = [plan(handles, t) for t in range(THREADS)]
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            start.wait()
            for method, args in plans[thread]:
                getattr(store, method)(*args)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    live = snapshot_bits(store)
    live_samples = store.stats()["samples"]
    # The slots really were contended: their final values come from
    # several threads.
    writers = {int(v) >> 22 for bits in live for v in bits.view(np.float32) if v == v}
    assert len(writers) > 1, writers
    # No final snapshot: reopening replays the whole log.
    store.close(checkpoint=False)

    with metricstore.open(tmp_path, checkpoint_interval_s=None) as again:
        report = again.recovery
        assert report is not None
        assert report.records == len(METRICS) + len(KEYS) + THREADS * CALLS
        recovered = snapshot_bits(again)
        for key, want, got in zip(KEYS, live, recovered, strict=True):
            differ = np.flatnonzero(want != got)
            assert differ.size == 0, (
                f"{key}: slot {differ[0]} holds {got[differ[0]]:#010x} after recovery, "
                f"{want[differ[0]]:#010x} live"
            )
        assert again.stats()["samples"] == live_samples
