"""A writer killed with SIGKILL at a random moment loses nothing it had
acknowledged, in every sync mode: reopening recovers every acknowledged
write, no write half-applied, and the writes present are an exact prefix
of each thread's sequence.

CI runs 50 kills per case; METRICSTORE_KILL_CYCLES raises it.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

import metricstore
from metricstore.testing import kill_writer

sys.path.insert(0, str(Path(__file__).parent))
import crash_child

CYCLES = int(os.environ.get("METRICSTORE_KILL_CYCLES", "50"))


def run_and_kill(
    path: Path, sync: str, kind: str, threads: int, acks_before_kill: int
) -> dict[int, int]:
    """Starts a writer and kills it after ``acks_before_kill`` acknowledgements;
    returns, per thread, one past the last write index it acknowledged.
    kill_writer raises if the writer died any other way."""
    crash = kill_writer(
        path,
        crash_child.write_sequence,
        after_acks=acks_before_kill,
        sync=sync,
        args=(kind, threads),
        open_options={"sync_interval_ms": 5},
    )
    assert not crash.finished, crash.output
    acked = dict.fromkeys(range(threads), 0)
    for thread, i in crash.acknowledged:
        acked[thread] = max(acked[thread], i + 1)
    return acked


@pytest.mark.parametrize(
    "sync, kind, threads",
    [
        ("interval", "block", 1),
        ("always", "points", 1),
        ("none", "block", 2),
        ("interval", "checkpoint", 1),
    ],
    ids=["interval-blocks", "always-points", "none-two-threads", "during-checkpoints"],
)
def test_kill9_recovers_every_acknowledged_write_as_an_exact_prefix(
    tmp_path: Path, sync: str, kind: str, threads: int
) -> None:
    rng = random.Random(f"{sync}-{kind}-{threads}")
    path = tmp_path / "store"
    present = dict.fromkeys(range(threads), 0)
    for cycle in range(CYCLES):
        acked = run_and_kill(path, sync, kind, threads, rng.randint(1, 40))
        with metricstore.open(path) as store:  # closing writes a snapshot
            report = store.recovery
            assert report is not None and report.stopped is None
            for thread in range(threads):
                before = present[thread]
                present[thread] = crash_child.present_prefix(store, thread)
                # Acknowledged indices are absolute: the child continued the
                # sequence after the writes already present.
                assert present[thread] >= acked[thread], (
                    f"cycle {cycle}: thread {thread} acknowledged write "
                    f"{acked[thread] - 1}, only {present[thread]} writes recovered"
                )
                assert present[thread] >= before, f"cycle {cycle}: writes vanished"
                # At most the one write in flight when the kill landed is extra.
                assert present[thread] <= max(acked[thread], before) + 1
    assert all(count > 0 for count in present.values())
