"""A damaged cc-backend file never stops a load: a snapshot that does not
parse whole is skipped, a log keeps the records before its first bad one (as
cc-backend's replay does), both are reported with the offset and the reason,
and every other file still loads. A layout cc-backend refuses to start on is
skipped and reported."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore.ccbackend import CheckpointLoadReport, DamagedFile, load_checkpoints

F = 10
RECORDS = [(1000 + F * i, "cpu_load", ("cpu0",), 0.5 + i) for i in range(5)]
OFFSETS = cc.record_offsets(RECORDS)
RECORD = OFFSETS[1] - OFFSETS[0]  # every record here has the same size


def load(root: Path) -> tuple[metricstore.Store, CheckpointLoadReport]:
    store = metricstore.Store()
    store.define_metric("cpu_load", F, "avg")
    return store, load_checkpoints(root, store, progress=False)


def logged(store: metricstore.Store, host: str = "h") -> np.ndarray:
    if store.find_series("cpu_load", f"c/{host}/cpu0") is None:
        return np.full(5, np.nan, dtype=np.float32)
    return store.read(("cpu_load", f"c/{host}/cpu0"), 1000, 1050).values


def kept(n: int) -> np.ndarray:
    return np.array([0.5 + i if i < n else np.nan for i in range(5)], dtype=np.float32)


def with_healthy_host(root: Path) -> None:
    cc.put(root / "c/ok/current.wal", cc.wal(RECORDS))


CUTS = [(k, j) for k in (0, 2, 4) for j in (1, 3, 4, 7, 8, 9, 20, RECORD - 4, RECORD - 1)]


@pytest.mark.parametrize(("record", "into"), CUTS)
def test_a_torn_log_keeps_every_record_before_the_cut(
    tmp_path: Path, record: int, into: int
) -> None:
    wal = cc.put(tmp_path / "c/h/current.wal", cc.wal(RECORDS)[: OFFSETS[record] + into])
    with_healthy_host(tmp_path)
    store, report = load(tmp_path)
    np.testing.assert_array_equal(logged(store), kept(record))
    np.testing.assert_array_equal(logged(store, "ok"), kept(5))
    [damage] = report.damaged
    assert (damage.path, damage.offset) == (str(wal), OFFSETS[record])
    assert (
        damage.reason.startswith("a torn record") and f"{record} records before it" in damage.reason
    )
    assert (report.files_read, report.wal_records) == (2, record + 5)


@pytest.mark.parametrize("record", range(6))
def test_a_log_cut_between_records_is_not_damaged(tmp_path: Path, record: int) -> None:
    cc.put(tmp_path / "c/h/current.wal", cc.wal(RECORDS)[: OFFSETS[record]])
    store, report = load(tmp_path)
    assert report.damaged == () and report.wal_records == record
    if record:
        np.testing.assert_array_equal(logged(store), kept(record))


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("record", "at", "reason"),
    [
        (2, RECORD - 1, "CRC32 does not match"),  # the stored CRC, in the middle
        (2, 8 + 3, "CRC32 does not match"),  # the timestamp, so the CRC fails
        (2, RECORD - 6, "CRC32 does not match"),  # the value
        (4, RECORD - 2, "CRC32 does not match"),  # the last record
        (3, 0, "record magic"),
        (1, 6, "payload length"),  # length 0x40xxxxxx: beyond 1 MiB
    ],
)
def test_a_bad_record_ends_the_log_there(tmp_path: Path, record: int, at: int, reason: str) -> None:
    wal = cc.put(tmp_path / "c/h/current.wal", corrupt(cc.wal(RECORDS), OFFSETS[record] + at))
    with_healthy_host(tmp_path)
    store, report = load(tmp_path)
    np.testing.assert_array_equal(logged(store), kept(record))
    np.testing.assert_array_equal(logged(store, "ok"), kept(5))
    [damage] = report.damaged
    assert (damage.path, damage.offset) == (str(wal), OFFSETS[record])
    assert reason in damage.reason


def test_a_record_whose_selector_overflows_its_payload_ends_the_log(tmp_path: Path) -> None:
    bad = bytearray(cc.payload(1020, "cpu_load", ("cpu0",), 9.0))
    bad[8 + 2 + 8 + 1] = 200  # the selector's length byte
    record = struct.pack("<II", cc.WAL_RECORD_MAGIC, len(bad)) + bytes(bad)
    record += struct.pack("<I", zlib.crc32(bytes(bad)))
    data = cc.wal(RECORDS[:2]) + record + b"".join(cc.record(*r) for r in RECORDS[2:])
    cc.put(tmp_path / "c/h/current.wal", data)
    store, report = load(tmp_path)
    np.testing.assert_array_equal(logged(store), kept(2))
    assert report.damaged[0].offset == OFFSETS[2]
    assert report.damaged[0].reason.startswith("selector 0 overflows the payload")


def test_the_record_magic_inside_a_payload_is_not_a_record(tmp_path: Path) -> None:
    # a value whose bits are the record magic, then a torn record at the end
    (magic_value,) = struct.unpack("<f", struct.pack("<I", cc.WAL_RECORD_MAGIC))
    records = [(1000 + F * i, "cpu_load", ("cpu0",), 0.5 + i) for i in range(5)]
    records[1] = (1010, "cpu_load", ("cpu0",), magic_value)
    cc.put(tmp_path / "c/h/current.wal", cc.wal(records) + cc.wal(RECORDS[:1])[4:10])
    store, report = load(tmp_path)
    values = logged(store)
    assert values.view(np.uint32)[1] == cc.WAL_RECORD_MAGIC
    np.testing.assert_array_equal(values[[0, 2, 3, 4]], [0.5, 2.5, 3.5, 4.5])
    assert report.wal_records == 5 and report.damaged[0].offset == len(cc.wal(records))


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"\x01\xa7", 0, "the file ends inside the 4-byte file header"),
        (struct.pack("<I", 0xCC1DA7A1) + b"xxxx", 0, "is not a log's"),
    ],
)
def test_a_log_with_a_bad_header_is_skipped_and_snapshots_still_load(
    tmp_path: Path, data: bytes, offset: int, reason: str
) -> None:
    cc.put(
        tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [1.0])}))
    )
    wal = cc.put(tmp_path / "c/h/current.wal", data)
    store, report = load(tmp_path)
    assert store.read(("cpu_load", "c/h"), 1000, 1010).values[0] == 1.0
    [damage] = report.damaged
    assert (damage.path, damage.offset) == (str(wal), offset) and reason in damage.reason
    assert report.files_read == 1


def test_an_empty_log_is_fine(tmp_path: Path) -> None:
    cc.put(tmp_path / "c/h/current.wal", b"")
    _, report = load(tmp_path)
    assert (report.damaged, report.files_read, report.values) == ((), 1, 0)


def two_snapshots(root: Path) -> tuple[Path, bytes]:
    first = cc.level({"cpu_load": (F, 1000, [1.0, 2.0])})
    cc.put(root / "c/h/1000.bin", cc.snapshot(1000, 1300, first))
    second = cc.level(
        {"cpu_load": (F, 1300, [3.0, 4.0, 5.0])},
        {"cpu0": cc.level({"cpu_load": (F, 1300, [6.0])})},
    )
    data = cc.snapshot(1300, 1600, second)
    cc.put(root / "c/h/current.wal", cc.wal([(1330, "cpu_load", (), 7.0)]))
    return root / "c/h/1300.bin", data


def assert_second_snapshot_skipped(store: metricstore.Store) -> None:
    values = store.read(("cpu_load", "c/h"), 1000, 1340).values
    expected = np.full(34, np.nan, dtype=np.float32)
    expected[[0, 1, 33]] = [1.0, 2.0, 7.0]
    np.testing.assert_array_equal(values, expected)
    assert store.find_series("cpu_load", "c/h/cpu0") is None


# header 20, metric count 4, name length 2 + "cpu_load" 8, header 20, 3 values,
# child count 4, name 2 + "cpu0" 4, metric count 4, ...
@pytest.mark.parametrize(
    ("cut", "offset"),
    [
        (0, 0),
        (19, 0),
        (21, 20),
        (25, 24),
        (40, 24),
        (65, 24),
        (66, 66),
        (70, 70),
        (72, 70),
        (80, 80),
    ],
)
def test_a_truncated_snapshot_is_skipped_whole(tmp_path: Path, cut: int, offset: int) -> None:
    path, data = two_snapshots(tmp_path)
    assert len(data) > cut
    cc.put(path, data[:cut])
    store, report = load(tmp_path)
    assert_second_snapshot_skipped(store)
    assert report.damaged == (DamagedFile(str(path), offset, report.damaged[0].reason),)
    assert report.damaged[0].reason.startswith("the file ends")
    assert report.files_read == 2 and report.values == 3


def test_a_snapshot_with_a_bad_magic_is_skipped(tmp_path: Path) -> None:
    path, data = two_snapshots(tmp_path)
    cc.put(path, struct.pack("<I", 0xCC5B0002) + data[4:])
    store, report = load(tmp_path)
    assert_second_snapshot_skipped(store)
    assert report.damaged == (
        DamagedFile(str(path), 0, "magic 0xCC5B0002 is not a binary snapshot's 0xCC5B0001"),
    )


def test_bytes_after_a_snapshot_tree_are_reported_and_the_tree_loads(tmp_path: Path) -> None:
    path, data = two_snapshots(tmp_path)
    cc.put(path, data + b"\0\0\0")
    store, report = load(tmp_path)
    assert store.read(("cpu_load", "c/h/cpu0"), 1300, 1310).values[0] == 6.0
    assert report.damaged[0].offset == len(data) and "3 bytes after" in report.damaged[0].reason
    assert report.files_read == 3


@pytest.mark.parametrize(
    ("text", "offset", "reason"),
    [
        (
            b'{"metrics": {"cpu_load": {"frequency": 10, "start": 1300, "data": [3.0, nu',
            72,
            "not valid JSON",
        ),
        (
            b'{"metrics": {"cpu_load": {"frequency": "10", "start": 1300}}}',
            None,
            "metrics.cpu_load.frequency is '10'",
        ),
        (
            b'{"metrics": {"cpu_load": {"frequency": 10, "data": ["x"]}}}',
            None,
            "metrics.cpu_load.data is not a list",
        ),
        (
            b'{"children": {"cpu0": {"metrics": {"m": {"frequency": 0}}}}}',
            None,
            "children.cpu0.metrics.m.frequency is 0",
        ),
        (b"[1, 2]", None, "the top level is not a JSON object"),
        (b'{"from": 1.5}', None, "from is 1.5"),
        (b'{"to": 9223372036854775808}', None, "to is 9223372036854775808, outside the int64"),
        (
            b'{"metrics": {"m": {"frequency": 4611686018427387904, "start": 4611686018427387904,'
            b' "data": [1, 2]}}}',
            None,
            "metrics.m.data runs past the int64 range of times",
        ),
        (
            b'{"children": {"\\ud800": {}}}',
            None,
            "children.\ud800 has a name that is not valid UTF-8",
        ),
    ],
)
def test_a_damaged_json_checkpoint_is_skipped(
    tmp_path: Path, text: bytes, offset: int | None, reason: str
) -> None:
    path, _ = two_snapshots(tmp_path)
    json_path = cc.put(path.with_suffix(".json"), text)
    store, report = load(tmp_path)
    assert_second_snapshot_skipped(store)
    assert report.damaged == (DamagedFile(str(json_path), offset, report.damaged[0].reason),)
    assert report.damaged[0].reason.startswith(reason)


def test_a_tree_deeper_than_a_store_path_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    # 20 levels below the host, each with a value: the host and 14 levels
    # fit a store path (16 names with cluster and host); the rest cannot.
    node = cc.level({"cpu_load": (F, 1000, [20.0])})
    for depth in reversed(range(20)):
        node = cc.level({"cpu_load": (F, 1000, [float(depth)])}, {"x": node})
    path = cc.put(tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, node))
    store, report = load(tmp_path)
    assert len(store) == 15 and report.values == 15 and report.damaged == ()
    deepest = "c/h/" + "/".join(["x"] * 14)
    assert store.read(("cpu_load", deepest), 1000, 1010).values.tolist() == [14.0]
    [skipped] = report.skipped
    assert skipped.path == str(path)
    assert skipped.reason.startswith(f"series 'cpu_load' at {('x',) * 15}: the path below")


def test_layouts_ccbackend_refuses_are_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    cc.put(tmp_path / "README", "not a cluster")
    cc.put(tmp_path / "c/notes.txt", "not a host")
    cc.put(tmp_path / "c/h/latest.bin", cc.snapshot(0, 0, cc.level({"cpu_load": (F, 0, [9.0])})))
    cc.put(tmp_path / "c/h/1_000.json", "{}")
    cc.put(
        tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [1.0])}))
    )
    store, report = load(tmp_path)
    assert store.read(("cpu_load", "c/h"), 0, 1010).values.tolist()[-1] == 1.0
    assert report.values == 1 and report.files_read == 1
    assert [(s.path[len(str(tmp_path)) :], s.reason.split(" (")[0]) for s in report.skipped] == [
        ("/README", "not a directory: the root holds <cluster>/<host>/ directories"),
        ("/c/h/1_000.json", "not named <time>.json"),
        ("/c/h/latest.bin", "not named <time>.bin"),
        ("/c/notes.txt", "not a directory: a cluster holds <host>/ directories"),
    ]


def test_a_series_the_store_cannot_name_is_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    node = cc.level(
        {"cpu_load": (F, 1000, [1.0])},
        {
            "": cc.level({"cpu_load": (F, 1000, [2.0])}),
            "cpu1": cc.level({"cpu_load": (F, 1000, [3.0])}),
        },
    )
    path = cc.put(tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, node))
    store, report = load(tmp_path)
    assert sorted(p for _, _, p in store.list_series()) == [("c", "h"), ("c", "h", "cpu1")]
    assert store.read(("cpu_load", "c/h/cpu1"), 1000, 1010).values[0] == 3.0
    [skipped] = report.skipped
    assert skipped.path == str(path) and skipped.reason.startswith("series 'cpu_load' at ('',)")
    assert report.values == 2
