"""A collector's first tick over many new (metric, path) keys creates all of
their series as one log record with one sync, not one record per series;
recovery re-creates exactly those series, at the same handles, with the
values written; and a torn record creates none of them (docs/format.md,
kind 7)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore import _core

FREQ = 10
NEW = 3000
CREATE_SERIES_MANY = 7
SEGMENT_HEADER = 24
RECORD_HEADER = 20


def keys() -> list[tuple[str, str]]:
    return [("m", f"emmy/h{i // 8:04d}/cpu{i % 8}") for i in range(NEW)]


def ops_by_kind(path: Path) -> dict[str, int]:
    found = _core.inspect(str(path))
    total: dict[str, int] = {}
    for segment in found["segments"]:
        for kind, n in segment["ops"].items():
            total[kind] = total.get(kind, 0) + n
    return total


def records(segment: Path) -> list[tuple[int, int, int]]:
    """(offset, end, kind) of each record of a log segment (docs/format.md)."""
    data = segment.read_bytes()
    out, offset = [], SEGMENT_HEADER
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        end = offset + RECORD_HEADER + length
        out.append((offset, end, data[offset + 16]))
        offset = end
    return out


def first_tick(path: Path) -> tuple[int, np.ndarray]:
    """Writes a store whose first tick names NEW new keys, an existing
    series and one new key twice; returns the existing handle and the
    values written."""
    values = np.arange(NEW + 2, dtype=np.float32) * np.float32(0.25)
    with metricstore.open(path, sync="always") as store:
        store.define_metric("m", FREQ, "sum")
        old = store.series("m", "emmy/old")
        store.write_tick(0, [*keys(), old, keys()[7]], values)
        store.close(checkpoint=False)
    return old, values


def expected_series(old: int) -> list[tuple[int, str, tuple[str, ...]]]:
    return [(old, "m", ("emmy", "old"))] + [
        (old + 1 + i, m, tuple(p.split("/"))) for i, (m, p) in enumerate(keys())
    ]


def test_a_first_tick_over_new_keys_logs_one_record_for_all_its_series(tmp_path: Path) -> None:
    first_tick(tmp_path)
    assert ops_by_kind(tmp_path) == {
        "define_metric": 1,
        "create_series": 1,
        "create_series_many": 1,
        "write_tick": 1,
    }
    verify = subprocess.run(
        [sys.executable, "-m", "metricstore", "inspect", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stderr
    assert "1 create_series_many" in verify.stdout


def test_recovery_re_creates_exactly_those_series_with_their_values(tmp_path: Path) -> None:
    old, values = first_tick(tmp_path)
    with metricstore.open(tmp_path) as store:
        assert store.recovery is not None and store.recovery.records == 4
        assert store.list_series() == expected_series(old)
        for i, key in enumerate(keys()):
            want = values[NEW + 1] if i == 7 else values[i]
            got = store.read(key, 0, FREQ).values
            assert got.view(np.uint32).tolist() == [want.view(np.uint32)], key
        assert store.read(("m", "emmy/old"), 0, FREQ).values.tolist() == [values[NEW]]


@pytest.mark.parametrize("where", ["header", "first key", "middle", "last byte"])
def test_a_torn_record_of_new_series_creates_none_of_them(tmp_path: Path, where: str) -> None:
    old, _ = first_tick(tmp_path)
    (segment,) = sorted(tmp_path.glob("wal-*.log"))
    (batch,) = [(start, end) for start, end, kind in records(segment) if kind == CREATE_SERIES_MANY]
    start, end = batch
    cut = {
        "header": start + 10,
        "first key": start + RECORD_HEADER + 12,
        "middle": (start + end) // 2,
        "last byte": end - 1,
    }[where]
    with segment.open("r+b") as f:
        f.truncate(cut)
    with metricstore.open(tmp_path) as store:
        report = store.recovery
        assert report is not None and report.torn is not None
        assert report.torn.offset == start
        assert store.list_series() == [(old, "m", ("emmy", "old"))]
        assert store.find_series("m", "emmy/h0000/cpu0") is None
        # The store goes on: the same tick again creates them all.
        store.write_tick(0, keys(), np.ones(NEW, dtype=np.float32))
    with metricstore.open(tmp_path) as again:
        assert again.list_series() == expected_series(old)
