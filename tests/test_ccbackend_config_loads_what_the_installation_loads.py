"""Pointed at a cc-backend installation's ``config.json``, load_checkpoints
loads what that cc-backend would load on startup: the checkpoint directory of
its ``metric-store`` section, the cutoff its ``retention-in-memory`` sets,
and the metrics of the ``cluster.json`` files in its job archive. A config
that lacks what is needed is a clear error naming ``config``."""

from __future__ import annotations

import json
from pathlib import Path

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore.ccbackend import load_checkpoints

NOW = 1_700_000_000 // 3600 * 3600
HOUR = 3600


def installation(root: Path, retention: object = "2h", **section: object) -> Path:
    """cc-backend's directory: config.json, var/checkpoints, var/job-archive."""
    config = {
        "main": {"addr": "127.0.0.1:8080"},
        "archive": {"kind": "file", "path": "./var/job-archive"},
        "metric-store": {
            "checkpoints": {"file-format": "wal", "directory": "./var/checkpoints"},
            "memory-cap": 100,
            "retention-in-memory": retention,
            **section,
        },
    }
    cc.put(root / "config.json", json.dumps(config))
    jobs = root / "var/job-archive"
    cc.put(jobs / "fritz/cluster.json", cc.cluster_json("fritz", [("cpu_load", 60, "avg")]))
    # Another cluster's cpu_load at 30 s: cc-backend keeps the larger timestep.
    alex = [("cpu_load", 30, "sum"), ("mem_bw", 60, "sum")]
    cc.put(jobs / "alex/cluster.json", cc.cluster_json("alex", alex))
    host = root / "var/checkpoints/fritz/f0101"
    old, new = NOW - 4 * HOUR, NOW - HOUR
    node = cc.level({"cpu_load": (60, old, [1.0, 2.0]), "not_configured": (60, old, [3.0])})
    cc.put(host / f"{old - HOUR}.bin", cc.snapshot(old - HOUR, old, node))  # before the newest
    cc.put(host / f"{old}.bin", cc.snapshot(old, new, node))  # newest before the cutoff
    cc.put(host / f"{new}.bin", cc.snapshot(new, NOW, cc.level({"cpu_load": (60, new, [4.0])})))
    records = [(NOW - 3 * HOUR, "cpu_load", (), 5.0), (NOW - 60, "mem_bw", (), 6.0)]
    cc.put(host / "current.wal", cc.wal(records))
    return root / "config.json"


def test_the_config_names_the_directory_the_cutoff_and_the_metrics(tmp_path: Path) -> None:
    config = installation(tmp_path)
    store = metricstore.Store()
    report = load_checkpoints(None, store, config=config, now=NOW, progress=False)
    assert report.root == str(tmp_path / "var/checkpoints")
    assert report.since == NOW - 2 * HOUR
    # cc-backend's rule over the clusters in name order (alex, fritz): the
    # larger timestep wins, the first aggregation stays.
    assert {m.name: (m.frequency, m.aggregation) for m in store.metrics} == {
        "cpu_load": (60, "sum"),
        "mem_bw": (60, "sum"),
    }
    # The file named before the newest one before the cutoff is left out;
    # the log record before the cutoff too.
    assert [s.reason.startswith("named before since") for s in report.skipped] == [True]
    assert report.unknown_metrics == {"not_configured": 1}
    assert (report.files_read, report.wal_records) == (3, 1)
    old = NOW - 4 * HOUR
    values = store.read(("cpu_load", "fritz/f0101"), old, old + 120).values
    np.testing.assert_array_equal(values, [1.0, 2.0])
    assert store.read(("cpu_load", "fritz/f0101"), NOW - HOUR, NOW - HOUR + 60).values[0] == 4.0
    assert store.read(("mem_bw", "fritz/f0101"), NOW - 60, NOW).values[0] == 6.0


@pytest.mark.parametrize(
    ("retention", "seconds"),
    [("48h", 48 * HOUR), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90), ("0", 0)],
)
def test_retention_is_a_go_duration(tmp_path: Path, retention: str, seconds: int) -> None:
    config = installation(tmp_path, retention)
    store = metricstore.Store()
    report = load_checkpoints(None, store, config=config, now=NOW, progress=False)
    assert report.since == NOW - seconds


def test_root_since_and_cluster_config_given_win_over_the_config(tmp_path: Path) -> None:
    config = installation(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    cc.put(elsewhere / "c/h/100.bin", cc.snapshot(100, 200, cc.level({"ipc": (10, 100, [7.0])})))
    cc.put(tmp_path / "only.json", cc.cluster_json("c", [("ipc", 10, "sum")]))
    store = metricstore.Store()
    report = load_checkpoints(
        elsewhere,
        store,
        config=config,
        since=0,
        cluster_config=tmp_path / "only.json",
        progress=False,
    )
    assert (report.root, report.since, report.values) == (str(elsewhere), 0, 1)
    assert [m.name for m in store.metrics] == ["ipc"]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"metric-store": None}, ValueError, 'has no "metric-store" section'),
        ({"retention": "2 days"}, ValueError, "not a duration such as"),
        ({"retention": 48}, ValueError, "not a duration string"),
        ({"retention": None}, ValueError, 'lacks "retention-in-memory"'),
        ({"text": "{"}, ValueError, "is not valid JSON"),
    ],
)
def test_a_config_without_what_is_needed_is_a_clear_error(
    tmp_path: Path, change: dict[str, object], error: type[Exception], message: str
) -> None:
    config = installation(tmp_path, change.get("retention", "2h"))
    document = json.loads(config.read_text())
    if "metric-store" in change:
        del document["metric-store"]
    if change.get("retention", "") is None:
        del document["metric-store"]["retention-in-memory"]
    config.write_text(change.get("text") or json.dumps(document))
    store = metricstore.Store()
    with pytest.raises(error, match=message) as raised:
        load_checkpoints(None, store, config=config, now=NOW, progress=False)
    assert str(raised.value).startswith("config: ")
    assert store.list_series() == [] and store.metrics == []


def test_root_none_needs_a_config(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^root: None needs config="):
        load_checkpoints(None, metricstore.Store(), progress=False)
    with pytest.raises(TypeError, match=r"^now: only used with config="):
        load_checkpoints(tmp_path, metricstore.Store(), now=NOW, progress=False)
