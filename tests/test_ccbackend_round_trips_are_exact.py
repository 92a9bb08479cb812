"""A store written as cc-backend checkpoints (.bin or .json) or as its
Parquet archive and loaded back is equal to the original, bit for bit: the
real emmy job from ClusterCockpit's test data and a store with nested
children and gaps. The written bytes also parse with the independent reader
in ``ccfiles`` and the Parquet file has cc-backend's schema."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore.ccbackend import (
    export_parquet,
    load_checkpoints,
    load_job,
    load_parquet,
    write_checkpoints,
)
from metricstore.demo import EMMY_JOB, expected_series

STEP = 60
FIRST = (1608923076 + STEP // 2) // STEP * STEP
N = 1441
BEGIN, END = FIRST, FIRST + N * STEP


@pytest.fixture(scope="module")
def emmy() -> metricstore.Store:
    store = metricstore.Store()
    load_job(EMMY_JOB, store)
    return store


def assert_equal_stores(a: metricstore.Store, b: metricstore.Store, begin: int, end: int) -> None:
    assert sorted(a.metrics) == sorted(b.metrics)
    keys = sorted((m, p) for _, m, p in a.list_series())
    assert keys == sorted((m, p) for _, m, p in b.list_series())
    for key in keys:
        left, right = a.read(key, begin, end), b.read(key, begin, end)
        assert (left.start, left.step) == (right.start, right.step)
        np.testing.assert_array_equal(
            left.values.view(np.uint32), right.values.view(np.uint32), err_msg=str(key)
        )


@pytest.mark.parametrize("form", ["bin", "json"])
def test_the_emmy_job_round_trips_through_checkpoints(
    emmy: metricstore.Store, tmp_path: Path, form: str
) -> None:
    written = write_checkpoints(emmy, tmp_path, since=BEGIN, until=END, format=form)
    assert (written.files, written.series, written.skipped_series) == (32, 288, ())
    assert written.values == emmy.stats()["samples"] == 377_019
    again = metricstore.Store()
    loaded = load_checkpoints(tmp_path, again, metrics=emmy.metrics, progress=False)
    assert (loaded.files_read, loaded.values, loaded.damaged, loaded.skipped) == (
        32, written.values, (), ())  # fmt: skip
    assert loaded.bytes_read == written.bytes
    assert_equal_stores(emmy, again, BEGIN - STEP, END + STEP)


def test_written_snapshots_have_ccbackends_layout(emmy: metricstore.Store, tmp_path: Path) -> None:
    write_checkpoints(emmy, tmp_path, since=BEGIN, until=END)
    expected = expected_series()
    hosts = sorted({h for _, h in expected})
    for host in (hosts[0], hosts[-1]):
        path = tmp_path / "emmy" / host / f"{BEGIN}.bin"
        first, last, node = cc.read_snapshot(path.read_bytes())
        assert (first, last, node["children"]) == (BEGIN, END, {})
        assert sorted(node["metrics"]) == sorted(m for m, h in expected if h == host)
        for metric, (frequency, start, values) in node["metrics"].items():
            source = expected[metric, host]
            present = np.flatnonzero(~np.isnan(source))
            assert frequency == STEP and start == FIRST + int(present[0]) * STEP
            trimmed = source[present[0] : present[-1] + 1]
            got = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
            np.testing.assert_array_equal(got.view(np.uint32), trimmed.view(np.uint32))


def nested_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 10, "avg")
    store.define_metric("flops_any", 10, "sum")
    store.define_metric("mem_bw", 30, "sum")
    gaps = np.array([0.1, np.nan, 1e-7, 3.4e38, -0.0, np.nan, 7.25], dtype=np.float32)
    store.write(("cpu_load", "c1/h1"), 1000, gaps)
    store.write(("flops_any", "c1/h1/cpu3"), 990, np.arange(20, dtype=np.float32) / 3)
    store.write(("flops_any", "c1/h1/socket0/core12"), 1100, [2.5])
    store.write(("mem_bw", "c1/h1/socket0"), 990, [1.0, 2.0, 3.0])
    store.write(("mem_bw", "c2/h9/accelerator00000000:3b:00.0"), 1020, [4.0, np.nan, 6.0])
    store.write(("cpu_load", "c1"), 1000, [5.0])  # not below a host
    store.write(("cpu_load", "c1/h2"), 500, [5.0])  # before the range
    return store


@pytest.mark.parametrize("form", ["bin", "json"])
def test_nested_children_and_gaps_round_trip(tmp_path: Path, form: str) -> None:
    store = nested_store()
    written = write_checkpoints(store, tmp_path, since=960, until=1300, format=form)
    assert written.skipped_series == (("cpu_load", ("c1",)),)
    assert (written.files, written.series, written.values) == (2, 5, 5 + 20 + 1 + 3 + 2)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        f"c1/h1/960.{form}", f"c2/h9/960.{form}"]  # fmt: skip
    again = metricstore.Store()
    load_checkpoints(tmp_path, again, metrics=store.metrics, progress=False)
    for _, metric, path in store.list_series():
        if path not in (("c1",), ("c1", "h2")):
            left, right = (
                store.read((metric, path), 900, 1400),
                again.read((metric, path), 900, 1400),
            )
            np.testing.assert_array_equal(left.values.view(np.uint32), right.values.view(np.uint32))
    assert again.find_series("cpu_load", "c1") is None
    assert again.find_series("cpu_load", "c1/h2") is None


def test_one_cluster_can_be_written_and_a_file_is_replaced(tmp_path: Path) -> None:
    store = nested_store()
    cc.put(tmp_path / "c2/h9/960.bin", b"old")
    written = write_checkpoints(store, tmp_path, since=960, until=1300, cluster="c2")
    assert (written.files, written.series) == (1, 1)
    assert not (tmp_path / "c1").exists()
    first, _, node = cc.read_snapshot((tmp_path / "c2/h9/960.bin").read_bytes())
    assert first == 960
    assert node["children"]["accelerator00000000:3b:00.0"]["metrics"]["mem_bw"] == (
        30, 1020, [4.0, None, 6.0])  # fmt: skip
    assert not list(tmp_path.rglob("*.tmp"))


def test_without_since_and_until_everything_is_written(tmp_path: Path) -> None:
    store = nested_store()
    start, stop = store.extent()
    everything = write_checkpoints(store, tmp_path / "all")
    explicit = write_checkpoints(store, tmp_path / "span", since=start, until=stop)
    assert (everything.files, everything.series, everything.values) == (
        explicit.files, explicit.series, explicit.values)  # fmt: skip
    # Every sample is written but those of the series above any host.
    assert everything.skipped_series == (("cpu_load", ("c1",)),)
    above = store.read(("cpu_load", "c1"), start, stop).values
    assert everything.values == store.stats()["samples"] - np.count_nonzero(~np.isnan(above))
    for path in (tmp_path / "span").rglob("*.bin"):
        twin = tmp_path / "all" / path.relative_to(tmp_path / "span")
        assert twin.read_bytes() == path.read_bytes()
    empty = metricstore.Store()
    assert write_checkpoints(empty, tmp_path / "none").files == 0
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_write_arguments_are_checked(tmp_path: Path) -> None:
    store = nested_store()
    with pytest.raises(ValueError, match=r"^until: 960 is not after since \(960\)"):
        write_checkpoints(store, tmp_path, since=960, until=960)
    with pytest.raises(ValueError, match=r"^format: expected 'bin' or 'json', got 'avro'"):
        write_checkpoints(store, tmp_path, since=960, until=1300, format="avro")
    with pytest.raises(ValueError, match=r"^store: cc-backend's files use seconds"):
        write_checkpoints(metricstore.Store(unit="ms"), tmp_path, since=0, until=1)
    assert list(tmp_path.iterdir()) == []


def parquet() -> Any:
    pytest.importorskip("pyarrow")
    return importlib.import_module("pyarrow.parquet")


def test_the_parquet_archive_has_ccbackends_schema_and_rows(tmp_path: Path) -> None:
    pq = parquet()
    store = nested_store()
    store.write(("flops_any", "c1/h1/gpu"), 1000, [9.0])
    report = export_parquet(store, tmp_path / "a.parquet", since=960, until=1300)
    table = pq.read_table(tmp_path / "a.parquet")
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("cluster", "string"), ("hostname", "string"), ("metric", "string"),
        ("scope", "string"), ("scope_id", "string"), ("timestamp", "int64"),
        ("frequency", "int64"), ("value", "float")]  # fmt: skip
    rows = table.to_pylist()
    assert report.rows == len(rows) == 5 + 20 + 1 + 3 + 2 + 1
    assert (report.hosts, report.series) == (2, 6)
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 2
    order = [(r["cluster"], r["metric"], r["scope"], r["scope_id"]) for r in rows]
    # per host: metrics sorted, then children sorted, depth first
    assert list(dict.fromkeys(order)) == [
        ("c1", "cpu_load", "node", ""),
        ("c1", "flops_any", "hwthread", "3"),
        ("c1", "flops_any", "gpu", ""),
        ("c1", "mem_bw", "socket", "0"),
        ("c1", "flops_any", "core", "12"),
        ("c2", "mem_bw", "accelerator", "00000000:3b:00.0"),
    ]
    assert rows[0] == {
        "cluster": "c1", "hostname": "h1", "metric": "cpu_load", "scope": "node", "scope_id": "",
        "timestamp": 1000, "frequency": 10, "value": float(np.float32(0.1))}  # fmt: skip
    assert [r["timestamp"] for r in rows[:5]] == [1000, 1020, 1030, 1040, 1060]
    # The types parquet-go writes for cc-backend's struct, annotations included.
    columns = pq.ParquetFile(tmp_path / "a.parquet").schema
    types = [
        (c.name, c.physical_type, str(c.logical_type), c.converted_type, c.max_definition_level)
        for c in (columns.column(i) for i in range(len(columns)))
    ]
    assert types == [
        *((n, "BYTE_ARRAY", "String", "UTF8", 0) for n in ("cluster", "hostname", "metric")),
        *((n, "BYTE_ARRAY", "String", "UTF8", 0) for n in ("scope", "scope_id")),
        ("timestamp", "INT64", "Int(bitWidth=64, isSigned=true)", "INT_64", 0),
        ("frequency", "INT64", "Int(bitWidth=64, isSigned=true)", "INT_64", 0),
        ("value", "FLOAT", "None", "NONE", 0),
    ]


def test_the_archive_layout_has_one_file_per_cluster_named_by_since(tmp_path: Path) -> None:
    pq = parquet()
    store = nested_store()
    whole = export_parquet(store, tmp_path / "a.parquet", since=960, until=1300)
    report = export_parquet(store, tmp_path / "archive", since=960, until=1300, layout="archive")
    files = [tmp_path / "archive" / c / "960.parquet" for c in ("c1", "c2")]
    assert report.files == tuple(str(f) for f in files)
    assert sorted(p for p in (tmp_path / "archive").rglob("*") if p.is_file()) == files
    assert (report.rows, report.series, report.hosts) == (whole.rows, whole.series, whole.hosts)
    assert report.bytes == sum(f.stat().st_size for f in files)
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert rows == pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert {r["cluster"] for r in pq.read_table(files[1]).to_pylist()} == {"c2"}
    with pytest.raises(ValueError, match=r"^layout: expected 'file' or 'archive', got 'tree'"):
        export_parquet(store, tmp_path / "x", layout="tree")


def test_the_footer_codec_reencodes_a_footer_byte_for_byte(tmp_path: Path) -> None:
    parquet()
    from metricstore import _parquet

    export_parquet(nested_store(), tmp_path / "a.parquet", since=960, until=1300)
    data = (tmp_path / "a.parquet").read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length : -8]
    assert _parquet._write_struct(_parquet._Reader(footer).struct()) == footer
    # Annotated once: a second pass changes nothing.
    assert _parquet.annotate_signed_int64(tmp_path / "a.parquet") == 0
    assert (tmp_path / "a.parquet").read_bytes() == data


def test_the_emmy_job_round_trips_through_parquet(emmy: metricstore.Store, tmp_path: Path) -> None:
    parquet()
    exported = export_parquet(emmy, tmp_path / "emmy.parquet", since=BEGIN, until=END)
    assert exported.rows == emmy.stats()["samples"]
    again = metricstore.Store()
    loaded = load_parquet(tmp_path / "emmy.parquet", again, metrics=emmy.metrics)
    assert (loaded.rows, loaded.values, loaded.series) == (exported.rows, exported.rows, 288)
    assert_equal_stores(emmy, again, BEGIN - STEP, END + STEP)


def test_loading_parquet_maps_scopes_to_children_and_reports_unknown_metrics(
    tmp_path: Path,
) -> None:
    parquet()
    store = nested_store()
    store.write(("cpu_load", "c1/h1/cpu5"), 1000, [3.0])
    export_parquet(store, tmp_path / "a.parquet", since=960, until=1300)
    again = metricstore.Store()
    again.define_metric("cpu_load", 10, "avg")
    again.define_metric("flops_any", 10, "sum")
    loaded = load_parquet(tmp_path / "a.parquet", again)
    assert loaded.unknown_metrics == {"mem_bw": 5}
    assert sorted(p for _, _, p in again.list_series()) == [
        ("c1", "h1"), ("c1", "h1", "core12"),
        ("c1", "h1", "hwthread3"), ("c1", "h1", "hwthread5")]  # fmt: skip
    assert again.read(("cpu_load", "c1/h1/hwthread5"), 1000, 1010).values[0] == 3.0


def test_parquet_needs_pyarrow_and_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def without_pyarrow(name: str, package: str | None = None) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_pyarrow)
    with pytest.raises(ImportError, match=r"^export_parquet needs pyarrow: pip install"):
        export_parquet(nested_store(), tmp_path / "a.parquet", since=0, until=1)


def test_importing_metricstore_does_not_import_pyarrow() -> None:
    code = "import sys, metricstore, metricstore.ccbackend; print('pyarrow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
