"""A store directory: one writer, readers that change nothing, recovery that
cuts torn tails and refuses corruption, and a handle poisoned by a failed
write."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore import exceptions as exc

FREQ = 10


def populate(path: Path, writes: int, sync: str = "none") -> list[np.ndarray]:
    """A store with `writes` blocks of 8 values to one series, all in one log
    segment (closed without a snapshot); returns the blocks."""
    blocks = []
    store = metricstore.open(path, sync=sync)
    store.define_metric("m", FREQ, "sum")
    h = store.series("m", "c/h")
    for i in range(writes):
        values = np.arange(8, dtype=np.float32) + 100 * i
        store.write(h, i * 8 * FREQ, values)
        blocks.append(values)
    store.close(checkpoint=False)
    return blocks


def stored_blocks(store: metricstore.Store, count: int) -> int:
    """How many leading blocks of `populate` are present, checking each is
    whole and that none follows a missing one."""
    values = store.read(("m", "c/h"), 0, count * 8 * FREQ).values.reshape(count, 8)
    present = ~np.isnan(values).all(axis=1)
    n = int(present.sum())
    assert present[:n].all() and not present[n:].any(), present
    for i in range(n):
        np.testing.assert_array_equal(values[i], np.arange(8, dtype=np.float32) + 100 * i)
    return n


# A block record of `populate`: header, series, start, count, eight float32.
BLOCK_RECORD = 20 + 4 + 8 + 8 + 8 * 4


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.log"))


def test_a_second_writer_in_another_process_gets_the_holders_pid(tmp_path: Path) -> None:
    with metricstore.open(tmp_path) as store:
        code = textwrap.dedent(f"""
            import metricstore, pickle, sys
            try:
                metricstore.open({str(tmp_path)!r})
            except metricstore.LockedError as e:
                sys.stdout.buffer.write(pickle.dumps(e))
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        error = pickle.loads(out.stdout)
        assert isinstance(error, exc.LockedError)
        assert error.pid == os.getpid()
        assert str(error) == f"{tmp_path} is locked by another writer (pid {os.getpid()})"
        assert store.path == str(tmp_path)
    # Released on close: a new writer opens.
    metricstore.open(tmp_path).close()


def test_a_forked_child_cannot_write_to_its_parents_store(tmp_path: Path) -> None:
    with metricstore.open(tmp_path, sync="always") as store:
        store.define_metric("m", FREQ, "sum")
        h = store.series("m", "c/h")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_end)
            try:
                store.write(h, 0, [1.0])
                answer = b"wrote"
            except exc.WrongProcessError as e:
                answer = str(e).encode()
            os.write(write_end, answer)
            os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 1000).decode()
        os.waitpid(pid, 0)
        assert answer.startswith(f"the store was opened for writing in process {os.getpid()}")
        store.write(h, 0, [2.0])  # the parent still writes
    with metricstore.open(tmp_path) as again:
        np.testing.assert_array_equal(again.read(("m", "c/h"), 0, FREQ).values, [2.0])


def test_a_reader_sees_what_a_live_writer_flushed_and_changes_no_file(tmp_path: Path) -> None:
    writer = metricstore.open(tmp_path, sync="none")
    writer.define_metric("m", FREQ, "sum")
    h = writer.series("m", "c/h")
    writer.write(h, 0, [1.0, 2.0])
    writer.flush()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with metricstore.open(tmp_path, readonly=True) as reader:
        np.testing.assert_array_equal(reader.read(("m", "c/h"), 0, 2 * FREQ).values, [1.0, 2.0])
        with pytest.raises(exc.ReadOnlyError, match="read-only"):
            reader.write(("m", "c/h"), 0, [5.0])
        with pytest.raises(exc.ReadOnlyError):
            reader.define_metric("n", 1, "sum")
        assert reader.readonly and "readonly" in repr(reader)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    writer.close()


def test_the_unit_is_kept_and_a_different_one_is_refused(tmp_path: Path) -> None:
    metricstore.open(tmp_path, unit="ms").close()
    with metricstore.open(tmp_path) as store:
        assert store.unit == "ms"
    with pytest.raises(ValueError, match=r"^unit: the store at .* uses \"ms\", not \"s\""):
        metricstore.open(tmp_path, unit="s")
    with pytest.raises(ValueError, match=r"^path: .* is not a metricstore directory"):
        metricstore.open(tmp_path / "missing", readonly=True)


