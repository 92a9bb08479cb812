"""The writer for the kill -9 tests, run in a child process by
``metricstore.testing.kill_writer``: it writes a deterministic sequence to a
store and acknowledges ``(thread, i)`` after each write call returns, so
the parent knows exactly what was acknowledged when it kills the child.

The ``kind`` of writes is "block" (bulk writes), "points" (points calls)
or "checkpoint" (bulk writes while another thread takes snapshots without
pause).

Write i of thread t goes to series (t, i % SERIES) at its own slots, so every
write is distinguishable: ``expected(t, i)`` gives its series, first slot and
values. Each run continues each thread's sequence after the writes already
in the store, so a store killed many times holds one growing sequence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

SERIES = 4
BLOCK = 64
FREQUENCY = 10


def key(thread: int, series: int) -> tuple[str, str]:
    return ("m", f"t{thread}/s{series}")


def expected(thread: int, i: int) -> tuple[tuple[str, str], int, np.ndarray]:
    """(series key, first slot, values) of write i of a thread."""
    first = (i // SERIES) * BLOCK
    values = np.arange(BLOCK, dtype=np.float32) + np.float32(i * 1000 + thread * 1e6)
    return key(thread, i % SERIES), first, values


def present_prefix(store: Any, thread: int) -> int:
    """How many of a thread's writes the store holds, checking that each is
    wholly present and that they form a prefix (the next writes are absent)."""
    count = 0
    while read_write(store, thread, count) is not None:
        count += 1
    for later in range(count, count + 2 * SERIES):
        got = read_write(store, thread, later)
        assert got is None, f"write {later} of thread {thread} is present after a gap"
    return count


def read_write(store: Any, thread: int, i: int) -> np.ndarray | None:
    """Write i of a thread as stored: None if absent, else its values, which
    must equal what was written bit for bit (no half-applied write)."""
    series_key, first, values = expected(thread, i)
    if store.find_series(*series_key) is None:
        return None
    got = store.read(series_key, first * FREQUENCY, (first + BLOCK) * FREQUENCY).values
    if np.isnan(got).all():
        return None
    if not np.array_equal(got.view(np.uint32), values.view(np.uint32)):
        raise AssertionError(f"write {i} of thread {thread} is torn or wrong: {got}")
    return got


def write_sequence(store: Any, ack: Callable[[object], None], kind: str, threads: int) -> None:
    """Writes each thread's sequence without end, acknowledging ``(thread, i)``."""
    store.define_metric("m", FREQUENCY, "sum")
    handles = {(t, s): store.series(*key(t, s)) for t in range(threads) for s in range(SERIES)}

    starts = {t: present_prefix(store, t) for t in range(threads)}
    if kind == "checkpoint":
        # Snapshots all the time, so kills land inside them too.
        def checkpointer() -> None:
            while True:
                store.checkpoint()

        threading.Thread(target=checkpointer, daemon=True).start()

    def writer(thread: int) -> None:
        for i in range(starts[thread], 10**9):
            _, first, values = expected(thread, i)
            handle = handles[thread, i % SERIES]
            if kind in ("block", "checkpoint"):
                store.write(handle, first * FREQUENCY, values)
            else:  # one tick per slot would be slow; a points call is one op too
                slots = np.arange(first, first + BLOCK, dtype=np.int64) * FREQUENCY
                store.write_points(np.full(BLOCK, handle), slots, values)
            ack((thread, i))

    workers = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
