"""``python -m metricstore demo``: a real HPC job in, checked reads out.

Loads job 1403244 of cluster emmy (ClusterCockpit's public test data,
shipped in ``metricstore/data/cc-job-archive`` with its MIT license) into an
in-memory store, reads every node-level series back and every metric
aggregated over the cluster, compares each with the source JSON bit for bit,
and prints a summary. Exits 1 if anything differs.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .ccbackend import load_job
from .exceptions import AggregationError
from .store import Store

ARCHIVE = Path(__file__).parent / "data" / "cc-job-archive"
EMMY_JOB = ARCHIVE / "emmy" / "1403" / "244" / "1608923076"


def expected_series(job_dir: Path = EMMY_JOB) -> dict[tuple[str, str], NDArray[np.float32]]:
    """The job's node-level series as float32 (null -> NaN), by (metric, host)."""
    with gzip.open(job_dir / "data.json.gz", "rt") as f:
        data = json.load(f)
    return {
        (metric, s["hostname"]): np.array(s["data"], dtype=np.float64).astype(np.float32)
        for metric, scopes in data.items()
        for s in scopes["node"]["series"]
    }


def expected_aggregate(rows: list[NDArray[np.float32]], aggregation: str) -> NDArray[np.float32]:
    """The store's rule for combining rows (given in path-name order): a float64
    sum from -0.0 over the values present, divided by their count for "avg",
    rounded to float32 once; NaN where no row has a value."""
    total = np.full(rows[0].shape, -0.0)
    count = np.zeros(rows[0].shape, dtype=np.int64)
    for row in rows:
        present = ~np.isnan(row)
        total = np.where(present, total + row.astype(np.float64), total)
        count += present
    with np.errstate(invalid="ignore", divide="ignore"):
        combined = total / count if aggregation == "avg" else total
    return np.where(count > 0, combined, np.nan).astype(np.float32)


def _same_bits(a: NDArray[np.float32], b: NDArray[np.float32]) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def run() -> int:
    expected = expected_series()
    with Store(unit="s") as store:
        t0 = time.perf_counter()
        job = load_job(EMMY_JOB, store)
        load_seconds = time.perf_counter() - t0

        mismatches = []
        t0 = time.perf_counter()
        metrics = {m.name: m for m in store.metrics}
        by_metric: dict[str, list[NDArray[np.float32]]] = {}
        for (metric, host), values in sorted(expected.items()):
            step = metrics[metric].frequency
            first = (job.start + step // 2) // step * step  # the slot sample 0 landed in
            got = store.read((metric, (job.cluster, host)), first, first + len(values) * step)
            if not _same_bits(got.values, values):
                mismatches.append(f"{metric} at {job.cluster}/{host}")
            by_metric.setdefault(metric, []).append(values)

        print(
            f"job {job.job_id} on {job.cluster}: {len(job.hosts)} hosts, "
            f"{len(job.metrics)} metrics, {job.series} series, {job.samples:,} samples "
            f"({job.missing:,} missing)"
        )
        print(f"loaded in {load_seconds * 1000:.1f} ms; {store!r}\n")
        print(
            f"{'metric':12} {'agg':>4} {'step':>5} {'cluster mean':>14} {'cluster max':>12}  check"
        )
        for metric, rows in sorted(by_metric.items()):
            aggregation, step = metrics[metric].aggregation, metrics[metric].frequency
            first = (job.start + step // 2) // step * step
            if aggregation == "none":
                # Not in cluster.json: the store must refuse to combine it.
                try:
                    store.read((metric, job.cluster), first, first + step)
                except AggregationError:
                    print(f"{metric:12} {aggregation:>4} {step:>5} {'(per node only)':>27}  ok")
                    continue
                mismatches.append(f"{metric} aggregated despite aggregation none")
                continue
            got = store.read((metric, job.cluster), first, first + len(rows[0]) * step)
            want = expected_aggregate(rows, aggregation)
            ok = _same_bits(got.values, want)
            if not ok:
                mismatches.append(f"{metric} aggregated over {job.cluster}")
            print(
                f"{metric:12} {aggregation:>4} {step:>5} {np.nanmean(got.values):14.3f} "
                f"{np.nanmax(got.values):12.3f}  {'ok' if ok else 'DIFFERS'}"
            )
        read_seconds = time.perf_counter() - t0

    print(
        f"\nread back {len(expected)} node series and {len(by_metric)} cluster aggregates "
        f"in {read_seconds * 1000:.1f} ms"
    )
    if mismatches:
        print(f"{len(mismatches)} reads differ from the source JSON: {', '.join(mismatches)}")
        return 1
    print("every read equals the source JSON bit for bit")
    return 0
