"""Heavy store calls release the GIL: while one runs, another Python thread
keeps running at a good fraction of the speed it reaches while the caller
sleeps.

Method: a counter thread increments an integer in a tight Python loop. Its
rate during a heavy call is compared with its rate during a time.sleep of
the same length, measured in the same test. If the call held the GIL, the
counter could not run at all until it returned (CPython only switches
threads between bytecodes); the control test shows the probe sees exactly
that for a C call known to hold the GIL. The threshold (20% of the idle
rate) leaves room for a loaded two-core machine, where the heavy call and
the counter compete for the cores.

No assertion depends on how fast the machine is. While a probe runs, the
interpreter's switch interval is 1 ms (not 5), so a call that holds the GIL
lets the counter run for at most a few milliseconds of its length; a call
of 50 ms (MIN_SECONDS) already tells the two cases apart, and each heavy
call grows its work (measured, not guessed) until it takes TARGET_SECONDS,
up to a memory bound that a machine would need to be about ten times
faster than a quiet 2-core VM of today to outrun.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import pytest

import metricstore

# Heavy calls are sized to take about TARGET_SECONDS here; one that takes
# less than MIN_SECONDS is too short for the rates to be meaningful (CPython's
# switch interval is 5 ms) and fails the test as mis-sized.
TARGET_SECONDS = 0.3
MIN_SECONDS = 0.05
THRESHOLD = 0.2
SWITCH_INTERVAL = 0.001

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="free-threaded Python has no GIL to release",
)


class Counter:
    """A Python thread that counts as fast as the GIL lets it."""

    def __init__(self) -> None:
        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            self.count += 1

    def rate_during(self, action: Callable[[], T]) -> tuple[float, float, T]:
        """(increments per second, seconds, what ``action`` returned) while
        ``action`` runs in the calling thread."""
        before, start = self.count, time.perf_counter()
        returned = action()
        after, end = self.count, time.perf_counter()
        return (after - before) / (end - start), end - start, returned


@pytest.fixture
def counter() -> Iterator[Counter]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    probe = Counter()
    probe.thread.start()
    time.sleep(0.05)  # let it get going
    try:
        yield probe
    finally:
        probe.running = False
        probe.thread.join(timeout=10)
        sys.setswitchinterval(interval)
    assert not probe.thread.is_alive()


def assert_released_the_gil(counter: Counter, rate: float, seconds: float, what: str) -> None:
    """Compares the counter's ``rate`` during a heavy call of ``seconds`` with
    its rate while this thread sleeps as long."""
    assert seconds >= MIN_SECONDS, f"{what} took only {seconds:.3f} s; make it heavier"
    idle, _, _ = counter.rate_during(lambda: time.sleep(seconds))
    assert idle > 0, "the counter thread is not running"
    assert rate >= THRESHOLD * idle, (
        f"during {what} ({seconds:.2f} s) the counter ran at {rate:,.0f}/s, "
        f"{rate / idle:.0%} of its {idle:,.0f}/s while sleeping: the call holds the GIL"
    )


def test_the_probe_sees_a_call_that_holds_the_gil(counter: Counter) -> None:
    """Control: list.sort of floats is one C call that never releases the GIL,
    so the counter (nearly) stops while it runs."""
    data = np.random.default_rng(0).random(1_000_000).tolist()

    def sort_until_slow() -> None:
        deadline = time.perf_counter() + TARGET_SECONDS
        while time.perf_counter() < deadline:
            sorted(data)  # each call holds the GIL for ~0.1-0.3 s

    rate, seconds, _ = counter.rate_during(sort_until_slow)
    idle, _, _ = counter.rate_during(lambda: time.sleep(seconds))
    assert rate < THRESHOLD * idle, f"{rate / idle:.0%} of the idle rate while the GIL was held"


def aggregated_store(n_series: int, n_slots: int) -> metricstore.Store:
    store = metricstore.Store(unit="s")
    store.define_metric("load", 1, "sum")
    add_series(store, 0, n_series, n_slots)
    return store


def add_series(store: metricstore.Store, first: int, stop: int, n_slots: int) -> None:
    values = np.random.default_rng(first).random(n_slots, dtype=np.float32)
    for i in range(first, stop):
        store.write(("load", f"cluster/host{i:03d}"), 0, values)


def test_an_aggregated_read_many_releases_the_gil(counter: Counter) -> None:
    """read_many of the aggregate of 32 series x 1M slots, repeated as rows
    until one call is heavy enough."""
    n_slots = 1_000_000
    store = aggregated_store(32, n_slots)
    try:
        one_row = store.read(("load", "cluster"), 0, n_slots).values
        rows = 2
        while True:
            keys = [("load", "cluster")] * rows
            rate, seconds, result = counter.rate_during(
                lambda: store.read_many(keys, 0, n_slots)  # noqa: B023 (called at once)
            )
            if seconds >= TARGET_SECONDS or rows >= 256:
                break
            rows *= 2
        assert_released_the_gil(counter, rate, seconds, f"read_many of {rows} aggregated rows")
        # The call did the work it was timed on.
        assert result.values.shape == (rows, n_slots)
        assert np.array_equal(result.values[-1], one_row)
    finally:
        store.close()


def test_an_aggregated_read_releases_the_gil(counter: Counter) -> None:
    """One aggregated read over 1M slots of enough series (at most 320,
    1.25 GiB) to be heavy: the series needed are estimated from the time the
    first 32 take."""
    n_slots = 1_000_000
    n_series = 32
    store = aggregated_store(n_series, n_slots)
    try:
        while True:
            rate, seconds, result = counter.rate_during(
                lambda: store.read(("load", "cluster"), 0, n_slots)
            )
            if seconds >= TARGET_SECONDS or n_series >= 320:
                break
            wanted = int(n_series * TARGET_SECONDS / max(seconds, 1e-3)) + 1
            more = min(max(wanted, n_series + 32), 320)
            add_series(store, n_series, more, n_slots)
            n_series = more
        assert_released_the_gil(counter, rate, seconds, f"an aggregated read of {n_series} series")
        assert len(store) == n_series
        assert result.values.shape == (n_slots,)
        assert np.isfinite(result.values).all()
        # The counts of series per slot came from the same released call.
        assert result.counts.dtype == np.uint32 and (result.counts == n_series).all()
    finally:
        store.close()


def test_a_bulk_write_releases_the_gil(counter: Counter) -> None:
    """store.write of one big float32 array into fresh slots (float32 input,
    so nothing is converted in Python), grown until the call is heavy enough
    (at most 121.5 Mi values, 486 MiB)."""
    n = 16 * 1024 * 1024
    while True:
        values = np.arange(n, dtype=np.float32)
        store = metricstore.Store(unit="s")
        try:
            store.define_metric("bulk", 1, "sum")
            handle = store.series("bulk", "node")
            rate, seconds, _ = counter.rate_during(
                lambda: store.write(handle, 0, values)  # noqa: B023 (called at once)
            )
            # The call did the work it was timed on: every value is stored.
            assert store.stats()["samples"] == n
            tail = store.read(handle, n - 1000, n).values
            assert np.array_equal(tail, values[-1000:])
        finally:
            store.close()
        if seconds >= TARGET_SECONDS or n >= 120 * 1024 * 1024:
            break
        del values
        n = n * 3 // 2
    assert_released_the_gil(counter, rate, seconds, f"a write of {n:,} float32 values")
