"""cc-backend's checkpoint directories (binary snapshots, JSON checkpoints,
the write-ahead log) load with every value on the grid slot cc-backend reads
it at, in cc-backend's order (snapshots by the time in their name, then the
log), and the report counts exactly what was read, loaded and left out.

The fixtures are built byte by byte by ``ccfiles``, which shares no code with
the reader."""

from __future__ import annotations

import _thread
import sys
import threading
import types
from pathlib import Path
from typing import Any, ClassVar

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore import ccbackend
from metricstore.ccbackend import SkippedFile, load_checkpoints

F = 10
Key = tuple[str, tuple[str, ...]]
METRICS = [
    ("cpu_load", F, "avg"),
    ("mem_used", F, "sum"),
    ("flops_any", F, "sum"),
    ("core_power", F, "sum"),
    ("acc_util", F, "avg"),
]


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    for metric in METRICS:
        store.define_metric(*metric)
    return store


def f32(value: float) -> float:
    return float(np.float32(value))


class Tree:
    """Writes fixture files and records where each value must land."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.expected: dict[Key, dict[int, float]] = {}
        self.snapshot_values = 0
        self.wal_records = 0
        self.stale = 0
        self.files: list[Path] = []

    def expect(self, metric: str, path: tuple[str, ...], ts: int, value: float) -> None:
        self.expected.setdefault((metric, path), {})[ts] = f32(value)

    def block(
        self, metric: str, path: tuple[str, ...], start: int, values: list[float | None]
    ) -> tuple[int, int, list[float | None]]:
        present = [i for i, v in enumerate(values) if v is not None]
        slots = self.expected.setdefault((metric, path), {})
        for i in range(present[0], present[-1] + 1):  # NaN inside a block is written
            ts = start + i * F
            if values[i] is None:
                slots.pop(ts, None)
            else:
                slots[ts] = f32(values[i])  # type: ignore[arg-type]
        self.snapshot_values += len(present)
        return (F, start, values)

    def put(self, relative: str, data: bytes | str, *, loaded: bool = True) -> Path:
        path = cc.put(self.root / relative, data)
        if loaded:
            self.files.append(path)
        return path


def ramp(n: int, scale: float) -> list[float | None]:
    """Values that float32 rounds (1/3 is not exact)."""
    return [scale * i + 1 / 3 for i in range(n)]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Two clusters, five hosts: node-level and child-level metrics, two
    consecutive snapshots and a log, JSON with nulls, an empty host, an
    unknown metric, a log-only host."""
    t = Tree(tmp_path / "checkpoints")
    h = ("fritz", "f0101")
    # f0101: 1000.bin and 1300.bin, consecutive, then the log.
    for first in (1000, 1300):
        base = (first - 1000) // F
        mem: list[float | None] = [1e9 + 1024 * (base + i) for i in range(30)]
        if first == 1000:
            mem[3] = mem[4] = None  # a gap inside the block
        node = cc.level(
            {
                "cpu_load": t.block("cpu_load", h, first, ramp(30, 0.01 + base)),
                "mem_used": t.block("mem_used", h, first, mem),
            },
            {
                "cpu0": cc.level(
                    {"flops_any": t.block("flops_any", (*h, "cpu0"), first, ramp(30, 2.5))}
                ),
                "cpu1": cc.level(
                    {"flops_any": t.block("flops_any", (*h, "cpu1"), first, ramp(30, -1.25))}
                ),
                "socket0": cc.level(
                    children={
                        "core3": cc.level(
                            {
                                "core_power": t.block(
                                    "core_power",
                                    (*h, "socket0", "core3"),
                                    first,
                                    ramp(30, 7.0),
                                )
                            }
                        )
                    }
                ),
            },
        )
        t.put(f"fritz/f0101/{first}.bin", cc.snapshot(first, first + 300, node))
    records = [
        (1500, "cpu_load", (), 99.5),  # inside the 1300 snapshot: overwrites
        *[(1600 + F * i, "cpu_load", (), 50.0 + i) for i in range(6)],
        *[(1600 + F * i, "flops_any", ("cpu1",), 0.125 * i) for i in range(6)],
        *[(1600 + F * i, "core_power", ("socket0", "core3"), 3.0 + i) for i in range(3)],
        (1550, "cpu_load", (), -1.0),  # before the buffer the log opened at 1595: dropped
        (1200, "cpu_load", (), -2.0),  # before the 1300 snapshot's start: dropped
    ]
    t.put("fritz/f0101/current.wal", cc.wal(records))
    for ts, metric, selectors, value in records:
        if value >= 0:
            t.expect(metric, (*h, *selectors), ts, value)
    t.wal_records = len(records) - 2
    t.stale = 2
    # f0102: JSON with nulls at both ends and inside; an accelerator child;
    # a leftover .tmp file and a subdirectory cc-backend ignores.
    h2 = ("fritz", "f0102")
    acc = "accelerator00000000:3b:00.0"
    node = cc.level(
        {"cpu_load": t.block("cpu_load", h2, 1000, [None, 2.0, None, 4.0, 0.1, None])},
        {acc: cc.level({"acc_util": t.block("acc_util", (*h2, acc), 1010, [0.3, 0.7])})},
    )
    t.put("fritz/f0102/1000.json", cc.snapshot_json(1000, 1300, node))
    t.put("fritz/f0102/1300.bin.tmp", b"partial", loaded=False)
    t.put("fritz/f0102/avro/1000.avro", b"", loaded=False)
    # f0103: an empty host directory.
    (t.root / "fritz" / "f0103").mkdir(parents=True)
    # f0104: an unknown metric in the snapshot (4 values) and the log (2 records).
    h4 = ("fritz", "f0104")
    node = cc.level(
        {
            "no_such_metric": (F, 1000, [1.0, None, 2.0, 3.0, 4.0]),
            "cpu_load": t.block("cpu_load", h4, 1000, [0.5, 0.25]),
        }
    )
    t.put("fritz/f0104/1000.bin", cc.snapshot(1000, 1300, node))
    log = [(1020, "no_such_metric", (), 1.0), (1030, "no_such_metric", ("cpu0",), 2.0)]
    t.put("fritz/f0104/current.wal", cc.wal([*log, (1020, "cpu_load", (), 0.75)]))
    t.expect("cpu_load", h4, 1020, 0.75)
    # alex/a0001: a log only; the series are created by it.
    a = ("alex", "a0001")
    log = [(2000 + F * i, "mem_used", (), 4096.0 * i) for i in range(4)]
    log += [(2000, "flops_any", ("hwthread7",), 1.5)]
    t.put("alex/a0001/current.wal", cc.wal(log))
    for ts, metric, selectors, value in log:
        t.expect(metric, (*a, *selectors), ts, value)
    t.wal_records += 1 + len(log)
    return t


