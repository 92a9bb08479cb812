"""One Store shared by four Python threads: concurrent writers of disjoint
slots (through blocks, ticks and points, several threads per series) and
concurrent readers never see a value other than NaN or the slot's final
value, and the final state equals the model bit for bit. Concurrent
define_metric/series calls agree on one handle per (metric, path)."""

from __future__ import annotations

import random
import threading
import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import metricstore

N_THREADS = 4
METRICS = (("a", 1, "sum"), ("b", 10, "avg"))
FREQUENCY = {name: f for name, f, _ in METRICS}
AGGREGATION = {name: agg for name, _, agg in METRICS}
# Every thread writes its own time window of these series.
SHARED = (
    ("a", "c/h0/x"),
    ("a", "c/h0/y"),
    ("a", "c/h1/x"),
    ("b", "c/h0/x"),
    ("b", "c/h1"),
    ("b", "c/h1/z"),  # hidden below c/h1 in path reads of "c"
)
# Only thread t writes these, over the whole time domain.
OWN = tuple((metric, f"c/t{t}/{metric}") for t in range(N_THREADS) for metric in ("a", "b"))
WINDOW = 1200  # ticks per thread in the shared series; a multiple of every frequency
DOMAIN = N_THREADS * WINDOW
CANONICAL_NAN = np.uint32(0x7FC00000)


def final_values(handle: int, slots: NDArray[np.int64]) -> NDArray[np.float32]:
    """The value each slot ends with: distinct, exact in float32, some NaN
    (written as NaN) and some -0.0."""
    r = (handle * 2654435761 + slots * 40503) % 1000003
    values = ((r - 500000) / 64).astype(np.float32)
    values[r % 37 == 0] = -0.0
    values[r % 11 == 0] = np.nan
    return values


def bits(values: NDArray[np.float32]) -> NDArray[np.uint32]:
    out = values.view(np.uint32).copy()
    out[np.isnan(values)] = CANONICAL_NAN
    return out


class Plan:
    """What one thread writes: a shuffled list of calls, and the slots they cover."""

    def __init__(self) -> None:
        self.calls: list[Callable[[metricstore.Store], None]] = []
        self.written: dict[int, set[int]] = defaultdict(set)


