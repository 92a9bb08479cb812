"""A store directory written by an older metricstore still opens, reads back
bit for bit what was written, and inspect/verify understand it.

tests/fixtures/store-format1 was written by snapshot and log format 1,
store-format2 by snapshot format 2 and log format 1, store-format3 by
snapshot format 3 and log format 2, the last formats without units,
store-format4 by snapshot format 4, and store-format5 by snapshot format 5
with sealed chunks of codec version 1 (see make_old_store.py there): each a
snapshot plus a log tail with overwrites, ticks, points and series created
after the snapshot, and float32 bit patterns that must survive exactly (NaN
payloads, -0.0, infinities, subnormals). Their metrics have no unit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metricstore

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(
    params=["store-format1", "store-format2", "store-format3", "store-format4", "store-format5"]
)
def fixture(request: pytest.FixtureRequest) -> Path:
    return FIXTURES / request.param


def expected(fixture: Path) -> list[tuple[str, tuple[str, ...], int, np.ndarray]]:
    rows = json.loads((fixture / "expected.json").read_text())
    with np.load(fixture / "expected.npz") as arrays:
        out = [
            (metric, tuple(path), start, arrays[f"s{i}"])
            for i, (metric, path, start, _) in enumerate(rows)
        ]
    assert [len(bits) for *_, bits in out] == [count for *_, count in rows]
    return out


def assert_holds_the_recorded_contents(store: metricstore.Store, fixture: Path) -> None:
    rows = expected(fixture)
    assert store.metrics == [
        ("cpu_load", 60, "avg", None),
        ("flops_any", 60, "sum", None),
        ("mem_bw", 10, "sum", None),
        ("bits", 1, "none", None),
        ("ipc", 60, "avg", None),
    ]
    assert [(metric, path) for _, metric, path in store.list_series()] == [
        (metric, path) for metric, path, _, _ in rows
    ]
    frequency = {m.name: m.frequency for m in store.metrics}
    for metric, path, start, bits in rows:
        result = store.read((metric, path), start, start + len(bits) * frequency[metric])
        assert result.values.view(np.uint32).tolist() == bits.tolist(), (metric, path)


@pytest.fixture
def old_store(tmp_path: Path, fixture: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(fixture / "store", copy)
    return copy


def test_an_old_store_opens_read_only_with_every_bit_recorded(
    old_store: Path, fixture: Path
) -> None:
    with metricstore.open(old_store, readonly=True) as store:
        report = store.recovery
        assert report is not None and report.snapshot is not None
        assert report.snapshot_lsn == 22 and report.records == 47
        assert_holds_the_recorded_contents(store, fixture)


def test_an_old_store_opens_for_writing_and_survives_a_checkpoint(
    old_store: Path, fixture: Path
) -> None:
    with metricstore.open(old_store) as store:
        assert_holds_the_recorded_contents(store, fixture)
        store.checkpoint()
    with metricstore.open(old_store) as store:
        report = store.recovery
        assert report is not None and report.records == 0
        assert_holds_the_recorded_contents(store, fixture)


def test_inspect_and_verify_understand_an_old_store(old_store: Path, fixture: Path) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "metricstore", "verify", str(old_store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "snapshot-00000000000000000022.snap  LSN 22" in verify.stdout
    assert "LSN 23..69" in verify.stdout
    assert verify.stdout.rstrip().endswith("ok")
    inspect = subprocess.run(
        [sys.executable, "-m", "metricstore", "inspect", str(old_store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    # The log tail defines "ipc": before format 4 in the record kind
    # written before units.
    if fixture.name < "store-format4":
        assert "1 define_metric (no unit)" in inspect.stdout
    else:
        assert "1 define_metric)" in inspect.stdout
