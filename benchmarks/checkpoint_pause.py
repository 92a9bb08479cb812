"""How long a checkpoint holds writers, on a store of many series (issue 20's
p99 target: the serve benchmark's store reaches about 464,000 series, and a
checkpoint that holds writers for 100 ms shows up in the p99 of a POST).

A store directory with --hosts x 128 hwthreads x 10 metrics series (the
default gives 464,640), a few ticks of each written through line protocol,
then --repeat checkpoints. For each: the time writers were held
(``CheckpointInfo.writers_held_seconds``), the whole checkpoint, and the
longest single write (one tick of one series, sync "interval") a thread
issued in a loop while the checkpoint ran, next to the longest write of the
same loop without a checkpoint (its peer, measured in the same run).

    python benchmarks/checkpoint_pause.py
    python benchmarks/checkpoint_pause.py --hosts 40 --repeat 3   # quick
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import metricstore

METRICS = [f"m{i}" for i in range(10)]
FREQUENCY = 60
T0 = 1_700_000_000 // 3600 * 3600


def fill(store: metricstore.Store, hosts: int, ticks: int) -> None:
    for tick in range(ticks):
        ts = T0 + tick * FREQUENCY
        for host in range(hosts):
            lines = [
                f"{m},cluster=c,hostname=n{host:05d},type=hwthread,type-id={hw} "
                f"value={(host + hw + tick) % 100} {ts}\n"
                for m in METRICS
                for hw in range(128)
            ]
            store.ingest("".join(lines))


def longest_write(
    store: metricstore.Store, during: threading.Event, done: threading.Event
) -> float:
    """Writes one value at a time until ``done``; the longest write seen
    while ``during`` was set."""
    series = store.series(METRICS[0], ("c", "n00000", "hwthread0"))
    longest = 0.0
    tick = 10_000
    while not done.is_set():
        began = time.perf_counter()
        store.write(series, T0 + tick * FREQUENCY, [float(tick % 100)])
        took = time.perf_counter() - began
        if during.is_set():
            longest = max(longest, took)
        tick += 1
    return longest


def timed_run(store: metricstore.Store, checkpoint: bool) -> tuple[float, float, float]:
    """(writers held s, checkpoint s, longest write s) for one checkpoint,
    or for the same time without one (zeros for the first two)."""
    during, done = threading.Event(), threading.Event()
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.append(longest_write(store, during, done)))
    thread.start()
    time.sleep(0.2)
    during.set()
    if checkpoint:
        info = store.checkpoint()
        held, seconds = info.writers_held_seconds, info.seconds
    else:
        time.sleep(0.5)
        held, seconds = 0.0, 0.0
    during.clear()
    done.set()
    thread.join()
    return held, seconds, result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=363, help="hosts of 1,280 series each")
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="checkpoint-pause-", dir=args.dir))
    try:
        store = metricstore.open(base / "store", sync="interval", checkpoint_interval_s=None)
        for m in METRICS:
            store.define_metric(m, FREQUENCY, "avg")
        fill(store, args.hosts, args.ticks)
        series = args.hosts * 128 * len(METRICS)
        held, whole, longest, quiet = [], [], [], []
        for _ in range(args.repeat):
            h, s, w = timed_run(store, True)
            held.append(h)
            whole.append(s)
            longest.append(w)
            quiet.append(timed_run(store, False)[2])
        store.close()
        ms = 1e3
        print(f"{series:,} series, median of {args.repeat} checkpoints:")
        print(f"  writers held {statistics.median(held) * ms:.1f} ms (max {max(held) * ms:.1f}) "
              f"of a {statistics.median(whole) * ms:.0f} ms checkpoint")  # fmt: skip
        print(f"  longest write during a checkpoint {statistics.median(longest) * ms:.1f} ms; "
              f"without one {statistics.median(quiet) * ms:.1f} ms")  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
