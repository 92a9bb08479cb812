"""metricstore.testing: the assertions pass on equal data and name the first
difference exactly; the strategies draw writes the store accepts and
recovers bit for bit; the crash tools leave the damage docs/guarantees.md
describes, and recovery treats it as documented."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metricstore
from metricstore import testing
from metricstore.testing import assert_series_equal, assert_store_equal

FREQ = 10
# A block record of populate(): header, series, start, count, eight float32.
BLOCK_RECORD = 20 + 4 + 8 + 8 + 8 * 4


def populate(path: Path, writes: int) -> None:
    """A store with ``writes`` blocks of 8 values (block i holds 100 * i + 0..7)
    to series ("m", "c/h"), closed without a snapshot: one log segment whose
    last records are the blocks, LSN 3 the first of them."""
    with metricstore.open(path, sync="none") as store:
        store.define_metric("m", FREQ, "sum")
        for i in range(writes):
            store.write(("m", "c/h"), i * 8 * FREQ, np.arange(8, dtype=np.float32) + 100 * i)
        store.close(checkpoint=False)


def stored_blocks(store: metricstore.Store, count: int) -> int:
    """How many leading blocks of populate() are present, each whole."""
    rows = store.read(("m", "c/h"), 0, count * 8 * FREQ).values.reshape(count, 8)
    present = int((~np.isnan(rows).all(axis=1)).sum())
    expected = np.full((count, 8), np.nan, dtype=np.float32)
    expected[:present] = np.arange(8, dtype=np.float32) + 100 * np.arange(present)[:, None]
    assert_series_equal(rows, expected)
    return present


@pytest.fixture
def memory() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu", FREQ, "avg")
    store.write(("cpu", "node1"), 0, [1.0, 2.0, 3.0, 4.0])
    store.write(("cpu", "node2"), 0, [5.0, 6.0, 7.0, 8.0])
    return store


# -- assert_series_equal ---------------------------------------------------------------


def test_equal_reads_pass_and_an_array_takes_the_grid_of_the_read(
    memory: metricstore.Store,
) -> None:
    result = memory.read(("cpu", "node1"), 0, 60)
    assert_series_equal(result, memory.read(("cpu", "node1"), 0, 60))
    # float64 expectations are rounded to float32 as a write would store them.
    assert_series_equal(result, [1.0, 2.0, 3.0, 4.0, np.nan, np.nan])
    both = memory.read_many([("cpu", "node1"), ("cpu", "node2")], 0, 40)
    assert_series_equal(both, np.array([[1, 2, 3, 4], [5, 6, 7, 8]]))
    with pytest.raises(AssertionError, match=r"start: actual 0, expected 10"):
        assert_series_equal(result, [1.0, 2.0, 3.0, 4.0, np.nan, np.nan], start=10)


def test_a_value_difference_names_the_series_the_first_time_both_values_and_the_count(
    memory: metricstore.Store,
) -> None:
    result = memory.read(("cpu", "node1"), 0, 40)
    with pytest.raises(AssertionError) as info:
        assert_series_equal(result, [1.0, 2.0, 3.5, -4.0])
    assert str(info.value) == (
        "series ('cpu', 'node1'): 2 of 4 slots differ; the first at 1970-01-01T00:00:20 "
        "(tick 20 of 's'), slot 2:\n"
        "  actual:   3.0 (bits 0x40400000)\n"
        "  expected: 3.5 (bits 0x40600000)"
    )


def test_the_first_difference_of_a_2d_read_is_the_earliest_time_in_any_row(
    memory: metricstore.Store,
) -> None:
    both = memory.read_many([("cpu", "node1"), ("cpu", "node2")], 0, 40)
    expected = both.values.copy()
    expected[0, 3] = 0.0
    expected[1, 1] = 0.0
    with pytest.raises(AssertionError) as info:
        assert_series_equal(both, expected)
    assert str(info.value).startswith(
        "series ('cpu', 'node2') (row 1): 2 of 8 slots differ; the first at "
        "1970-01-01T00:00:10 (tick 10 of 's'), slot 1:\n  actual:   6.0"
    )


def test_exact_mode_compares_bits_and_nan_matches_any_nan() -> None:
    quiet, other_nan = np.array([0x7FC00000, 0x7FC00001], dtype=np.uint32).view(np.float32)
    assert_series_equal(np.array([quiet, 1.0]), np.array([other_nan, 1.0]))
    with pytest.raises(AssertionError, match=r"actual:   0\.0 \(bits 0x00000000\)\n"
                       r"  expected: -0\.0 \(bits 0x80000000\)"):  # fmt: skip
        assert_series_equal([0.0], [-0.0])
    assert_series_equal([0.0], [-0.0], atol=1e-9)  # tolerances compare numbers
    with pytest.raises(AssertionError, match=r"1 of 2 slots differ.*\n  actual:   nan"):
        assert_series_equal([np.nan, 1.0], [2.0, 1.0])
    # check_nan=False skips slots missing on either side, and only those.
    assert_series_equal([np.nan, 1.0], [2.0, 1.0], check_nan=False)
    with pytest.raises(AssertionError, match=r"1 of 2 slots differ; the first at tick 1,"):
        assert_series_equal([np.nan, 1.0], [2.0, 1.5], check_nan=False)


def test_tolerances_allow_atol_plus_rtol_times_expected() -> None:
    assert_series_equal([1.1, np.inf], [1.0, np.inf], rtol=0.11)
    with pytest.raises(AssertionError) as info:
        assert_series_equal([1.0, 2.25], [1.0, 2.0], atol=0.1, rtol=0.05)
    assert str(info.value).endswith(
        "  actual:   2.25\n  expected: 2.0\n"
        "  difference 0.25 exceeds atol + rtol * |expected| = 0.2"
    )
    with pytest.raises(AssertionError, match="1 of 1 slots differ"):
        assert_series_equal([np.inf], [-np.inf], rtol=1.0)


def test_grid_differences_are_named(memory: metricstore.Store) -> None:
    result = memory.read(("cpu", "node1"), 0, 40)
    with pytest.raises(AssertionError) as info:
        assert_series_equal(result, memory.read(("cpu", "node1"), 10, 60))
    assert str(info.value) == (
        "series ('cpu', 'node1'): the grids differ:\n"
        "  start: actual 0, expected 10\n"
        "  shape: actual (4,), expected (5,)"
    )
    # The keywords give an array's grid.
    with pytest.raises(AssertionError, match=r"^series .*:\n  step: actual 10, expected 20$"):
        assert_series_equal(result, result.values, step=20)
    with pytest.raises(AssertionError, match=r"^array: .*:\n  shape: actual \(2,\), expected"):
        assert_series_equal(np.zeros(2), np.zeros(3))
    other = metricstore.Store(unit="ms")
    other.define_metric("cpu", FREQ, "avg")
    other.series("cpu", "node1")
    with pytest.raises(AssertionError, match=r"\n  unit:  actual 's', expected 'ms'$"):
        assert_series_equal(result, other.read(("cpu", "node1"), 0, 40))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"^rtol: expected a finite number >= 0, got -1"):
        assert_series_equal([1.0], [1.0], rtol=-1)
    with pytest.raises(TypeError, match=r"^atol: expected a number, got str"):
        assert_series_equal([1.0], [1.0], atol="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^expected: expected a 1-D or 2-D array"):
        assert_series_equal([1.0], np.zeros((1, 1, 1)))
    with pytest.raises(TypeError, match=r"^actual: expected real numbers, got dtype <U1"):
        assert_series_equal(["a"], [1.0])  # type: ignore[list-item]


# -- assert_store_equal ----------------------------------------------------------------


def test_a_recovered_store_equals_its_model_and_a_change_is_found(tmp_path: Path) -> None:
    model = metricstore.Store()
    with metricstore.open(tmp_path) as store:
        for target in (model, store):
            target.define_metric("cpu", FREQ, "avg")
            target.define_metric("mem", 60, "sum")
            target.write(("cpu", "a/b"), 1000, np.arange(5))
            target.write_tick(1200, [("cpu", "a/c"), ("mem", "a")], [7.0, 8.0])
    with metricstore.open(tmp_path, readonly=True) as recovered:
        assert_store_equal(recovered, model, start=0, stop=2000)
        model.write(("cpu", "a/c"), 1200, [-0.0])
        model.write(("cpu", "a/c"), 1500, [1.0])
        with pytest.raises(AssertionError) as info:
            assert_store_equal(recovered, model, start=0, stop=2000)
    assert str(info.value) == (
        "the stores differ in series ('cpu', 'a/c'): 2 of 200 slots differ; the first at "
        "1970-01-01T00:20:00 (tick 1200 of 's'), slot 120:\n"
        "  a: 7.0 (bits 0x40e00000)\n"
        "  b: -0.0 (bits 0x80000000)"
    )


def test_store_catalog_differences_are_named() -> None:
    def make(
        unit: str = "s", frequency: int = FREQ, path: str = "a", metric_unit: str | None = None
    ) -> metricstore.Store:
        store = metricstore.Store(unit=unit)
        store.define_metric("cpu", frequency, "sum", metric_unit)
        store.series("cpu", path)
        return store

    assert_store_equal(make(), make())  # no samples, nothing to compare
    cases = [
        (make(unit="ms"), "the stores differ in unit: a 's', b 'ms'"),
        (
            make(frequency=60),
            "metric 'cpu' differs: a has frequency 10, aggregation 'sum' and unit None, "
            "b has frequency 60, aggregation 'sum' and unit None",
        ),
        (
            make(metric_unit="GF/s"),
            "metric 'cpu' differs: a has frequency 10, aggregation 'sum' and unit None, "
            "b has frequency 10, aggregation 'sum' and unit 'GF/s'",
        ),
        (make(path="b/c"), "series ('cpu', 'a') exists in a only"),
    ]
    for other, message in cases:
        with pytest.raises(AssertionError) as info:
            assert_store_equal(make(), other)
        assert str(info.value) == message
    extra = make()
    extra.define_metric("mem", FREQ, "sum")
    with pytest.raises(AssertionError, match=r"^metric 'mem' is defined in b only$"):
        assert_store_equal(make(), extra)


def test_samples_outside_the_span_are_never_ignored(memory: metricstore.Store) -> None:
    other = metricstore.Store()
    other.define_metric("cpu", FREQ, "avg")
    other.write(("cpu", "node1"), 0, [1.0, 2.0, 3.0, 4.0])
    other.write(("cpu", "node2"), 0, [5.0, 6.0, 7.0, 8.0, 9.0])
    assert_store_equal(memory, memory, start=0, stop=40)
    with pytest.raises(AssertionError, match=r"^store b holds 1 sample outside \[0, 40\),"):
        assert_store_equal(memory, other, start=0, stop=40)
    # Without a span, the comparison covers every sample of both stores.
    with pytest.raises(
        AssertionError, match=r"^the stores differ in series \('cpu', 'node2'\): 1 of 5"
    ):
        assert_store_equal(memory, other)
    assert_store_equal(other, other)


# -- strategies --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_writes_are_accepted_and_recovered_bit_for_bit(data: st.DataObject) -> None:
    metrics = data.draw(st.lists(testing.metrics(max_frequency=50), min_size=1, max_size=3,
                                 unique_by=lambda m: m.name))  # fmt: skip
    paths = data.draw(st.lists(testing.paths(max_depth=3), min_size=1, max_size=3, unique=True))
    writes = data.draw(testing.write_batches(metrics, paths, start=-500, stop=500, max_size=8))
    model = metricstore.Store()
    with tempfile.TemporaryDirectory() as directory:
        with metricstore.open(directory, sync="none") as store:
            for target in (model, store):
                for metric in metrics:
                    target.define_metric(*metric)
                for write in writes:
                    write.apply(target)
        with metricstore.open(directory, readonly=True) as recovered:
            assert_store_equal(recovered, model, start=-550, stop=550)
            assert_store_equal(recovered, model)
    assert len(model) <= len(metrics) * len(paths)


def test_the_module_imports_without_hypothesis_and_the_strategies_say_what_is_missing() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["hypothesis"] = None
        import metricstore.testing as testing
        try:
            testing.paths()
        except ImportError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout == (
        "metricstore.testing.paths() is a hypothesis strategy and needs hypothesis: "
        "pip install hypothesis\n"
    ), done.stderr


def test_strategy_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"^min_depth, max_depth: expected 1 <="):
        testing.paths(min_depth=0)
    with pytest.raises(ValueError, match=r"^paths: expected at least one path"):
        testing.write_batches([metricstore.Metric("m", 1, "sum")], [])
    with pytest.raises(ValueError, match=r"^stop: expected more than start \(5\), got 5"):
        testing.write_batches([metricstore.Metric("m", 1, "sum")], ["a"], start=5, stop=5)


# -- crashes -----------------------------------------------------------------------------


def three_writes(store: metricstore.Store, ack: Any, metric: str) -> None:
    """A writer for kill_writer that returns: three points, acknowledged."""
    store.define_metric(metric, FREQ, "sum")
    for i in range(3):
        store.write((metric, "a"), i * FREQ, [float(i)])
        ack(("point", i))


def test_kill_writer_returns_what_was_acknowledged_and_recovery_keeps_all_of_it(
    tmp_path: Path,
) -> None:
    crash = testing.kill_writer(tmp_path, testing.block_writer, after_acks=12, sync="none")
    assert not crash.finished and crash.path == tmp_path
    assert len(crash.acknowledged) >= 12
    with metricstore.open(tmp_path) as store:
        assert store.recovery is not None and store.recovery.stopped is None
        for key, start, values in crash.acknowledged:
            assert_series_equal(store.read(key, start, start + FREQ * len(values)), values)


def test_a_writer_from_a_test_module_that_returns_is_killed_with_the_store_open(
    tmp_path: Path,
) -> None:
    crash = testing.kill_writer(tmp_path, three_writes, after_acks=50, args=("load",))
    assert crash.finished
    assert crash.acknowledged == [("point", 0), ("point", 1), ("point", 2)]
    with metricstore.open(tmp_path) as store:
        assert store.recovery is not None and store.recovery.snapshot is None  # never closed
        assert_series_equal(store.read(("load", "a"), 0, 30), [0.0, 1.0, 2.0])


def test_a_writer_that_fails_is_reported_with_its_output(tmp_path: Path) -> None:
    source = "ack(1)\nprint('before')\nraise RuntimeError('boom')"
    with pytest.raises(RuntimeError) as info:
        testing.kill_writer(tmp_path, source, after_acks=5)
    message = str(info.value)
    assert message.startswith(
        "the writer exited with code 1 before it was killed, after 1 acknowledgements; "
        "its output:\nbefore\n"
    )
    assert message.endswith("RuntimeError: boom\n")


def test_kill_writer_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^writer: <function .*<lambda>.* cannot be found"):
        testing.kill_writer(tmp_path, lambda store, ack: None, after_acks=1)
    with pytest.raises(ValueError, match=r"^after_acks: expected a positive int, got 0"):
        testing.kill_writer(tmp_path, "", after_acks=0)
    with pytest.raises(ValueError, match=r"^args: \(np.float32\(1.0\),\) does not survive"):
        testing.kill_writer(tmp_path, "", after_acks=1, args=(np.float32(1),))
    with pytest.raises(ValueError, match=r"^open_options: 'sync' cannot be set here"):
        testing.kill_writer(tmp_path, "", after_acks=1, open_options={"sync": "none"})


def test_a_cut_log_reopens_with_the_torn_tail_reported(tmp_path: Path) -> None:
    populate(tmp_path, 5)
    segment = testing.newest_segment(tmp_path)
    size = segment.stat().st_size
    assert testing.truncate_log(tmp_path, 5) == segment
    assert segment.stat().st_size == size - 5
    with metricstore.open(tmp_path) as store:
        torn = store.recovery.torn if store.recovery else None
        assert torn is not None
        assert (torn.file, torn.offset, torn.bytes) == (
            str(segment),
            size - BLOCK_RECORD,
            BLOCK_RECORD - 5,
        )
        assert stored_blocks(store, 5) == 4
    # Cut on a record boundary: nothing is torn, two blocks are gone.
    other = tmp_path / "other"
    populate(other, 5)
    testing.truncate_log(other, to=size - 2 * BLOCK_RECORD)
    with metricstore.open(other, recovery="strict") as store:
        assert store.recovery is not None and store.recovery.torn is None
        assert stored_blocks(store, 5) == 3


def test_truncate_log_refuses_cuts_it_cannot_make(tmp_path: Path) -> None:
    populate(tmp_path, 1)
    size = testing.newest_segment(tmp_path).stat().st_size
    with pytest.raises(TypeError, match=r"^truncate_log: pass nbytes or to, and not both"):
        testing.truncate_log(tmp_path, 1, to=10)
    with pytest.raises(ValueError, match=rf"^nbytes: .* holds {size - 24} bytes of records"):
        testing.truncate_log(tmp_path, size - 23)
    with pytest.raises(ValueError, match=rf"^to: expected an offset from 0 to {size} "):
        testing.truncate_log(tmp_path, to=size + 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty holds no log segment \(wal-\*\.log\)$"):
        testing.truncate_log(empty, 1)


def test_a_flipped_bit_is_corruption_before_the_last_record_and_a_torn_tail_in_it(
    tmp_path: Path,
) -> None:
    populate(tmp_path, 5)
    segment = testing.newest_segment(tmp_path)
    size = segment.stat().st_size
    third_block = size - 3 * BLOCK_RECORD  # LSN 5
    testing.flip_bit(segment, third_block + 30, 4)
    with pytest.raises(metricstore.CorruptionError) as info:
        metricstore.open(tmp_path)
    assert (info.value.file, info.value.offset, info.value.lsn) == (str(segment), third_block, 5)
    testing.flip_bit(segment, third_block + 30, 4)  # flipping again restores the file
    testing.flip_bit(segment, -1, 0)  # the last value of the last record
    with metricstore.open(tmp_path) as store:
        torn = store.recovery.torn if store.recovery else None
        assert torn is not None and (torn.offset, torn.bytes) == (size - BLOCK_RECORD, BLOCK_RECORD)
        assert stored_blocks(store, 5) == 4


def test_a_flipped_bit_in_the_newest_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    populate(tmp_path, 2)
    with metricstore.open(tmp_path) as store:
        older = store.checkpoint()
        store.write(("m", "c/h"), 16 * FREQ, np.arange(8, dtype=np.float32) + 200)
        newer = store.checkpoint()
        store.close(checkpoint=False)
    assert testing.newest_snapshot(tmp_path) == Path(newer.file)
    testing.flip_bit(newer.file, 100, 7)
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None and report.snapshot == older.file
        assert [file for file, _ in report.skipped_snapshots] == [newer.file]
        assert stored_blocks(store, 3) == 3


def test_flip_bit_arguments_are_named(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"\x00\x01")
    testing.flip_bit(file, -2, 7)
    assert file.read_bytes() == b"\x80\x01"
    with pytest.raises(ValueError, match=r"^offset: expected -2 to 1 for .*f, got 2"):
        testing.flip_bit(file, 2, 0)
    with pytest.raises(ValueError, match=r"^bit: expected 0 to 7, got 8"):
        testing.flip_bit(file, 0, 8)
    with pytest.raises(FileNotFoundError, match=r"holds no snapshot"):
        testing.newest_snapshot(tmp_path)


@settings(max_examples=300, deadline=None)
@given(testing.metric_names(max_size=3))
def test_every_drawn_metric_name_is_one_the_store_accepts(name: str) -> None:
    """Short names reach "." and ".." often; the strategy must leave them out."""
    store = metricstore.Store()
    store.define_metric(name, 10, "sum")
    assert [m.name for m in store.metrics] == [name]
