"""What it costs a read-only reader to follow a live writer: reopening, or
``refresh()``.

A writer ticks SERIES series (one value each, 10 s apart) into a store
directory and never checkpoints, so the log grows by about 8 bytes a value;
once the log since the last snapshot holds each size in ``--log-mib``, a
read-only reader is opened ``--repeat`` times and the median is printed,
next to ``refresh()`` of a reader that had seen all but the last tick
(it reads the log segment it stopped in, 64 MiB at most, and what
follows), and a reopen after the writer then wrote a snapshot (which maps
the snapshot and replays nothing; the next size's log starts after it).
The ratio says what the log since the last snapshot costs a reader: the
writer's checkpoints (every 10 minutes or 512 MiB of log by default) bound
it.

    python benchmarks/reader_reopen.py                    # about 20 s
    python benchmarks/reader_reopen.py --log-mib 16 128 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import metricstore

T0 = 1_700_000_000
SERIES = 10_000
STEP = 10


def reopen_seconds(path: Path, repeat: int) -> tuple[float, int]:
    times = []
    records = 0
    for _ in range(repeat):
        began = time.perf_counter()
        with metricstore.open(path, readonly=True, progress=False) as reader:
            times.append(time.perf_counter() - began)
            assert reader.recovery is not None
            records = reader.recovery.records
    return statistics.median(times), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-mib", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    keys = [("load", f"c/h{i:05}") for i in range(SERIES)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        writer = metricstore.open(
            path, sync="none", checkpoint_interval_s=None, checkpoint_log_bytes=None
        )
        writer.define_metric("load", STEP, "avg", unit="load")
        handles = np.array([writer.series(*k) for k in keys], dtype=np.uint32)
        print(f"{SERIES:,} series ticking every {STEP} s; median of {args.repeat} reopens")
        print(
            f"{'log MiB':>8} {'records':>9} {'from log':>10} {'refresh':>10} {'snapshot':>10} "
            f"{'log/snapshot':>13}"
        )
        tick = 0
        for mib in sorted(args.log_mib):
            while sum(p.stat().st_size for p in path.glob("wal-*.log")) < mib << 20:
                values = rng.random(SERIES, dtype=np.float32)
                writer.write_tick(T0 + tick * STEP, handles, values)
                tick += 1
            writer.flush()
            from_log, records = reopen_seconds(path, args.repeat)
            refreshes = []
            for _ in range(args.repeat):
                with metricstore.open(path, readonly=True, progress=False) as reader:
                    values = rng.random(SERIES, dtype=np.float32)
                    writer.write_tick(T0 + tick * STEP, handles, values)
                    tick += 1
                    writer.flush()
                    began = time.perf_counter()
                    assert reader.refresh().records == 1
                    refreshes.append(time.perf_counter() - began)
            refresh = statistics.median(refreshes)
            # The next size's log starts after this snapshot.
            writer.checkpoint()
            from_snapshot, _ = reopen_seconds(path, args.repeat)
            print(
                f"{mib:>8} {records:>9,} {from_log * 1000:>8.1f} ms {refresh * 1000:>7.1f} ms "
                f"{from_snapshot * 1000:>7.1f} ms {from_log / from_snapshot:>12.0f}x"
            )
        writer.close()


if __name__ == "__main__":
    main()