def grid(slots: dict[int, float], start: int, stop: int) -> np.ndarray:
    out = np.full((stop - start) // F, np.nan, dtype=np.float32)
    for ts, value in slots.items():
        out[(ts - start) // F] = value
    return out


def assert_store_holds(store: metricstore.Store, expected: dict[Key, dict[int, float]]) -> None:
    stored = {(metric, path) for _, metric, path in store.list_series()}
    assert stored == set(expected)
    for (metric, path), slots in expected.items():
        result = store.read((metric, path), 900, 2200)
        assert result.start == 900 and result.step == F
        np.testing.assert_array_equal(
            result.values.view(np.uint32),
            grid(slots, 900, 2200).view(np.uint32),
            err_msg=f"{metric} {'/'.join(path)}",
        )


def test_every_value_lands_on_its_slot(tree: Tree) -> None:
    store = new_store()
    load_checkpoints(tree.root, store, progress=False)
    assert_store_holds(store, tree.expected)


def test_the_report_counts_exactly(tree: Tree) -> None:
    report = load_checkpoints(tree.root, new_store(), progress=False, workers=2)
    assert report.root == str(tree.root)
    assert report.hosts == 5
    assert report.files_read == len(tree.files) == 7
    assert report.bytes_read == sum(p.stat().st_size for p in tree.files)
    assert report.wal_records == tree.wal_records
    assert report.stale_wal_records == tree.stale
    assert report.values == tree.snapshot_values + tree.wal_records
    assert report.unknown_metrics == {"no_such_metric": 6}
    assert report.damaged == ()
    assert report.regridded_blocks == 0
    f0102 = tree.root / "fritz" / "f0102"
    assert [s.path for s in report.skipped] == [str(f0102 / "1300.bin.tmp"), str(f0102 / "avro")]
    assert "ignores" in report.skipped[0].reason and "subdirectory" in report.skipped[1].reason
    text = report.summary()
    assert "5 hosts, read 7 files" in text and "no_such_metric (6)" in text


def test_a_log_record_older_than_its_series_newest_buffer_is_dropped(tmp_path: Path) -> None:
    # cc-backend's replay writes into the series' head buffer only: a loaded
    # block (start 1000, 3 slots), then a buffer the log opens at ts - f/2.
    cc.put(
        tmp_path / "c/h/1000.bin",
        cc.snapshot(1000, 1030, cc.level({"cpu_load": (F, 1000, [1.0, 2.0, 3.0])})),
    )
    records = [
        (995, "cpu_load", (), 10.0),  # before the block's start: dropped
        (1010, "cpu_load", (), 11.0),  # inside the block: overwrites
        (1100, "cpu_load", (), 12.0),  # past the block: opens a buffer at 1095
        (1096, "cpu_load", (), 13.0),  # inside that buffer's first slot: lands at 1100's slot
        (1094, "cpu_load", (), 14.0),  # before 1095: dropped
        (1050, "cpu_load", (), 15.0),  # dropped
        (1110, "cpu_load", (), 16.0),
    ]
    cc.put(tmp_path / "c/h/current.wal", cc.wal(records))
    store = new_store()
    report = load_checkpoints(tmp_path, store, progress=False)
    assert (report.stale_wal_records, report.wal_records) == (3, 4)
    values = store.read(("cpu_load", "c/h"), 990, 1120).values
    expected = grid({1000: 1.0, 1010: 11.0, 1020: 3.0, 1100: 13.0, 1110: 16.0}, 990, 1120)
    np.testing.assert_array_equal(values, expected)


def test_a_block_off_the_grid_lands_on_the_nearest_slots(tmp_path: Path) -> None:
    # value i is cc-backend's sample nearest start + i*f; a tie goes to the later slot
    cases = {
        "h1": (1000, 1000),
        "h2": (1003, 1000),
        "h3": (1005, 1010),
        "h4": (996, 1000),
        "h5": (-15, -10),
    }
    for host, (start, _) in cases.items():
        cc.put(
            tmp_path / f"c/{host}/0.bin",
            cc.snapshot(0, 0, cc.level({"cpu_load": (F, start, [1.0, 2.0])})),
        )
    store = new_store()
    load_checkpoints(tmp_path, store, progress=False)
    for host, (_, first_slot) in cases.items():
        values = store.read(("cpu_load", f"c/{host}"), first_slot - F, first_slot + 3 * F).values
        np.testing.assert_array_equal(values, [np.nan, 1.0, 2.0, np.nan], err_msg=host)


def test_a_block_of_another_frequency_is_placed_by_time(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.bin",
        cc.snapshot(1000, 0, cc.level({"cpu_load": (20, 1000, [1.0, 2.0, 3.0])})),
    )
    store = new_store()
    report = load_checkpoints(tmp_path, store, progress=False)
    assert report.regridded_blocks == 1 and report.values == 3
    values = store.read(("cpu_load", "c/h"), 1000, 1050).values
    np.testing.assert_array_equal(values, [1.0, np.nan, 2.0, np.nan, 3.0])


def write_three_snapshots(root: Path) -> None:
    for first, value in ((1000, 1.0), (1300, 2.0), (1600, 3.0)):
        node = cc.level({"cpu_load": (F, first, [value] * 30)})
        cc.put(root / f"c/h/{first}.bin", cc.snapshot(first, first + 300, node))
    cc.put(
        root / "c/h/current.wal", cc.wal([(1690, "cpu_load", (), 9.0), (1900, "cpu_load", (), 4.0)])
    )


@pytest.mark.parametrize(
    ("since", "loaded", "wal"),
    [
        (None, [1000, 1300, 1600], {1690: 9.0, 1900: 4.0}),
        (1000, [1000, 1300, 1600], {1690: 9.0, 1900: 4.0}),
        (1300, [1300, 1600], {1690: 9.0, 1900: 4.0}),
        # the newest file named before since loads when a newer one exists
        (1400, [1300, 1600], {1690: 9.0, 1900: 4.0}),
        # ... and not when none does (cc-backend's findFiles)
        (1650, [], {1690: 9.0, 1900: 4.0}),
        # log records before since are skipped
        (1700, [], {1900: 4.0}),
    ],
)
def test_since_selects_files_and_records_as_ccbackend(
    tmp_path: Path, since: int | None, loaded: list[int], wal: dict[int, float]
) -> None:
    write_three_snapshots(tmp_path)
    store = new_store()
    report = load_checkpoints(tmp_path, store, since=since, progress=False)
    expected: dict[int, float] = {}
    for first in loaded:
        expected.update({first + F * i: float(1 + (first - 1000) // 300) for i in range(30)})
    expected.update(wal)
    np.testing.assert_array_equal(
        store.read(("cpu_load", "c/h"), 900, 2000).values, grid(expected, 900, 2000)
    )
    assert report.files_read == len(loaded) + 1
    left_out = sorted({1000, 1300, 1600} - set(loaded))
    assert [s.path for s in report.skipped] == [str(tmp_path / f"c/h/{t}.bin") for t in left_out]


def test_a_file_ending_before_since_is_skipped(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.json",
        cc.snapshot_json(1000, 1300, cc.level({"cpu_load": (F, 1000, [1.0])})),
    )
    cc.put(
        tmp_path / "c/h/2000.bin", cc.snapshot(2000, 2300, cc.level({"cpu_load": (F, 2000, [2.0])}))
    )
    store = new_store()
    report = load_checkpoints(tmp_path, store, since="1970-01-01T00:25:00", progress=False)
    assert report.skipped == (
        SkippedFile(str(tmp_path / "c/h/1000.json"), "ends at to=1300, before since=1500"),
    )
    assert report.values == 1 and report.files_read == 1


def test_a_json_and_a_bin_of_one_time_load_json_first(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.json",
        cc.snapshot_json(1000, 0, cc.level({"cpu_load": (F, 1000, [1.0])})),
    )
    cc.put(
        tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [2.0])}))
    )
    store = new_store()
    load_checkpoints(tmp_path, store, progress=False)
    assert store.read(("cpu_load", "c/h"), 1000, 1010).values[0] == 2.0


def test_metrics_come_from_cluster_json_by_ccbackends_rule(tmp_path: Path) -> None:
    # one namespace over all clusters: the larger timestep wins, the first aggregation stays
    a = cc.put(
        tmp_path / "a.json", cc.cluster_json("a", [("cpu_load", 10, "avg"), ("ipc", 10, "")])
    )
    b = cc.put(tmp_path / "b.json", cc.cluster_json("b", [("cpu_load", 20, "sum")]))
    cc.put(
        tmp_path / "cp/a/h/1000.bin",
        cc.snapshot(1000, 0, cc.level({"cpu_load": (20, 1000, [1.0])})),
    )
    store = metricstore.Store()
    report = load_checkpoints(tmp_path / "cp", store, cluster_config=[a, b], progress=False)
    assert sorted(store.metrics) == [
        metricstore.Metric("cpu_load", 20, "avg"),
        metricstore.Metric("ipc", 10, "none"),
    ]
    assert report.values == 1 and report.unknown_metrics == {}


def test_metrics_from_another_store_are_defined(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [1.0])}))
    )
    store = metricstore.Store()
    report = load_checkpoints(tmp_path, store, metrics=new_store().metrics, progress=False)
    assert report.values == 1 and len(store.metrics) == len(METRICS)
    with pytest.raises(TypeError, match=r"^metrics\[0\]: expected a Metric"):
        load_checkpoints(tmp_path, store, metrics=["cpu_load"], progress=False)  # type: ignore[list-item]


