"""Sealed (compressed) chunks hold exactly what raw ones do: every float32 bit
pattern, read back through every path (windows, aggregates, resampling,
snapshots, reopening), and written over."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from format_reader import Cursor
from hypothesis import example, given, settings
from hypothesis import strategies as st

import metricstore
import metricstore.ccbackend

FREQ = 10
SPECIAL = np.array(
    [0x7FC00000, 0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000, 0x7F800000, 0xFF800000,
     0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x00800000],
    dtype=np.uint32,
)  # fmt: skip


def in_memory() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("m", FREQ, "sum")
    return store


def bits(values: np.ndarray) -> list[int]:
    return values.view(np.uint32).tolist()


@settings(max_examples=60, deadline=None)
@example([0x7F800001], 0)  # a lone signalling NaN: nothing is stored
@example([0x7F800001, 0x3F800000], 1023)  # kept beside a value, across chunks
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3000),
    st.integers(-5000, 5000),
)
def test_any_bit_patterns_survive_sealing(words: list[int], first_slot: int) -> None:
    values = np.array(words, dtype=np.uint32).view(np.float32)
    store = in_memory()
    store.write(("m", "a"), first_slot * FREQ, values)
    store.seal()
    store.seal()  # the second pass seals the newest chunk too
    stats = store.stats()
    assert stats["raw_chunks"] == 0 and stats["sealed_chunks"] == stats["chunks"]
    start, stop = (first_slot - 3) * FREQ, (first_slot + len(words) + 3) * FREQ
    got = store.read(("m", "a"), start, stop).values
    # Every written bit pattern comes back, but for NaN where a chunk would
    # hold nothing else: NaN is "missing", and writing only missing values
    # where nothing is stored stores nothing (reads give the plain NaN).
    expected = values.view(np.uint32).copy()
    slots = np.arange(first_slot, first_slot + len(words))
    for key in np.unique(slots // 1024):
        inside = slots // 1024 == key
        if np.isnan(values[inside]).all():
            expected[inside] = 0x7FC00000
    assert bits(got[3:-3]) == expected.tolist()
    assert np.isnan(got[:3]).all() and np.isnan(got[-3:]).all()


def test_reads_of_sealed_hot_and_overwritten_chunks_match_numpy() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    model = {
        "walk": np.cumsum(rng.standard_normal(n)).astype(np.float32),
        "load": np.round(rng.uniform(0, 72, n), 2).astype(np.float32),
        "bits": rng.integers(0, 2**32, n, dtype=np.uint32).view(np.float32),
    }
    model["load"][rng.random(n) < 0.1] = np.nan
    model["bits"][:11] = SPECIAL.view(np.float32)
    store = in_memory()
    for host, values in model.items():
        store.write(("m", f"c/{host}"), 0, values)
    assert store.seal() == 3 * 9  # all but each series' newest chunk
    # Overwrite inside sealed chunks (they unseal), and append to the hot one.
    for host, values in model.items():
        patch = rng.standard_normal(50).astype(np.float32)
        store.write(("m", f"c/{host}"), 4000 * FREQ, patch)
        values[4000:4050] = patch
    for host, values in model.items():
        for start, length in ((0, n), (1000, 1000), (4020, 60), (9990, 10), (5, 1)):
            got = store.read(("m", f"c/{host}"), start * FREQ, (start + length) * FREQ).values
            assert bits(got) == bits(values[start : start + length]), (host, start)
    total = np.nansum(np.stack([model["walk"], model["load"]]), axis=0).astype(np.float32)
    aggregate = metricstore.Store()
    aggregate.define_metric("m", FREQ, "sum")
    for host in ("walk", "load"):
        aggregate.write(("m", f"c/{host}"), 0, model[host])
    aggregate.seal()
    got = aggregate.read(("m", "c"), 0, n * FREQ).values
    raw = in_memory()
    for host in ("walk", "load"):
        raw.write(("m", f"c/{host}"), 0, model[host])
    # The aggregate of sealed chunks is the aggregate of raw ones.
    assert bits(got) == bits(raw.read(("m", "c"), 0, n * FREQ).values)
    np.testing.assert_allclose(got, total, rtol=1e-5)


def test_a_store_of_sealed_chunks_reopens_them_sealed_and_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.standard_normal(5000)).astype(np.float32)
    with metricstore.open(tmp_path, sync="none") as store:
        store.define_metric("m", FREQ, "avg")
        store.write(("m", "c/h"), 0, walk)
        store.checkpoint()
        after = store.stats()
        # The checkpoint sealed every chunk but the one written last.
        assert after["raw_chunks"] == 1 and after["sealed_chunks"] == 4
        assert after["data_bytes"] == 4096 + after["sealed_bytes"]
    with metricstore.open(tmp_path) as again:
        # A writable open reads every chunk and keeps it sealed in memory...
        stats = again.stats()
        assert stats["raw_chunks"] == 0 and stats["sealed_chunks"] == 5
        assert stats["data_bytes"] == stats["sealed_bytes"] < 5 * 4096
        assert bits(again.read(("m", "c/h"), 0, 5000 * FREQ).values) == bits(walk)
    with metricstore.open(tmp_path, readonly=True) as reader:
        # ...a read-only one leaves it in the mapped snapshot until read.
        stats = reader.stats()
        assert stats["sealed_chunks"] == 0 and stats["mapped_chunks"] == 5
        assert stats["data_bytes"] == stats["mapped_bytes"] < 5 * 4096
        assert bits(reader.read(("m", "c/h"), 0, 5000 * FREQ).values) == bits(walk)


def test_closing_leaves_the_data_once(tmp_path: Path) -> None:
    with metricstore.open(tmp_path, sync="none") as store:
        store.define_metric("m", FREQ, "avg")
        for round_ in range(3):
            store.write(("m", "c/h"), round_ * 2000 * FREQ, np.full(2000, round_, np.float32))
            store.checkpoint()
        store.write(("m", "c/h"), 6000 * FREQ, np.ones(10, np.float32))
    names = sorted(p.name for p in tmp_path.iterdir())
    snapshots = [n for n in names if n.endswith(".snap")]
    assert len(snapshots) == 1
    snapshot_lsn = int(snapshots[0].removeprefix("snapshot-").removesuffix(".snap"))
    segments = [n for n in names if n.endswith(".log")]
    # Only the segment started after the snapshot is left, and it is empty.
    assert [int(n.removeprefix("wal-").removesuffix(".log")) for n in segments] == [
        snapshot_lsn + 1
    ]
    assert (tmp_path / segments[0]).stat().st_size <= 64
    with metricstore.open(tmp_path) as again:
        got = again.read(("m", "c/h"), 0, 6010 * FREQ).values
        assert (got[:2000] == 0).all() and (got[4000:6000] == 2).all() and (got[6000:] == 1).all()


def test_a_damaged_chunk_of_a_mapped_snapshot_raises_when_read_naming_file_and_offset(
    tmp_path: Path,
) -> None:
    walk = np.cumsum(np.random.default_rng(9).standard_normal(3000)).astype(np.float32)
    with metricstore.open(tmp_path, sync="none") as store:
        store.define_metric("m", FREQ, "avg")
        store.write(("m", "c/a"), 0, walk)
        store.write(("m", "c/b"), 0, walk)
        snapshot = Path(store.checkpoint().file)
        store.close(checkpoint=False)
    data = bytearray(snapshot.read_bytes())
    # The index (format 5, docs/format.md): the end block's last 16 bytes
    # give its offset and the directory's; after its 12-byte block header,
    # series a's chunk count, then per chunk varints (key, offset or gap,
    # len), the CRC and a varint. Damage a's second chunk.
    index = Cursor(data, int.from_bytes(data[-16:-8], "little") + 12)
    assert index.varint() == 3  # chunks of series a
    _key, first, length = index.varint(), index.varint(), index.varint()
    index.u32()  # its CRC
    index.varint()  # its NaN slots
    assert index.varint() == 1  # the next key
    offset = first + length + index.varint()
    data[offset + 6] ^= 0x10
    snapshot.write_bytes(bytes(data))
    with metricstore.open(tmp_path, readonly=True) as reader:
        with pytest.raises(metricstore.CorruptionError) as raised:
            reader.read(("m", "c/a"), 0, 3000 * FREQ)
        assert str(snapshot) in str(raised.value) and str(offset) in str(raised.value)
        # The first chunk of a, and all of b, still read exactly.
        assert bits(reader.read(("m", "c/a"), 0, 1024 * FREQ).values) == bits(walk[:1024])
        assert bits(reader.read(("m", "c/b"), 0, 3000 * FREQ).values) == bits(walk)


def test_damaged_index_entries_of_a_series_raise_on_its_reads_only(tmp_path: Path) -> None:
    walk = np.cumsum(np.random.default_rng(11).standard_normal(3000)).astype(np.float32)
    with metricstore.open(tmp_path, sync="none") as store:
        store.define_metric("m", FREQ, "avg")
        store.write(("m", "c/a"), 0, walk)
        store.write(("m", "c/b"), 0, walk[::-1].copy())
        snapshot = Path(store.checkpoint().file)
        store.close(checkpoint=False)
    data = bytearray(snapshot.read_bytes())
    # Format 5 (docs/format.md): the end block ends with the offsets of the
    # index and of the series directory; the directory gives per series
    # (chunk count, len, crc32, samples, chunk bytes), and the series'
    # index entries follow each other from the start of the index payload.
    index_at = int.from_bytes(data[-16:-8], "little")
    directory = Cursor(data, int.from_bytes(data[-8:], "little") + 12)
    count, length, crc = directory.varint(), directory.varint(), directory.u32()
    samples, chunk_bytes = directory.varint(), directory.varint()
    assert (count, samples) == (3, 3000) and 0 < chunk_bytes < 3000 * 4
    entries = index_at + 12
    assert zlib.crc32(data[entries : entries + length]) == crc
    data[entries + length // 2] ^= 0x04
    snapshot.write_bytes(bytes(data))
    with metricstore.open(tmp_path, readonly=True) as reader:
        assert reader.stats()["samples"] == 6000
        with pytest.raises(metricstore.CorruptionError) as raised:
            reader.read(("m", "c/a"), 0, 100 * FREQ)
        assert str(snapshot) in str(raised.value) and str(entries) in str(raised.value)
        with pytest.raises(metricstore.CorruptionError):
            reader.extent(("m", "c/a"))
        assert bits(reader.read(("m", "c/b"), 0, 3000 * FREQ).values) == bits(walk[::-1])
    # A writable open checks the whole index: it sets the snapshot aside
    # and replays the log, which holds every write.
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None
        assert [file for file, _ in report.skipped_snapshots] == [str(snapshot)]
        assert bits(store.read(("m", "c/a"), 0, 3000 * FREQ).values) == bits(walk)
        assert bits(store.read(("m", "c/b"), 0, 3000 * FREQ).values) == bits(walk[::-1])


def test_the_real_emmy_job_seals_to_under_1_3_bytes_a_sample_and_reads_back_exactly() -> None:
    archive = Path(metricstore.__file__).parent / "data/cc-job-archive"
    job = archive / "emmy/1403/244/1608923076"
    store = metricstore.Store()
    metricstore.ccbackend.load_job(job, store)
    spans = [(h, store.extent(h)) for h, _, _ in store.list_series()]
    raw = {h: store.read(h, *e).values.copy() for h, e in spans if e is not None}
    store.seal()
    store.seal()
    stats = store.stats()
    assert stats["raw_chunks"] == 0 and stats["sealed_chunks"] == stats["chunks"]
    for handle, values in raw.items():
        extent = store.extent(handle)
        assert extent is not None
        assert bits(store.read(handle, *extent).values) == bits(values), handle
    # Per real sample (missing ones included, the NaN padding of chunks not).
    samples = sum(len(v) for v in raw.values())
    assert stats["sealed_bytes"] / samples < 1.3, stats


def test_background_seal_passes_follow_growth_and_can_be_turned_off() -> None:
    data = np.cumsum(np.random.default_rng(2).standard_normal(64 * 1024)).astype(np.float32)
    off = in_memory()
    off.set_seal_after(None)
    off.write(("m", "a"), 0, data)
    off.write(("m", "b"), 0, data)
    assert off.stats()["sealed_chunks"] == 0  # no pass was started
    on = in_memory()
    on.set_seal_after(8 * 4096)  # a pass once 8 raw chunks were added
    on.write(("m", "a"), 0, data)
    on.write(("m", "b"), 0, data)
    deadline = time.monotonic() + 120  # a hang guard, not a speed bound
    while on.stats()["sealed_chunks"] == 0:
        assert time.monotonic() < deadline, "no background seal pass"
        time.sleep(0.01)
    assert bits(on.read(("m", "b"), 0, len(data) * FREQ).values) == bits(data)
    with pytest.raises(ValueError, match=r"^nbytes: must be positive or None"):
        on.set_seal_after(0)
