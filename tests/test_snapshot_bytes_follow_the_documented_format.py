"""docs/format.md describes every byte of a snapshot: a reader written from it
alone (benchmarks/chunk_parts.py) walks a snapshot the store wrote, chunk by
chunk, to its last byte, over data that takes every scheme, coder and gap map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from format_reader import SCHEMES, snapshot_parts

import metricstore

FREQ = 10


def series_of_every_kind() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(15)
    n = 4 * 1024
    walk = np.cumsum(rng.standard_normal(n)).astype(np.float32)
    gauge = np.round(rng.normal(40, 3, n), 1).astype(np.float32)  # decimals
    gauge[rng.random(n) < 0.4] = np.nan  # dense scattered gaps: a bitmap
    sparse = np.round(rng.normal(200, 1, n), 2).astype(np.float32)
    sparse[100:900] = np.nan  # a few long gaps: runs
    sparse[2000:2003] = np.nan
    odd = np.round(rng.normal(5, 1, n), 2).astype(np.float32)
    odd[::97] = -0.0  # decimals with exceptions
    ratio = (100 / rng.integers(50, 300, n)).astype(np.float32)  # 1 / (x / 100)
    noise = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    drift = np.round(50 + np.cumsum(rng.normal(0, 0.3, n)), 1).astype(np.float32)  # deltas
    return {
        "walk": walk,
        "gauge": gauge,
        "sparse": sparse,
        "odd": odd,
        "ratio": ratio,
        "noise": noise,  # raw: random bits do not compress
        "drift": drift,
        "constant": np.full(n, 7.5, dtype=np.float32),
    }


def test_a_reader_written_from_the_format_document_walks_every_chunk(tmp_path: Path) -> None:
    data = series_of_every_kind()
    with metricstore.open(tmp_path / "s", sync="none", checkpoint_interval_s=None) as store:
        store.define_metric("m", FREQ, "avg")
        for name, values in data.items():
            store.write(("m", ("c", name)), 0, values)
    snapshot = max((tmp_path / "s").glob("snapshot-*.snap"))

    parts, kinds, slots = snapshot_parts(snapshot)

    # Every byte of the file is accounted for by some documented part (the
    # reader raises otherwise), and the chunks hold the slots written.
    assert sum(parts.values()) == snapshot.stat().st_size
    chunks = sum(kinds[f"scheme: {s}"] for s in SCHEMES)
    assert slots == chunks * 1024
    assert chunks == sum(len(v) // 1024 for v in data.values())
    # (A chunk with no sample is not stored: all-NaN chunks are the codec's alone.)
    for scheme in ("raw", "constant", "packed"):
        assert kinds[f"scheme: {scheme}"] > 0, (scheme, dict(kinds))
    for kind in (
        "coder: decimal, delta",
        "coder: reciprocal, frame of reference",
        "coder: float bits, delta",
        "gaps: bitmap",
        "gaps: runs",
        "values: exceptions",
        "values: patched",
    ):
        assert kinds[kind] > 0, (kind, dict(kinds))
    # The store reads back what the walk saw: the same data, bit for bit.
    with metricstore.open(tmp_path / "s", readonly=True) as store:
        for name, values in data.items():
            got = store.read(("m", ("c", name)), 0, len(values) * FREQ).values
            np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32))
