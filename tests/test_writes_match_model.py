"""Random sequences of block, tick and point writes read back exactly as a
plain dict model predicts: every slot, every read range, every aggregated
path and the stored-sample count, compared as float32 bits.

The model is the contract, written out independently of the engine:

- a sample at ``ts`` of a series of frequency ``f`` lands in slot
  ``(ts + f // 2) // f`` (ties go to the later slot);
- a read of ``[start, stop)`` covers slots ``ceil(start / f) .. ceil(stop / f) - 1``;
- later writes win, NaN means missing;
- a (metric, path) read with no series at the path sums (or averages) the
  nearest series below it, in path-name order, in float64 starting from
  -0.0, NaN skipped, and rounds the result to float32.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import metricstore

Path = tuple[str, ...]
F32Array = NDArray[np.float32]

METRICS = (("fast", 1, "sum"), ("mid", 7, "avg"), ("slow", 60, "sum"))
FREQUENCY = {name: f for name, f, _ in METRICS}
AGGREGATION = {name: agg for name, _, agg in METRICS}

# Series may live at any of these paths. "host1" holds series at host level
# that hide "host1/cpu*"; "host10" sorts before "host2" by name; "cluster"
# itself (rarely drawn) hides everything below it.
UNIVERSE: tuple[Path, ...] = tuple(
    tuple(p.split("/"))
    for p in (
        "cluster",
        "cluster/host0/cpu0",
        "cluster/host0/cpu1",
        "cluster/host0/cpu10",
        "cluster/host1",
        "cluster/host1/cpu0",
        "cluster/host1/cpu1",
        "cluster/host2/cpu0",
        "cluster/host10/cpu2",
        "cluster/host10/cpu3",
    )
)

# Multiples of lcm(7, 60) = 420, so offsets that are ties on the grid stay ties.
EPOCHS = (0, 420 * 3_830_769, -420 * 2_380_952_381)

# The float64 accumulator of an aggregate starts at -0.0 (docs/decisions.md),
# the IEEE additive identity: -0.0 + x == x for every x, so a slot with one
# value combines to exactly that value, sign of zero included.
SUM_START = -0.0

FLT_MAX = float(np.finfo(np.float32).max)
FLT_TINY = float(np.finfo(np.float32).smallest_subnormal)
SPECIAL_F32 = (
    math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    FLT_MAX,
    -FLT_MAX,
    FLT_TINY,
    -FLT_TINY,
    16777216.0,
    2.0**40,
    -(2.0**40),
    2.0**-20,
)
# float64 inputs are rounded to float32: -1e-46 becomes -0.0, 16777217 becomes
# 16777216, 0.1 becomes the nearest float32.
SPECIAL_F64 = (math.nan, math.inf, -math.inf, -0.0, 0.1, -1e-46, 1e-46, 16777217.0, 3e38, -3e38)

f32_values = st.one_of(st.sampled_from(SPECIAL_F32), st.floats(width=32))
f64_values = st.one_of(
    st.sampled_from(SPECIAL_F64), st.floats(min_value=-3e38, max_value=3e38, allow_nan=False)
)
# Values whose float64 sum depends on the order of the terms: 2**40 + 2**-20
# is not exact in float64, 2**40 + 1 is.
MAGNITUDES = (2.0**40, -(2.0**40), 2.0**-20, -(2.0**-20), 1.0, 3.0, math.nan)
LONG_PALETTE = np.array([math.nan, -0.0, 0.0, math.inf, -math.inf, 1.0, -2.5], dtype=np.float32)

CANONICAL_NAN = np.uint32(0x7FC00000)


# -- the model ---------------------------------------------------------------------


def nearest_slot(ts: int, frequency: int) -> int:
    return (ts + frequency // 2) // frequency


def read_slots(start: int, stop: int, frequency: int) -> tuple[int, int]:
    """(first slot, count) of a read of [start, stop)."""
    first = -(-start // frequency)
    end = -(-stop // frequency)
    return first, end - first


class Model:
    """(handle, slot) -> float32, plus the catalog needed for path reads."""

    def __init__(self, keys: dict[tuple[str, Path], int]) -> None:
        self.handle = dict(keys)
        self.key = {h: k for k, h in keys.items()}
        self.slots: dict[int, dict[int, np.float32]] = {h: {} for h in self.key}

    def frequency(self, handle: int) -> int:
        return FREQUENCY[self.key[handle][0]]

    def put(self, handle: int, slot: int, value: np.float32) -> None:
        self.slots[handle][slot] = value

    def samples(self) -> int:
        return sum(not math.isnan(v) for s in self.slots.values() for v in s.values())

    def series_values(self, handle: int, first: int, count: int) -> F32Array:
        out = np.full(count, np.nan, dtype=np.float32)
        for slot, value in self.slots[handle].items():
            if first <= slot < first + count:
                out[slot - first] = value
        return out

    def extent(self, handle: int) -> tuple[int, int] | None:
        """The times of the first and last slot ever written, if any."""
        slots = self.slots[handle]
        if not slots:
            return None
        f = self.frequency(handle)
        return min(slots) * f, max(slots) * f

    def sources(self, metric: str, path: Path) -> list[int]:
        """The series a read of (metric, path) combines, in path-name order."""
        if (metric, path) in self.handle:
            return [self.handle[metric, path]]
        children = sorted(
            {
                p[len(path)]
                for m, p in self.handle
                if m == metric and len(p) > len(path) and p[: len(path)] == path
            }
        )
        found: list[int] = []
        for child in children:
            found += self.sources(metric, (*path, child))
        return found

    def path_values(self, metric: str, path: Path, first: int, count: int) -> F32Array:
        sources = self.sources(metric, path)
        assert sources, "callers only ask for paths with series below them"
        if (metric, path) in self.handle:
            return self.series_values(sources[0], first, count)
        total = np.full(count, SUM_START, dtype=np.float64)
        n = np.zeros(count, dtype=np.int64)
        with np.errstate(invalid="ignore", over="ignore"):
            for handle in sources:  # in path-name order: float64 sums are order-sensitive
                values = self.series_values(handle, first, count).astype(np.float64)
                present = ~np.isnan(values)
                total[present] += values[present]
                n += present
            if AGGREGATION[metric] == "avg":
                total = np.divide(total, n, out=np.full(count, np.nan), where=n > 0)
            else:
                total[n == 0] = np.nan
            return total.astype(np.float32)

    def nodes(self, metric: str) -> list[Path]:
        """Every path at or above a series of ``metric``."""
        found = {p[:i] for m, p in self.handle if m == metric for i in range(1, len(p) + 1)}
        return sorted(found)


def bits(values: Any) -> NDArray[np.uint32]:
    """float32 bits with every NaN made the same NaN (payloads are not part of
    the contract; NaN-ness and the sign of zero are)."""
    array = np.asarray(values)
    assert array.dtype == np.float32, array.dtype
    out = array.view(np.uint32).copy()
    out[np.isnan(array)] = CANONICAL_NAN
    return out


def assert_same_bits(actual: Any, expected: Any, what: str) -> None:
    a, e = bits(actual), bits(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    if not np.array_equal(a, e):
        wrong = np.flatnonzero((a != e).ravel())[:8]
        flat_a, flat_e = np.asarray(actual).ravel(), np.asarray(expected).ravel()
        detail = ", ".join(f"[{i}] got {flat_a[i]!r} want {flat_e[i]!r}" for i in wrong)
        raise AssertionError(f"{what}: {len(np.flatnonzero(a != e))} slots differ: {detail}")


# -- scenarios ---------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    series: int  # index into the layout
    offset: int
    values: Any  # what is passed to the store
    expected: F32Array  # the float32 values the model stores
    by_key: bool


@dataclass(frozen=True)
class Tick:
    offset: int
    series: list[int]
    values: Any
    expected: F32Array
    by_key: bool


@dataclass(frozen=True)
class Points:
    series: list[int]
    offsets: list[int]
    values: Any
    expected: F32Array
    by_key: bool


@dataclass(frozen=True)
class Read:
    series: int
    offset: int
    length: int


@dataclass(frozen=True)
class Scenario:
    layout: list[tuple[str, Path]]  # in creation order
    epoch: int
    ops: list[Any]
    ranges: list[tuple[int, int]]  # (offset, length) relative to the epoch
    rng: random.Random


# Offsets from the epoch: anywhere, plus exact ties for f=60 (odd multiples of
# 30) and the rounding boundaries 7k+3 / 7k+4 for f=7.
offsets = st.one_of(
    st.integers(-400, 400),
    st.integers(-14, 14).map(lambda k: 30 * k),
    st.integers(-60, 60).map(lambda k: 7 * k + 3),
    st.integers(-60, 60).map(lambda k: 7 * k + 4),
)


@st.composite
def value_batch(draw: st.DrawFn, n: int) -> tuple[Any, F32Array]:
    """(what to pass, the float32 values the store must hold) for n values."""
    form = draw(st.sampled_from(("float32", "float64", "list")))
    if form == "float32":
        array = np.array(draw(st.lists(f32_values, min_size=n, max_size=n)), dtype=np.float32)
        return array, array.copy()
    if form == "float64":
        wide = np.array(draw(st.lists(f64_values, min_size=n, max_size=n)), dtype=np.float64)
        return wide, wide.astype(np.float32)
    items = draw(st.lists(st.one_of(st.none(), f32_values, f64_values), min_size=n, max_size=n))
    wide = np.array([math.nan if v is None else v for v in items], dtype=np.float64)
    return items, wide.astype(np.float32)


@st.composite
def blocks(draw: st.DrawFn, n_series: int) -> Block:
    series = draw(st.integers(0, n_series - 1))
    if draw(st.integers(0, 4)) == 0:
        # A long block from a palette, crossing 1024-slot chunk boundaries.
        length = draw(st.integers(0, 2100))
        seed = draw(st.integers(0, 2**32 - 1))
        picks = np.random.default_rng(seed).integers(0, len(LONG_PALETTE), length)
        values = LONG_PALETTE[picks] * np.float32(1 + seed % 7)
        return Block(series, draw(offsets), values, values.copy(), draw(st.booleans()))
    n = draw(st.integers(0, 12))
    values, expected = draw(value_batch(n))
    return Block(series, draw(offsets), values, expected, draw(st.booleans()))


@st.composite
def ticks(draw: st.DrawFn, n_series: int) -> Tick:
    if draw(st.integers(0, 2)) == 0:
        # Every series at once, with values whose sums are order-sensitive.
        series = draw(st.permutations(range(n_series)))
        picks = draw(st.lists(st.sampled_from(MAGNITUDES), min_size=n_series, max_size=n_series))
        values = np.array(picks, dtype=np.float32)
        return Tick(draw(offsets), series, values, values.copy(), draw(st.booleans()))
    series = draw(st.lists(st.integers(0, n_series - 1), max_size=n_series, unique=True))
    values, expected = draw(value_batch(len(series)))
    return Tick(draw(offsets), series, values, expected, draw(st.booleans()))


@st.composite
def points(draw: st.DrawFn, n_series: int) -> Points:
    # Draw from a small pool of (series, offset) places so that one call often
    # writes the same slot several times (the later element must win).
    pool = draw(st.lists(st.tuples(st.integers(0, n_series - 1), offsets), min_size=1, max_size=5))
    places = draw(st.lists(st.sampled_from(pool), max_size=12))
    values, expected = draw(value_batch(len(places)))
    return Points(
        [s for s, _ in places], [o for _, o in places], values, expected, draw(st.booleans())
    )


@st.composite
def scenarios(draw: st.DrawFn, max_ops: int = 20) -> Scenario:
    layout: list[tuple[str, Path]] = []
    for name, _, _ in METRICS:
        paths = draw(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=5, unique=True))
        layout += [(name, p) for p in paths]
    layout = draw(st.permutations(layout))  # creation order must not matter
    n = len(layout)
    reads = st.builds(Read, st.integers(0, n - 1), offsets, st.integers(0, 300))
    op = st.one_of(blocks(n), ticks(n), points(n), reads)
    ranges = st.tuples(st.integers(-3000, 3000), st.one_of(st.just(0), st.integers(0, 4000)))
    return Scenario(
        layout=layout,
        epoch=draw(st.sampled_from(EPOCHS)),
        ops=draw(st.lists(op, max_size=max_ops)),
        ranges=draw(st.lists(ranges, min_size=1, max_size=4)),
        rng=draw(st.randoms(use_true_random=False)),
    )


def key_form(key: tuple[str, Path], rng: random.Random) -> tuple[str, Any]:
    """A (metric, path) key with the path as a tuple or as a "/"-joined str."""
    metric, path = key
    return (metric, "/".join(path)) if rng.random() < 0.5 else (metric, path)


def new_store(layout: list[tuple[str, Path]]) -> tuple[metricstore.Store, Model]:
    store = metricstore.Store(unit="s")
    for name, frequency, aggregation in METRICS:
        store.define_metric(name, frequency, aggregation)
    handles = {key: store.series(*key) for key in layout}
    assert len(set(handles.values())) == len(layout)
    return store, Model(handles)


def check_series_read(
    store: metricstore.Store, model: Model, handle: int, start: int, stop: int, rng: random.Random
) -> None:
    f = model.frequency(handle)
    first, count = read_slots(start, stop, f)
    target: Any = handle if rng.random() < 0.7 else key_form(model.key[handle], rng)
    result = store.read(target, start, stop)
    what = f"read({model.key[handle]}, {start}, {stop})"
    assert result.step == f, what
    assert result.start == first * f, what
    assert result.values.dtype == np.float32
    assert_same_bits(result.values, model.series_values(handle, first, count), what)


def apply(store: metricstore.Store, model: Model, scenario: Scenario, op: Any) -> None:
    """Applies one op to both the store and the model."""
    layout, epoch, rng = scenario.layout, scenario.epoch, scenario.rng
    handle_of = [model.handle[k] for k in layout]
    if isinstance(op, Block):
        h = handle_of[op.series]
        target: Any = key_form(layout[op.series], rng) if op.by_key else h
        store.write(target, epoch + op.offset, op.values)
        first = nearest_slot(epoch + op.offset, model.frequency(h))
        for i, value in enumerate(op.expected):
            model.put(h, first + i, value)
    elif isinstance(op, Tick):
        hs = [handle_of[i] for i in op.series]
        targets: Any = [key_form(layout[i], rng) for i in op.series] if op.by_key else hs
        store.write_tick(epoch + op.offset, targets, op.values)
        for h, value in zip(hs, op.expected, strict=True):
            model.put(h, nearest_slot(epoch + op.offset, model.frequency(h)), value)
    elif isinstance(op, Points):
        hs = [handle_of[i] for i in op.series]
        targets = [key_form(layout[i], rng) for i in op.series] if op.by_key else hs
        timestamps = [epoch + o for o in op.offsets]
        store.write_points(targets, timestamps, op.values)
        for h, ts, value in zip(hs, timestamps, op.expected, strict=True):
            model.put(h, nearest_slot(ts, model.frequency(h)), value)
    else:
        assert isinstance(op, Read)
        h = handle_of[op.series]
        start = epoch + op.offset
        check_series_read(store, model, h, start, start + op.length, rng)


def run(scenario: Scenario) -> tuple[metricstore.Store, Model]:
    store, model = new_store(scenario.layout)
    for op in scenario.ops:
        apply(store, model, scenario, op)
    return store, model


def covering_range(model: Model, handles: list[int], epoch: int) -> tuple[int, int]:
    """A range holding every written slot of ``handles`` with empty margins."""
    lows, highs = [epoch], [epoch]
    for h in handles:
        extent = model.extent(h)
        if extent is not None:
            lows.append(extent[0])
            highs.append(extent[1])
    margin = 3 * max(model.frequency(h) for h in handles) + 1
    return min(lows) - margin, max(highs) + margin


def windows_of(scenario: Scenario) -> list[tuple[int, int]]:
    """The scenario's extra read ranges as (start, stop)."""
    return [(scenario.epoch + o, scenario.epoch + o + n) for o, n in scenario.ranges]


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- tests -------------------------------------------------------------------------


