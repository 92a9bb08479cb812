"""``python -m metricstore import-cc ROOT STORE`` loads cc-backend's files into a
store directory and ``export-cc STORE ROOT`` writes them back; both print
what they did and exit non-zero when nothing was loaded or written or on an
error, naming the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore.__main__ import main


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    node = cc.level(
        {"cpu_load": (10, 1000, [1.0, 2.0, 3.0])},
        {"cpu1": cc.level({"flops_any": (10, 1000, [0.5, None, 0.25])})},
    )
    cc.put(root / "fritz/f0101/1000.bin", cc.snapshot(1000, 1300, node))
    cc.put(root / "fritz/f0101/current.wal", cc.wal([(1030, "cpu_load", (), 4.0)])[:-3])
    config = [("cpu_load", 10, "avg"), ("flops_any", 10, "sum")]
    cc.put(tmp_path / "cluster.json", cc.cluster_json("fritz", config))
    return root


def test_import_cc_loads_and_reports(
    checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(tmp_path / "cluster.json")
    code = main(
        ["import-cc", str(checkpoints), str(tmp_path / "store"), "--cluster-config", config]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 host, read 2 files" in out and "loaded 5 values, 0 of them from logs" in out
    assert "damaged: 1" in out and "a torn record" in out
    with metricstore.open(tmp_path / "store", readonly=True) as store:
        np.testing.assert_array_equal(
            store.read(("flops_any", "fritz/f0101/cpu1"), 1000, 1030).values, [0.5, np.nan, 0.25]
        )
        assert store.read(("cpu_load", "fritz/f0101"), 1020, 1030).values[0] == 3.0


def test_import_cc_exits_1_when_nothing_loads(
    checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-cc", str(checkpoints), str(tmp_path / "store"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "not loaded, metric not defined (values): cpu_load (3), flops_any (2)" in captured.out
    assert "import-cc: nothing loaded from" in captured.err and "--cluster-config" in captured.err


def test_import_cc_names_a_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-cc", str(tmp_path / "nowhere"), str(tmp_path / "store")]) == 1
    assert capsys.readouterr().err.startswith(f"import-cc: root: {tmp_path / 'nowhere'} is not")


@pytest.mark.parametrize("form", ["bin", "json", "parquet"])
def test_export_cc_writes_what_import_cc_reads_back(
    checkpoints: Path, tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if form == "parquet":
        pytest.importorskip("pyarrow")
    config = str(tmp_path / "cluster.json")
    assert (
        main(["import-cc", str(checkpoints), str(tmp_path / "a"), "--cluster-config", config]) == 0
    )
    target = tmp_path / ("out.parquet" if form == "parquet" else "out")
    args = ["export-cc", str(tmp_path / "a"), str(target), "--format", form]
    assert main([*args, "--since", "1970-01-01T00:16:40", "--until", "1300"]) == 0
    assert (
        "wrote 5 rows" if form == "parquet" else f"wrote 1 {form} file"
    ) in capsys.readouterr().out
    if form != "parquet":
        assert (target / "fritz" / "f0101" / f"1000.{form}").is_file()
    assert main(["import-cc", str(target), str(tmp_path / "b"), "--cluster-config", config]) == 0
    with metricstore.open(tmp_path / "b", readonly=True) as store:
        child = "hwthread1" if form == "parquet" else "cpu1"  # cc-backend's scope of cpu1
        assert sorted(p for _, _, p in store.list_series()) == [
            ("fritz", "f0101"), ("fritz", "f0101", child)]  # fmt: skip
        np.testing.assert_array_equal(
            store.read(("cpu_load", "fritz/f0101"), 1000, 1030).values, [1.0, 2.0, 3.0]
        )


def test_export_cc_exits_1_when_the_range_is_empty(
    checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(tmp_path / "cluster.json")
    assert (
        main(["import-cc", str(checkpoints), str(tmp_path / "a"), "--cluster-config", config]) == 0
    )
    args = [
        "export-cc",
        str(tmp_path / "a"),
        str(tmp_path / "out"),
        "--since",
        "0",
        "--until",
        "10",
    ]
    assert main(args) == 1
    assert "export-cc: nothing to write in [0, 10)" in capsys.readouterr().err
    assert main([*args[:3], "--since", "10", "--until", "0"]) == 1
    assert capsys.readouterr().err.startswith("export-cc: until: 0 is not after since (10)")
    # Without --since and --until everything is written, named by its first sample.
    assert main(args[:3]) == 0
    assert "wrote 1 bin file" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "out" / "fritz" / "f0101").iterdir()] == ["1000.bin"]


def test_the_commands_run_as_a_module(checkpoints: Path, tmp_path: Path) -> None:
    config = str(tmp_path / "cluster.json")
    done = subprocess.run(
        [sys.executable, "-m", "metricstore", "import-cc", str(checkpoints), str(tmp_path / "s"),
         "--cluster-config", config],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loaded 5 values" in done.stdout and done.stderr == ""


def test_import_cc_takes_a_ccbackend_config_and_export_cc_an_archive_layout(
    checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    config = {
        "archive": {"kind": "file", "path": "jobs"},
        "metric-store": {
            "checkpoints": {"directory": str(checkpoints)},
            "retention-in-memory": "0",
            "memory-cap": 10,
        },
    }
    cc.put(tmp_path / "cc/config.json", json.dumps(config))
    cc.put(tmp_path / "cc/jobs/fritz/cluster.json", (tmp_path / "cluster.json").read_text())
    # Retention 0 with --since 0: everything, as the test above loads it.
    args = ["import-cc", str(tmp_path / "a"), "--config", str(tmp_path / "cc/config.json")]
    assert main([*args, "--since", "0"]) == 0
    assert "loaded 5 values" in capsys.readouterr().out
    target = tmp_path / "archive"
    args = ["export-cc", str(tmp_path / "a"), str(target), "--format", "parquet"]
    assert main([*args, "--layout", "archive", "--since", "1000", "--until", "1300"]) == 0
    assert [p.relative_to(target).as_posix() for p in target.rglob("*.parquet")] == [
        "fritz/1000.parquet"
    ]
    assert main(["import-cc", str(tmp_path / "b")]) == 2
    assert "give ROOT, or --config" in capsys.readouterr().err