@pytest.mark.parametrize("bad, error", [
    ({"sync": "sometimes"}, r"^sync: unknown sync mode"),
    ({"recovery": "hope"}, r"^recovery: unknown recovery mode"),
    ({"sync_interval_ms": 0}, r"^sync_interval: must be positive"),
])  # fmt: skip
def test_bad_open_options_are_named(tmp_path: Path, bad: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        metricstore.open(tmp_path, **bad)  # type: ignore[arg-type]


def test_a_log_cut_anywhere_recovers_the_whole_writes_before_the_cut(tmp_path: Path) -> None:
    original = tmp_path / "original"
    populate(original, 6)
    [segment] = segments(original)
    data = segment.read_bytes()
    # Records: define, create, then six blocks.
    block_record = BLOCK_RECORD
    first_block = len(data) - 6 * block_record
    for cut in range(first_block - 3, len(data)):
        copy = tmp_path / f"cut{cut}"
        copy.mkdir()
        (copy / "STORE").write_bytes((original / "STORE").read_bytes())
        (copy / segment.name).write_bytes(data[:cut])
        whole = max(0, (cut - first_block) // block_record)
        on_boundary = cut == len(data) or (
            cut >= first_block and (cut - first_block) % block_record == 0
        )
        with metricstore.open(copy, sync="none") as store:
            report = store.recovery
            assert report is not None
            if cut < first_block:
                assert store.find_series("m", "c/h") is None
                continue
            assert stored_blocks(store, 6) == whole, cut
            if on_boundary:
                assert report.torn is None
            else:
                assert report.torn is not None
                assert (report.torn.offset, report.torn.bytes) == (
                    first_block + whole * block_record,
                    cut - first_block - whole * block_record,
                )
        # The cut tail was truncated away: a strict reopen now finds no damage.
        with metricstore.open(copy, recovery="strict") as again:
            assert again.recovery is not None and again.recovery.torn is None


def test_strict_recovery_refuses_a_torn_tail(tmp_path: Path) -> None:
    populate(tmp_path, 3)
    [segment] = segments(tmp_path)
    size = segment.stat().st_size
    os.truncate(segment, size - 5)
    with pytest.raises(exc.CorruptionError, match="strict recovery refuses it") as info:
        metricstore.open(tmp_path, recovery="strict")
    assert (info.value.file, info.value.offset) == (str(segment), size - BLOCK_RECORD)
    assert segment.stat().st_size == size - 5, "a refused recovery changes nothing"


def test_a_flipped_bit_before_the_last_record_is_corruption_with_its_place(
    tmp_path: Path,
) -> None:
    populate(tmp_path, 5)
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    third_block = len(data) - 3 * BLOCK_RECORD  # the block written third, LSN 5
    data[third_block + 30] ^= 0x10
    segment.write_bytes(bytes(data))
    with pytest.raises(exc.CorruptionError) as info:
        metricstore.open(tmp_path)
    error = info.value
    assert (error.file, error.offset, error.lsn) == (str(segment), third_block, 5)
    assert "record checksum mismatch, and valid records follow it" in str(error)
    assert pickle.loads(pickle.dumps(error)).lsn == 5
    # Point-in-time recovery keeps what came before the damage.
    with metricstore.open(tmp_path, recovery="point_in_time") as store:
        assert stored_blocks(store, 5) == 2
        report = store.recovery
        assert report is not None and report.stopped is not None
        assert report.stopped.offset == third_block


def test_a_failed_write_poisons_the_handle_until_reopened(tmp_path: Path) -> None:
    # A child with a file size limit: the log append fails with EFBIG.
    code = textwrap.dedent(f"""
        import errno, resource, signal, numpy as np, metricstore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = metricstore.open({str(tmp_path)!r}, sync="always")
        store.define_metric("m", 10, "sum")
        h = store.series("m", "c/h")
        store.write(h, 0, np.ones(8, dtype=np.float32))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            store.write(h, 80, np.ones(2000, dtype=np.float32))
            print("no error")
        except metricstore.StoreIOError as e:
            print("io", e.errno == errno.EFBIG, isinstance(e, OSError))
        try:
            store.write(h, 80, np.ones(1, dtype=np.float32))
        except metricstore.PoisonedError as e:
            print("poisoned", str(e).startswith("the store is poisoned"))
        try:
            store.flush()
        except metricstore.PoisonedError:
            print("flush refused")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.stdout.split("\n")[:3] == ["io True True", "poisoned True", "flush refused"], (
        out.stdout + out.stderr
    )
    # Reopening recovers exactly the acknowledged write; the failed one is gone.
    with metricstore.open(tmp_path) as store:
        values = store.read(("m", "c/h"), 0, 200).values
        np.testing.assert_array_equal(values[:8], np.ones(8, dtype=np.float32))
        assert np.isnan(values[8:]).all()


def test_a_checkpoint_leaves_only_the_later_log_to_replay(tmp_path: Path) -> None:
    blocks = populate(tmp_path, 4)
    with metricstore.open(tmp_path) as store:
        info = store.checkpoint()
        assert (info.lsn, info.series, info.removed_segments) == (6, 1, 0)
        assert Path(info.file).name == "snapshot-00000000000000000006.snap"
        assert 0 <= info.writers_held_seconds <= info.seconds
        store.write(("m", "c/h"), 4 * 8 * FREQ, np.full(8, 7.0, dtype=np.float32))
        store.close(checkpoint=False)
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None
        assert (report.snapshot, report.snapshot_lsn, report.records) == (info.file, 6, 1)
        assert stored_blocks(store, 4) == 4
        np.testing.assert_array_equal(store.read(("m", "c/h"), 0, 32 * FREQ).values,
                                      np.concatenate(blocks))  # fmt: skip


def test_closing_writes_a_snapshot_so_the_next_open_replays_nothing(tmp_path: Path) -> None:
    with metricstore.open(tmp_path) as store:
        store.define_metric("m", FREQ, "sum")
        store.write(("m", "c/h"), 0, [1.0, 2.0])
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None and (report.snapshot_lsn, report.records) == (3, 0)
        np.testing.assert_array_equal(store.read(("m", "c/h"), 0, 2 * FREQ).values, [1.0, 2.0])


def test_a_damaged_snapshot_falls_back_and_says_why(tmp_path: Path) -> None:
    populate(tmp_path, 2)
    with metricstore.open(tmp_path) as store:
        first = store.checkpoint()
        # The third block of the populate() sequence.
        store.write(("m", "c/h"), 16 * FREQ, np.arange(8, dtype=np.float32) + 200)
        second = store.checkpoint()
        store.close(checkpoint=False)
    newest = Path(second.file)
    full = newest.read_bytes()
    newest.write_bytes(full[:-7])  # an incomplete file
    # The end block: its header, then the block count and the offsets of
    # the index and the series directory.
    end_block = len(full) - (12 + 24)
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None
        assert report.snapshot == first.file
        assert report.skipped_snapshots == [
            (
                second.file,
                f"block at offset {end_block} runs past the end of the file",
            )
        ]
        assert stored_blocks(store, 3) == 3


def test_checkpoints_need_a_store_directory() -> None:
    with pytest.raises(ValueError, match=r"^store: an in-memory store has nothing to checkpoint"):
        metricstore.Store().checkpoint()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metricstore", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_verify_passes_a_healthy_store_and_inspect_lists_its_files(tmp_path: Path) -> None:
    populate(tmp_path, 3)
    with metricstore.open(tmp_path) as store:
        store.checkpoint()
        store.write(("m", "c/h"), 0, [1.0])
        store.close(checkpoint=False)
    done = run_cli("verify", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ok"
    shown = run_cli("inspect", str(tmp_path)).stdout
    assert "snapshot-00000000000000000005.snap  LSN 5" in shown
    assert "wal-00000000000000000001.log" in shown
    assert "LSN 1..5  (1 create_series, 3 write_block, 1 define_metric)" in shown
    assert "LSN 6..6  (1 write_block)" in shown


def test_verify_fails_on_corruption_and_names_the_place(tmp_path: Path) -> None:
    populate(tmp_path, 4)
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    damaged_at = len(data) - 2 * BLOCK_RECORD
    data[damaged_at + 25] ^= 0x04
    segment.write_bytes(bytes(data))
    done = run_cli("verify", str(tmp_path))
    assert done.returncode == 1
    assert f"stops at offset {damaged_at}: record checksum mismatch" in done.stdout
    assert "CORRUPT" in done.stdout


def test_verify_accepts_a_torn_tail_and_says_so(tmp_path: Path) -> None:
    populate(tmp_path, 2)
    [segment] = segments(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)
    done = run_cli("verify", str(tmp_path))
    assert done.returncode == 0
    assert "ends in a torn tail" in done.stdout.splitlines()[-1]


def test_verify_of_a_directory_that_is_no_store_fails_clearly(tmp_path: Path) -> None:
    done = run_cli("verify", str(tmp_path))
    assert done.returncode == 1
    assert "is not a metricstore directory" in done.stderr


def test_a_background_checkpoint_follows_log_growth(tmp_path: Path) -> None:
    import time

    with metricstore.open(tmp_path, checkpoint_log_bytes=64 << 10) as store:
        store.define_metric("m", FREQ, "sum")
        store.write(("m", "c/h"), 0, np.ones(32 << 10, dtype=np.float32))
        deadline = time.monotonic() + 120  # a hang guard, not a speed bound
        while not list(tmp_path.glob("snapshot-*.snap")):
            assert time.monotonic() < deadline, "no background checkpoint"
            time.sleep(0.02)
        assert store.stats()["failed_checkpoints"] == 0
        store.close(checkpoint=False)
    with metricstore.open(tmp_path) as again:
        report = again.recovery
        assert report is not None and (report.snapshot_lsn, report.records) == (3, 0)


def test_a_bad_checkpoint_interval_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^checkpoint_interval_s: must be a positive number"):
        metricstore.open(tmp_path, checkpoint_interval_s=0)


def test_cuts_of_old_data_survive_reopening(tmp_path: Path) -> None:
    populate(tmp_path, 4)
    with metricstore.open(tmp_path) as store:
        store.drop_before(16 * FREQ)
        store.close(checkpoint=False)
    with metricstore.open(tmp_path) as store:
        assert np.isnan(store.read(("m", "c/h"), 0, 16 * FREQ).values).all()
        np.testing.assert_array_equal(store.read(("m", "c/h"), 16 * FREQ, 24 * FREQ).values,
                                      np.arange(8, dtype=np.float32) + 200)  # fmt: skip