def test_a_conflicting_metric_raises_before_anything_loads(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.bin", cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [1.0])}))
    )
    store = new_store()
    with pytest.raises(metricstore.MetricConflictError, match='"cpu_load"'):
        load_checkpoints(tmp_path, store, metrics=[("cpu_load", 60, "avg")], progress=False)
    assert len(store) == 0


def test_bad_arguments_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^store: cc-backend's files use seconds"):
        load_checkpoints(tmp_path, metricstore.Store(unit="ms"))
    with pytest.raises(FileNotFoundError, match=r"^root: .*missing is not a directory"):
        load_checkpoints(tmp_path / "missing", new_store())
    with pytest.raises(TypeError, match=r"^progress: expected True, False or None"):
        load_checkpoints(tmp_path, new_store(), progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^workers: must be at least 1"):
        load_checkpoints(tmp_path, new_store(), workers=0)
    with pytest.raises(TypeError, match=r"^since: got float"):
        load_checkpoints(tmp_path, new_store(), since=1.5)


class FakeBar:
    made: ClassVar[list[FakeBar]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.n = 0
        self.closed = False
        FakeBar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch: pytest.MonkeyPatch) -> type[FakeBar]:
    FakeBar.made = []
    package = types.ModuleType("tqdm")
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeBar  # type: ignore[attr-defined]
    package.auto = auto  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    return FakeBar


def test_progress_shows_bytes_when_asked(tree: Tree, fake_tqdm: type[FakeBar]) -> None:
    report = load_checkpoints(tree.root, new_store(), progress=True)
    [bar] = fake_tqdm.made
    assert bar.options["total"] == report.bytes_read and bar.options["unit"] == "B"
    assert bar.n == report.bytes_read and bar.closed


def test_progress_is_off_when_told_or_when_stderr_is_not_a_terminal(
    tree: Tree, fake_tqdm: type[FakeBar], monkeypatch: pytest.MonkeyPatch
) -> None:
    load_checkpoints(tree.root, new_store(), progress=False)
    monkeypatch.setattr(sys, "stderr", open(__file__))  # noqa: SIM115 - not a terminal
    try:
        load_checkpoints(tree.root, new_store())
    finally:
        sys.stderr.close()
    assert fake_tqdm.made == []


@pytest.mark.usefixtures("ctrl_c_handled")
def test_ctrl_c_stops_the_load_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        node = cc.level({"cpu_load": (F, 1000, [float(i)] * 10)})
        cc.put(tmp_path / f"c/h{i:02}/1000.bin", cc.snapshot(1000, 0, node))
    original = ccbackend._Loader.load_host
    calls = 0

    def interrupted(self: Any, plan: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            _thread.interrupt_main()
            # On only once the main thread has taken the interrupt and cancelled
            # the load, however long a busy machine makes that take (a fixed
            # sleep here let a slow main thread miss it).
            assert self.cancelled.wait(60), "the main thread never took the interrupt"
        return original(self, plan)

    monkeypatch.setattr(ccbackend._Loader, "load_host", interrupted)
    store = new_store()
    with pytest.raises(KeyboardInterrupt):
        load_checkpoints(tmp_path, store, workers=1, progress=False)
    assert calls < 20 and len(store) < 20
    assert not [t for t in threading.enumerate() if t.name.startswith("metricstore-cc-")]


def test_nan_is_not_a_value(tmp_path: Path) -> None:
    cc.put(
        tmp_path / "c/h/1000.bin",
        cc.snapshot(1000, 0, cc.level({"cpu_load": (F, 1000, [None, None])})),
    )
    store = new_store()
    report = load_checkpoints(tmp_path, store, progress=False)
    assert report.values == 0 and report.files_read == 1 and len(store) == 0
