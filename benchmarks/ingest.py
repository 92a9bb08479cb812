"""Line-protocol ingest throughput (issue 4: at least 2 million lines/s on
one core).

A collector's view: HOSTS hosts with THREADS hardware threads each send
METRICS metrics per hardware thread every 10 s, one ``Store.ingest`` call
per tick (HOSTS x THREADS x METRICS lines, cc-backend's dialect with
cluster, hostname, type and type-id tags and second timestamps). The rate
counts every line of every call, parsing, series lookup and the write;
series are created in a first, untimed tick. Next to it, as the floor of
any Python-side handling, the time ``bytes.split(b"\\n")`` alone takes on
the same text.

    python benchmarks/ingest.py               # 20,000 lines per tick, 50 ticks
    python benchmarks/ingest.py --ticks 5     # quick run
"""

from __future__ import annotations

import argparse
import statistics
import time

import metricstore

T0 = 1_700_000_000
METRIC_NAMES = ("cpu_load", "flops_any", "mem_bw", "ipc", "clock")


def tick_text(hosts: int, threads: int, metrics: int, t: int) -> bytes:
    lines = [
        f"{m},cluster=emmy,hostname=e{h:04d},type=hwthread,type-id={c} "
        f"value={(h * 31 + c * 7 + t) % 1000 / 8} {t}"
        for h in range(hosts)
        for c in range(threads)
        for m in METRIC_NAMES[:metrics]
    ]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--metrics", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    per_tick = args.hosts * args.threads * args.metrics
    texts = [
        tick_text(args.hosts, args.threads, args.metrics, T0 + 10 * k)
        for k in range(args.ticks + 1)
    ]
    size = sum(len(t) for t in texts[1:])
    print(
        f"metricstore {metricstore.__version__}: {per_tick:,} lines per tick "
        f"({len(texts[1]) / per_tick:.0f} bytes per line), {args.ticks} ticks, "
        f"median of {args.repeat} runs\n"
    )
    rates, split_rates = [], []
    for _ in range(args.repeat):
        store = metricstore.Store()
        for name in METRIC_NAMES[: args.metrics]:
            store.define_metric(name, 10, "avg")
        first = store.ingest(texts[0])
        assert first.ok and first.series_created == per_tick, first.rejected[:3]
        start = time.perf_counter()
        for text in texts[1:]:
            report = store.ingest(text)
            assert report.accepted == per_tick, report.rejected[:3]
        rates.append(per_tick * args.ticks / (time.perf_counter() - start))
        assert store.stats()["samples"] == per_tick * (args.ticks + 1)
        store.close()
        start = time.perf_counter()
        for text in texts[1:]:
            text.split(b"\n")
        split_rates.append(per_tick * args.ticks / (time.perf_counter() - start))
    rate, split_rate = statistics.median(rates), statistics.median(split_rates)
    megabytes = rate * size / per_tick / args.ticks / 1e6
    split_label = "bytes.split(newline) alone"
    print(f"{'':34} {'lines/s':>14} {'MB/s':>8}")
    print(f"{'metricstore Store.ingest':34} {rate:14,.0f} {megabytes:8,.0f}")
    print(f"{split_label:34} {split_rate:14,.0f}")
    print(f"\ntarget: >= 2,000,000 lines/s on one core: {rate / 2e6:.2f}x the target")


if __name__ == "__main__":
    main()