@SETTINGS
@given(scenarios())
def test_every_series_reads_back_the_last_value_written_to_each_slot(scenario: Scenario) -> None:
    store, model = run(scenario)
    rng = scenario.rng
    for h in model.key:
        start, stop = covering_range(model, [h], scenario.epoch)
        check_series_read(store, model, h, start, stop, rng)
        for offset, length in scenario.ranges:
            start = scenario.epoch + offset
            check_series_read(store, model, h, start, start + length, rng)


@SETTINGS
@given(scenarios())
def test_stats_samples_counts_the_non_nan_values_stored(scenario: Scenario) -> None:
    store, model = new_store(scenario.layout)
    assert store.stats()["samples"] == 0
    for op in scenario.ops:
        apply(store, model, scenario, op)
        assert store.stats()["samples"] == model.samples(), op


@SETTINGS
@given(scenarios())
def test_path_reads_combine_the_nearest_series_below_in_name_order(scenario: Scenario) -> None:
    store, model = run(scenario)
    rng = scenario.rng
    for metric, frequency, _ in METRICS:
        handles = [h for (m, _), h in model.handle.items() if m == metric]
        whole = covering_range(model, handles, scenario.epoch)
        windows = [whole, *windows_of(scenario)]
        for path in model.nodes(metric):
            for start, stop in windows:
                first, count = read_slots(start, stop, frequency)
                result = store.read(key_form((metric, path), rng), start, stop)
                what = f"read(({metric!r}, {'/'.join(path)!r}), {start}, {stop})"
                assert (result.start, result.step) == (first * frequency, frequency), what
                assert_same_bits(result.values, model.path_values(metric, path, first, count), what)