def make_plans(
    handles: dict[tuple[str, str], int], seed: int
) -> tuple[list[Plan], dict[int, NDArray[np.float32]]]:
    """Splits each thread's slots into blocks, ticks, points and never-written
    gaps, some written twice; returns the plans and each series' expected
    values over the slots 0 .. DOMAIN / f."""
    rng = random.Random(seed)
    plans = [Plan() for _ in range(N_THREADS)]
    for t, plan in enumerate(plans):
        regions = [(handles[k], FREQUENCY[k[0]], t * WINDOW, (t + 1) * WINDOW) for k in SHARED]
        regions += [
            (handles[k], FREQUENCY[k[0]], 0, DOMAIN) for k in OWN if k[1].startswith(f"c/t{t}/")
        ]
        ticks: dict[int, list[tuple[int, float]]] = defaultdict(list)  # ts -> [(handle, value)]
        points: list[tuple[int, int, float]] = []
        for handle, f, begin, end in regions:
            k = begin // f
            while k < end // f:
                n = min(rng.randint(1, 120), end // f - k)
                slots = np.arange(k, k + n, dtype=np.int64)
                values = final_values(handle, slots)
                kind = rng.choice(("block", "block", "tick", "points", "gap"))
                for _ in range(2 if rng.random() < 0.2 else 1):  # some slots twice
                    if kind == "block":
                        start = k * f + rng.randint(-(f // 2), (f - 1) // 2)
                        plan.calls.append(lambda s, h=handle, a=start, v=values: s.write(h, a, v))
                    elif kind == "tick":
                        for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
                            ticks[slot * f].append((handle, value))
                    elif kind == "points":
                        for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
                            jitter = rng.randint(-(f // 2), (f - 1) // 2)
                            points.append((handle, slot * f + jitter, value))
                if kind != "gap":
                    plan.written[handle].update(slots.tolist())
                k += n
        for ts, pairs in ticks.items():
            # One tick names each series once; a pair written twice goes in two ticks.
            batches: list[dict[int, float]] = []
            for handle, value in pairs:
                batch = next((b for b in batches if handle not in b), None)
                if batch is None:
                    batch = {}
                    batches.append(batch)
                batch[handle] = value
            for batch in batches:
                hs = list(batch)
                vs = np.array(list(batch.values()), dtype=np.float32)
                plan.calls.append(lambda s, ts=ts, hs=hs, vs=vs: s.write_tick(ts, hs, vs))
        rng.shuffle(points)
        for i in range(0, len(points), 40):
            batch = points[i : i + 40]
            hs = [h for h, _, _ in batch]
            tss = [ts for _, ts, _ in batch]
            vs = np.array([v for _, _, v in batch], dtype=np.float32)
            plan.calls.append(lambda s, hs=hs, tss=tss, vs=vs: s.write_points(hs, tss, vs))
        rng.shuffle(plan.calls)

    expected: dict[int, NDArray[np.float32]] = {}
    for (metric, _), handle in handles.items():
        slots = np.arange(DOMAIN // FREQUENCY[metric], dtype=np.int64)
        values = np.full(len(slots), np.nan, dtype=np.float32)
        for plan in plans:
            mine = np.array(sorted(plan.written.get(handle, ())), dtype=np.int64)
            values[mine] = final_values(handle, mine)
        expected[handle] = values
    for a, b in [(p, q) for i, p in enumerate(plans) for q in plans[i + 1 :]]:
        for handle in a.written:
            assert not a.written[handle] & b.written.get(handle, set()), "plans overlap"
    return plans, expected


def new_store() -> tuple[metricstore.Store, dict[tuple[str, str], int]]:
    store = metricstore.Store(unit="s")
    for name, frequency, aggregation in METRICS:
        store.define_metric(name, frequency, aggregation)
    return store, {key: store.series(*key) for key in SHARED + OWN}


def run_threads(work: Callable[[int, threading.Barrier], None]) -> None:
    """Runs work(t, barrier) in N_THREADS threads and re-raises any failure."""
    barrier = threading.Barrier(N_THREADS, timeout=60)
    errors: list[str] = []

    def guarded(t: int) -> None:
        try:
            work(t, barrier)
        except BaseException:
            errors.append(f"thread {t}:\n{traceback.format_exc()}")
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, "\n".join(errors)


def path_aggregate(
    handles: dict[tuple[str, str], int],
    expected: dict[int, NDArray[np.float32]],
    metric: str,
    path: tuple[str, ...],
) -> NDArray[np.float32]:
    """The model of a path read over the whole domain: the nearest series
    below, in path-name order, summed in float64 from -0.0, NaN skipped."""
    paths = {tuple(p.split("/")): h for (m, p), h in handles.items() if m == metric}

    def sources(node: tuple[str, ...]) -> list[int]:
        if node in paths:
            return [paths[node]]
        below = [p for p in paths if len(p) > len(node) and p[: len(node)] == node]
        children = sorted({p[len(node)] for p in below})
        return [h for child in children for h in sources((*node, child))]

    found = sources(path)
    if path in paths:
        return expected[found[0]]
    count = DOMAIN // FREQUENCY[metric]
    total = np.full(count, -0.0)
    n = np.zeros(count, dtype=np.int64)
    for handle in found:
        values = expected[handle].astype(np.float64)
        present = ~np.isnan(values)
        total[present] += values[present]
        n += present
    if AGGREGATION[metric] == "avg":
        total = np.divide(total, n, out=np.full(count, np.nan), where=n > 0)
    total[n == 0] = np.nan
    return total.astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_writers_and_readers_see_only_nan_or_final_values(seed: int) -> None:
    store, handles = new_store()
    plans, expected = make_plans(handles, seed)
    by_frequency: dict[int, list[int]] = defaultdict(list)
    for (metric, _), h in handles.items():
        by_frequency[FREQUENCY[metric]].append(h)
    frequency_of = {h: FREQUENCY[m] for (m, _), h in handles.items()}
    final_samples = sum(int((~np.isnan(v)).sum()) for v in expected.values())
    reads_checked = [0] * N_THREADS

    def check(handle_rows: list[int], values: NDArray[np.float32], first: int) -> None:
        for row, h in zip(np.atleast_2d(values), handle_rows, strict=True):
            want = expected[h][max(first, 0) : max(first + len(row), 0)]
            pad = max(0, -first)
            seen = row[pad : pad + len(want)]
            ok = np.isnan(seen) | (bits(seen) == bits(want))
            ok_outside = np.isnan(row[:pad]).all() and np.isnan(row[pad + len(want) :]).all()
            assert ok.all() and ok_outside, (
                f"series {h}, slots from {first}: saw {seen[~ok][:5]} where the final values "
                f"are {want[~ok][:5]}"
            )

    def work(t: int, barrier: threading.Barrier) -> None:
        rng = random.Random(seed * 100 + t)
        samples_seen = 0
        barrier.wait()
        for call in plans[t].calls:
            call(store)
            f = rng.choice(sorted(by_frequency))
            start = rng.randint(-5 * f, DOMAIN)
            stop = start + rng.randint(0, 400) * f
            if rng.random() < 0.7:
                h = rng.choice(by_frequency[f])
                result = store.read(h, start, stop)
                check([h], result.values, result.start // f)
            else:
                rows = rng.sample(by_frequency[f], rng.randint(1, len(by_frequency[f])))
                result = store.read_many(rows, start, stop)
                check(rows, result.values, result.start // f)
            reads_checked[t] += 1
            if rng.random() < 0.05:
                samples = store.stats()["samples"]
                # Writes only turn NaN into final values, so the count only grows.
                assert samples_seen <= samples <= final_samples
                samples_seen = samples

    run_threads(work)

    assert all(n == len(plans[t].calls) for t, n in enumerate(reads_checked))
    for (metric, path), h in handles.items():
        result = store.read(h, 0, DOMAIN)
        assert (result.start, result.step) == (0, frequency_of[h])
        assert np.array_equal(bits(result.values), bits(expected[h])), (metric, path)
    assert store.stats()["samples"] == final_samples
    for metric in FREQUENCY:
        for path in [("c",), ("c", "h0"), ("c", "h1")]:
            result = store.read((metric, path), 0, DOMAIN)
            want = path_aggregate(handles, expected, metric, path)
            assert np.array_equal(bits(result.values), bits(want)), (metric, path)


DEFINITIONS = [("m0", 1, "sum"), ("m1", 60, "avg"), ("m2", 7, "none")]
KEYS = [
    (name, f"cluster/host{i}" + (f"/cpu{j}" if j >= 0 else ""))
    for name, _, _ in DEFINITIONS
    for i in range(5)
    for j in range(-1, 4)
]


def create_concurrently(store: metricstore.Store, round_: int) -> list[dict[tuple[str, str], int]]:
    """Each thread defines every metric and asks for every key, in its own order."""
    got: list[dict[tuple[str, str], int]] = [{} for _ in range(N_THREADS)]

    def work(t: int, barrier: threading.Barrier) -> None:
        rng = random.Random(round_ * N_THREADS + t)
        order = rng.sample(KEYS, len(KEYS))
        definitions = rng.sample(DEFINITIONS, len(DEFINITIONS))
        barrier.wait()
        for name, frequency, aggregation in definitions:
            store.define_metric(name, frequency, aggregation)
        for metric, path in order:
            form: Any = path if rng.random() < 0.5 else tuple(path.split("/"))
            got[t][metric, path] = store.series(metric, form)

    run_threads(work)
    return got


@pytest.mark.parametrize("round_", range(20))
def test_concurrent_define_metric_and_series_give_one_handle_per_key(round_: int) -> None:
    store = metricstore.Store(unit="s")
    got = create_concurrently(store, round_)
    assert all(g == got[0] for g in got), "threads got different handles for one key"
    handles = got[0]
    assert len(set(handles.values())) == len(KEYS), "two keys share a handle"
    assert len(store) == len(KEYS), "a key was created twice"
    assert sorted(store.metrics) == sorted(metricstore.Metric(*d) for d in DEFINITIONS)
    for (metric, path), h in handles.items():
        assert store.series_key(h) == (metric, tuple(path.split("/")))
        assert store.find_series(metric, path) == h