@SETTINGS
@given(scenarios(max_ops=12))
def test_read_many_rows_equal_single_reads_in_the_order_asked(scenario: Scenario) -> None:
    store, model = run(scenario)
    rng = scenario.rng
    for metric, frequency, _ in METRICS:
        handles = [h for (m, _), h in model.handle.items() if m == metric]
        choices: list[Any] = handles + [("path", p) for p in model.nodes(metric)]
        rows = [rng.choice(choices) for _ in range(rng.randint(1, 8))]
        keys = [r if isinstance(r, int) else key_form((metric, r[1]), rng) for r in rows]
        whole = covering_range(model, handles, scenario.epoch)
        windows = [whole, *windows_of(scenario)]
        for start, stop in windows:
            first, count = read_slots(start, stop, frequency)
            result = store.read_many(keys, start, stop)
            what = f"read_many({keys}, {start}, {stop})"
            assert result.values.shape == (len(keys), count), what
            assert result.values.dtype == np.float32
            assert (result.start, result.step) == (first * frequency, frequency), what
            for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
                single = store.read(key, start, stop).values
                assert_same_bits(result.values[i], single, f"{what} row {i} vs read")
                expected = (
                    model.series_values(row, first, count)
                    if isinstance(row, int)
                    else model.path_values(metric, row[1], first, count)
                )
                assert_same_bits(result.values[i], expected, f"{what} row {i} vs model")


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(f32_values, min_size=1, max_size=8),
    aggregation=st.sampled_from(["sum", "avg"]),
)
def test_a_series_with_no_value_in_a_slot_leaves_the_aggregate_unchanged(
    values: list[float], aggregation: str
) -> None:
    """NaN is skipped: adding a series that is NaN throughout the read range
    (it has a value elsewhere) must not change any bit of an aggregate."""
    n = len(values)
    reads = []
    for with_empty_neighbour in (False, True):
        store = metricstore.Store(unit="s")
        store.define_metric("m", 1, aggregation)
        store.write(("m", "cluster/a"), 0, np.array(values, dtype=np.float32))
        if with_empty_neighbour:
            store.write(("m", "cluster/b"), -1, np.full(n + 1, np.nan, dtype=np.float32))
            store.write(("m", "cluster/b"), -1, np.array([5.0], dtype=np.float32))
        reads.append(store.read(("m", "cluster"), 0, n).values)
    assert_same_bits(reads[1], reads[0], f"{aggregation} of {values} with a NaN neighbour")
